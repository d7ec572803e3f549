"""bayesmix: Bayesian two-level models written as level-1 / level-2 equations.

The pipeline (each stage a plain function with a frozen result)::

    Spec.from_equations / from_formula / from_file  ->  Spec
    build_design(spec, data)                        ->  Design   (y, X, Z)
    build_model(design, priors, likelihood=...)     ->  BuiltModel (a pm.Model)
    sample(built, SamplerSettings(...))             ->  Fit      (DataTree of draws)
    summarize(fit), reconstruct(fit)                ->  tables and checks

``fit(spec, data, ...)`` chains them.
"""

from bayesmix.api import fit, load_data
from bayesmix.build import BuiltModel, build_model
from bayesmix.checks import (
    ConvergenceWarning,
    Reconstruction,
    Summary,
    reconstruct,
    summarize,
)
from bayesmix.design import Design, build_design
from bayesmix.errors import BayesmixError, DataError, SpecError
from bayesmix.fit import Fit
from bayesmix.priors import Prior, Priors, ResolvedPriors, resolve_priors
from bayesmix.render import Equations, equations
from bayesmix.sampling import sample
from bayesmix.settings import SamplerSettings
from bayesmix.spec import Coefficient, Gamma, Spec
from bayesmix.stats import ClusterStats, cluster_stats

__all__ = [
    "BayesmixError",
    "BuiltModel",
    "ClusterStats",
    "Coefficient",
    "ConvergenceWarning",
    "DataError",
    "Design",
    "Equations",
    "Fit",
    "Gamma",
    "Prior",
    "Priors",
    "Reconstruction",
    "ResolvedPriors",
    "SamplerSettings",
    "Spec",
    "SpecError",
    "Summary",
    "build_design",
    "build_model",
    "cluster_stats",
    "equations",
    "fit",
    "load_data",
    "reconstruct",
    "resolve_priors",
    "sample",
    "summarize",
]
