"""Exact K-fold cross-validation by clusters, and the comparison of models by ELPD.

:func:`kfold` splits the clusters of the outermost grouping factor into K folds, refits the
model K times without one fold, and scores each left-out cluster by its marginal predictive
density under the refit's draws (its random effects integrated out, as in ``loo``'s
``unit="cluster"``)::

    elpd_j = log (1/S) Σ_s p(y_j | β⁽ˢ⁾, T⁽ˢ⁾, σ⁽ˢ⁾),    draws s of the fit without j's fold

It is what PSIS-LOO approximates, and what to use when ``loo`` reports high Pareto k.

Refits are fast where the likelihood allows: a one-factor Gaussian model is compiled *once*
(the collapsed form, its per-cluster statistics as shared data) and each fold only sets the
left-out clusters' statistics to zero (an empty cluster adds nothing to the likelihood), so
the K refits share the compiled model and the full data's autoscaled priors.  Other models
are rebuilt on each training set (their priors autoscaled on it, as brms's ``kfold`` does;
PyTensor's C modules are cached, so a rebuild compiles in seconds).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr
from scipy.special import logsumexp

from bayesmix.errors import BayesmixError
from bayesmix.pointwise import flat_draws, marginal_unit


def assign_folds(J: int, k: int, random_seed: int | None) -> np.ndarray:
    """Fold 0..k-1 of each of J clusters: a random permutation cut into k near-equal parts."""
    if not 2 <= k <= J:
        raise BayesmixError(f"k must be between 2 and the number of clusters ({J}), not {k}")
    order = np.random.default_rng(random_seed).permutation(J)
    folds = np.empty(J, dtype=int)
    folds[order] = np.arange(J) % k
    return folds


def _fold_array(folds, levels: tuple[str, ...], unit: str) -> np.ndarray:
    """User folds (a sequence per cluster, or a mapping label -> fold) as codes 0..k-1."""
    if isinstance(folds, Mapping):
        missing = [lev for lev in levels if lev not in {str(k) for k in folds}]
        if missing:
            raise BayesmixError(f"folds gives no fold for the {unit} units "
                                f"{', '.join(missing[:5])}; give one for every unit")
        by = {str(k): v for k, v in folds.items()}
        values = np.asarray([by[lev] for lev in levels])
    else:
        values = np.asarray(folds)
        if values.shape != (len(levels),):
            raise BayesmixError(f"folds has {values.size} entries; give one per {unit} unit "
                                f"({len(levels)}, in the order of the fit's coordinates)")
    _, codes = np.unique(values, return_inverse=True)
    if codes.max() < 1:
        raise BayesmixError("folds puts every cluster in one fold; give at least two folds")
    return codes


def kfold(fit, k: int = 10, *, folds: Sequence | Mapping | None = None,
          draws: int | None = None, tune: int | None = None, random_seed: int | None = None,
          progressbar: bool = False):
    """Exact K-fold cross-validation, leaving out whole clusters (module docstring).

    Parameters
    ----------
    fit : Fit
    k : int
        Number of folds (ignored when ``folds`` is given).
    folds : sequence or mapping, optional
        The fold of each cluster of the outermost factor (in the order of
        ``fit.design.groupings``'s levels) or ``{cluster label: fold}``.
    draws, tune : int, optional
        Per refit; the fit's own settings by default.
    random_seed : int, optional
        For the folds and the refits (the fit's seed by default).
    progressbar : bool

    Returns
    -------
    arviz_stats.ELPDDataLOOKFold
        ``elpd``, ``se``, ``p`` (lpd of the full fit − elpd), pointwise ``elpd_i`` by cluster;
        goes into :func:`compare_models` with PSIS-LOO results.
    """
    import arviz_stats

    from bayesmix.cluster_marginal import cluster_marginal_loglik
    from bayesmix.loo_cv import _check_fit

    _check_fit(fit)
    design = fit.design
    unit = marginal_unit(design)
    grouping = next(g for g in design.groupings if g.name == unit)
    seed = fit.settings.random_seed if random_seed is None else random_seed
    codes = (assign_folds(grouping.J, k, seed) if folds is None
             else _fold_array(folds, grouping.levels, unit))
    n_folds = int(codes.max()) + 1
    settings = fit.settings.updated(draws=draws, tune=tune, random_seed=seed,
                                    progressbar=progressbar)
    refit = _FastRefit(fit, settings) if _FastRefit.applies(fit) else None
    elpd_i = np.empty(grouping.J)
    for f in range(n_folds):
        out = codes == f
        train = refit.fit(out) if refit else _rebuilt_fit(fit, settings, grouping, out)
        td = _aligned_draws(fit, train, f)
        _, ll = cluster_marginal_loglik(fit, td, clusters=out)
        elpd_i[out] = logsumexp(ll[:, out], axis=0) - np.log(ll.shape[0])
    full = _full_marginal(fit)
    lpd_i = logsumexp(full, axis=0) - np.log(full.shape[0])
    dim = "cluster" if design.single_factor else unit
    coords = {dim: list(grouping.levels)}
    result = arviz_stats.ELPDDataLOOKFold(
        elpd=float(elpd_i.sum()), se=float(np.sqrt(grouping.J * np.var(elpd_i, ddof=1))),
        p=float((lpd_i - elpd_i).sum()), n_samples=settings.draws * settings.chains,
        n_data_points=grouping.J, scale="log", warning=False, good_k=None,
        elpd_i=xr.DataArray(elpd_i, dims=dim, coords=coords), n_folds=n_folds,
        p_kfold_i=xr.DataArray(lpd_i - elpd_i, dims=dim, coords=coords),
    )
    result.unit = "cluster"
    result.folds = codes
    return result


def _full_marginal(fit) -> np.ndarray:
    """The full fit's y_marginal draws (S, J): stored, or computed now."""
    from bayesmix.cluster_marginal import cluster_marginal_loglik

    if "log_likelihood" in fit.idata.children:
        ll = fit.idata["log_likelihood"].to_dataset()
        if "y_marginal" in ll:
            da = ll["y_marginal"]
            return da.transpose("chain", "draw", *da.dims[2:]).values.reshape(
                da.sizes["chain"] * da.sizes["draw"], -1)
    return cluster_marginal_loglik(fit)[1]


class _FastRefit:
    """One compiled collapsed model; a fold zeroes its clusters' shared statistics."""

    @staticmethod
    def applies(fit) -> bool:
        d = fit.design
        return (d.family.is_gaussian and d.single_factor and len(d.effects) == 1
                and fit.likelihood == "collapsed" and fit.settings.sampler == "nutpie")

    def __init__(self, fit, settings) -> None:
        from bayesmix.build import build_model, stats_data
        from bayesmix.sampling import compile_model

        self.settings = dataclasses.replace(settings, backend="c")
        self.built = build_model(fit.design, fit.priors, likelihood="collapsed",
                                 shared_data=True)
        self.full = stats_data(self.built, fit.design)
        self.compiled = compile_model(self.built, self.settings)

    def fit(self, out: np.ndarray):
        import pymc as pm

        from bayesmix.sampling import sample

        values = {name: np.where(out.reshape(-1, *([1] * (v.ndim - 1))), 0.0, v)
                  for name, v in self.full.items()}
        pm.set_data(values, model=self.built.model)
        return sample(self.built, self.settings, compiled=self.compiled, predictive=False)


def _rebuilt_fit(fit, settings, grouping, out: np.ndarray):
    """The model rebuilt and sampled on the rows of the clusters not in the fold."""
    from bayesmix.build import build_model
    from bayesmix.design import build_design
    from bayesmix.sampling import sample

    keep = ~out[grouping.index]
    data: pd.DataFrame = fit.design.data.loc[keep]
    train = build_design(fit.spec, data)
    built = build_model(train, fit.spec.priors, likelihood=fit.likelihood)
    return sample(built, settings, predictive=False)


def _aligned_draws(fit, train, fold: int):
    """The training fit's draws of β, T_g, σ in the full design's order of columns."""
    draws = flat_draws(train)
    names, full_names = train.design.fixed_names, fit.design.fixed_names
    if tuple(names) != tuple(full_names):
        raise BayesmixError(
            f"fold {fold}: without its clusters the fixed effects are {list(names)}, not "
            f"{list(full_names)} (a categorical level occurs only in the left-out clusters); "
            "choose folds (folds=...) that keep every level in each training set"
        )
    return dataclasses.replace(draws, u={})


# ------------------------------------------------------------------ model comparison
@dataclasses.dataclass(frozen=True)
class ModelComparison:
    """Models ranked by expected log predictive density.

    Attributes
    ----------
    table : DataFrame
        ArviZ's comparison, unrounded: rank, elpd_diff, dse, p_worse, p, elpd, se, weight
        (stacking by default), ...
    elpd : dict of str to ELPDData
        Each model's LOO or K-fold result.
    unit : str
        What was left out.
    """

    table: pd.DataFrame
    elpd: dict
    unit: str

    def __repr__(self) -> str:
        return (f"Models compared by leave-one-{self.unit}-out ELPD\n"
                f"{self.table.round(3).to_string()}")

    def _repr_html_(self) -> str:
        return (f"<p>Models compared by leave-one-{self.unit}-out ELPD</p>"
                + self.table.round(3).to_html())

    def plot(self, **kwargs):
        """ELPD of each model with its SE and the differences (``arviz_plots.plot_compare``)."""
        import arviz_plots

        return arviz_plots.plot_compare(self.table, **kwargs)


def compare_models(models: Mapping, unit: str | None = None, *, method: str = "stacking"):
    """Rank fits of the same data by PSIS-LOO (or given LOO / K-fold results).

    Parameters
    ----------
    models : mapping of str to Fit or ELPDData
        Names and fits (or results of :func:`bayesmix.loo` / :func:`kfold`).
    unit : {"cluster", "observation"}, optional
        What LOO leaves out (see :func:`bayesmix.loo`); every model must be scored on the same.
    method : {"stacking", "BB-pseudo-BMA", "pseudo-BMA"}
        How the weights are found.

    Returns
    -------
    ModelComparison
    """
    import arviz_stats

    from bayesmix.fit_result import Fit
    from bayesmix.loo_cv import default_unit, loo

    if len(models) < 2:
        raise BayesmixError("compare_models needs at least two models, as {name: fit}")
    fits = {name: m for name, m in models.items() if isinstance(m, Fit)}
    if fits:
        check_same_data({name: f.design for name, f in fits.items()})
    if unit is None:
        units = {default_unit(f.design) for f in fits.values()}
        units |= {m.unit for m in models.values() if not isinstance(m, Fit)
                  and getattr(m, "unit", None)}
        unit = "cluster" if units == {"cluster"} else "observation"
    elpd = {}
    for name, m in models.items():
        if isinstance(m, Fit):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                elpd[name] = loo(m, unit)
            for w in caught:  # say which model a Pareto-k warning is about
                warnings.warn(f"model {name!r}: {w.message}", w.category, stacklevel=2)
        elif hasattr(m, "elpd"):
            elpd[name] = m
        else:
            raise BayesmixError(f"model {name!r} is a {type(m).__name__}; give a bayesmix Fit "
                                "or the result of bm.loo / bm.kfold")
    given = {getattr(e, "unit", unit) for e in elpd.values()}
    if given != {unit}:
        raise BayesmixError(f"the models are scored on different units ({sorted(given)}): "
                            "leave-one-cluster-out and leave-one-observation-out ELPDs are on "
                            "different scales and cannot be compared")
    table = arviz_stats.compare(elpd, method=method, round_to="none")
    return ModelComparison(table, elpd, unit)


def check_same_data(designs: Mapping) -> None:
    """Refuse designs (by name) with different rows or outcome values: ELPDs would not compare.

    Raises
    ------
    BayesmixError
        Naming the first model and the first that differs.
    """
    (ref_name, ref), *rest = designs.items()
    for name, d in rest:
        if not (d.n == ref.n and np.array_equal(d.y, ref.y)
                and d.row_labels.equals(ref.row_labels)):
            raise BayesmixError(
                f"models {ref_name!r} and {name!r} were fitted to different data ({ref.n} "
                f"and {d.n} rows, or other y values): ELPDs compare only on the same "
                "observations (drop missing values before fitting both)"
            )
