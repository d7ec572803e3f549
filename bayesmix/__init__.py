"""bayesmix: Bayesian multilevel models written as level equations (two, three or more levels).

The pipeline (each stage a plain function with a frozen result)::

    Spec.from_equations / from_formula / from_file  ->  Spec
    build_design(spec, data)                        ->  Design   (y, X, Z)
    build_model(design, priors, likelihood=...)     ->  BuiltModel (a pm.Model)
    sample(built, SamplerSettings(...))             ->  Fit      (DataTree of draws)
    summarize(fit), reconstruct(fit)                ->  tables and checks

``fit(spec, data, ...)`` chains them.
"""

from typing import TYPE_CHECKING

# Sets PyTensor's BLAS flags before anything imports PyTensor (see bayesmix/_blas.py).
from bayesmix import _blas  # noqa: F401

# Functions named like their own submodule are imported now, not lazily: importing the
# submodule later would rebind ``bayesmix.<name>`` to the module (Python sets a package's
# attribute when it first imports its submodule).  None of these imports PyMC.
from bayesmix.compare import Comparison, compare
from bayesmix.kfold import ModelComparison, compare_models, kfold
from bayesmix.predict import Prediction, predict
from bayesmix.variance import VariancePartition, variance

if TYPE_CHECKING:  # the eager imports, for type checkers and editors
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
    from bayesmix.stats import ClusterStats
    from bayesmix.stats.sources import cluster_stats
    from bayesmix.stats.stream import stream_cluster_stats
    from bayesmix.variance import VariancePartition, variance
    from bayesmix.weights import Weights

_LAZY: dict[str, str] = {
    "fit": "bayesmix.api",
    "load_data": "bayesmix.api",
    "BuiltModel": "bayesmix.build",
    "build_model": "bayesmix.build",
    "ConvergenceWarning": "bayesmix.checks",
    "Reconstruction": "bayesmix.checks",
    "Summary": "bayesmix.checks",
    "reconstruct": "bayesmix.checks",
    "summarize": "bayesmix.checks",
    "Design": "bayesmix.design",
    "build_design": "bayesmix.design",
    "BayesmixError": "bayesmix.errors",
    "DataError": "bayesmix.errors",
    "SpecError": "bayesmix.errors",
    "FAMILIES": "bayesmix.families",
    "Family": "bayesmix.families",
    "get_family": "bayesmix.families",
    "Fit": "bayesmix.fit_result",
    "FitFileError": "bayesmix.fit_result",
    "loo": "bayesmix.loo_cv",
    "plot_compare": "bayesmix.plots",
    "plot_ppc": "bayesmix.ppc_plot",
    "posterior_predictive": "bayesmix.predictive",
    "prior_predictive": "bayesmix.predictive",
    "Prior": "bayesmix.priors",
    "Priors": "bayesmix.priors",
    "ResolvedPriors": "bayesmix.priors",
    "resolve_priors": "bayesmix.priors",
    "REMLConvergenceError": "bayesmix.reml",
    "REMLFit": "bayesmix.reml",
    "REMLFormatError": "bayesmix.reml",
    "align_reml": "bayesmix.reml",
    "fit_reml": "bayesmix.reml",
    "read_reml": "bayesmix.reml",
    "write_reml": "bayesmix.reml",
    "Equations": "bayesmix.render",
    "equations": "bayesmix.render",
    "CompiledModel": "bayesmix.sampling",
    "SamplingInterrupted": "bayesmix.sampling",
    "compile_model": "bayesmix.sampling",
    "sample": "bayesmix.sampling",
    "Scaling": "bayesmix.scaling",
    "SamplerSettings": "bayesmix.settings",
    "Coefficient": "bayesmix.spec",
    "Gamma": "bayesmix.spec",
    "RandomTerm": "bayesmix.spec",
    "Spec": "bayesmix.spec",
    "ClusterStats": "bayesmix.stats",
    "cluster_stats": "bayesmix.stats.sources",
    "stream_cluster_stats": "bayesmix.stats.stream",
    "Weights": "bayesmix.weights",
}
"""Where each public name lives: imported on first use, so that ``import bayesmix`` for a spec,
a design, a REML fit or equations does not import PyMC, PyTensor or ArviZ (about 1.2 s)."""

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
    "Weights",
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
    """Import a public name (or a submodule) on first use; see :data:`_LAZY`."""
    import importlib

    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    try:
        return importlib.import_module(f"bayesmix.{name}")
    except ModuleNotFoundError:
        raise AttributeError(f"module 'bayesmix' has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
