"""Pointwise log-likelihoods of a fit: per observation given u, and per cluster with u integrated.

A multilevel model has two natural units of prediction, and so two pointwise log-likelihoods
(Merkle, Furr & Rabe-Hesketh 2019, "Bayesian comparison of latent variable models:
conditional versus marginal likelihoods")::

    y_conditional[s, i] = log p(y_i | β⁽ˢ⁾, u⁽ˢ⁾, σ⁽ˢ⁾)                        one per row i
    y_marginal[s, j]    = log ∫ p(y_j | β⁽ˢ⁾, u_j, σ⁽ˢ⁾) N(u_j | 0, T⁽ˢ⁾) du_j     one per cluster j

The conditional one answers "how well are new observations *of the fitted clusters*
predicted" (leave-one-observation-out); the marginal one answers "how well is a *new cluster*
predicted" (leave-one-cluster-out): for that question the conditional log-likelihood summed
over a cluster is the wrong quantity, because the cluster's own u was learnt from the data
left out, and its importance weights are unstable (Pareto k > 0.7 is the rule).

This module computes the conditional one (any family, any structure) from the explicit X and
Z_g and the posterior draws of β, u and σ, in chunks of rows; :mod:`bayesmix.cluster_marginal`
computes the marginal one.  Both work on the fit's stored draws (on the original scale), so a
fit loaded from disk gives the same values as the fit in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import xarray as xr

from bayesmix import notation as nt
from bayesmix.errors import BayesmixError

OBSERVATION_VAR = "y_conditional"
"""Name in the ``log_likelihood`` group of log p(y_i | β, u, σ), dims (chain, draw, obs)."""
MARGINAL_VAR = "y_marginal"
"""Name in the ``log_likelihood`` group of log p(y_j | β, T, σ), dims (chain, draw, <unit>)."""
OBS_DIM = "obs"
"""Dim of the rows in ``observed_data``, ``log_likelihood`` and ``posterior_predictive``."""


@dataclass(frozen=True)
class FlatDraws:
    """The posterior draws a likelihood needs, chains stacked (draw s = chain·D + draw).

    Attributes
    ----------
    beta : ndarray, shape (S, p)
    sigma : ndarray, shape (S,), or None
        σ (Gaussian family only).
    u : dict of str to ndarray, shape (S, J_g, q_g)
        Each grouping factor's effects, by factor name.
    cov : dict of str to ndarray, shape (S, q_g, q_g)
        Each factor's covariance T_g.
    chains, draws : int
    """

    beta: np.ndarray
    sigma: np.ndarray | None
    u: dict[str, np.ndarray]
    cov: dict[str, np.ndarray]
    chains: int
    draws: int

    @property
    def S(self) -> int:
        """Number of draws in all."""
        return self.chains * self.draws


def _stack(da, *dims: str) -> np.ndarray:
    values = da.transpose("chain", "draw", *dims).to_numpy()
    return values.reshape(values.shape[0] * values.shape[1], *values.shape[2:])


def flat_draws(fit) -> FlatDraws:
    """The draws of β, σ, u_g and T_g of a :class:`~bayesmix.Fit`, chains stacked."""
    from bayesmix.build_factors import factor_dims

    post = fit.posterior
    post = post.to_dataset() if isinstance(post, xr.DataTree) else post
    design = fit.design
    beta = _stack(post[nt.BETA], nt.DIM_FIXED)
    sigma = None
    if nt.SIGMA in post:  # (S,), or (S, G) with a residual SD per group (sigma_by)
        sigma = _stack(post[nt.SIGMA], *[d for d in post[nt.SIGMA].dims if d == nt.DIM_SIGMA])
    us: dict[str, np.ndarray] = {}
    covs: dict[str, np.ndarray] = {}
    for fe in design.effects:
        if design.single_factor:
            names = (nt.U, nt.SD_U, nt.CORR_U)
            unit, eff, eff2 = nt.DIM_CLUSTER, nt.DIM_RANDOM, nt.DIM_RANDOM2
        else:
            names = tuple(f"{v}_{fe.name}" for v in (nt.U, nt.SD_U, nt.CORR_U))
            unit, eff, eff2 = factor_dims(fe)
        us[fe.name] = _stack(post[names[0]], unit, eff)
        sd = _stack(post[names[1]], eff)
        corr = (_stack(post[names[2]], eff, eff2) if names[2] in post
                else np.broadcast_to(np.eye(fe.q), (sd.shape[0], fe.q, fe.q)))
        covs[fe.name] = corr * sd[:, :, None] * sd[:, None, :]
    return FlatDraws(beta, sigma, us, covs, post.sizes["chain"], post.sizes["draw"])


def row_sigma(design, sigma: np.ndarray | None, rows: slice | np.ndarray) -> np.ndarray | None:
    """σ of every draw for some rows, shape (S, rows) or (S, 1) when one σ serves all."""
    if sigma is None:
        return None
    if sigma.ndim == 2:  # sigma_by: the SD of each row's group
        return sigma[:, design.sigma_index[rows]]
    return sigma[:, None]


def row_chunks(n: int, S: int, budget: int = 4_000_000) -> Iterator[slice]:
    """Slices of rows such that an (S, rows) float array stays under ``budget`` elements."""
    step = max(1, budget // max(S, 1))
    for lo in range(0, n, step):
        yield slice(lo, min(n, lo + step))


def linear_predictor_rows(design, draws: FlatDraws, rows: slice | np.ndarray) -> np.ndarray:
    """η = Xβ + Σ_g Z_g u_g (+ offset) for some rows, every draw.

    Returns
    -------
    ndarray, shape (S, len(rows))
    """
    eta = draws.beta @ design.X[rows].T
    for fe in design.effects:
        zq = fe.Zq[rows]                                   # (r, q_g)
        unit = fe.grouping.index[rows]                     # (r,)
        eta += np.einsum("srq,rq->sr", draws.u[fe.name][:, unit, :], zq)
    if design.offset is not None:
        eta += design.offset[rows]
    return eta


def observation_loglik(fit, rows: slice | np.ndarray | None = None,
                       draws: FlatDraws | None = None) -> np.ndarray:
    """The log-likelihood log p(y_i | β⁽ˢ⁾, u⁽ˢ⁾, σ⁽ˢ⁾) of the rows asked for, every draw.

    Parameters
    ----------
    fit : Fit
    rows : slice or ndarray of int, optional
        Rows of the design (all by default; memory is S × rows × 8 bytes).
    draws : FlatDraws, optional
        From :func:`flat_draws` (read from the fit when not given).

    Returns
    -------
    ndarray, shape (S, rows)
    """
    design = fit.design
    draws = draws or flat_draws(fit)
    rows = slice(None) if rows is None else rows
    eta = linear_predictor_rows(design, draws, rows)
    trials = None if design.trials is None else design.trials[rows]
    sigma = row_sigma(design, draws.sigma, rows)
    return design.family.loglik(design.y[rows], eta, trials, sigma=sigma)


def marginal_unit(design) -> str:
    """The grouping factor whose units are the clusters of the marginal log-likelihood.

    The outermost factor when the factors are nested (each lies within one unit of it),
    so that clusters are independent given (β, T, σ).

    Raises
    ------
    BayesmixError
        Crossed factors (no unit makes the observations independent), or no random effects.
    """
    if not design.effects:
        raise BayesmixError("the model has no random effects: there are no clusters to leave "
                            "out; use unit='observation'")
    by_name = {g.name: g for g in design.groupings}
    roots = set()
    for fe in design.effects:
        name = fe.name
        while by_name[name].parent is not None:
            name = by_name[name].parent
        roots.add(name)
    if len(roots) > 1:
        raise BayesmixError(
            f"the grouping factors {', '.join(sorted(roots))} are crossed: no cluster makes the "
            "observations independent, so there is no marginal log-likelihood per cluster. "
            "Use unit='observation' (new observations of the fitted units), or bm.kfold with "
            "folds of one factor's units"
        )
    return roots.pop()
