"""Maximum likelihood of a GLMM by glmer's two stages, on arrays and for a Design.

:class:`~bayesmix.reml.laplace.LaplaceProblem` gives the deviance; this module minimises it as
lme4's ``glmer`` does for ``nAGQ ≥ 1``:

1. stage 1 (lme4's nAGQ = 0 step): θ alone, with β updated inside PIRLS (the joint mode of
   (ũ, β)), from Λ_b = I;
2. stage 2: (θ, β) jointly on the Laplace deviance D(θ, β) (``nAGQ = 1``) or the adaptive
   Gauss–Hermite deviance D_K (``nAGQ = K > 1``), from stage 1's optimum.

Both use :func:`bayesmix.reml.optimize.minimize_criterion` (COBYQA, the diagonal of every Λ_b
bounded below by 0, Newton polish and lme4's convergence checks).

**Standard errors** are glmer's default (``vcov.merMod(use.hessian = TRUE)``): the β block of
``2 H⁻¹``, H the Hessian of the deviance over (θ, β) at the optimum (here by Richardson-
extrapolated central differences, where lme4 uses ``deriv12``'s plain ones).  Where an element
of θ sits on its bound 0, lme4's finite differences fail and it falls back to ``(R_XᵀR_X)⁻¹``
at the mode (the Schur complement of :meth:`LaplaceProblem.rx_vcov`); so does this module.

**AGQ deviance as glmer reports it.**  For ``nAGQ > 1`` glmer sums deviance residuals rather
than −2 log p, so its deviance (and ``logLik``) omit the saturated model's constant:
``D_glmer = D_K + 2 Σ_i log p(y_i | μ_i = y_i)``.  ``criterion`` is glmer's number; the
messages give the constant.

**Scale.**  The design-level fit works on X̃ (centred and scaled columns, ``X = X̃ A_x``) with
η = o + m + X̃β̃ + Z̃b̃ (m the link of the pooled mean, ``design.scaling.y_center``; s_y = 1),
and every block's columns standardised by its own scaling (``Zq_b = Z̃_b A_b``); η is the
same, so the deviance is unchanged and the estimates map back exactly::

    β = A_x⁻¹ (β̃ + m e₀)     Cov(β̂) = A_x⁻¹ Cov(β̃) A_x⁻ᵀ     T_b = A_b⁻¹ Λ̃_bΛ̃_bᵀ A_b⁻ᵀ
    b_bj = A_b⁻¹ Λ̃_b ũ_bj

Wall time (a shared, loaded 2-core machine, after a warm-up call; R 4.2.2, lme4 1.1-31
``glmer`` with its default control in ``system.time``).  Rough: the load varied by 5x.

==================================  ===================  ============================
model                               glmer                fit_laplace
==================================  ===================  ============================
cbpp, binomial, ``(1 | herd)``      0.08–0.5 s           0.45–2.6 s (about 3–5x)
grouseticks, Poisson, 3 factors     1.0–5.1 s            80–330 s (far off the 3x goal)
==================================  ===================  ============================

Grouseticks is slow because every Newton step re-forms the Schur complement of the 181
brood and location columns with scipy.sparse products, and stage 2 takes ~650 evaluations
(COBYQA, then minimize_criterion's finite-difference Hessian and Newton polish, then the
Hessian for the SEs); precomputing the pattern of ZᵀWZ (a fixed sparse map from W) is the
next step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from bayesmix.families import Family
from bayesmix.reml.blocked import SINGULAR_TOL, BlockArrays
from bayesmix.reml.laplace import LaplaceProblem
from bayesmix.reml.optimize import minimize_criterion


@dataclass(frozen=True)
class GLMMFit:
    """ML estimates of a GLMM on the arrays' scale (:func:`fit_glmm`).

    Attributes
    ----------
    nagq : int
        Quadrature nodes (1: Laplace).
    beta : ndarray, shape (p,)
    vcov : ndarray, shape (p, p)
        glmer's ``vcov`` (module docstring).
    theta : ndarray, shape (k,)
    deviance : float
        glmer's deviance (−2 logLik as glmer reports it).
    marginal_deviance : float
        −2 log L: equal to ``deviance`` for the Laplace fit; for AGQ with the saturated
        constant (module docstring).
    sd, corr : tuple of ndarray, shapes (q_b,) and (q_b, q_b) per block
        SDs and correlations of b_bj (``Λ_bΛ_bᵀ``; NaN correlation where an SD is 0).
    modes : tuple of ndarray, shape (J_b, q_b) each
        Conditional modes ``b_bj = Λ_b ũ_bj`` (lme4's ``ranef``).
    u : ndarray, shape (m,)
        Spherical modes ũ (all blocks, unit-major).
    converged : bool
    singular : tuple of bool
    messages : tuple of str
    evaluations : int
    hessian_vcov : bool
        Whether ``vcov`` came from the Hessian (False: the ``R_X`` fallback).
    """

    nagq: int
    beta: np.ndarray
    vcov: np.ndarray
    theta: np.ndarray
    deviance: float
    marginal_deviance: float
    sd: tuple[np.ndarray, ...]
    corr: tuple[np.ndarray, ...]
    modes: tuple[np.ndarray, ...]
    u: np.ndarray
    converged: bool
    singular: tuple[bool, ...]
    messages: tuple[str, ...]
    evaluations: int
    hessian_vcov: bool

    @property
    def se(self) -> np.ndarray:
        """Standard errors of β̂, shape (p,)."""
        return np.sqrt(np.diag(self.vcov))


def saturated_loglik(family: Family, y: np.ndarray, trials: np.ndarray | None = None) -> float:
    """Σ_i log p(y_i | μ_i = y_i): the saturated model's log-likelihood.

    ``k log(k/n) + (n − k) log(1 − k/n) + log C(n, k)`` (binomial, 0 log 0 = 0) or
    ``y log y − y − log y!`` (Poisson).
    """
    y = np.asarray(y, dtype=float)
    if family.link == "logit":
        n = np.ones_like(y) if trials is None else np.asarray(trials, dtype=float)
        p = y / n
        const = special.gammaln(n + 1) - special.gammaln(y + 1) - special.gammaln(n - y + 1)
        return float(np.sum(special.xlogy(y, p) + special.xlogy(n - y, 1 - p) + const))
    return float(np.sum(special.xlogy(y, y) - y - special.gammaln(y + 1)))


def richardson_hessian(f, x: np.ndarray, h: float = 1e-3) -> np.ndarray:
    """Hessian of f at x by central differences extrapolated over steps h and 2h (O(h⁴)).

    Parameters
    ----------
    f : callable
        ``f(x) -> float``.
    x : ndarray, shape (k,)
    h : float
        Relative step (times ``max(1, |x_i|)``).

    Returns
    -------
    ndarray, shape (k, k)
    """
    k = x.size
    steps = h * np.maximum(1.0, np.abs(x))
    f0 = f(x)

    def one(scale: float) -> np.ndarray:
        hs = steps * scale
        out = np.empty((k, k))
        for a in range(k):
            ea = np.zeros(k)
            ea[a] = hs[a]
            out[a, a] = (f(x + ea) - 2 * f0 + f(x - ea)) / hs[a] ** 2
            for c in range(a):
                ec = np.zeros(k)
                ec[c] = hs[c]
                out[a, c] = out[c, a] = (f(x + ea + ec) - f(x + ea - ec) - f(x - ea + ec)
                                         + f(x - ea - ec)) / (4 * hs[a] * hs[c])
        return out

    return (4 * one(1.0) - one(2.0)) / 3


def fit_glmm(
    X: np.ndarray,
    y: np.ndarray,
    blocks: Sequence[BlockArrays],
    family: Family,
    *,
    trials: np.ndarray | None = None,
    offset: np.ndarray | None = None,
    nAGQ: int = 1,
) -> GLMMFit:
    """Maximum likelihood of a GLMM by glmer's two stages (module docstring).

    Parameters
    ----------
    X : ndarray, shape (n, p)
    y : ndarray, shape (n,)
    blocks : sequence of BlockArrays
    family : Family
        Bernoulli, binomial or Poisson.
    trials : ndarray, shape (n,), optional
        n_i (binomial).
    offset : ndarray, shape (n,), optional
        Added to η (log exposure).
    nAGQ : int
        1: Laplace; K > 1: K-point adaptive Gauss–Hermite (one scalar factor only).

    Returns
    -------
    GLMMFit
    """
    nagq = int(nAGQ)
    if nagq < 1 or nagq > 100:
        raise ValueError(f"nAGQ must be between 1 and 100 (0, lme4's stage 1 alone, is not "
                         f"offered), not {nAGQ}")
    prob = LaplaceProblem(X, y, blocks, family, trials=trials, offset=offset)
    if nagq > 1 and (len(prob.blocks) != 1 or prob.blocks[0].q != 1):
        raise ValueError("nAGQ > 1 needs a single grouping factor with one random term, as "
                         "in glmer; use nAGQ=1 (Laplace)")
    k = prob.n_theta
    # Stage 1 only gives stage 2 its start: COBYQA to a moderate radius, no polish.
    bounds = optimize.Bounds(np.where(np.isfinite(prob.lower), prob.lower, -np.inf), np.inf)
    opt1 = optimize.minimize(prob.deviance0, prob.start, method="COBYQA", bounds=bounds,
                             options={"final_tr_radius": 1e-5, "maxfev": 200 * k + 200})
    md1 = prob.mode(opt1.x, None)
    if md1 is None:
        raise ValueError("the penalised deviance cannot be evaluated at the start; check the "
                         "outcome and the offset")

    def dev(x: np.ndarray) -> float:
        if nagq == 1:
            return prob.deviance(x[:k], x[k:])
        return prob.agq_deviance(x[:k], x[k:], nagq)

    x0 = np.concatenate([opt1.x, md1.beta])
    lower = np.concatenate([prob.lower, np.full(prob.p, -np.inf)])
    opt = minimize_criterion(dev, lower, x0, base=x0, trust_region=True)
    theta, beta = opt.theta[:k], opt.theta[k:]
    md = prob.mode(theta, beta)
    messages = list(opt.messages)
    if not opt.converged:
        messages.insert(0, "The ML optimiser did not converge; the numbers are not estimates.")
    at_bound = (prob.lower == 0) & (theta <= 0.0)
    hess_ok = False
    vcov = np.full((prob.p, prob.p), np.nan)
    if not at_bound.any():
        hess = richardson_hessian(dev, opt.theta)
        try:
            inv = np.linalg.inv(hess)[k:, k:]
            vcov = inv + inv.T
            hess_ok = bool(np.all(np.linalg.eigvalsh(vcov) > 0))
        except np.linalg.LinAlgError:
            hess_ok = False
    if not hess_ok:
        vcov = prob.rx_vcov(theta, beta)
        if not at_bound.any():
            messages.append("the finite-difference Hessian of the deviance is not positive "
                            "definite; the SEs are those of R_X (as glmer falls back)")
    deviance = float(opt.criterion)
    marginal = deviance
    if nagq > 1:
        sat = saturated_loglik(family, y, trials)
        deviance = marginal + 2.0 * sat
        messages.append(f"AGQ deviance as glmer reports it (deviance residuals): the marginal "
                        f"-2 log L is {marginal:.6f} (saturated log-likelihood {sat:.6f})")
    lams = prob.lams(theta)
    sds, corrs, modes, singular = [], [], [], []
    off = 0
    for i, (blk, lam) in enumerate(zip(prob.blocks, lams, strict=True)):
        cov = lam @ lam.T
        sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.clip(cov / np.outer(sd, sd), -1.0, 1.0)
        corr[np.outer(sd, sd) == 0] = np.nan
        np.fill_diagonal(corr, 1.0)
        u_b = md.u[off: off + blk.J * blk.q].reshape(blk.J, blk.q)
        off += blk.J * blk.q
        sing = bool(np.any(theta[prob.slices[i]][blk.theta_diagonal()] < SINGULAR_TOL))
        if sing:
            messages.append(f"Singular fit: the covariance of block {blk.name or i} has an SD "
                            "at 0 or a correlation of ±1 (a boundary estimate)")
        sds.append(sd)
        corrs.append(corr)
        modes.append(u_b @ lam.T)
        singular.append(sing)
    return GLMMFit(
        nagq=nagq, beta=beta, vcov=vcov, theta=theta, deviance=deviance,
        marginal_deviance=marginal, sd=tuple(sds), corr=tuple(corrs), modes=tuple(modes),
        u=md.u, converged=bool(opt.converged),
        singular=tuple(singular), messages=tuple(messages),
        evaluations=int(opt1.nfev) + opt.evaluations, hessian_vcov=hess_ok,
    )


def glmm_blocks(design) -> tuple[list[BlockArrays], list[tuple]]:
    """The standardised blocks of a design (as :mod:`bayesmix.reml.factors`).

    Returns the blocks and, per block, (factor effects, its columns, its A_b⁻¹).
    """
    from bayesmix.design.terms import unit_major

    blocks, where = [], []
    for fe in design.effects:
        for (cols, sb), block in zip(fe.scale.blocks, fe.blocks, strict=True):
            zs = sb.standardize(design.atoms, design.y)[1]
            blocks.append(BlockArrays(unit_major(zs, fe.grouping.index, fe.J), fe.J, block.q,
                                      diagonal=block.structure == "diagonal", name=fe.name))
            where.append((fe, list(cols), sb.A_z_inv))
    return blocks, where


def fit_laplace(design, nAGQ: int = 1):
    """Maximum likelihood of a GLMM design: glmer's Laplace (``nAGQ=1``) or AGQ fit.

    Parameters
    ----------
    design : Design
        A design of the bernoulli, binomial or poisson family (``design.family``, with
        ``design.trials`` and ``design.offset``).
    nAGQ : int
        1 (Laplace) or K > 1 nodes of adaptive Gauss–Hermite quadrature (one scalar factor).

    Returns
    -------
    REMLFit
        ``method`` ``"Laplace"`` or ``"AGQ(K)"``, ``criterion`` glmer's deviance,
        ``sigma`` None, ``theta`` lme4's θ (σ = 1) in the design's block order.
    """
    import pandas as pd

    from bayesmix.families import GAUSSIAN
    from bayesmix.reml.profiled import theta_from_covariance
    from bayesmix.reml.result import REMLFit

    family = getattr(design, "family", GAUSSIAN)
    if family.is_gaussian:
        raise ValueError("fit_laplace is for the bernoulli, binomial and poisson families; "
                         "a Gaussian model is fitted by fit_reml")
    sc = design.scaling
    X, _, _ = sc.standardize(design.atoms, design.y)
    offset = np.zeros(design.n) if getattr(design, "offset", None) is None else design.offset
    if sc.x_intercept is not None:
        offset = offset + sc.y_center  # η = o + m + X̃β̃ (families.link_centre)
    blocks, where = glmm_blocks(design)
    res = fit_glmm(X, design.y, blocks, family, trials=getattr(design, "trials", None),
                   offset=offset, nAGQ=nAGQ)
    labels = [label for fe in design.effects for label in fe.labels]
    pos = {label: i for i, label in enumerate(labels)}
    cov = np.zeros((len(labels), len(labels)))
    u_factors = {fe.name: np.zeros((fe.J, fe.q)) for fe in design.effects}
    thetas = []
    for blk, (fe, cols, a_inv), sd, corr, modes in zip(blocks, where, res.sd, res.corr,
                                                     res.modes, strict=True):
        cov_b = a_inv @ (np.nan_to_num(corr) * np.outer(sd, sd)) @ a_inv.T
        idx = [pos[fe.labels[c]] for c in cols]
        cov[np.ix_(idx, idx)] = cov_b
        u_factors[fe.name][:, cols] = modes @ a_inv.T
        thetas.append(np.sqrt(np.diag(cov_b)) if blk.diagonal
                      else theta_from_covariance(cov_b, 1.0))
    sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.clip(cov / np.outer(sd, sd), -1.0, 1.0)
    corr[np.outer(sd, sd) == 0] = np.nan
    np.fill_diagonal(corr, 1.0)
    vcov = sc.vcov_from_std(res.vcov)
    beta = sc.beta_from_std(res.beta)
    fixed = list(design.fixed_names)
    u_frames = {
        fe.name: pd.DataFrame(u_factors[fe.name],
                              index=pd.Index(fe.grouping.levels, name=fe.name),
                              columns=list(fe.labels))
        for fe in design.effects
    }
    single = design.single_factor
    return REMLFit(
        design=design,
        method="Laplace" if res.nagq == 1 else f"AGQ({res.nagq})",  # type: ignore[arg-type]
        beta=pd.Series(beta, index=fixed, name="estimate"),
        se=pd.Series(np.sqrt(np.diag(vcov)), index=fixed, name="se"),
        vcov=pd.DataFrame(vcov, index=fixed, columns=fixed),
        u=(u_frames[design.effects[0].name].rename_axis(design.spec.cluster) if single
           else pd.DataFrame()),
        sd_u=pd.Series(sd, index=labels, name="sd"),
        corr_u=pd.DataFrame(corr, index=labels, columns=labels),
        sigma=None,  # type: ignore[arg-type]
        theta=np.concatenate(thetas),
        criterion=float(res.deviance),
        loglik=-0.5 * float(res.deviance),
        converged=res.converged,
        singular=any(res.singular),
        messages=res.messages,
        source="bayesmix",
        formula=design.spec.to_formula(),
        nobs=design.n,
        origin="bayesmix",
        u_factors=u_frames,
    )
