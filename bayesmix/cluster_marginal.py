"""The marginal log-likelihood of each cluster, every draw: its random effects integrated out.

For a cluster j of the outermost grouping factor (the effects of every factor nested in it
included), with rows y_j, fixed part η⁰_j = X_jβ (+ offset), the local design Z_j of all its
effects (n_j × m_j) and their prior covariance Σ_j = blockdiag(T_g) = L_j L_jᵀ::

    ℓ_j = log ∫ p(y_j | η⁰_j + Z_j L_j v) N(v | 0, I) dv

Gaussian family (exact; Woodbury and the determinant lemma, A_j = I + L_jᵀZ_jᵀZ_jL_j / σ²,
r_j = y_j − η⁰_j, w_j = chol(A_j)⁻¹ L_jᵀZ_jᵀ r_j / σ²)::

    ℓ_j = −½ [n_j log 2πσ² + log|A_j| + r_jᵀr_j / σ² − ‖w_j‖²]

With one grouping factor this is computed for all clusters at once from the per-cluster
cross-products on the standardised scale (:mod:`bayesmix.stats`), O(J q³) per draw whatever n
is, plus the Jacobian −n_j log s_y.

Other families: adaptive Gauss–Hermite quadrature around the mode v̂ of
h(v) = log p(y_j | v) − ½‖v‖² (found by Newton's method, vectorised over draws), with
H = −∇²h(v̂) = I + L_jᵀZ_jᵀ W Z_j L_j = C Cᵀ and the K^m product rule (x_k, w_k)::

    ℓ_j ≈ −(m/2) log π − log|C| + log Σ_k w_k exp(‖x_k‖² + h(v̂ + √2 C⁻ᵀ x_k))

K = 1 is the Laplace approximation (lme4's nAGQ = 1).  By default K = 15 for one effect per
cluster, 5 for two, and 1 (Laplace) for more, as the cost grows as K^m.
"""

from __future__ import annotations

import numpy as np

from bayesmix.nested_marginal import gaussian_nested_cluster, is_nested_chain, local_units
from bayesmix.pointwise import FlatDraws, flat_draws, marginal_unit

DEFAULT_NODES = {1: 15, 2: 5}
"""Gauss–Hermite nodes per dimension by the number m of effects per cluster (else 1)."""
DRAW_CHUNK = 512


def cluster_marginal_loglik(fit, draws: FlatDraws | None = None, *,
                            nodes: int | None = None,
                            clusters: np.ndarray | None = None) -> tuple[str, np.ndarray]:
    """ℓ_j for every cluster of the outermost factor and every draw (module docstring).

    Parameters
    ----------
    fit : Fit
    draws : FlatDraws, optional
    nodes : int, optional
        Gauss–Hermite nodes per dimension for a non-Gaussian family (1: Laplace); by default
        :data:`DEFAULT_NODES`.  Ignored for the Gaussian family (exact).
    clusters : ndarray of bool, shape (J,), optional
        Only these clusters (the others' columns are NaN); all by default.

    Returns
    -------
    unit : str
        The grouping factor whose units are the clusters.
    loglik : ndarray, shape (S, J)
    """
    design = fit.design
    unit = marginal_unit(design)
    draws = draws or flat_draws(fit)
    if design.family.is_gaussian and design.single_factor:
        return unit, _gaussian_from_stats(fit, draws)
    grouping = next(g for g in design.groupings if g.name == unit)
    order = np.argsort(grouping.index, kind="stable")
    bounds = np.searchsorted(grouping.index[order], np.arange(grouping.J + 1))
    chols = {name: np.linalg.cholesky(cov) for name, cov in draws.cov.items()}
    out = np.full((draws.S, grouping.J), np.nan)
    wanted = np.ones(grouping.J, dtype=bool) if clusters is None else np.asarray(clusters)
    tree = design.family.is_gaussian and is_nested_chain(design)
    for j in np.flatnonzero(wanted):
        rows = order[bounds[j] : bounds[j + 1]]
        if tree:  # exact, unit by unit (bayesmix.nested_marginal)
            units = local_units(design, rows)
            for lo in range(0, draws.S, 8 * DRAW_CHUNK):  # q × q blocks: small per draw
                s = slice(lo, min(draws.S, lo + 8 * DRAW_CHUNK))
                eta0 = draws.beta[s] @ design.X[rows].T
                out[s, j] = gaussian_nested_cluster(units, design.y[rows], eta0,
                                                    {k: v[s] for k, v in chols.items()},
                                                    draws.sigma[s])
            continue
        Z, blocks = _local_design(design, rows)
        for lo in range(0, draws.S, DRAW_CHUNK):
            s = slice(lo, min(draws.S, lo + DRAW_CHUNK))
            L = _local_cholesky(blocks, chols, s, Z.shape[1])
            ZL = np.matmul(Z, L)
            eta0 = draws.beta[s] @ design.X[rows].T
            if design.offset is not None:
                eta0 = eta0 + design.offset[rows]
            if design.family.is_gaussian:
                out[s, j] = _gaussian_cluster(design.y[rows], eta0, ZL, draws.sigma[s])
            else:
                trials = None if design.trials is None else design.trials[rows]
                k = nodes or DEFAULT_NODES.get(Z.shape[1], 1)
                out[s, j] = _quadrature_cluster(design.family, design.y[rows], trials, eta0,
                                                ZL, k)
    return unit, out


def marginal_cost(design, S: int, nodes: int | None = None) -> float:
    """A rough count of the floating-point operations :func:`cluster_marginal_loglik` needs.

    One-factor Gaussian models: S · J · q³ (the statistics path); nested Gaussian models:
    S · Σ_units q³ · depth² (:mod:`bayesmix.nested_marginal`).  Otherwise, per cluster of
    the outermost factor with n_j rows and m_j effects: S · n_j · m_j (m_j + 1), times about
    10 Newton steps plus K^m_j quadrature nodes for a non-Gaussian family.
    """
    if design.family.is_gaussian and design.single_factor:
        return float(S * design.J * max(design.q, 1) ** 3 * 20)
    if design.family.is_gaussian and is_nested_chain(design):
        # unit by unit: each unit's rows once, and q³ work per ancestor pair
        depth = len(design.effects)
        units = sum(fe.J * (fe.q**3 * depth**2 * 20) for fe in design.effects)
        return float(S * (units + design.n * sum(fe.q for fe in design.effects) * depth))
    unit = marginal_unit(design)
    grouping = next(g for g in design.groupings if g.name == unit)
    n = np.bincount(grouping.index, minlength=grouping.J).astype(float)
    m = np.zeros(grouping.J)
    for fe in design.effects:
        pairs = np.unique(np.stack([grouping.index, fe.grouping.index]), axis=1)
        m += np.bincount(pairs[0], minlength=grouping.J) * fe.q
    per = S * n * m * (m + 1)
    if not design.family.is_gaussian:
        k = np.array([nodes or DEFAULT_NODES.get(int(mj), 1) for mj in m], dtype=float)
        per = per * (10 + k**m)
    return float(per.sum())


def _local_design(design, rows: np.ndarray) -> tuple[np.ndarray, list[tuple[str, int]]]:
    """Dense Z_j of a cluster's effects, and per column block the factor and its q_g.

    Returns
    -------
    Z : ndarray, shape (n_j, m_j)
    blocks : list of (factor name, q_g), one per local unit, in column order
    """
    parts, blocks = [], []
    for fe in design.effects:
        units, local = np.unique(fe.grouping.index[rows], return_inverse=True)
        Zg = np.zeros((rows.size, units.size * fe.q))
        for r in range(fe.q):
            Zg[np.arange(rows.size), local * fe.q + r] = fe.Zq[rows, r]
        parts.append(Zg)
        blocks += [(fe.name, fe.q)] * units.size
    return np.hstack(parts), blocks


def _local_cholesky(blocks: list[tuple[str, int]], chols: dict[str, np.ndarray], s: slice,
                    m: int) -> np.ndarray:
    """Block diagonal of the factors' Cholesky factors over the local units, (S_s, m, m)."""
    first = next(iter(chols.values()))[s]
    L = np.zeros((first.shape[0], m, m))
    at = 0
    for name, q in blocks:
        L[:, at : at + q, at : at + q] = chols[name][s]
        at += q
    return L


def _gram(ZL: np.ndarray, W: np.ndarray | None = None) -> np.ndarray:
    """(ZL)ᵀ diag(W) (ZL) per draw, shape (S, m, m) (batched BLAS)."""
    left = ZL if W is None else ZL * W[:, :, None]
    return np.matmul(np.swapaxes(left, 1, 2), ZL)


def _tmul(ZL: np.ndarray, r: np.ndarray) -> np.ndarray:
    """(ZL)ᵀ r per draw, shape (S, m)."""
    return np.matmul(np.swapaxes(ZL, 1, 2), r[:, :, None])[..., 0]


def _mul(ZL: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(ZL) v per draw, shape (S, n)."""
    return np.matmul(ZL, v[:, :, None])[..., 0]


def _gaussian_cluster(y: np.ndarray, eta0: np.ndarray, ZL: np.ndarray,
                      sigma: np.ndarray) -> np.ndarray:
    """Exact ℓ_j for each draw (module docstring), shape (S_s,)."""
    s2 = sigma**2
    r = y[None, :] - eta0                                          # (S, n)
    m = ZL.shape[2]
    A = np.eye(m) + _gram(ZL) / s2[:, None, None]
    C = np.linalg.cholesky(A)
    b = _tmul(ZL, r) / s2[:, None]
    w = np.linalg.solve(C, b[..., None])[..., 0]
    logdet = 2 * np.log(np.diagonal(C, axis1=1, axis2=2)).sum(axis=1)
    n = y.size
    return -0.5 * (n * np.log(2 * np.pi * s2) + logdet + (r * r).sum(axis=1) / s2
                   - (w * w).sum(axis=1))


def _h(family, y, trials, eta0, ZL, v) -> np.ndarray:
    """h(v) = Σ_i log p(y_i | η⁰ + (ZL v)_i) − ½‖v‖², shape (S,)."""
    eta = eta0 + _mul(ZL, v)
    return family.loglik(y, eta, trials).sum(axis=1) - 0.5 * (v * v).sum(axis=1)


def _mode(family, y, trials, eta0, ZL, max_iter: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Newton's method for v̂ (vectorised over draws, with step halving); returns v̂ and C."""
    S, _, m = ZL.shape
    v = np.zeros((S, m))
    value = _h(family, y, trials, eta0, ZL, v)
    for _ in range(max_iter):
        eta = eta0 + _mul(ZL, v)
        mu = family.linkinv(eta)
        grad = _tmul(ZL, y - family.expected(eta, trials)) - v
        W = family.variance(mu, trials)
        H = np.eye(m) + _gram(ZL, W)
        step = np.linalg.solve(H, grad[..., None])[..., 0]
        t = np.ones(S)
        for _ in range(30):
            new = v + t[:, None] * step
            new_value = _h(family, y, trials, eta0, ZL, new)
            worse = ~(new_value >= value - 1e-12)
            if not worse.any():
                break
            t = np.where(worse, t / 2, t)
        v, value = new, new_value
        if np.max(np.abs(t[:, None] * step)) < 1e-10:
            break
    eta = eta0 + _mul(ZL, v)
    W = family.variance(family.linkinv(eta), trials)
    H = np.eye(m) + _gram(ZL, W)
    return v, np.linalg.cholesky(H)


def _quadrature_cluster(family, y, trials, eta0, ZL, nodes: int) -> np.ndarray:
    """ℓ_j by adaptive Gauss–Hermite quadrature with ``nodes`` per dimension, shape (S,)."""
    m = ZL.shape[2]
    v_hat, C = _mode(family, y, trials, eta0, ZL)
    logdet_c = np.log(np.diagonal(C, axis1=1, axis2=2)).sum(axis=1)
    if nodes == 1:  # Laplace: the one node x = 0 with weight √π per dimension
        return _h(family, y, trials, eta0, ZL, v_hat) - logdet_c
    x1, w1 = np.polynomial.hermite.hermgauss(nodes)
    grid = np.stack(np.meshgrid(*([x1] * m), indexing="ij"), axis=-1).reshape(-1, m)
    log_w = np.log(np.stack(np.meshgrid(*([w1] * m), indexing="ij"), axis=-1)
                   .reshape(-1, m)).sum(axis=1)
    CT = np.swapaxes(C, 1, 2)
    terms = np.empty((grid.shape[0], v_hat.shape[0]))
    for k, x in enumerate(grid):
        shift = np.linalg.solve(CT, np.broadcast_to(np.sqrt(2) * x, v_hat.shape)[..., None])
        v = v_hat + shift[..., 0]
        terms[k] = log_w[k] + x @ x + _h(family, y, trials, eta0, ZL, v)
    top = terms.max(axis=0)
    log_sum = top + np.log(np.exp(terms - top).sum(axis=0))
    return -0.5 * m * np.log(np.pi) - logdet_c + log_sum


def _gaussian_from_stats(fit, draws: FlatDraws) -> np.ndarray:
    """Exact ℓ_j of a one-factor Gaussian model for all clusters at once, shape (S, J).

    With a residual SD per group (``sigma_by``), ``V_j = Z_j T Z_jᵀ + D_j`` with
    ``D_j = diag(σ²_s(i))``: every cross-product is the sum over the groups' rows divided by
    their σ_s² (:func:`bayesmix.reml.varident.group_stats`); one σ is the case of one group.
    Per chunk of draws, every product is a matrix product over the J clusters (BLAS) and the
    q × q Cholesky factors and triangular solves are written out for the whole (S, J) batch
    (q is small: a loop over q, not over draws or clusters).
    """
    from bayesmix.stats import cluster_stats

    design = fit.design
    if design.sigma_index is not None:
        from bayesmix.reml.varident import group_stats

        groups = group_stats(design)
    else:
        built = fit.built
        stats = built.stats if built is not None and built.stats is not None else None
        if stats is None or stats.M.shape[0] != design.J:
            stats = cluster_stats(design)
        groups = [stats]
    sc = groups[0].scaling
    p, q = groups[0].p, groups[0].q
    J = groups[0].M.shape[0]
    parts = []  # per group: X'X, X'Z, X'y, Z'Z, Z'y, y'y, n_j
    for st in groups:
        M = st.M
        parts.append((M[:, :p, :p].reshape(J, p * p), M[:, :p, p : p + q], M[:, :p, -1],
                      M[:, p : p + q, p : p + q].reshape(J, q * q), M[:, p : p + q, -1],
                      M[:, -1, -1], st.n.astype(float)))
    jacobian = sum(part[-1] for part in parts) * np.log(sc.y_scale)
    name = design.effects[0].name
    out = np.empty((draws.S, J))
    for lo in range(0, draws.S, 64):
        s = slice(lo, min(draws.S, lo + 64))
        b = sc.beta_to_std(draws.beta[s])                          # (S, p)
        L = np.linalg.cholesky(sc.cov_to_std(draws.cov[name][s]))  # (S, q, q)
        s2 = (draws.sigma[s] / sc.y_scale) ** 2                     # (S,) or (S, G)
        s2 = s2[:, None] if s2.ndim == 1 else s2
        bb = (b[:, :, None] * b[:, None, :]).reshape(-1, p * p)
        LL = (L[:, :, None, :, None] * L[:, None, :, None, :]).reshape(-1, q * q, q * q)
        A = rhs = total = 0.0
        for g, (XX, XZ, Xy, ZZ, Zy, yy, n) in enumerate(parts):
            inv = 1.0 / s2[:, g]
            rr = yy[None] - 2 * b @ Xy.T + bb @ XX.T              # (S, J)
            Zr = Zy[None] - np.tensordot(b, XZ, axes=([1], [1]))   # (S, J, q)
            # (S, J, q²): LᵀZᵀZL / σ² (einsum: numpy's broadcast matmul of (J, q²) by a stack
            # of (q², q²) is ten times slower)
            A = A + np.einsum("jk,skl->sjl", ZZ, LL * inv[:, None, None], optimize=True)
            rhs = rhs + np.einsum("sjk,skl->sjl", Zr, L * inv[:, None, None], optimize=True)
            total = total + rr * inv[:, None] + n * np.log(2 * np.pi * s2[:, g])[:, None]
        A[..., :: q + 1] += 1.0
        logdet, ww = _small_cholesky_solve(A.reshape(-1, J, q, q), rhs)
        out[s] = -0.5 * (total + logdet - ww) - jacobian
    return out


def _small_cholesky_solve(A: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log|A| and ‖C⁻¹b‖² for a batch of small SPD A = C Cᵀ, shapes (..., q, q) and (..., q).

    The Cholesky recursion and the forward substitution entry by entry, each entry an array
    over the batch, so every step is one vectorised pass (new arrays come from arithmetic:
    ``x * 1.0``, as ``ndarray.copy`` of these sizes measured ten times slower here).
    """
    q = A.shape[-1]
    c: list[list[np.ndarray]] = [[None] * q for _ in range(q)]  # type: ignore[list-item]
    logdet = np.zeros(A.shape[:-2])
    for j in range(q):
        d = A[..., j, j] * 1.0
        for k in range(j):
            d -= c[j][k] * c[j][k]
        logdet += np.log(d)
        c[j][j] = np.sqrt(d)
        for i in range(j + 1, q):
            v = A[..., i, j] * 1.0
            for k in range(j):
                v -= c[i][k] * c[j][k]
            v /= c[j][j]
            c[i][j] = v
    w: list[np.ndarray] = []
    ww = np.zeros(A.shape[:-2])
    for i in range(q):
        v = b[..., i] * 1.0
        for k in range(i):
            v -= c[i][k] * w[k]
        v /= c[i][i]
        w.append(v)
        ww += v * v
    return logdet, ww
