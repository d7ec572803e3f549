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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import linalg, optimize

from bayesmix.stats import ClusterStats

Method = Literal["REML", "ML"]
_LOG_2PI = float(np.log(2.0 * np.pi))
_NEWTON_POLISH = True  # the final Newton step of optimize_theta (tests switch it off)


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
    n, p : int
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
    n: int
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
    xtx = stats.XX.sum(axis=0) - np.einsum("jqa,jqb->ab", rzx, rzx)
    rhs = stats.Xy.sum(axis=0) - np.einsum("jqa,jq->a", rzx, cu)
    try:
        rx = np.linalg.cholesky(xtx)
    except np.linalg.LinAlgError:
        return None
    cbeta = linalg.solve_triangular(rx, rhs, lower=True)
    beta = linalg.solve_triangular(rx.T, cbeta, lower=False)
    pwrss = float(stats.yy.sum() - np.sum(cu**2) - np.sum(cbeta**2))
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
        logdet_l=float(2.0 * np.log(diag_l).sum()),
        logdet_rx=float(2.0 * np.log(np.diag(rx)).sum()),
        n=int(stats.n.sum()),
        p=p,
    )


def profiled_criterion(theta: np.ndarray, stats: ClusterStats, method: Method = "REML") -> float:
    """Evaluate the profiled REML criterion d_R(θ) or ML deviance d(θ) (module docstring).

    Returns +∞ where the PLS step has no solution, so bounded optimisers step back.
    """
    sol = solve_pls(theta, stats)
    return np.inf if sol is None else sol.criterion(method)


@dataclass(frozen=True)
class OptimResult:
    """Outcome of :func:`optimize_theta`.

    Attributes
    ----------
    theta : ndarray, shape (k,)
        The best θ found.
    criterion : float
        Its criterion value.
    converged : bool
        Whether the optimisers agreed and the convergence checks passed.
    messages : tuple of str
        Plain-language notes on what failed, empty when all is well.
    gradient : ndarray, shape (k,)
        Central finite-difference gradient at θ (one-sided at an active bound).
    at_bound : ndarray of bool, shape (k,)
        Elements of θ on their lower bound 0.
    evaluations : int
        Criterion evaluations used.
    """

    theta: np.ndarray
    criterion: float
    converged: bool
    messages: tuple[str, ...]
    gradient: np.ndarray
    at_bound: np.ndarray
    evaluations: int


def _fd_gradient_hessian(
    f, x: np.ndarray, at_bound: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Finite-difference gradient (central, or forward at an active bound) and Hessian.

    The Hessian is computed over all coordinates with forward steps where a coordinate sits on
    its bound, so that no evaluation leaves the feasible region.
    """
    k = x.size
    h = 1e-4 * np.maximum(1.0, np.abs(x))
    f0 = f(x)
    grad = np.zeros(k)
    for i in range(k):
        e = np.zeros(k)
        e[i] = h[i]
        if at_bound[i]:
            grad[i] = (-3 * f0 + 4 * f(x + e) - f(x + 2 * e)) / (2 * h[i])
        else:
            grad[i] = (f(x + e) - f(x - e)) / (2 * h[i])
    free = ~at_bound
    hess = np.full((k, k), np.nan)
    idx = np.flatnonzero(free)
    for a in idx:
        for c in idx:
            if c < a:
                continue
            ea = np.zeros(k)
            ec = np.zeros(k)
            ea[a] = h[a]
            ec[c] = h[c]
            val = (f(x + ea + ec) - f(x + ea - ec) - f(x - ea + ec) + f(x - ea - ec)) / (
                4 * h[a] * h[c]
            )
            hess[a, c] = hess[c, a] = val
    return grad, hess


def _richardson_gradient(f, x: np.ndarray, free: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Gradient on the free coordinates by Richardson-extrapolated central differences.

    ``g = (8 [f(x+h) − f(x−h)] − [f(x+2h) − f(x−2h)]) / 12h`` has truncation error O(h⁴), so
    with h = 1e-3 it is accurate to ~1e-10 where the plain central difference is not: the
    profiled criterion is flat to rounding (≈ 1e-11) over the last digits of a weakly
    identified θ, which a value-only optimiser cannot resolve.  h shrinks near a bound.
    """
    g = np.zeros(x.size)
    for i in np.flatnonzero(free):
        h = 1e-3 * max(1.0, abs(x[i]))
        if np.isfinite(lower[i]):
            h = min(h, (x[i] - lower[i]) / 2.5)
        e = np.zeros(x.size)
        e[i] = h
        g[i] = (8 * (f(x + e) - f(x - e)) - (f(x + 2 * e) - f(x - 2 * e))) / (12 * h)
    return g


def _newton_polish(f, theta, crit, free, lower, hess):
    """Newton steps with the Richardson gradient and the finite-difference Hessian.

    The criterion is nearly quadratic at the optimum, so a few steps pin θ down to ~1e-10
    relative (the optimisers stop at ~1e-6 along weakly identified directions).  A step is
    kept while it does not raise the criterion beyond rounding.
    """
    floor = np.where(np.isfinite(lower), lower, -np.inf)
    h = hess[np.ix_(free, free)]
    grad = _richardson_gradient(f, theta, free, lower)
    for _ in range(6):
        try:
            step = np.zeros_like(theta)
            step[free] = np.linalg.solve(h, grad[free])
        except np.linalg.LinAlgError:
            break
        trial = np.maximum(theta - step, floor)
        if np.any((trial == 0.0) & free & (lower == 0)):
            break  # the step reaches a bound: leave it to the bounded optimisers' answer
        f_trial = f(trial)
        if not f_trial <= crit + 1e-11 * max(1.0, abs(crit)):
            break
        theta, crit = trial, min(crit, f_trial)
        grad = _richardson_gradient(f, theta, free, lower)
        if np.max(np.abs(step)) <= 1e-12 * max(1.0, float(np.max(np.abs(theta)))):
            break
    return theta, crit, grad


def _trust_region(f: Callable[[np.ndarray], float], lower: np.ndarray,
                  starts: list[np.ndarray]) -> list[np.ndarray]:
    """COBYQA from the first start; from the second too when the first ends on a bound."""
    bounds = optimize.Bounds(np.where(np.isfinite(lower), lower, -np.inf), np.inf)
    out = []
    for k, s in enumerate(starts):
        res = optimize.minimize(
            f, s, method="COBYQA", bounds=bounds,
            options={"final_tr_radius": 1e-10, "maxfev": 500 * s.size + 500},
        )
        out.append(res.x)
        on_bound = np.any((lower == 0) & (res.x < 1e-4))
        if k == 0 and not on_bound:
            break
    return out


def minimize_criterion(
    f: Callable[[np.ndarray], float],
    lower: np.ndarray,
    start: np.ndarray,
    *,
    base: np.ndarray | None = None,
    boundary_tol: float = 1e-6,
    grad_tol: float = 2e-3,
    trust_region: bool = False,
) -> OptimResult:
    """Minimise a profiled criterion d(θ) subject to ``θ ≥ lower`` (any random-effects structure).

    ``trust_region=True`` (the blocked fits of several factors, where an evaluation costs
    more): SciPy's COBYQA, a derivative-free trust-region method of the BOBYQA family that
    lme4 uses, from ``start`` (and again from ``0.3 base`` when the first run ends on a
    bound), then the same snapping, Newton steps and checks; about a tenth of the evaluations
    of the multi-start strategy below, to the same optimum.

    Strategy: L-BFGS-B (finite-difference gradient) from ``start`` and from ``0.3 base`` and
    ``0.05 base``; the best point is polished with bounded Nelder–Mead, elements of θ with a
    lower bound 0 that end below ``boundary_tol`` are snapped to 0 (kept if the criterion does
    not rise), and up to six Newton steps (Richardson gradient, finite-difference Hessian) pin
    the free coordinates down. The result is then checked as lme4's ``checkConv`` does: the
    finite-difference gradient, scaled by the Hessian (``H⁻¹ g``), must be below ``grad_tol``
    on the free coordinates, the Hessian there must be positive definite, and at an active
    bound the criterion must increase into the interior.

    Parameters
    ----------
    f : callable
        ``f(θ) -> float``, +∞ where the criterion cannot be evaluated.
    lower : ndarray, shape (k,)
        Lower bounds (0 or −∞).
    start : ndarray, shape (k,)
        First starting point.
    base : ndarray, shape (k,), optional
        Point scaled by 0.3 and 0.05 for the two further starts; ``start`` by default.
    boundary_tol : float
        A bounded element of θ below this is set to its bound 0 (and compared with the
        unrounded point, keeping the better).
    grad_tol : float
        Tolerance of the scaled gradient (lme4's default 0.002).

    Returns
    -------
    OptimResult
    """
    lower = np.asarray(lower, dtype=float)
    bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]
    count = [0]

    def fc(th: np.ndarray) -> float:
        count[0] += 1
        return f(th)

    first = np.asarray(start, dtype=float)
    base = first if base is None else np.asarray(base, dtype=float)
    # Three starts at different scales cover the basins that matter: a start far above the
    # optimum can send L-BFGS-B's first step onto a boundary (HSB's cross-level model from
    # Λ = I ends at a singular local minimum).
    starts = [first, base * 0.3, base * 0.05]
    messages: list[str] = []
    if trust_region:
        candidates = _trust_region(fc, lower, starts[:2])
    else:
        results = []
        for s in starts:
            res = optimize.minimize(
                fc, s, method="L-BFGS-B", bounds=bounds,
                options={"ftol": 1e-15, "gtol": 1e-9, "maxiter": 2000, "maxls": 50},
            )
            results.append(res)
        best = min(results, key=lambda r: r.fun)
        polish = optimize.minimize(
            fc, best.x, method="Nelder-Mead", bounds=bounds,
            options={"xatol": 1e-8, "fatol": 1e-11, "maxfev": 1000 + 500 * starts[0].size},
        )
        candidates = [best.x, polish.x]
    theta = min(candidates, key=fc)
    snapped = np.where((lower == 0) & (theta < boundary_tol), 0.0, theta)
    if fc(snapped) <= fc(theta) + 1e-9:
        theta = snapped
    crit = fc(theta)
    if not np.isfinite(crit):
        return OptimResult(
            theta=theta, criterion=crit, converged=False,
            messages=("the criterion could not be evaluated at any point the optimiser tried; "
                      "check the data for columns on very different scales",),
            gradient=np.full(theta.size, np.nan), at_bound=np.zeros(theta.size, bool),
            evaluations=count[0],
        )
    at_bound = (lower == 0) & (theta == 0.0)
    grad, hess = _fd_gradient_hessian(fc, theta, at_bound)
    free = ~at_bound
    if _NEWTON_POLISH and free.any():
        theta, crit, polished = _newton_polish(fc, theta, crit, free, lower, hess)
        grad = np.where(free, polished, grad)
    converged = True
    if free.any():
        h = hess[np.ix_(free, free)]
        g = grad[free]
        try:
            chol = np.linalg.cholesky(h)
            scaled = linalg.cho_solve((chol, True), g)
            if np.max(np.abs(scaled)) > grad_tol and np.max(np.abs(g)) > grad_tol:
                converged = False
                messages.append(
                    "the optimiser stopped where the criterion is still sloping (scaled gradient "
                    f"{np.max(np.abs(scaled)):.2g} > {grad_tol}); the estimates are not a minimum"
                )
        except np.linalg.LinAlgError:
            converged = False
            messages.append(
                "the curvature of the criterion at the optimiser's final point is not that of "
                "a minimum (Hessian not positive definite); the estimates are unreliable"
            )
    if at_bound.any() and np.any(grad[at_bound] < -grad_tol * max(1.0, abs(crit)) * 1e-3):
        converged = False
        messages.append(
            "an SD was pushed to 0 although the criterion still decreases away from 0; the "
            "optimiser did not finish"
        )
    return OptimResult(
        theta=theta, criterion=crit, converged=converged, messages=tuple(messages),
        gradient=grad, at_bound=at_bound, evaluations=count[0],
    )


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
