"""Maximum likelihood of a GLMM by glmer's two stages, on arrays and for a Design.

:class:`~bayesmix.reml.laplace.LaplaceProblem` gives the deviance; this module minimises it as
lme4's ``glmer`` does for ``nAGQ ≥ 1``:

1. stage 1 (lme4's nAGQ = 0 step): θ alone, with β updated inside PIRLS (the joint mode of
   (ũ, β)), from Λ_b = I;
2. stage 2: (θ, β) jointly on the Laplace deviance D(θ, β) (``nAGQ = 1``) or the adaptive
   Gauss–Hermite deviance D_K (``nAGQ = K > 1``), from stage 1's optimum.

Stage 1 uses SciPy's COBYQA (the BOBYQA family glmer uses) to a radius of 1e-4, stage 2
:func:`bayesmix.reml.laplace_opt.minimize_deviance` (COBYQA to 1e-6, then Newton steps on
central differences; the diagonal of every Λ_b bounded below by 0; lme4's convergence checks).
BLAS runs on one thread during the fit (its matrices are small; on a loaded two-core machine
threads made each Cholesky factorisation ~30x slower).

**Standard errors** are glmer's default (``vcov.merMod(use.hessian = TRUE)``): the β block of
``2 H⁻¹``, H the Hessian of the deviance over (θ, β) at the optimum by lme4's ``deriv12``
stencil (central differences, here with step 1e-4 · max(1, |x|) on the standardised scale).
Where an element of θ sits on its bound 0, lme4's finite differences fail and it falls back to
``(R_XᵀR_X)⁻¹`` at the mode (the Schur complement of :meth:`LaplaceProblem.rx_vcov`); so does
this module.

**glmer's own error.**  Here PIRLS runs to a Newton decrement of 1e-9 and H is factored at the
final mode, so the deviance is the Laplace deviance to ~1e-12.  glmer stops PIRLS on the
relative change of the penalised deviance (``tolPwrss``; the pinned references use 1e-10),
which leaves its deviance function above the Laplace deviance by up to ~5e-5 (measured:
grouseticks 1780.5427070 against 1780.5426602 at glmer's optimum, guimmun 2758.0797415 against
2758.0796939; with ``tolPwrss = 1e-14`` glmer's deviance function gives this module's values
to 1e-11, and its refit this module's optimum).  In crossed_poisson its deviance function
(both tolPwrss) differs from the Laplace deviance by ~1.3e-7, not smoothly at the scale of
``deriv12``'s step 1e-4: glmer's SE of x, 0.0139090, is 0.2 % below the 0.0139375 here, and
glmer's own deviance function (``tolPwrss = 1e-14``) with step 1e-3 gives 0.0139377.

Wall time (a shared 2-core machine with another job on one core; one fit after a warm-up
call, the median of 3; R 4.2.2 with reference BLAS, lme4 1.1-31 ``glmer`` with its default
control in ``system.time``, in the same run: ``python benchmarks/laplace.py``).

====================================================  ===========  ============  =====
model                                                 glmer        fit_laplace   ratio
====================================================  ===========  ============  =====
cbpp, binomial, ``(1 | herd)`` (56 rows)              0.12 s       0.25 s        2.1
grouseticks, Poisson, 3 nested factors (403 rows)     0.77 s       1.48 s        1.9
contraception, Bernoulli, ``(1 + urban | district)``  2.05 s       0.93 s        0.46
guimmun, Bernoulli, ``(1 | comm/mom)`` (2159 rows)    1.22 s       0.86 s        0.71
====================================================  ===========  ============  =====

An evaluation costs a few PIRLS steps, each a few ``np.bincount`` over index maps fixed once
(:mod:`bayesmix.reml.laplace_factor`) and one dense Cholesky of the Schur complement (181
columns for grouseticks, 161 for guimmun); COBYQA's own overhead (~5 ms an iteration) is
about a third of the time.  The load made single timings vary by up to 2x (glmer on
grouseticks 0.8–1.4 s, this module 1.5–2.2 s); before this scheme grouseticks took 80–330 s.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from bayesmix.families import Family
from bayesmix.reml.blocked import SINGULAR_TOL, BlockArrays
from bayesmix.reml.laplace import LaplaceProblem
from bayesmix.reml.laplace_opt import minimize_deviance

STAGE1_RADIUS = 1e-4
"""COBYQA's final trust-region radius in stage 1 (its optimum only starts stage 2)."""


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


def saturated_terms(family: Family, y: np.ndarray,
                    trials: np.ndarray | None = None) -> np.ndarray:
    """The saturated model's log-likelihood per row, log p(y_i | μ_i = y_i), shape (n,).

    ``k log(k/n) + (n − k) log(1 − k/n) + log C(n, k)`` (binomial, 0 log 0 = 0) or
    ``y log y − y − log y!`` (Poisson).
    """
    y = np.asarray(y, dtype=float)
    if family.link == "logit":
        n = np.ones_like(y) if trials is None else np.asarray(trials, dtype=float)
        p = y / n
        const = special.gammaln(n + 1) - special.gammaln(y + 1) - special.gammaln(n - y + 1)
        return special.xlogy(y, p) + special.xlogy(n - y, 1 - p) + const
    return special.xlogy(y, y) - y - special.gammaln(y + 1)


def saturated_loglik(family: Family, y: np.ndarray, trials: np.ndarray | None = None) -> float:
    """Σ_i log p(y_i | μ_i = y_i): the saturated model's log-likelihood (summed terms)."""
    return float(np.sum(saturated_terms(family, y, trials)))


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
    with _one_blas_thread():
        return _fit(prob, family, y, trials, nagq)


def _one_blas_thread():
    """BLAS on one thread: its matrices are small, and threads only contend (measured 30x)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a dependency of pymc
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _fit(prob: LaplaceProblem, family: Family, y, trials, nagq: int) -> GLMMFit:
    k = prob.n_theta
    # Stage 1 only gives stage 2 its start: COBYQA to a moderate radius, no polish.
    bounds = optimize.Bounds(np.where(np.isfinite(prob.lower), prob.lower, -np.inf), np.inf)
    opt1 = optimize.minimize(prob.deviance0, prob.start, method="COBYQA", bounds=bounds,
                             options={"final_tr_radius": STAGE1_RADIUS,
                                      "maxfev": 200 * k + 200})
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
    opt = minimize_deviance(dev, lower, x0)
    theta, beta = opt.x[:k], opt.x[k:]
    md = prob.mode(theta, beta)
    messages = list(opt.messages)
    if not opt.converged:
        messages.insert(0, "The ML optimiser did not converge; the numbers are not estimates.")
    at_bound = opt.at_bound[:k]
    hess_ok = False
    vcov = np.full((prob.p, prob.p), np.nan)
    if not at_bound.any():
        try:
            inv = np.linalg.inv(opt.hessian)[k:, k:]
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
