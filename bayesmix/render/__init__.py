"""Equations of a model in LaTeX, Markdown with math and plain text.

L1/L2, combined and matrix forms and the distributions, from one intermediate representation.

>>> eq = equations(spec)              # symbols
>>> eq = equations(spec, data)        # with the data's X and Z
>>> eq = equations(spec, reml=reml)   # estimates substituted
>>> print(eq.combined.text)
"""

from bayesmix.render.cli import run_equations_cli
from bayesmix.render.equations import FORMATS, FORMS, Equations, Form, equations

__all__ = ["FORMATS", "FORMS", "Equations", "Form", "equations", "run_equations_cli"]
