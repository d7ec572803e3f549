"""Leave-one-out cross-validation of a fit (PSIS-LOO) and comparison of models by it.

Which unit to leave out depends on the question (Merkle, Furr & Rabe-Hesketh 2019;
Vehtari, Gelman & Gabry 2017):

``unit="cluster"`` (the default where the clusters are independent)
    How well does the model predict a *new cluster*?  Leave one cluster of the outermost
    grouping factor out, with its random effects integrated out: the pointwise values are
    ``log_likelihood/y_marginal`` (:mod:`bayesmix.cluster_marginal`).
``unit="observation"`` (the default for crossed factors)
    How well does it predict a *new observation of a fitted cluster*?  Leave one row out,
    given its clusters' effects: ``log_likelihood/y_conditional``.  When the fit does not
    store it (draws × rows above :data:`bayesmix.predictive.STORE_LIMIT`), it is computed
    here in chunks of rows, each chunk's Pareto-smoothed weights found and discarded, so
    memory stays O(draws × chunk).

Summing ``y_conditional`` over a cluster and leaving that out is *not* offered: the cluster's
own u was learnt from the data left out, and the importance weights of such sums nearly
always fail (Pareto k > 0.7).

The estimates come from ArviZ (``arviz_stats.loo``: PSIS-LOO with Pareto k diagnostics).
When some k are high the estimate for those units is unreliable; :func:`loo` says which and
what to do: :func:`bayesmix.kfold` (exact refits), or more draws.
"""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr
from scipy.special import logsumexp

from bayesmix.errors import BayesmixError
from bayesmix.pointwise import (
    MARGINAL_VAR,
    OBS_DIM,
    OBSERVATION_VAR,
    flat_draws,
    marginal_unit,
    observation_loglik,
    row_chunks,
)

UNITS = ("cluster", "observation")


def default_unit(design) -> str:
    """``"cluster"`` when the clusters are independent given the parameters, else observation."""
    try:
        marginal_unit(design)
    except BayesmixError:
        return "observation"
    return "cluster"


def _check_fit(fit) -> None:
    from bayesmix.fit_result import Fit

    if not isinstance(fit, Fit):
        raise BayesmixError(f"expected a bayesmix Fit (from bm.fit or bm.sample), not "
                            f"{type(fit).__name__}; a REML fit has no posterior to cross-validate")


def _ensure_group(fit, unit: str):
    """The fit with the log-likelihood the unit needs (computed if a loaded fit lacks it)."""
    from bayesmix.predictive import log_likelihood, observed_data, with_groups

    have = (fit.idata["log_likelihood"].to_dataset() if "log_likelihood" in fit.idata.children
            else xr.Dataset())
    need = MARGINAL_VAR if unit == "cluster" else OBSERVATION_VAR
    if need in have:
        return fit
    if unit == "cluster":
        marginal_unit(fit.design)  # the error for crossed factors
        group = log_likelihood(fit, observations=False, marginal=True)
        merged = have.merge(group)
        return with_groups(fit, {"log_likelihood": merged,
                                 "observed_data": observed_data(fit.design)})
    return None  # observation-level: computed in chunks by _chunked_loo


def loo(fit, unit: str | None = None, *, pointwise: bool = True, warn: bool = True):
    """PSIS-LOO expected log predictive density of a fit, by cluster or by observation.

    Parameters
    ----------
    fit : Fit
    unit : {"cluster", "observation"}, optional
        What is left out (module docstring); ``"cluster"`` by default, ``"observation"`` for
        crossed factors (no cluster makes the observations independent).
    pointwise : bool
        Keep each unit's ``elpd_i`` and Pareto ``k`` in the result.
    warn : bool
        Warn, naming the units, when some Pareto k exceed the threshold.

    Returns
    -------
    arviz_stats.ELPDData
        ``elpd``, ``se``, ``p`` (effective number of parameters), ``elpd_i``, ``pareto_k``;
        ``kind`` attribute set to ``"loo"``, and the unit in ``.unit``.

    Raises
    ------
    BayesmixError
        An unknown unit, or ``unit="cluster"`` with crossed factors.
    """
    import arviz_stats

    _check_fit(fit)
    unit = unit or default_unit(fit.design)
    if unit not in UNITS:
        raise BayesmixError(f"unit must be one of {UNITS}, not {unit!r}")
    with_ll = _ensure_group(fit, unit)
    if with_ll is None:
        result = _chunked_loo(fit)
    else:
        var = MARGINAL_VAR if unit == "cluster" else OBSERVATION_VAR
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            result = arviz_stats.loo(with_ll.idata, var_name=var, pointwise=True,
                                     reff=relative_efficiency(fit))
    result.unit = unit
    if warn:
        _warn_high_k(result, unit)
    if not pointwise:
        result.elpd_i = None
        result.pareto_k = None
    return result


def high_k_units(result) -> tuple[int, int, str] | None:
    """Units whose Pareto k exceed ``result.good_k``: (how many, of how many, first 8 labels).

    None when there are none (or the result has no pointwise k).
    """
    k = result.pareto_k
    if k is None:
        return None
    high = np.asarray(k.values > result.good_k)
    if not high.any():
        return None
    labels = np.asarray(k[k.dims[0]].values)[high] if k.dims else np.array([])
    shown = ", ".join(map(str, labels[:8])) + (" ..." if high.sum() > 8 else "")
    return int(high.sum()), int(high.size), shown


def _warn_high_k(result, unit: str) -> None:
    found = high_k_units(result)
    if found is None:
        return
    count, total, shown = found
    warnings.warn(
        f"PSIS-LOO by {unit}: Pareto k > {result.good_k:.2f} for {count} of "
        f"{total} {unit}s ({shown}): their leave-one-out estimates are unreliable. "
        + ("Use bm.kfold(fit) for exact leave-clusters-out refits"
           if unit == "cluster" else "Use more draws, or bm.kfold(fit) with cluster folds")
        + ", or check those units for outliers and a misspecified model.",
        stacklevel=3,
    )


def relative_efficiency(fit) -> float:
    """r_eff = mean bulk ESS / draws over the model's parameters (β, σ, SDs, correlations).

    ArviZ's default averages over every posterior variable, which here includes u and the
    cluster coefficients (J × q values each: 80 million at J = 5,000 with 4,000 draws, 16 s);
    the parameters that the pointwise likelihoods depend on jointly are these.
    """
    import arviz_stats

    post = fit.posterior.to_dataset()
    if post.sizes.get("chain", 1) == 1:
        return 1.0
    keep = [v for v in post.data_vars
            if str(v) == "beta" or str(v).startswith(("sigma", "sd_u", "corr_u"))]
    ess = arviz_stats.ess(post[keep], method="mean")
    values = np.concatenate([np.ravel(ess[v].values) for v in ess.data_vars])
    values = values[np.isfinite(values)]  # a correlation's diagonal is constant
    S = post.sizes["chain"] * post.sizes["draw"]
    return float(values.mean() / S) if values.size else 1.0


def _chunked_loo(fit):
    """PSIS-LOO by observation without holding the (draws × rows) log-likelihood."""
    import arviz_stats

    design = fit.design
    draws = flat_draws(fit)
    S = draws.S
    reff = relative_efficiency(fit)
    elpd_i = np.empty(design.n)
    lpd_i = np.empty(design.n)
    k = np.empty(design.n)
    for rows in row_chunks(design.n, S):
        ll = observation_loglik(fit, rows, draws)
        da = xr.DataArray(ll.reshape(draws.chains, draws.draws, -1),
                          dims=("chain", "draw", OBS_DIM))
        log_w, khat = da.azstats.psislw(r_eff=reff, dim=["chain", "draw"])
        w = log_w.transpose("chain", "draw", OBS_DIM).values.reshape(S, -1)
        elpd_i[rows] = logsumexp(ll + w, axis=0)
        lpd_i[rows] = logsumexp(ll, axis=0) - np.log(S)
        k[rows] = khat.transpose(OBS_DIM).values
    # ArviZ's threshold (Vehtari et al. 2024): k above it makes the estimate unreliable
    good_k = min(1 - 1 / np.log10(S), 0.7) if S > 1 else 0.7
    warn_flag = bool(np.any(k > good_k))
    labels = np.asarray(design.row_labels.astype(str), dtype=str)
    return arviz_stats.ELPDDataLOO(
        elpd=float(elpd_i.sum()), se=float(np.sqrt(design.n * np.var(elpd_i, ddof=1))),
        p=float((lpd_i - elpd_i).sum()), n_samples=S, n_data_points=design.n, scale="log",
        warning=warn_flag, good_k=good_k,
        elpd_i=xr.DataArray(elpd_i, dims=OBS_DIM, coords={OBS_DIM: labels}),
        pareto_k=xr.DataArray(k, dims=OBS_DIM, coords={OBS_DIM: labels}),
    )
