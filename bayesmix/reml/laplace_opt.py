"""Minimising glmer's Laplace / AGQ deviance over (θ, β) with few evaluations.

A deviance evaluation is a PIRLS run, so the number of evaluations sets the wall time.  The
strategy (:func:`minimize_deviance`):

1. COBYQA (SciPy's derivative-free trust-region method of the BOBYQA family that glmer uses)
   from the start, to a trust-region radius of ``radius`` (1e-6: the polish below does the
   rest);
2. elements of θ with a lower bound 0 that end below 1e-6 are snapped to 0 when that does not
   raise the deviance (lme4's ``boundary.tol``), and are held there;
3. central differences for the gradient and Hessian of the free coordinates — lme4's
   ``deriv12`` stencil (1 + 2k + 2k(k − 1) evaluations, step 1e-4 · max(1, |x_i|)), reused for
   the standard errors — and Newton steps ``x − H⁻¹g`` (a fresh gradient, 2k evaluations,
   after each) while they lower the deviance;
4. lme4's convergence checks: the Hessian of the free coordinates positive definite, the
   scaled gradient ``H⁻¹g`` below 2e-3 (``checkConv``'s ``check.conv.grad``).

About a third of the evaluations of :func:`bayesmix.reml.optimize.minimize_criterion` (which
polishes with Richardson gradients and a second Hessian) for the same optimum: the Laplace
deviance is computed to ~1e-12, so the plain central differences are accurate to ~1e-7.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import optimize

STEP = 1e-4
"""Relative step of the finite differences (lme4's ``deriv12`` delta)."""


@dataclass(frozen=True)
class DevianceOptimum:
    """Outcome of :func:`minimize_deviance`.

    Attributes
    ----------
    x : ndarray, shape (k,)
    criterion : float
    converged : bool
    messages : tuple of str
    at_bound : ndarray of bool, shape (k,)
    hessian : ndarray, shape (k, k)
        Central-difference Hessian at (or within one Newton step of) x; NaN rows and columns
        for coordinates at a bound.
    evaluations : int
    """

    x: np.ndarray
    criterion: float
    converged: bool
    messages: tuple[str, ...]
    at_bound: np.ndarray
    hessian: np.ndarray
    evaluations: int


def _steps(x: np.ndarray, lower: np.ndarray) -> np.ndarray:
    h = STEP * np.maximum(1.0, np.abs(x))
    room = np.where(np.isfinite(lower), (x - lower) / 2.0, np.inf)
    return np.minimum(h, room)


def gradient(f: Callable, x: np.ndarray, free: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Central-difference gradient on the free coordinates (0 elsewhere)."""
    g = np.zeros(x.size)
    for i in np.flatnonzero(free):
        e = np.zeros(x.size)
        e[i] = h[i]
        g[i] = (f(x + e) - f(x - e)) / (2 * h[i])
    return g


def deriv12(f: Callable, x: np.ndarray, free: np.ndarray, h: np.ndarray,
            f0: float) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and Hessian by lme4's ``deriv12`` stencil on the free coordinates.

    Returns the gradient (0 at fixed coordinates) and the Hessian (NaN rows and columns there).
    """
    k = x.size
    g = np.zeros(k)
    hess = np.full((k, k), np.nan)
    idx = np.flatnonzero(free)
    plus, minus = {}, {}
    for i in idx:
        e = np.zeros(k)
        e[i] = h[i]
        plus[i], minus[i] = f(x + e), f(x - e)
        g[i] = (plus[i] - minus[i]) / (2 * h[i])
        hess[i, i] = (plus[i] - 2 * f0 + minus[i]) / h[i] ** 2
    for a_pos, a in enumerate(idx):
        for c in idx[:a_pos]:
            ea, ec = np.zeros(k), np.zeros(k)
            ea[a], ec[c] = h[a], h[c]
            val = (f(x + ea + ec) - f(x + ea - ec) - f(x - ea + ec) + f(x - ea - ec)) / (
                4 * h[a] * h[c])
            hess[a, c] = hess[c, a] = val
    return g, hess


def minimize_deviance(f: Callable[[np.ndarray], float], lower: np.ndarray, start: np.ndarray,
                      *, radius: float = 1e-6, grad_tol: float = 2e-3) -> DevianceOptimum:
    """Minimise a deviance over x subject to ``x ≥ lower`` (module docstring).

    Parameters
    ----------
    f : callable
        ``f(x) -> float``, +∞ where it cannot be evaluated.
    lower : ndarray, shape (k,)
        0 or −∞.
    start : ndarray, shape (k,)
    radius : float
        COBYQA's final trust-region radius.
    grad_tol : float
        Tolerance of the scaled gradient (lme4's 0.002).

    Returns
    -------
    DevianceOptimum
    """
    lower = np.asarray(lower, dtype=float)
    count = [0]

    def fc(x: np.ndarray) -> float:
        count[0] += 1
        return f(x)

    x0 = np.maximum(np.asarray(start, dtype=float), lower)
    bounds = optimize.Bounds(np.where(np.isfinite(lower), lower, -np.inf), np.inf)
    scale = np.maximum(1.0, np.abs(x0))
    res = optimize.minimize(
        lambda z: fc(z * scale), x0 / scale, method="COBYQA",
        bounds=optimize.Bounds(bounds.lb / scale, np.inf),
        options={"final_tr_radius": radius, "initial_tr_radius": 0.1,
                 "maxfev": 500 * x0.size + 500},
    )
    x = res.x * scale
    crit = fc(x)
    messages: list[str] = []
    snapped = np.where((lower == 0) & (x < 1e-6), 0.0, x)
    if np.any(snapped != x):
        f_snap = fc(snapped)
        if f_snap <= crit + 1e-9:
            x, crit = snapped, f_snap
    if not np.isfinite(crit):
        return DevianceOptimum(x, crit, False, ("the deviance could not be evaluated at any "
                                                "point the optimiser tried",),
                               np.zeros(x.size, bool), np.full((x.size,) * 2, np.nan),
                               count[0])
    at_bound = (lower == 0) & (x == 0.0)
    free = ~at_bound
    h = _steps(x, lower)
    g, hess = deriv12(fc, x, free, h, crit)
    fi = np.flatnonzero(free)
    hf = hess[np.ix_(fi, fi)]
    converged = True
    try:
        chol = np.linalg.cholesky(hf)
    except np.linalg.LinAlgError:
        chol = None
    if chol is not None:
        for _ in range(4):
            step = np.zeros(x.size)
            step[fi] = np.linalg.solve(hf, g[fi])
            trial = x - step
            if np.any(trial[fi] < lower[fi]):
                break
            f_trial = fc(trial)
            if not f_trial <= crit + 1e-12 * max(1.0, abs(crit)):
                break
            x, crit = trial, f_trial
            g = gradient(fc, x, free, _steps(x, lower))
            if np.max(np.abs(step)) <= 1e-9 * max(1.0, float(np.max(np.abs(x)))):
                break
        scaled = np.linalg.solve(hf, g[fi]) if fi.size else np.zeros(0)
        if fi.size and np.max(np.abs(scaled)) > grad_tol and np.max(np.abs(g)) > grad_tol:
            converged = False
            messages.append(f"the optimiser stopped where the deviance is still sloping "
                            f"(scaled gradient {np.max(np.abs(scaled)):.2g} > {grad_tol}); "
                            "the estimates are not a minimum")
    elif fi.size:
        converged = False
        messages.append("the curvature of the deviance at the optimiser's final point is not "
                        "that of a minimum (Hessian not positive definite); the estimates are "
                        "unreliable")
    if at_bound.any():
        h_b = np.where(at_bound, STEP, 0.0)
        up = fc(x + h_b)
        if up < crit - 1e-9 * max(1.0, abs(crit)):
            converged = False
            messages.append("an SD was pushed to 0 although the deviance still decreases away "
                            "from 0; the optimiser did not finish")
    return DevianceOptimum(x, crit, converged, tuple(messages), at_bound, hess, count[0])
