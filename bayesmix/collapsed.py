"""The collapsed (U integrated out) Gaussian likelihood and the exact conditional draws of U.

For cluster j with residual ``r_j = y_j − X_jγ``, ``V_j = σ²I + Z_j T Z_jᵀ`` and ``T = L Lᵀ``,
the Woodbury identity and the determinant lemma give, with ``A_j = I + LᵀZ_jᵀZ_jL / σ²``
(q × q, Cholesky C_j) and ``b_j = LᵀZ_jᵀr_j / σ²``::

    log|V_j|        = 2 n_j log σ + 2 Σ log diag C_j
    r_jᵀV_j⁻¹r_j    = r_jᵀr_j / σ² − ‖C_j⁻¹ b_j‖²

so the likelihood needs only r_jᵀr_j, Z_jᵀr_j and Z_jᵀZ_j: the per-cluster cross-products of
:mod:`bayesmix.stats` (one factor, :func:`collapsed_loglik`) or of :mod:`bayesmix.nested` (the
innermost level of a nested model, :func:`woodbury_loglik` with the outer offset).  U is drawn
afterwards from ``U_j | y, γ, T, σ = L v_j``, ``v_j ~ N(A_j⁻¹ b_j, A_j⁻¹)``
(:func:`draw_u_conditional`).  Every q × q operation is unrolled into length-J vector
operations (q is small and fixed), which compile and differentiate far faster than batched
LAPACK calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pytensor.tensor as pt

if TYPE_CHECKING:
    from bayesmix.stats import ClusterStats


def collapsed_loglik(XX, XZ, ZZ, Xy, Zy, yy, n, beta, chol, sigma, *, q: int, p: int = 1,
                     weight=None):
    """Marginal log-likelihood Σ_j log N(y_j | X_jγ, σ²I + Z_jTZ_jᵀ) from cross-products.

    Parameters
    ----------
    XX, XZ, ZZ : tensors, shapes (J, p, p), (J, p, q), (J, q, q)
    Xy, Zy, yy, n : tensors, shapes (J, p), (J, q), (J,), (J,)
    beta : tensor (p,)
    chol : tensor (q, q)
        Lower Cholesky factor L of T.
    sigma : scalar tensor
    q : int
    p : int
        Columns of X; 0 drops the fixed part (a model with no fixed effects).
    weight : tensor (J,), optional
        Level-2 sampling weights w_j: Σ_j w_j ℓ_j (:mod:`bayesmix.weights`; the level-1
        weights are already in the cross-products and n_j).

    Returns
    -------
    scalar tensor
    """
    J = XX.shape[0]
    # r_jᵀr_j = y'y − 2γ'X'y + vec(X'X)·vec(γγ'): two matrix-vector products.
    rr = yy
    if p:
        rr = rr - 2 * pt.dot(Xy, beta) + pt.dot(XX.reshape((J, -1)),
                                               pt.outer(beta, beta).ravel())
    zr = [Zy[:, a] - pt.dot(XZ[:, :, a], beta) if p else Zy[:, a] for a in range(q)]  # Z_jᵀr_j
    return woodbury_loglik(rr, zr, ZZ, n, chol, sigma, q=q, weight=weight)


def woodbury_loglik(rr, zr, ZZ, n, chol, sigma, *, q: int, weight=None):
    """Σ_j log N(r_j | 0, σ²I + Z_j L Lᵀ Z_jᵀ) from r_jᵀr_j, Z_jᵀr_j and Z_jᵀZ_j.

    Parameters
    ----------
    rr : tensor (J,)
        r_jᵀr_j.
    zr : list of q tensors (J,)
        The entries of Z_jᵀr_j.
    ZZ : tensor (J, q, q)
    n : tensor (J,)
    chol : tensor (q, q)
        Lower Cholesky factor L of T.
    sigma : scalar tensor
    q : int
    weight : tensor (J,), optional
        Level-2 sampling weights: the clusters' terms are summed with these weights.

    Returns
    -------
    scalar tensor
    """
    s2 = sigma**2
    # Everything q × q is unrolled into length-J vectors (q is small and fixed): batched
    # matmul / Cholesky ops per cluster are far slower to run and to differentiate.
    L = [[chol[a, k] for k in range(q)] for a in range(q)]
    # (Z'Z L)[a, k] = Σ_b Z'Z[a, b] L[b, k], with L lower triangular (b ≥ k).
    zzl = [[sum(ZZ[:, a, b] * L[b][k] for b in range(k, q)) for k in range(q)]
           for a in range(q)]
    # A = I + Lᵀ Z'Z L / σ², symmetric: only i ≥ k is needed.
    A = [[None] * q for _ in range(q)]
    for i in range(q):
        for k in range(i + 1):
            value = sum(L[a][i] * zzl[a][k] for a in range(i, q)) / s2
            A[i][k] = value + 1.0 if i == k else value
    b = [sum(L[a][i] * zr[a] for a in range(i, q)) / s2 for i in range(q)]  # Lᵀ Z'r / σ²
    logdet_a, w_sq = _unrolled_cholesky_solve(A, b, q)
    quad = rr / s2 - w_sq
    per_cluster = n * pt.log(2 * np.pi * s2) + logdet_a + quad
    if weight is not None:
        per_cluster = weight * per_cluster
    return -0.5 * pt.sum(per_cluster)


def _unrolled_cholesky_solve(A, b, q: int):
    """log|A_j| and ‖C_j⁻¹b_j‖² for J small SPD matrices, A_j = C_jC_jᵀ.

    The q × q Cholesky factorisation and forward substitution are unrolled into elementwise
    operations on length-J vectors (q is small and fixed), which compiles and differentiates
    far faster than a batched LAPACK call per cluster.

    Parameters
    ----------
    A : list of lists of tensors (J,)
        ``A[i][k]`` for i ≥ k (the lower triangle).
    b : list of tensors (J,)
    q : int

    Returns
    -------
    logdet : tensor (J,)
    w_sq : tensor (J,)
    """
    C: list[list[Any]] = [[None] * q for _ in range(q)]
    for i in range(q):
        for k in range(i + 1):
            acc = A[i][k]
            for m in range(k):
                acc = acc - C[i][m] * C[k][m]
            C[i][k] = pt.sqrt(acc) if i == k else acc / C[k][k]
    w: list[Any] = []
    for i in range(q):
        acc = b[i]
        for m in range(i):
            acc = acc - C[i][m] * w[m]
        w.append(acc / C[i][i])
    logdet = 2 * sum(pt.log(C[i][i]) for i in range(q))
    w_sq = sum(wi**2 for wi in w)
    return logdet, w_sq


def draw_u_conditional(
    stats: ClusterStats,
    beta: np.ndarray,
    chol: np.ndarray,
    sigma: np.ndarray,
    rng: np.random.Generator,
    *,
    chunk: int = 256,
    offset: Any = None,
) -> np.ndarray:
    """Draw U_j from its exact Gaussian conditional given (γ, T, σ) and y, for every draw.

    ``U_j = L v_j``, ``v_j ~ N(A_j⁻¹b_j, A_j⁻¹)`` with ``A_j = I + LᵀZ_jᵀZ_jL/σ²`` and
    ``b_j = LᵀZ_jᵀ(y_j − X_jγ)/σ²``; vectorised over draws (in chunks) and clusters.

    Parameters
    ----------
    stats : ClusterStats
    beta : ndarray, shape (D, p)
    chol : ndarray, shape (D, q, q)
    sigma : ndarray, shape (D,)
    rng : numpy Generator
    chunk : int
        Draws per chunk (bounds memory at chunk · J · q² floats).
    offset : callable, optional
        ``offset(sl)`` → (d, J, q): what to subtract from Z_jᵀr_j for the draws ``sl`` besides
        Z_jᵀX_jγ (the outer levels' effects of a nested model, :mod:`bayesmix.nested`).

    Returns
    -------
    ndarray, shape (D, J, q)
    """
    D = beta.shape[0]
    J, q, p = stats.J, stats.q, stats.p
    out = np.empty((D, J, q))
    ZZ, XZ, Zy = stats.ZZ, stats.XZ, stats.Zy
    for start in range(0, D, chunk):
        sl = slice(start, min(start + chunk, D))
        b_, L, s2 = beta[sl], chol[sl], sigma[sl] ** 2
        # Z_jᵀr_j = Z'y − Z'Xγ: one matrix product, (d, p) x (p, J q).
        zr = Zy[None] - (b_ @ XZ.transpose(1, 0, 2).reshape(p, J * q)).reshape(-1, J, q)
        if offset is not None:
            zr = zr - offset(sl)
        # A = I + LᵀZᵀZL/σ², b = LᵀZᵀr/σ², unrolled over the q × q entries (q is small):
        # each entry is a (d, J) array built from outer products of draws and clusters.
        inv_s2 = 1.0 / s2[:, None]
        zzl = [[sum(ZZ[None, :, a, c] * L[:, c, k, None] for c in range(k, q))
                for k in range(q)] for a in range(q)]
        A = np.empty((len(s2), J, q, q))
        for i in range(q):
            for k in range(i + 1):
                A[..., i, k] = sum(L[:, a, i, None] * zzl[a][k] for a in range(i, q)) * inv_s2
        bv = np.stack(
            [sum(L[:, a, i, None] * zr[..., a] for a in range(i, q)) * inv_s2 for i in range(q)],
            axis=-1,
        )
        # v = C⁻ᵀ(C⁻¹b + z), z ~ N(0, I): mean A⁻¹b, covariance (CCᵀ)⁻¹ = A⁻¹.  The q × q
        # Cholesky factorisation and both substitutions are unrolled over (d, J) arrays.
        C = [[None] * q for _ in range(q)]
        for i in range(q):
            for k in range(i + 1):
                acc = A[..., i, k] + (1.0 if i == k else 0.0)
                for m in range(k):
                    acc = acc - C[i][m] * C[k][m]
                C[i][k] = np.sqrt(acc) if i == k else acc / C[k][k]
        z = rng.standard_normal(bv.shape)
        w = [None] * q
        for i in range(q):
            acc = bv[..., i]
            for m in range(i):
                acc = acc - C[i][m] * w[m]
            w[i] = acc / C[i][i]
        v = [None] * q
        for i in reversed(range(q)):
            acc = w[i] + z[..., i]
            for m in range(i + 1, q):
                acc = acc - C[m][i] * v[m]
            v[i] = acc / C[i][i]
        for a in range(q):
            out[sl, :, a] = sum(L[:, a, b, None] * v[b] for b in range(a + 1))
    return out
