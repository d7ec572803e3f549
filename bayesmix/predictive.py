"""The predictive groups of a fit, and draws of y from the posterior or the prior.

The groups are ArviZ's ``observed_data``, ``log_likelihood`` and ``posterior_predictive``.
The groups are ArviZ's ``observed_data``, ``log_likelihood`` and ``posterior_predictive``.

Every fit carries, beside ``posterior`` and ``sample_stats``:

``observed_data``
    ``y`` (dim ``obs``, one per row of the design, labelled by the data's index), with
    ``trials`` (binomial) or ``exposure`` (Poisson) where the family has them, and as
    coordinates along ``obs`` the unit of each row in every grouping factor.
``log_likelihood``
    ``y_marginal`` (chain, draw, <cluster dim>): log p(y_j | β, T, σ) of each cluster of the
    outermost grouping factor, its random effects integrated out
    (:mod:`bayesmix.cluster_marginal`; not for crossed factors) — the unit for predicting new
    clusters; computed with the fit for the Gaussian family when cheap
    (:data:`MARGINAL_BUDGET`), else (and always for the other families, whose quadrature is
    not part of the posterior) by :func:`bayesmix.loo` when asked for.
    ``y_conditional`` (chain, draw, obs): log p(y_i | β, u, σ) of each row given its
    clusters' drawn effects — the unit for new observations of the fitted clusters.  It is
    stored when draws × rows ≤ :data:`STORE_LIMIT` (25 million values, 200 MB); above that it
    is not stored, and :func:`bayesmix.loo` computes it in chunks of rows without ever holding
    it whole.

``posterior_predictive`` is added on request (:func:`posterior_predictive`: it has draws ×
rows values).  :func:`prior_predictive` draws the parameters from the model's priors (exactly
the priors the sampler uses, mapped back to the original scale), the effects u from N(0, T)
and y from the family, for any likelihood form.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pandas as pd
import xarray as xr

from bayesmix import notation as nt
from bayesmix.errors import BayesmixError
from bayesmix.pointwise import (
    MARGINAL_VAR,
    OBS_DIM,
    OBSERVATION_VAR,
    FlatDraws,
    flat_draws,
    linear_predictor_rows,
    observation_loglik,
    row_chunks,
    row_sigma,
)

STORE_LIMIT = 25_000_000
"""Most draws × rows values of ``y_conditional`` (and of a posterior predictive) kept in a fit."""
MARGINAL_BUDGET = 3e8
"""Most operations (:func:`bayesmix.cluster_marginal.marginal_cost`) spent on ``y_marginal``
of a Gaussian model when a fit is made (about a second): one-factor models always qualify; a
nested one with many effects per cluster (egsingle) gets it when :func:`bayesmix.loo` first
asks for it.  Non-Gaussian families always get it then: their per-cluster quadrature (cbpp:
0.7 s of a 4.5 s fit) is a LOO ingredient, not part of the posterior."""


def unit_dim(design, unit: str) -> str:
    """The dim of a grouping factor's units in the posterior (``cluster`` for one factor)."""
    return nt.DIM_CLUSTER if design.single_factor else unit


def observed_data(design) -> xr.Dataset:
    """The ``observed_data`` group: y (obs), trials / exposure, units of every factor."""
    coords = {OBS_DIM: np.asarray(design.row_labels.astype(str), dtype=str)}
    for g in design.groupings:
        coords[f"{g.name}_of_obs" if g.name != OBS_DIM else "unit_of_obs"] = (
            OBS_DIM, np.asarray(g.levels, dtype=str)[g.index])
    data = {nt.Y: (OBS_DIM, design.y.astype(float))}
    if design.trials is not None:
        data["trials"] = (OBS_DIM, design.trials.astype(float))
    if design.offset is not None:
        data["exposure"] = (OBS_DIM, np.exp(design.offset))
    return xr.Dataset(data, coords=coords)


def log_likelihood(fit, draws: FlatDraws | None = None, *,
                   observations: bool | None = None,
                   marginal: bool | None = None) -> xr.Dataset:
    """The ``log_likelihood`` group (module docstring).

    Parameters
    ----------
    fit : Fit
    draws : FlatDraws, optional
    observations : bool, optional
        Store ``y_conditional``; by default when draws × rows ≤ :data:`STORE_LIMIT`.
    marginal : bool, optional
        Compute ``y_marginal``; by default for a Gaussian model whose cost is at most
        :data:`MARGINAL_BUDGET` (:func:`bayesmix.cluster_marginal.marginal_cost`), else
        :func:`bayesmix.loo` computes it when asked for.

    Returns
    -------
    xarray.Dataset
    """
    from bayesmix.cluster_marginal import cluster_marginal_loglik, marginal_cost
    from bayesmix.pointwise import marginal_unit

    design = fit.design
    draws = draws or flat_draws(fit)
    shape = (draws.chains, draws.draws)
    out = xr.Dataset()
    crossed = False
    try:
        marginal_unit(design)
    except BayesmixError:
        crossed = True
    if marginal is None and not crossed:
        marginal = design.family.is_gaussian and (
            design.single_factor or marginal_cost(design, draws.S) <= MARGINAL_BUDGET)
    if marginal and not crossed:
        unit, ll = cluster_marginal_loglik(fit, draws)
        grouping = next(g for g in design.groupings if g.name == unit)
        dim = unit_dim(design, unit)
        out[MARGINAL_VAR] = xr.DataArray(ll.reshape(*shape, -1), dims=("chain", "draw", dim),
                                         coords={dim: list(grouping.levels)})
        out[MARGINAL_VAR].attrs["unit"] = unit
    if observations is None:
        observations = draws.S * design.n <= STORE_LIMIT
    if observations:
        ll = np.empty((draws.S, design.n))
        for rows in row_chunks(design.n, draws.S):
            ll[:, rows] = observation_loglik(fit, rows, draws)
        out[OBSERVATION_VAR] = xr.DataArray(
            ll.reshape(*shape, -1), dims=("chain", "draw", OBS_DIM),
            coords={OBS_DIM: np.asarray(design.row_labels.astype(str), dtype=str)})
    return out


def with_groups(fit, groups: dict[str, xr.Dataset]):
    """A copy of ``fit`` whose idata has these groups added (or replaced)."""
    tree = {name: fit.idata[name].to_dataset() for name in fit.idata.children}
    tree.update(groups)
    return dataclasses.replace(fit, idata=xr.DataTree.from_dict(tree))


def add_predictive_groups(fit):
    """``observed_data`` and ``log_likelihood`` added to a fresh fit (timed in its timings)."""
    start = time.perf_counter()
    groups = {"observed_data": observed_data(fit.design),
              "log_likelihood": log_likelihood(fit)}
    out = with_groups(fit, groups)
    out.timings["log_likelihood"] = time.perf_counter() - start
    return out


# ----------------------------------------------------------------------- drawing y
def draw_y(family, eta: np.ndarray, sigma: np.ndarray | None, trials: np.ndarray | None,
           rng: np.random.Generator) -> np.ndarray:
    """One y per draw and row given η (S, rows) from the family."""
    if family.is_gaussian:  # σ of shape (S,), or (S, rows) with sigma_by
        scale = sigma[:, None] if sigma.ndim == 1 else sigma
        return eta + scale * rng.standard_normal(eta.shape)
    mean = family.linkinv(eta)
    if family.name == "bernoulli":
        return (rng.random(eta.shape) < mean).astype(float)
    if family.name == "binomial":
        return rng.binomial(np.broadcast_to(trials, eta.shape).astype(np.int64),
                            mean).astype(float)
    return rng.poisson(mean).astype(float)


def _y_draws(design, draws: FlatDraws, rng: np.random.Generator) -> np.ndarray:
    out = np.empty((draws.S, design.n))
    for rows in row_chunks(design.n, draws.S):
        eta = linear_predictor_rows(design, draws, rows)
        trials = None if design.trials is None else design.trials[rows]
        sigma = None if draws.sigma is None else row_sigma(design, draws.sigma, rows)
        out[:, rows] = draw_y(design.family, eta, sigma, trials, rng)
    return out


def _thinned(draws: FlatDraws, n: int, max_draws: int | None) -> tuple[FlatDraws, int]:
    """Every k-th draw of each chain so that draws × rows ≤ STORE_LIMIT (or ≤ max_draws)."""
    limit = max(1, STORE_LIMIT // max(n, 1)) if max_draws is None else max_draws
    k = max(1, int(np.ceil(draws.S / limit)))
    if k == 1:
        return draws, 1
    keep = np.arange(draws.S).reshape(draws.chains, draws.draws)[:, ::k]
    idx = keep.ravel()

    def pick(a):
        return None if a is None else a[idx]

    return FlatDraws(draws.beta[idx], pick(draws.sigma), {g: v[idx] for g, v in draws.u.items()},
                     {g: v[idx] for g, v in draws.cov.items()}, draws.chains,
                     keep.shape[1]), k


def posterior_predictive(fit, *, max_draws: int | None = None, random_seed: int | None = None):
    """Draws of y from the posterior predictive, given each draw's (β, u, σ).

    ``y_rep[s, i] ~ p(y | η_i⁽ˢ⁾ = X_iβ⁽ˢ⁾ + Σ_g Z_g,i u_g⁽ˢ⁾ (+ offset), σ⁽ˢ⁾)``: replicated
    data of the same clusters, the check of Gelman, Meng & Stern (1996).

    Parameters
    ----------
    fit : Fit
    max_draws : int, optional
        Keep at most this many draws (every k-th of each chain); by default as many as keep
        draws × rows ≤ :data:`STORE_LIMIT`.
    random_seed : int, optional

    Returns
    -------
    Fit
        A copy of ``fit`` with the group ``posterior_predictive`` (``y``: chain, draw, obs)
        and ``observed_data``.  Pass ``fit.idata`` to ArviZ (``az.plot_ppc_dist``).
    """
    design = fit.design
    draws, _ = _thinned(flat_draws(fit), design.n, max_draws)
    rng = np.random.default_rng(random_seed)
    y = _y_draws(design, draws, rng).reshape(draws.chains, draws.draws, design.n)
    group = xr.Dataset({nt.Y: (("chain", "draw", OBS_DIM), y)},
                       coords={OBS_DIM: np.asarray(design.row_labels.astype(str), dtype=str)})
    return with_groups(fit, {"posterior_predictive": group,
                             "observed_data": observed_data(design)})


def prior_predictive(spec, data: pd.DataFrame | None = None, *, priors=None, draws: int = 500,
                     random_seed: int | None = None, missing: str = "error") -> xr.DataTree:
    """Draws of the parameters from their priors and of y given them.

    The priors are the model's own (autoscaled from the design as :func:`bayesmix.fit` does,
    with ``priors`` or the model file's overrides), drawn on the standardised scale exactly as
    the sampler declares them and mapped back; u_g ~ N(0, T_g) and y from the family.

    Parameters
    ----------
    spec : Spec, path of a model file, or Fit
        A Fit gives its design and resolved priors.
    data : DataFrame, optional
        Defaults to the model file's data.
    priors : Priors, optional
    draws : int
    random_seed : int, optional
    missing : {"error", "drop"}

    Returns
    -------
    xarray.DataTree
        Groups ``prior`` (β, T_g as ``sd_u``/``corr_u``, σ, u) with dims (chain=1, draw, ...),
        ``prior_predictive`` (``y``: chain, draw, obs) and ``observed_data``.
    """
    from bayesmix.api import load_data
    from bayesmix.design import build_design
    from bayesmix.fit_result import Fit
    from bayesmix.priors import resolve_priors
    from bayesmix.spec.model import Spec

    if isinstance(spec, Fit):
        design, rp = spec.design, spec.priors
    else:
        if not isinstance(spec, Spec):
            spec = Spec.from_file(spec)
        if data is None:
            data = load_data(spec)
        design = build_design(spec, data, missing=missing)
        rp = resolve_priors(design, priors or spec.priors)
    if draws < 1:
        raise BayesmixError(f"draws must be at least 1, not {draws}")
    prior = _prior_parameters(design, rp, draws, random_seed)
    fd = flat_draws(_FitLike(design, prior))
    rng = np.random.default_rng(None if random_seed is None else [random_seed, 2])
    y = _y_draws(design, fd, rng).reshape(1, draws, design.n)
    pp = xr.Dataset({nt.Y: (("chain", "draw", OBS_DIM), y)},
                    coords={OBS_DIM: np.asarray(design.row_labels.astype(str), dtype=str)})
    return xr.DataTree.from_dict({"prior": prior, "prior_predictive": pp,
                                  "observed_data": observed_data(design)})


@dataclasses.dataclass(frozen=True)
class _FitLike:
    """What :func:`flat_draws` reads: a design and a posterior-shaped dataset."""

    design: object
    posterior: xr.Dataset


def _prior_parameters(design, rp, draws: int, random_seed: int | None) -> xr.Dataset:
    """β, σ and every factor's u, sd_u, corr_u drawn from the priors (chain = 1)."""
    import pymc as pm

    from bayesmix.build import _fixed_effects
    from bayesmix.build_factors import _rv, factor_coords, factor_dims, factor_effects

    coords = {nt.DIM_FIXED: list(design.fixed_names), **factor_coords(design)}
    with pm.Model(coords=coords) as model:
        _fixed_effects(rp, design.p)
        factor_effects(design, rp)
        if design.family.has_sigma:
            sigma_std = _rv(rp.std_sigma(), nt.SIGMA_STD)
            pm.Deterministic(nt.SIGMA, sigma_std * rp.scaling.y_scale)
    names = [nt.BETA] + ([nt.SIGMA] if design.family.has_sigma else [])
    for fe in design.effects:
        names += [v for v in (f"{nt.U}_{fe.name}", f"{nt.SD_U}_{fe.name}",
                              f"{nt.CORR_U}_{fe.name}") if v in model.named_vars]
    idata = pm.sample_prior_predictive(draws=draws, model=model, var_names=names,
                                       random_seed=random_seed)
    prior = idata["prior"].to_dataset() if hasattr(idata["prior"], "to_dataset") \
        else idata["prior"]
    prior = prior[names]
    if design.single_factor and design.effects:
        fe = design.effects[0]
        unit, eff, eff2 = factor_dims(fe)
        rename = {f"{v}_{fe.name}": v for v in (nt.U, nt.SD_U, nt.CORR_U)}
        prior = prior.rename({k: v for k, v in rename.items() if k in prior})
        prior = prior.rename_dims({unit: nt.DIM_CLUSTER, eff: nt.DIM_RANDOM}
                                  | ({eff2: nt.DIM_RANDOM2} if eff2 in prior.dims else {}))
        prior = prior.rename_vars({d: n for d, n in ((unit, nt.DIM_CLUSTER),
                                                     (eff, nt.DIM_RANDOM),
                                                     (eff2, nt.DIM_RANDOM2)) if d in prior})
    return prior
