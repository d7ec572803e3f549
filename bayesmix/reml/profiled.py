"""The profiled REML / ML criterion of a two-level linear mixed model (Bates et al. 2015).

The model is ``y = Xβ + Zb + ε`` with ``ε ~ N(0, σ² I_n)`` and, for every cluster j, the q random
terms ``b_j ~ N(0, σ² Λ Λᵀ)``: the random-effects covariance is ``T = Cov(b_j) = σ² Λ Λᵀ``. The
*relative covariance factor* Λ (q × q, lower triangular, shared by every cluster) is
parametrised by θ, its lower triangle read column by column as in lme4 (``q = 2``:
``θ = (Λ₁₁, Λ₂₁, Λ₂₂)``); the diagonal elements of θ are bounded below by 0.

With spherical random effects ``b_j = Λ u_j``, ``u_j ~ N(0, σ² I_q)``, and Z block-diagonal by
cluster, every step of the penalised least squares (PLS) problem is a small q × q or p × p
computation on the per-cluster cross-products of :mod:`bayesmix.stats`:

    L_j L_jᵀ    = Λᵀ Z_jᵀZ_j Λ + I_q                  (q × q Cholesky factor, per cluster)
    R_ZX,j      = L_j⁻¹ Λᵀ Z_jᵀX_j                    (q × p)
    c_u,j       = L_j⁻¹ Λᵀ Z_jᵀy_j                    (q)
    R_Xᵀ R_X    = XᵀX − Σ_j R_ZX,jᵀ R_ZX,j            (p × p, the Schur complement)
    c_β         = R_X⁻ᵀ (Xᵀy − Σ_j R_ZX,jᵀ c_u,j)      (p)
    β̂           = R_X⁻¹ c_β
    û_j         = L_j⁻ᵀ (c_u,j − R_ZX,j β̂)             (spherical conditional modes)
    b̂_j         = Λ û_j                              (conditional modes / BLUPs, original scale)
    r²(θ)       = ‖y − Xβ̂ − Zb̂‖² + ‖û‖² = yᵀy − Σ_j ‖c_u,j‖² − ‖c_β‖²

and the criteria profiled over β and σ are (lme4's scale, −2 × log-likelihood)::

    ML:    d(θ)  = log|L_θ|² + n     (1 + log(2π r²(θ) / n))
    REML:  d_R(θ) = log|L_θ|² + log|R_X|² + (n − p) (1 + log(2π r²(θ) / (n − p)))

with ``log|L_θ|² = 2 Σ_j Σ_r log L_j[r, r]``. At the optimum ``σ̂² = r²/n`` (ML) or
``r²/(n − p)`` (REML) and ``Cov(β̂) = σ̂² (R_Xᵀ R_X)⁻¹``. The cost per evaluation is
O(J (q³ + q² p + q p²) + p³), independent of the number of rows n.

Everything here runs on the statistics' standardised scale (centred and scaled columns, see
:mod:`bayesmix.scaling`); :func:`bayesmix.fit_reml` maps the solution back exactly.

References
----------
Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects models
using lme4. Journal of Statistical Software 67(1), sections 3.2–3.4.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import linalg

from bayesmix.reml.optimize import OptimResult, minimize_criterion
from bayesmix.stats import ClusterStats

Method = Literal["REML", "ML"]
_LOG_2PI = float(np.log(2.0 * np.pi))


def theta_index(q: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of Λ for each element of θ (lower triangle, column by column).

    Parameters
    ----------
    q : int
        Number of random terms.

    Returns
    -------
    rows, cols : ndarray of int, shape (q (q + 1) / 2,)
    """
    upper_r, upper_c = np.triu_indices(q)
    return upper_c, upper_r


def theta_lower_bounds(q: int) -> np.ndarray:
    """Lower bounds of θ: 0 on the diagonal of Λ, −∞ below it (lme4's ``lower``)."""
    rows, cols = theta_index(q)
    return np.where(rows == cols, 0.0, -np.inf)


def theta_start(q: int) -> np.ndarray:
    """lme4's default start: Λ = I_q."""
    rows, cols = theta_index(q)
    return np.where(rows == cols, 1.0, 0.0)


def lambda_from_theta(theta: np.ndarray, q: int) -> np.ndarray:
    """Relative covariance factor Λ (q × q, lower triangular) from θ."""
    lam = np.zeros((q, q))
    rows, cols = theta_index(q)
    lam[rows, cols] = theta
    return lam


def theta_from_covariance(cov: np.ndarray, sigma: float) -> np.ndarray:
    """θ of a covariance T = σ² ΛΛᵀ (lower Cholesky factor of T/σ², read column by column).

    Parameters
    ----------
    cov : ndarray, shape (q, q)
        Covariance of the random terms T (positive semi-definite).
    sigma : float
        Residual SD σ.

    Returns
    -------
    ndarray, shape (q (q + 1) / 2,)
    """
    q = cov.shape[0]
    rel = np.asarray(cov, dtype=float) / sigma**2
    try:
        lam = np.linalg.cholesky(rel)
    except np.linalg.LinAlgError:
        # Semi-definite: Cholesky with a pivot-free fallback through the eigendecomposition.
        w, v = np.linalg.eigh(rel)
        half = v * np.sqrt(np.clip(w, 0.0, None))
        _, r = np.linalg.qr(half.T)
        lam = r.T * np.sign(np.where(np.diag(r) == 0, 1.0, np.diag(r)))
    rows, cols = theta_index(q)
    return lam[rows, cols]


@dataclass(frozen=True)
class PLSSolution:
    """Everything the penalised least squares step gives at one θ.

    Attributes
    ----------
    theta : ndarray, shape (k,)
    lam : ndarray, shape (q, q)
        Λ_θ.
    beta : ndarray, shape (p,)
        β̂(θ).
    b : ndarray, shape (J, q)
        Conditional modes on the original scale, ``b_j = Λ û_j``.
    u_spherical : ndarray, shape (J, q)
        Spherical conditional modes û_j.
    rx : ndarray, shape (p, p)
        Lower Cholesky factor of ``R_XᵀR_X`` (so ``R_X = rx.T``).
    pwrss : float
        Penalised weighted residual sum of squares r²(θ).
    logdet_l : float
        log|L_θ|² = 2 Σ log diag(L_j).
    logdet_rx : float
        log|R_X|².
    n : float
        Rows (Σ_j w_j Σ_i w_i|j with sampling weights).
    p : int
    """

    theta: np.ndarray
    lam: np.ndarray
    beta: np.ndarray
    b: np.ndarray
    u_spherical: np.ndarray
    rx: np.ndarray
    pwrss: float
    logdet_l: float
    logdet_rx: float
    n: float
    p: int

    def sigma(self, method: Method) -> float:
        """σ̂ = sqrt(r² / n) for ML, sqrt(r² / (n − p)) for REML."""
        dof = self.n - self.p if method == "REML" else self.n
        return float(np.sqrt(self.pwrss / dof))

    def criterion(self, method: Method) -> float:
        """−2 × the profiled (restricted) log-likelihood at θ, lme4's scale."""
        if method == "REML":
            dof = self.n - self.p
            return float(
                self.logdet_l + self.logdet_rx + dof * (1.0 + _LOG_2PI + np.log(self.pwrss / dof))
            )
        return float(self.logdet_l + self.n * (1.0 + _LOG_2PI + np.log(self.pwrss / self.n)))

    def vcov_beta(self, method: Method) -> np.ndarray:
        """Cov(β̂) = σ̂² (R_XᵀR_X)⁻¹, shape (p, p)."""
        inv = linalg.cho_solve((self.rx, True), np.eye(self.p))
        return self.sigma(method) ** 2 * inv


def solve_pls(theta: np.ndarray, stats: ClusterStats) -> PLSSolution | None:
    """Solve the penalised least squares problem at θ from the per-cluster cross-products.

    Parameters
    ----------
    theta : ndarray, shape (q (q + 1) / 2,)
    stats : ClusterStats
        Cross-products of ``[X, Zq, y]`` per cluster (J, d, d).

    Returns
    -------
    PLSSolution, or None when R_XᵀR_X is not positive definite or r² ≤ 0 at this θ (numerically
    impossible points, which the optimiser treats as +∞).
    """
    q, p = stats.q, stats.p
    theta = np.asarray(theta, dtype=float)
    lam = lambda_from_theta(theta, q)
    ZZ, XZ, Zy = stats.ZZ, stats.XZ, stats.Zy
    A = np.einsum("ab,jbc,cd->jad", lam.T, ZZ, lam) + np.eye(q)  # (J, q, q)
    try:
        L = np.linalg.cholesky(A)
    except np.linalg.LinAlgError:
        return None
    LtZX = np.einsum("ab,jpb->jap", lam.T, XZ)  # Λᵀ Z_jᵀX_j, (J, q, p)
    LtZy = Zy @ lam  # Λᵀ Z_jᵀy_j, (J, q)
    rzx = np.linalg.solve(L, LtZX)  # (J, q, p)
    cu = np.linalg.solve(L, LtZy[..., None])[..., 0]  # (J, q)
    # Level-2 sampling weights w_j (bayesmix.weights): cluster j counts w_j times.
    w = stats.w
    xtx = np.einsum("j,jab->ab", w, stats.XX) - np.einsum("j,jqa,jqb->ab", w, rzx, rzx)
    rhs = np.einsum("j,ja->a", w, stats.Xy) - np.einsum("j,jqa,jq->a", w, rzx, cu)
    try:
        rx = np.linalg.cholesky(xtx)
    except np.linalg.LinAlgError:
        return None
    cbeta = linalg.solve_triangular(rx, rhs, lower=True)
    beta = linalg.solve_triangular(rx.T, cbeta, lower=False)
    pwrss = float(w @ stats.yy - w @ np.sum(cu**2, axis=1) - np.sum(cbeta**2))
    if not np.isfinite(pwrss) or pwrss <= 0.0:
        return None
    resid = cu - rzx @ beta  # (J, q)
    u_sph = np.linalg.solve(np.swapaxes(L, 1, 2), resid[..., None])[..., 0]
    b = u_sph @ lam.T
    diag_l = np.diagonal(L, axis1=1, axis2=2)
    return PLSSolution(
        theta=theta.copy(),
        lam=lam,
        beta=beta,
        b=b,
        u_spherical=u_sph,
        rx=rx,
        pwrss=pwrss,
        logdet_l=float(2.0 * w @ np.log(diag_l).sum(axis=1)),
        logdet_rx=float(2.0 * np.log(np.diag(rx)).sum()),
        n=stats.n_total,
        p=p,
    )


def profiled_criterion(theta: np.ndarray, stats: ClusterStats, method: Method = "REML") -> float:
    """Evaluate the profiled REML criterion d_R(θ) or ML deviance d(θ) (module docstring).

    Returns +∞ where the PLS step has no solution, so bounded optimisers step back.
    """
    sol = solve_pls(theta, stats)
    return np.inf if sol is None else sol.criterion(method)


def optimize_theta(
    stats: ClusterStats,
    method: Method = "REML",
    *,
    start: np.ndarray | None = None,
    boundary_tol: float = 1e-6,
    grad_tol: float = 2e-3,
) -> OptimResult:
    """Minimise the profiled criterion of one grouping factor over θ (:func:`minimize_criterion`).

    Starts from lme4's Λ = I (or ``start``) and from Λ = 0.3 I and 0.05 I. θ is that of the
    statistics' standardised scale (:mod:`bayesmix.scaling`), where the relative SDs of the
    random effects are of order 0.01-10, so the gradient and Hessian of the convergence check
    are on a well-scaled parameterisation whatever the units of the data.

    Parameters
    ----------
    stats : ClusterStats
    method : {"REML", "ML"}
    start : ndarray, optional
        Starting θ; lme4's default Λ = I otherwise.
    boundary_tol : float
        A diagonal element of θ below this is set to its bound 0 (and compared with the
        unrounded point, keeping the better).
    grad_tol : float
        Tolerance of the scaled gradient (lme4's default 0.002).

    Returns
    -------
    OptimResult
    """
    q = stats.q
    first = theta_start(q) if start is None else np.asarray(start, dtype=float)
    return minimize_criterion(
        lambda th: profiled_criterion(th, stats, method),
        theta_lower_bounds(q), first, base=theta_start(q),
        boundary_tol=boundary_tol, grad_tol=grad_tol,
    )
