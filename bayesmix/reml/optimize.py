"""Minimising a profiled REML / ML criterion d(θ) under θ ≥ lower, and lme4's convergence check.

One strategy for every random-effects structure (:func:`minimize_criterion`), used by the
one-factor path (:func:`bayesmix.reml.profiled.optimize_theta`) and the blocked one
(:func:`bayesmix.reml.blocked.fit_blocked`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import linalg, optimize

_NEWTON_POLISH = True  # the final Newton steps (tests switch them off)


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
