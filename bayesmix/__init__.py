"""bayesmix: Bayesian two-level models written as level-1 / level-2 equations.

The pipeline (each stage a plain function with a frozen result)::

    Spec.from_equations / from_formula / from_file  ->  Spec
    build_design(spec, data)                        ->  Design   (y, X, Z)
    build_model(design, priors, likelihood=...)     ->  BuiltModel (a pm.Model)
    sample(built, SamplerSettings(...))             ->  Fit      (DataTree of draws)
    summarize(fit), reconstruct(fit)                 ->  tables and checks

``fit(spec, data, ...)`` chains them.
"""

from bayesmix.design import Design, build_design
from bayesmix.errors import BayesmixError, DataError, SpecError
from bayesmix.priors import Prior, Priors, ResolvedPriors, resolve_priors
from bayesmix.settings import SamplerSettings
from bayesmix.spec import Coefficient, Gamma, Spec

__all__ = [
    "BayesmixError",
    "Coefficient",
    "DataError",
    "Design",
    "Gamma",
    "Prior",
    "Priors",
    "ResolvedPriors",
    "SamplerSettings",
    "Spec",
    "SpecError",
    "build_design",
    "resolve_priors",
]
