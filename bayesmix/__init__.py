"""bayesmix: Bayesian multilevel models written as level equations (two, three or more levels).

The pipeline (each stage a plain function with a frozen result)::

    Spec.from_equations / from_formula / from_file  ->  Spec
    build_design(spec, data)                        ->  Design   (y, X, Z)
    build_model(design, priors, likelihood=...)     ->  BuiltModel (a pm.Model)
    sample(built, SamplerSettings(...))             ->  Fit      (DataTree of draws)
    summarize(fit), reconstruct(fit)                ->  tables and checks

``fit(spec, data, ...)`` chains them.
"""

# First: sets PyTensor's BLAS flags before anything imports PyTensor (see bayesmix/_blas.py).
from bayesmix import _blas  # noqa: F401
from bayesmix.api import fit, load_data
from bayesmix.build import BuiltModel, build_model
from bayesmix.checks import (
    ConvergenceWarning,
    Reconstruction,
    Summary,
    reconstruct,
    summarize,
)
from bayesmix.compare import Comparison, compare
from bayesmix.design import Design, build_design
from bayesmix.errors import BayesmixError, DataError, SpecError
from bayesmix.families import FAMILIES, Family, get_family
from bayesmix.fit_result import Fit, FitFileError
from bayesmix.kfold import ModelComparison, compare_models, kfold
from bayesmix.loo_cv import loo
from bayesmix.predict import Prediction, predict
from bayesmix.predictive import posterior_predictive, prior_predictive
from bayesmix.priors import Prior, Priors, ResolvedPriors, resolve_priors
from bayesmix.reml import (
    REMLConvergenceError,
    REMLFit,
    REMLFormatError,
    align_reml,
    fit_reml,
    read_reml,
    write_reml,
)
from bayesmix.render import Equations, equations
from bayesmix.sampling import CompiledModel, SamplingInterrupted, compile_model, sample
from bayesmix.scaling import Scaling
from bayesmix.settings import SamplerSettings
from bayesmix.spec import Coefficient, Gamma, RandomTerm, Spec
from bayesmix.stats import ClusterStats, cluster_stats, stream_cluster_stats
from bayesmix.variance import VariancePartition, variance

__all__ = [
    "FAMILIES",
    "BayesmixError",
    "BuiltModel",
    "ClusterStats",
    "Coefficient",
    "Comparison",
    "CompiledModel",
    "ConvergenceWarning",
    "DataError",
    "Design",
    "Equations",
    "Family",
    "Fit",
    "FitFileError",
    "Gamma",
    "ModelComparison",
    "Prediction",
    "Prior",
    "Priors",
    "REMLConvergenceError",
    "REMLFit",
    "REMLFormatError",
    "RandomTerm",
    "Reconstruction",
    "ResolvedPriors",
    "SamplerSettings",
    "SamplingInterrupted",
    "Scaling",
    "Spec",
    "SpecError",
    "Summary",
    "VariancePartition",
    "align_reml",
    "build_design",
    "build_model",
    "cluster_stats",
    "compare",
    "compare_models",
    "compile_model",
    "equations",
    "fit",
    "fit_reml",
    "get_family",
    "kfold",
    "load_data",
    "loo",
    "plot_compare",
    "plot_ppc",
    "posterior_predictive",
    "predict",
    "prior_predictive",
    "read_reml",
    "reconstruct",
    "resolve_priors",
    "sample",
    "stream_cluster_stats",
    "summarize",
    "variance",
    "write_reml",
]


def __getattr__(name: str):
    # matplotlib is imported only when a plot is asked for.
    if name == "plot_compare":
        from bayesmix.plots import plot_compare

        return plot_compare
    if name == "plot_ppc":
        from bayesmix.ppc_plot import plot_ppc

        return plot_ppc
    raise AttributeError(f"module 'bayesmix' has no attribute {name!r}")
