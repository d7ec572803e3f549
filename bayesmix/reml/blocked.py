"""Profiled REML / ML for any random-effects structure: nested, crossed and ``||`` blocks.

The model, on arrays (no formula, no scaling)::

    y = Xβ + Σ_b Z_b b_b + ε,   ε ~ N(0, σ² I_n),   b_bj ~ N(0, σ² Λ_b Λ_bᵀ)  iid over j = 1..J_b

Block b (one grouping factor with q_b random terms) has ``Z_b`` (n × J_b q_b) with columns
level-major (column ``j q_b + r`` = term r of level j, as lme4) and a relative covariance
factor Λ_b (q_b × q_b) that is lower triangular, θ_b = its lower triangle column by column,
or diagonal (an uncorrelated ``||`` block), θ_b = its diagonal. θ concatenates the θ_b in the
order the blocks are given; the diagonal of every Λ_b is bounded below by 0.

With ``Λ = blockdiag_b(I_{J_b} ⊗ Λ_b)``, ``Z = [Z_1 … Z_B]`` and spherical effects ``b = Λu``,
the penalised least squares problem of Bates et al. (2015) is the Cholesky factorisation of ::

    Ω(θ) = [ΛᵀZᵀZΛ + I   ΛᵀZᵀX   ΛᵀZᵀy]
           [XᵀZΛ         XᵀX     Xᵀy  ]  = L Lᵀ,    L lower triangular,
           [yᵀZΛ         yᵀX     yᵀy  ]

whose diagonal gives ``log|L_θ|²`` (the random-effects rows), ``log|R_X|²`` (the X rows) and
``r²(θ) = L[-1, -1]²`` (the penalised residual sum of squares), and whose last row gives β̂ and
û by one back-substitution (MixedModels.jl's blocked scheme). The block with the most columns
is put first: its ``A₁ = Λ₁ᵀZ₁ᵀZ₁Λ₁ + I`` is block-diagonal (one q₁ × q₁ block per level, since
every row lies in one level), so it is factored level by level, ``A₁ = L₁L₁ᵀ``. With
``W = [Z_rest, X, y]`` and ``D = blockdiag(I_{J_b} ⊗ Λ_b for b ≥ 2, I_{p+1})`` the rest is
the dense Schur complement ::

    G₀ = L₁⁻¹ Λ₁ᵀ Z₁ᵀ W                (sparse, J₁q₁ × s,  s = Σ_{b≥2} J_b q_b + p + 1)
    S  = Dᵀ (WᵀW − G₀ᵀG₀) D + diag(I, 0, 0) = L_S L_Sᵀ     (dense Cholesky)

(``L = [[L₁, 0], [(G₀D)ᵀ, L_S]]``), from ``Z₁ᵀZ₁``, ``Z₁ᵀW`` and ``WᵀW`` computed once: an
evaluation costs a product of size nnz(Z₁ᵀW) and O(s³), not O(n). The criteria (lme4's
``deviance`` and ``REMLcrit``)::

    ML:    d(θ)   = log|L_θ|² + n (1 + log(2π r²/n))
    REML:  d_R(θ) = log|L_θ|² + log|R_X|² + (n − p)(1 + log(2π r²/(n − p)))

At θ̂: ``σ̂² = r²/n`` (ML) or ``r²/(n − p)`` (REML), ``Cov(β̂) = σ̂² (R_XᵀR_X)⁻¹``,
``Cov(b_bj) = σ̂² Λ_bΛ_bᵀ`` and the conditional modes ``b̂_bj = Λ_b û_bj``.

References
----------
Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects models
using lme4. Journal of Statistical Software 67(1), section 3.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import scipy.sparse as sp
from scipy import linalg

from bayesmix.errors import BayesmixError
from bayesmix.reml.optimize import minimize_criterion
from bayesmix.reml.profiled import (
    Method,
    PLSSolution,
    theta_index,
    theta_lower_bounds,
    theta_start,
)

SINGULAR_TOL = 1e-4
"""Diagonal elements of θ below this count as 0 (lme4's ``isSingular(tol = 1e-4)``)."""


@dataclass(frozen=True)
class BlockArrays:
    """One random-effects block: a grouping factor and its q random terms.

    Attributes
    ----------
    Z : scipy.sparse array or matrix, shape (n, J q)
        Level-major columns: column ``j q + r`` is term r of level j (0 outside level j).
    J : int
        Number of levels.
    q : int
        Number of random terms.
    diagonal : bool
        Uncorrelated terms (lme4's ``||``): Λ diagonal, θ_b its q diagonal entries.
    name : str
        Label used in messages (e.g. ``"Subject"``).
    """

    Z: sp.sparray | sp.spmatrix
    J: int
    q: int
    diagonal: bool = False
    name: str = ""

    @property
    def n_theta(self) -> int:
        """Length of θ_b: q if diagonal, q (q + 1) / 2 otherwise."""
        return self.q if self.diagonal else self.q * (self.q + 1) // 2

    def lam(self, theta_b: np.ndarray) -> np.ndarray:
        """Λ_b (q × q) from θ_b (lower triangle column by column, or the diagonal)."""
        if self.diagonal:
            return np.diag(np.asarray(theta_b, dtype=float))
        lam = np.zeros((self.q, self.q))
        lam[theta_index(self.q)] = theta_b
        return lam

    def lower(self) -> np.ndarray:
        """Lower bounds of θ_b: 0 on Λ_b's diagonal, −∞ below it."""
        return np.zeros(self.q) if self.diagonal else theta_lower_bounds(self.q)

    def start(self) -> np.ndarray:
        """lme4's start Λ_b = I."""
        return np.ones(self.q) if self.diagonal else theta_start(self.q)

    def theta_diagonal(self) -> np.ndarray:
        """Boolean mask of θ_b's elements on Λ_b's diagonal, shape (n_theta,)."""
        if self.diagonal:
            return np.ones(self.q, bool)
        rows, cols = theta_index(self.q)
        return rows == cols


@dataclass(frozen=True)
class BlockedSolution:
    """The penalised least squares solution at one θ.

    Attributes
    ----------
    theta : ndarray, shape (k,)
    lams : tuple of ndarray, shape (q_b, q_b) each
        Λ_b, in the blocks' given order.
    beta : ndarray, shape (p,)
    u : tuple of ndarray, shape (J_b, q_b) each
        Spherical conditional modes û_b.
    b : tuple of ndarray, shape (J_b, q_b) each
        Conditional modes ``b̂_bj = Λ_b û_bj`` (the scale of the given Z_b).
    rx : ndarray, shape (p, p)
        Lower Cholesky factor of ``R_XᵀR_X`` (``R_X = rx.T``).
    pwrss : float
        r²(θ).
    logdet_l, logdet_rx : float
        log|L_θ|² and log|R_X|².
    n, p : int
    """

    theta: np.ndarray
    lams: tuple[np.ndarray, ...]
    beta: np.ndarray
    u: tuple[np.ndarray, ...]
    b: tuple[np.ndarray, ...]
    rx: np.ndarray
    pwrss: float
    logdet_l: float
    logdet_rx: float
    n: int
    p: int

    # σ̂, the criterion and Cov(β̂) are the one-factor formulas on the same attributes.
    sigma = PLSSolution.sigma
    criterion = PLSSolution.criterion
    vcov_beta = PLSSolution.vcov_beta


class BlockedProblem:
    """Cross-products of ``[Z, X, y]`` computed once; the PLS solution and criterion at any θ.

    Parameters
    ----------
    X : ndarray, shape (n, p)
    y : ndarray, shape (n,)
    blocks : sequence of BlockArrays
        The random-effects blocks; θ follows their order.
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, blocks: Sequence[BlockArrays]) -> None:
        X = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float)
        if X.ndim != 2 or y.shape != (X.shape[0],) or not blocks:
            raise ValueError("need X (n, p), y (n,) and at least one block")
        self.blocks = tuple(blocks)
        self.n, self.p = X.shape
        for blk in self.blocks:
            if blk.Z.shape != (self.n, blk.J * blk.q):
                raise ValueError(f"block {blk.name!r}: Z must be (n, J q) = "
                                 f"({self.n}, {blk.J * blk.q}), not {blk.Z.shape}")
        sizes = np.cumsum([0] + [blk.n_theta for blk in self.blocks])
        self.slices = tuple(slice(int(a), int(b)) for a, b in pairwise(sizes))
        self.lower = np.concatenate([blk.lower() for blk in self.blocks])
        self.start = np.concatenate([blk.start() for blk in self.blocks])
        # The block with the most columns first (stable), factored level by level.
        self.order = sorted(range(len(self.blocks)), key=lambda i: -self.blocks[i].Z.shape[1])
        first = self.blocks[self.order[0]]
        rest = [self.blocks[i] for i in self.order[1:]]
        z1 = sp.csc_array(first.Z)
        ztz = sp.coo_array(z1.T @ z1)
        keep = ztz.data != 0
        r, c, v = ztz.row[keep], ztz.col[keep], ztz.data[keep]
        if np.any(r // first.q != c // first.q):
            raise ValueError(f"block {first.name!r}: a row of Z lies in more than one level")
        self._ztz1 = np.zeros((first.J, first.q, first.q))
        self._ztz1[r // first.q, r % first.q, c % first.q] = v
        w = sp.hstack([sp.csc_array(blk.Z) for blk in rest]
                      + [sp.csc_array(X), sp.csc_array(y[:, None])], format="csc")
        self._c = sp.csr_array(z1.T @ w)  # Z₁ᵀ[Z_rest, X, y]
        self._k = sp.csr_array(w.T @ w).toarray()  # [Z_rest, X, y]ᵀ[Z_rest, X, y]
        self.m_rest = sum(blk.J * blk.q for blk in rest)

    def solve(self, theta: np.ndarray) -> BlockedSolution | None:
        """The PLS solution at θ (module docstring); None where Ω(θ) is not positive definite.

        Parameters
        ----------
        theta : ndarray, shape (k,)

        Returns
        -------
        BlockedSolution or None
        """
        theta = np.asarray(theta, dtype=float)
        lams = tuple(blk.lam(theta[sl]) for blk, sl in zip(self.blocks, self.slices, strict=True))
        first = self.blocks[self.order[0]]
        lam1, q1, j1 = lams[self.order[0]], first.q, first.J
        a1 = np.einsum("ba,jbc,cd->jad", lam1, self._ztz1, lam1) + np.eye(q1)
        try:
            l1 = np.linalg.cholesky(a1)  # (J₁, q₁, q₁)
        except np.linalg.LinAlgError:
            return None
        m1 = np.linalg.solve(l1, np.broadcast_to(lam1.T, a1.shape))  # L_j⁻¹ Λ₁ᵀ
        if q1 == 1:  # G₀ = L₁⁻¹Λ₁ᵀ Z₁ᵀ[Z_rest, X, y]: a row scaling
            c = self._c
            g = sp.csr_array((c.data * np.repeat(m1.ravel(), np.diff(c.indptr)), c.indices,
                              c.indptr), shape=c.shape)
        else:
            g = sp.csr_array(sp.bsr_array((m1, np.arange(j1), np.arange(j1 + 1)),
                                          shape=(j1 * q1, j1 * q1)).tocsr() @ self._c)
        # S = Dᵀ (K − G₀ᵀG₀) D + diag(I, 0),  D = blockdiag(I_{J_b} ⊗ Λ_b over the rest, I_{p+1})
        omega = self._k - sp.csr_array(g.T @ g).toarray()
        off = 0
        for i in self.order[1:]:
            blk, lam = self.blocks[i], lams[i]
            sl = slice(off, off + blk.J * blk.q)
            omega[:, sl] = (omega[:, sl].reshape(-1, blk.J, blk.q) @ lam).reshape(-1, sl.stop - off)
            omega[sl] = (lam.T @ omega[sl].reshape(blk.J, blk.q, -1)).reshape(sl.stop - off, -1)
            off = sl.stop
        idx = np.arange(self.m_rest)
        omega[idx, idx] += 1.0
        try:
            ls = linalg.cholesky(omega, lower=True, overwrite_a=True)
        except (linalg.LinAlgError, ValueError):  # not positive definite, or not finite
            return None
        r = ls[-1, -1]
        if not np.isfinite(r) or r <= 0.0:
            return None
        x = linalg.solve_triangular(ls[:-1, :-1], ls[-1, :-1], lower=True, trans="T")
        us, bs = [np.empty(0)] * len(self.blocks), [np.empty(0)] * len(self.blocks)
        off = 0
        for i in self.order[1:]:
            blk = self.blocks[i]
            us[i] = x[off: off + blk.J * blk.q].reshape(blk.J, blk.q)
            bs[i] = us[i] @ lams[i].T  # b_bj = Λ_b u_bj
            off += blk.J * blk.q
        # L₁ᵀ u₁ = G₀ D (e_s − [x; 0]) = G₀ [−b_rest; −β; 1]
        rhs = g @ np.concatenate([-bs[i].ravel() for i in self.order[1:]]
                                 + [-x[self.m_rest:], [1.0]])
        us[self.order[0]] = np.linalg.solve(np.swapaxes(l1, 1, 2),
                                            rhs.reshape(j1, q1, 1))[..., 0]
        bs[self.order[0]] = us[self.order[0]] @ lam1.T
        diag_s = np.log(np.diag(ls))
        rx = ls[self.m_rest: self.m_rest + self.p, self.m_rest: self.m_rest + self.p]
        return BlockedSolution(
            theta=theta.copy(), lams=lams, beta=x[self.m_rest:], u=tuple(us),
            b=tuple(bs), rx=rx.copy(),
            pwrss=float(r * r),
            logdet_l=float(2 * np.log(np.diagonal(l1, axis1=1, axis2=2)).sum()
                           + 2 * diag_s[: self.m_rest].sum()),
            logdet_rx=float(2 * diag_s[self.m_rest: self.m_rest + self.p].sum()),
            n=self.n, p=self.p,
        )

    def criterion(self, theta: np.ndarray, method: Method = "REML") -> float:
        """d_R(θ) (REML) or d(θ) (ML); +∞ where the PLS step has no solution."""
        sol = self.solve(theta)
        return np.inf if sol is None else sol.criterion(method)


@dataclass(frozen=True)
class BlockedREML:
    """REML (or ML) estimates of a model with several random-effects blocks.

    Attributes
    ----------
    method : {"REML", "ML"}
    beta : ndarray, shape (p,)
    vcov : ndarray, shape (p, p)
        ``Cov(β̂) = σ̂² (R_XᵀR_X)⁻¹``.
    sigma : float
        Residual SD σ̂.
    theta : ndarray, shape (k,)
        θ̂ (lme4's ``getME(fit, "theta")`` for the same block order).
    criterion : float
        REML criterion (lme4's ``REMLcrit``) or ML deviance.
    loglik : float
        ``−criterion / 2``.
    sd : tuple of ndarray, shape (q_b,) each
        SDs of each block's terms, ``sqrt(diag(σ̂² Λ_bΛ_bᵀ))``.
    corr : tuple of ndarray, shape (q_b, q_b) each
        Their correlations (NaN off the diagonal where an SD is 0).
    modes : tuple of ndarray, shape (J_b, q_b) each
        Conditional modes ``b̂_bj = Λ_b û_bj`` (lme4's ``ranef``).
    converged : bool
    singular : tuple of bool
        Per block: a diagonal element of θ_b below :data:`SINGULAR_TOL` (lme4's ``isSingular``).
    messages : tuple of str
    evaluations : int
        Criterion evaluations the optimiser used.
    """

    method: Method
    beta: np.ndarray
    vcov: np.ndarray
    sigma: float
    theta: np.ndarray
    criterion: float
    loglik: float
    sd: tuple[np.ndarray, ...]
    corr: tuple[np.ndarray, ...]
    modes: tuple[np.ndarray, ...]
    converged: bool
    singular: tuple[bool, ...]
    messages: tuple[str, ...]
    evaluations: int

    @property
    def se(self) -> np.ndarray:
        """Standard errors of β̂, ``sqrt(diag(vcov))``, shape (p,)."""
        return np.sqrt(np.diag(self.vcov))

    @property
    def is_singular(self) -> bool:
        """Whether any block's covariance is singular."""
        return any(self.singular)


def fit_blocked(
    X: np.ndarray,
    y: np.ndarray,
    blocks: Sequence[BlockArrays],
    method: Method = "REML",
    *,
    start: np.ndarray | None = None,
) -> BlockedREML:
    """Fit ``y = Xβ + Σ_b Z_b b_b + ε`` by REML or ML (lme4's ``lmer`` numbers).

    Minimises the profiled criterion (module docstring) with
    :func:`bayesmix.reml.optimize.minimize_criterion` from lme4's start Λ_b = I (or ``start``).

    Parameters
    ----------
    X : ndarray, shape (n, p)
    y : ndarray, shape (n,)
    blocks : sequence of BlockArrays
    method : {"REML", "ML"}
    start : ndarray, shape (k,), optional
        Starting θ.

    Returns
    -------
    BlockedREML
    """
    if method not in ("REML", "ML"):
        raise BayesmixError(f"method must be 'REML' or 'ML', not {method!r}")
    prob = BlockedProblem(X, y, blocks)
    first = prob.start if start is None else np.asarray(start, dtype=float)
    opt = minimize_criterion(lambda th: prob.criterion(th, method), prob.lower, first,
                             base=prob.start, trust_region=True)
    sol = prob.solve(opt.theta)
    if sol is None or not np.isfinite(opt.criterion):
        raise BayesmixError(
            "the REML criterion cannot be evaluated for this model and data: y is fitted "
            "exactly, or X and Z are numerically dependent"
        )
    sigma = sol.sigma(method)
    sds, corrs, singular = [], [], []
    messages = list(opt.messages)
    if not opt.converged:
        messages.insert(0, "The REML optimiser did not converge; the numbers are not estimates.")
    for k, (blk, lam, sl) in enumerate(zip(prob.blocks, sol.lams, prob.slices, strict=True)):
        cov = sigma**2 * lam @ lam.T
        sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.clip(cov / np.outer(sd, sd), -1.0, 1.0)
        corr[np.outer(sd, sd) == 0] = np.nan
        np.fill_diagonal(corr, 1.0)
        sing = bool(np.any(opt.theta[sl][blk.theta_diagonal()] < SINGULAR_TOL))
        if sing:
            messages.append(f"Singular fit: the covariance of block {blk.name or k} has an SD "
                            "at 0 or a correlation of ±1 (a boundary estimate)")
        sds.append(sd)
        corrs.append(corr)
        singular.append(sing)
    crit = sol.criterion(method)
    return BlockedREML(
        method=method, beta=sol.beta, vcov=sol.vcov_beta(method), sigma=sigma,
        theta=sol.theta, criterion=crit, loglik=-0.5 * crit, sd=tuple(sds),
        corr=tuple(corrs), modes=sol.b, converged=bool(opt.converged),
        singular=tuple(singular), messages=tuple(messages), evaluations=opt.evaluations,
    )
