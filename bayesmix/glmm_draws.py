"""Draws of U after a cluster-marginal GLMM fit: each cluster's exact conditional, per draw.

The marginal forms (:mod:`bayesmix.glmm_marginal`) sample (β̃, T̃) only.  For each posterior
draw and each cluster j, v_j (ũ_j = L̃ v_j) is drawn from its exact conditional

    p(v_j | y_j, β̃, T̃) ∝ exp h_j(v),   h_j(v) = Σ_{i∈j} log p(y_i | η⁰_i + B_i·v) − ½‖v‖²

by an independence Metropolis–Hastings chain of :data:`MH_STEPS` steps whose proposal is a
multivariate t (ν = :data:`PROPOSAL_DF`) centred at the mode v̂_j with scale H_j⁻¹ (the
Laplace approximation, found here again by Newton's method with step halving).  The t's
tails are heavier than the target's, so the importance weights are bounded and the chain is
uniformly ergodic; with the Laplace approximation close, nearly every proposal is accepted
(the rate is stored as the posterior attribute ``u_acceptance``).  Everything is vectorised
over a chunk of draws and all clusters (rows sorted by cluster, sums by ``reduceat``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

MH_STEPS = 6
PROPOSAL_DF = 6.0
DRAW_CHUNK = 32


class _Clusters:
    """The rows (or cells) of a design sorted by cluster, with the family's formulas."""

    def __init__(self, built: Any):
        design = built.design
        cells = built.graph["cells"]
        sc = built.scaling
        X_all, Z_all = sc.standardize(design.atoms, design.y)[:2]
        idx = design.cluster_index[cells.rows]
        order = np.argsort(idx, kind="stable")
        self.starts = np.searchsorted(idx[order], np.arange(design.J))
        self.idx = idx[order]
        self.X = X_all[cells.rows][order]
        self.Z = Z_all[cells.rows][order]
        self.y = cells.y[order]
        self.n = None if cells.trials is None else cells.trials[order]
        self.offset = None if cells.offset is None else cells.offset[order]
        self.centre = sc.y_center
        self.family = design.family
        self.J, self.q = design.J, design.q

    def sums(self, values: np.ndarray) -> np.ndarray:
        """Per-cluster sums over the last axis of (..., r) values, shape (..., J)."""
        return np.add.reduceat(values, self.starts, axis=-1)

    def eta(self, eta0: np.ndarray, B: np.ndarray, v: np.ndarray) -> np.ndarray:
        """η (S, r) from η⁰ (S, r), B (S, r, q) and v (S, J, q)."""
        return eta0 + np.einsum("srq,srq->sr", B, v[:, self.idx, :])

    def h(self, eta0: np.ndarray, B: np.ndarray, v: np.ndarray) -> np.ndarray:
        """h_j(v), shape (S, J)."""
        ll = self.family.loglik(self.y, self.eta(eta0, B, v), self.n)
        return self.sums(ll) - 0.5 * (v * v).sum(axis=-1)

    def grad_hessian(self, eta0, B, v) -> tuple[np.ndarray, np.ndarray]:
        """∇h_j (S, J, q) and H_j (S, J, q, q)."""
        eta = self.eta(eta0, B, v)
        mean = self.family.expected(eta, self.n)
        weight = self.family.variance(self.family.linkinv(eta), self.n)
        resid = self.y - mean
        grad = self.sums(np.swapaxes(B * resid[..., None], 1, 2)).transpose(0, 2, 1) - v
        outer = (B[..., :, None] * B[..., None, :]) * weight[..., None, None]
        H = self.sums(outer.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
        H = H + np.eye(self.q)
        return grad, H


def _mode(cl: _Clusters, eta0, B, max_iter: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Newton's method with step halving for every (draw, cluster); returns v̂ and chol(H)."""
    S = eta0.shape[0]
    v = np.zeros((S, cl.J, cl.q))
    value = cl.h(eta0, B, v)
    for _ in range(max_iter):
        grad, H = cl.grad_hessian(eta0, B, v)
        step = np.linalg.solve(H, grad[..., None])[..., 0]
        t = np.ones((S, cl.J))
        for _ in range(30):
            new = v + t[..., None] * step
            new_value = cl.h(eta0, B, new)
            worse = ~(new_value >= value - 1e-12)
            if not worse.any():
                break
            t = np.where(worse, t / 2, t)
        v, value = new, new_value
        if np.max(np.abs(t[..., None] * step)) < 1e-9:
            break
    _, H = cl.grad_hessian(eta0, B, v)
    return v, np.linalg.cholesky(H)


def _log_t(z: np.ndarray, df: float) -> np.ndarray:
    """Log density of the standardised t proposal at z = Cᵀ(v − v̂), up to a constant."""
    return -0.5 * (df + z.shape[-1]) * np.log1p((z * z).sum(axis=-1) / df)


def draw_effects(built: Any, beta_std: np.ndarray, chol_std: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """One draw of ũ (standardised scale) per posterior draw (module docstring).

    Parameters
    ----------
    built : BuiltModel
        A ``"laplace"`` or ``"agq"`` model.
    beta_std : ndarray, shape (S, p)
    chol_std : ndarray, shape (S, q, q)
        L̃ of each draw.
    rng : numpy Generator

    Returns
    -------
    u_std : ndarray, shape (S, J, q)
    acceptance : float
        Share of accepted Metropolis–Hastings proposals.
    """
    cl = _Clusters(built)
    S = beta_std.shape[0]
    out = np.empty((S, cl.J, cl.q))
    accepted = 0
    for lo in range(0, S, DRAW_CHUNK):
        s = slice(lo, min(S, lo + DRAW_CHUNK))
        L = chol_std[s]
        eta0 = cl.centre + beta_std[s] @ cl.X.T
        if cl.offset is not None:
            eta0 = eta0 + cl.offset
        B = np.einsum("rk,skq->srq", cl.Z, L)
        v_hat, C = _mode(cl, eta0, B)
        CT = np.swapaxes(C, -1, -2)

        def propose(v_hat=v_hat, CT=CT):
            z = rng.standard_normal(v_hat.shape)
            z *= np.sqrt(PROPOSAL_DF / rng.chisquare(PROPOSAL_DF, v_hat.shape[:-1]))[..., None]
            v = v_hat + np.linalg.solve(CT, z[..., None])[..., 0]
            return v, _log_t(z, PROPOSAL_DF)

        v, log_q = propose()
        log_p = cl.h(eta0, B, v)
        for _ in range(MH_STEPS):
            v_new, log_q_new = propose()
            log_p_new = cl.h(eta0, B, v_new)
            log_r = (log_p_new - log_q_new) - (log_p - log_q)
            take = np.log(rng.uniform(size=log_r.shape)) < log_r
            accepted += int(take.sum())
            v = np.where(take[..., None], v_new, v)
            log_p = np.where(take, log_p_new, log_p)
            log_q = np.where(take, log_q_new, log_q)
        out[s] = np.einsum("sqk,sjk->sjq", L, v)  # ũ_j = L̃ v_j
    return out, accepted / (S * cl.J * MH_STEPS)
