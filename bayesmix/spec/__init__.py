"""Model specification: L1/L2 equations, lme4 formulas and model files, one frozen Spec."""

from bayesmix.spec.equations import parse_equations, spec_to_equations
from bayesmix.spec.formula import parse_formula
from bayesmix.spec.formula_convert import spec_to_formula
from bayesmix.spec.model import Coefficient, FixedTerm, Gamma, RandomTerm, Spec

__all__ = [
    "Coefficient",
    "FixedTerm",
    "Gamma",
    "RandomTerm",
    "Spec",
    "parse_equations",
    "parse_formula",
    "spec_to_equations",
    "spec_to_formula",
]
