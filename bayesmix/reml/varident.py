"""REML / ML with a residual SD per group: nlme's ``varIdent(form = ~ 1 | s)``.

The level-1 residuals of group s have variance σ² δ_s², with δ of the first group (the
reference, R's first factor level) fixed at 1.  Dividing each row by its δ makes the residuals
homoscedastic, so for given δ the criterion is the profiled one of
:mod:`bayesmix.reml.profiled` on the cross-products

    M_j(δ) = Σ_s M_{j,s} / δ_s²           (M_{j,s}: cluster j's rows of group s)

plus the Jacobian of the division, ``Σ_s n_s log δ_s²`` (−2 log-likelihood scale).  The
per-group statistics are computed once; every evaluation combines them (O(S J d²)), and θ and
log δ are optimised together by :func:`bayesmix.reml.optimize.minimize_criterion`.  Then
σ_s = σ̂ δ̂_s; ``Cov(β̂)`` is that of the weighted problem at δ̂, as nlme reports it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from bayesmix.design import Design
from bayesmix.reml.optimize import OptimResult, minimize_criterion
from bayesmix.reml.profiled import Method, solve_pls, theta_lower_bounds, theta_start
from bayesmix.stats import ClusterStats, cross_products


@dataclass(frozen=True)
class VarIdentFit:
    """θ̂ and δ̂ of a varIdent fit.

    Attributes
    ----------
    opt : OptimResult
        The optimiser's result for θ (the δ part removed).
    stats : ClusterStats
        The cross-products at δ̂ (rows divided by their δ̂_s).
    delta : ndarray, shape (S,)
        δ̂_s, 1 for the first group.
    jacobian : float
        ``Σ_s n_s log δ̂_s²``, part of the criterion.
    """

    opt: OptimResult
    stats: ClusterStats
    delta: np.ndarray
    jacobian: float


def group_stats(design: Design, scaling=None) -> list[ClusterStats]:
    """The per-cluster cross-products of each residual-SD group's rows, S × (J, d, d).

    One pass over the rows: the units are the (cluster, group) pairs, ``j · S + s``.
    """
    S, J = len(design.sigma_levels), design.J
    st = cross_products(design.atoms, design.y, design.cluster_index * S + design.sigma_index,
                        J * S, scaling=scaling if scaling is not None else design.scaling,
                        row_weights=design.weights1)
    d = st.M.shape[-1]
    M, n = st.M.reshape(J, S, d, d), st.n.reshape(J, S)
    return [ClusterStats(n=n[:, s], M=M[:, s], p=st.p, q=st.q, scaling=st.scaling,
                         weight=design.weights2) for s in range(S)]


def combine(groups: list[ClusterStats], delta: np.ndarray) -> ClusterStats:
    """``M_j = Σ_s M_{j,s} / δ_s²`` (n_j unchanged)."""
    M = sum(g.M / d**2 for g, d in zip(groups, delta, strict=True))
    n = sum(g.n for g in groups)
    return replace(groups[0], M=M, n=n)


def optimize_varident(design: Design, method: Method,
                      start: np.ndarray | None = None) -> VarIdentFit:
    """Minimise the profiled criterion over θ and log δ_2..S together."""
    groups = group_stats(design)
    counts = np.array([g.n_total for g in groups])
    q, S = design.q, len(groups)
    k = q * (q + 1) // 2

    def delta_of(x: np.ndarray) -> np.ndarray:
        return np.exp(np.concatenate([[0.0], x[k:]]))

    def criterion(x: np.ndarray) -> float:
        delta = delta_of(x)
        sol = solve_pls(x[:k], combine(groups, delta))
        if sol is None:
            return np.inf
        return sol.criterion(method) + float(counts @ np.log(delta**2))

    theta0 = theta_start(q) if start is None else np.asarray(start, dtype=float)
    lower = np.concatenate([theta_lower_bounds(q), np.full(S - 1, -np.inf)])
    x0 = np.concatenate([theta0, np.zeros(S - 1)])
    base = np.concatenate([theta_start(q), np.zeros(S - 1)])
    opt = minimize_criterion(criterion, lower, x0, base=base)
    delta = delta_of(opt.theta)
    theta_opt = OptimResult(theta=opt.theta[:k], criterion=opt.criterion,
                            converged=opt.converged, messages=opt.messages,
                            gradient=opt.gradient[:k], at_bound=opt.at_bound[:k],
                            evaluations=opt.evaluations)
    return VarIdentFit(theta_opt, combine(groups, delta), delta,
                       float(counts @ np.log(delta**2)))
