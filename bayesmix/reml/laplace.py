"""The Laplace and adaptive Gauss–Hermite deviance of a GLMM (lme4's ``glmer``), on arrays.

The model (families of :mod:`bayesmix.families`, all with their canonical link)::

    η = o + Xβ + Σ_b Z_b b_b,     y_i | η_i ~ Bernoulli / Binomial(n_i) / Poisson(e^{η_i}),
    b_b = (I_{J_b} ⊗ Λ_b) u_b,    u ~ N(0, I_m)       (spherical effects, m = Σ_b J_b q_b)

with o the offset (log t_i of a Poisson exposure), Z_b (n × J_b q_b) the unit-major columns of
block b and Λ_b its relative covariance factor (θ_b, as :mod:`bayesmix.reml.blocked`; σ = 1, so
``Cov(b_bj) = Λ_bΛ_bᵀ``).

**PIRLS** (lme4's ``pwrssUpdate``).  Given θ (and β, or with β free: lme4's nAGQ = 0 stage) the
conditional mode ũ minimises the penalised deviance ``pdev(u, β) = −2 Σ_i log p(y_i | η_i) +
‖u‖²``.  For a canonical link its gradient and Hessian (halved) are ::

    g = [ΛᵀZᵀ(y − E y) − u ; Xᵀ(y − E y)],    H = [ΛᵀZᵀWZΛ + I   ΛᵀZᵀWX]
                                                  [XᵀWZΛ         XᵀWX  ],    W = diag(Var y_i)

and each Newton step ``δ = H⁻¹g`` is halved (up to 10 times) while it raises pdev.  The steps
stop when the decrement ``gᵀH⁻¹g`` falls below 1e-9 (then one more step is taken and H is
factored at the final point) — tighter than lme4's ``tolPwrss`` = 1e-7 relative change, so the
mode and log|L|² below are those of the exact mode.

**Laplace deviance** (lme4's ``glmerLaplace``: ``aic + ‖ũ‖² + ldL2``)::

    D(θ, β) = −2 Σ_i log p(y_i | η̃_i) + ‖ũ‖² + log|L|²,    LLᵀ = ΛᵀZᵀWZΛ + I  (W at ũ)

**AGQ** (``nAGQ = K > 1``, one scalar factor: every unit j is its own one-dimensional
integral).  With ``σ̂_j = 1 / L_jj`` and the K-point Gauss–Hermite rule (z_k, w_k) of the
standard normal (Σ w_k = 1)::

    D_K(θ, β) = Σ_j [ log L_jj² − 2 log Σ_k w_k exp(h_j(ũ_j + σ̂_j z_k) − (ũ_j + σ̂_j z_k)²/2
                      + z_k²/2) ],      h_j(u) = Σ_{i ∈ j} log p(y_i | η_i(u))

which is the Laplace deviance for K = 1 and the exact −2 log ∫ p(y | u) φ(u) du as K grows.

**Linear algebra** (:mod:`bayesmix.reml.laplace_factor`).  The block with the most columns
(b = 1) is block-diagonal in ``ΛᵀZᵀWZΛ + I`` (one q₁ × q₁ block per level) and is factored
level by level, ``A₁ = L₁L₁ᵀ``; with ``R = [Z_rest Λ_rest, X (β free)]`` the rest is the
Schur complement ::

    G = L₁⁻¹ Λ₁ᵀZ₁ᵀ W R,    S = RᵀWR − GᵀG + diag(I_{m_rest}, 0) = L_S L_Sᵀ

whose nonzeros are scattered by index maps fixed once per problem (every row of Z lies in one
level of every block), so ``log|L|² = 2 Σ log diag L₁ + log|S_uu|``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import scipy.sparse as sp
from numpy.polynomial.hermite_e import hermegauss
from scipy import linalg
from scipy.special import logsumexp

from bayesmix.families import Family
from bayesmix.reml.blocked import BlockArrays
from bayesmix.reml.laplace_factor import Factor, Pattern, factor, solve

_MAXIT = 60


def _dense_block(blk: BlockArrays, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(Zq (n, q), level index (n,)) of a unit-major block (rows with no entry: level 0)."""
    coo = sp.coo_array(blk.Z)
    zq, index = np.zeros((n, blk.q)), np.zeros(n, dtype=np.int64)
    level = coo.col // blk.q
    index[coo.row] = level
    if np.any(index[coo.row] != level):
        raise ValueError(f"block {blk.name!r}: a row of Z lies in more than one level")
    zq[coo.row, coo.col % blk.q] = coo.data
    return zq, index


@functools.lru_cache(maxsize=32)
def gh_rule(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Hermite nodes and weights for the standard normal (Σ w = 1), shape (k,) each."""
    z, w = hermegauss(k)
    return z, w / np.sqrt(2.0 * np.pi)


@dataclass(frozen=True)
class Mode:
    """The conditional mode at one (θ, β) and what the deviance needs.

    Attributes
    ----------
    u : ndarray, shape (m,)
        Spherical conditional modes ũ, blocks in their given order, each unit-major.
    beta : ndarray, shape (p,)
        β (given, or its joint mode when β is free).
    eta : ndarray, shape (n,)
        Linear predictor at the mode.
    loglik : float
        Σ_i log p(y_i | η_i).
    logdet : float
        log|L|² of ΛᵀZᵀWZΛ + I at the mode.
    l1 : ndarray, shape (J₁, q₁, q₁)
        L₁ of the first factored block (the AGQ reads σ̂_j from it).
    iterations : int
    """

    u: np.ndarray
    beta: np.ndarray
    eta: np.ndarray
    loglik: float
    logdet: float
    l1: np.ndarray
    iterations: int

    @property
    def deviance(self) -> float:
        """The Laplace deviance −2 Σ log p + ‖ũ‖² + log|L|²."""
        return float(-2.0 * self.loglik + self.u @ self.u + self.logdet)


class LaplaceProblem:
    """A GLMM's arrays; the PIRLS mode, Laplace and AGQ deviance at any θ and β.

    Parameters
    ----------
    X : ndarray, shape (n, p)
    y : ndarray, shape (n,)
        0/1 (Bernoulli), successes k_i (binomial), counts (Poisson).
    blocks : sequence of BlockArrays
        Random-effects blocks (unit-major Z_b); θ follows their order.
    family : Family
        Bernoulli, binomial or Poisson (canonical links).
    trials : ndarray, shape (n,), optional
        n_i of a binomial outcome.
    offset : ndarray, shape (n,), optional
        o_i added to η (log exposure, and any constant).
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, blocks: Sequence[BlockArrays],
                 family: Family, trials: np.ndarray | None = None,
                 offset: np.ndarray | None = None) -> None:
        if family.link not in ("logit", "log"):
            raise ValueError(f"the Laplace fit takes the bernoulli, binomial and poisson "
                             f"families, not {family.name!r}")
        self.X = np.ascontiguousarray(X, dtype=float)
        self.y = np.asarray(y, dtype=float)
        self.n, self.p = self.X.shape
        self.family = family
        self.trials = (np.ones(self.n) if trials is None
                       else np.asarray(trials, dtype=float))
        self.offset = np.zeros(self.n) if offset is None else np.asarray(offset, dtype=float)
        self.blocks = tuple(blocks)
        if not self.blocks:
            raise ValueError("need at least one random-effects block")
        zero = np.zeros(self.n)
        self._const = float(np.sum(family.loglik(self.y, zero, self.trials)
                                   - self._kernel(zero)))
        sizes = np.cumsum([0] + [blk.n_theta for blk in self.blocks])
        self.slices = tuple(slice(int(a), int(b)) for a, b in pairwise(sizes))
        self.lower = np.concatenate([blk.lower() for blk in self.blocks])
        self.start = np.concatenate([blk.start() for blk in self.blocks])
        self.dense = [_dense_block(blk, self.n) for blk in self.blocks]
        self.order = sorted(range(len(self.blocks)), key=lambda i: -self.blocks[i].Z.shape[1])
        self.widths = [blk.J * blk.q for blk in self.blocks]
        self.m = int(sum(self.widths))
        # Position of each block's u within the internal (factored) order, and back.
        offs, o = {}, 0
        for i in self.order:
            offs[i] = o
            o += self.widths[i]
        self._perm = np.concatenate([np.arange(offs[i], offs[i] + self.widths[i])
                                     for i in range(len(self.blocks))])
        first = self.blocks[self.order[0]]
        self.q1, self.j1 = first.q, first.J
        self.m_rest = self.m - self.widths[self.order[0]]
        self._agg = [sp.csr_array((np.ones(self.n), (idx, np.arange(self.n))),
                                  shape=(blk.J, self.n))
                     for blk, (_, idx) in zip(self.blocks, self.dense, strict=True)]
        self._p1 = self._agg[self.order[0]]
        self._patterns: dict[bool, Pattern | None] = {}
        self._warm: dict[bool, tuple[np.ndarray, np.ndarray]] = {}

    # ------------------------------------------------------------------ pieces
    @property
    def n_theta(self) -> int:
        """Length of θ."""
        return int(self.lower.size)

    def lams(self, theta: np.ndarray) -> list[np.ndarray]:
        """Λ_b per block, from θ."""
        return [blk.lam(theta[sl]) for blk, sl in zip(self.blocks, self.slices, strict=True)]

    def _kernel(self, eta: np.ndarray) -> np.ndarray:
        """Log p(y | η) without its constant: y η − n log(1 + e^η), or y η − e^η."""
        y = self.y if eta.ndim == 1 else self.y[:, None]
        if self.family.link == "logit":
            n = self.trials if eta.ndim == 1 else self.trials[:, None]
            return y * eta - n * np.logaddexp(0.0, eta)
        return y * eta - np.exp(eta)

    def _moments(self, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """E y and Var y (the IRLS weights W) at η."""
        if self.family.link == "logit":
            mu = 0.5 * (1.0 + np.tanh(0.5 * eta))
            return self.trials * mu, self.trials * mu * (1.0 - mu)
        mu = np.exp(eta)
        return mu, mu

    def loglik(self, eta: np.ndarray) -> float:
        """Σ_i log p(y_i | η_i), constants included (R's dbinom / dpois)."""
        return float(np.sum(self._kernel(eta)) + self._const)

    def _pattern(self, beta_free: bool) -> Pattern | None:
        """The index maps of the Schur complement (cached per β fixed / free)."""
        if beta_free not in self._patterns:
            cols, off = [], 0
            for i in self.order[1:]:
                q, idx = self.blocks[i].q, self.dense[i][1]
                cols.append(off + idx[:, None] * q + np.arange(q))
                off += self.widths[i]
            if beta_free:
                cols.append(np.broadcast_to(off + np.arange(self.p), (self.n, self.p)))
            pat = None
            if cols:
                pat = Pattern(self.dense[self.order[0]][1], self.j1, self.q1,
                              np.hstack(cols).astype(np.int64), self.m_rest)
            self._patterns[beta_free] = pat
        return self._patterns[beta_free]

    def _frame(self, theta: np.ndarray, beta_free: bool) -> dict:
        """Per-θ arrays: the rows of ZΛ per block (internal order) and R's row values."""
        lams = self.lams(np.asarray(theta, dtype=float))
        v = [self.dense[i][0] @ lams[i] for i in self.order]
        rest = v[1:] + ([self.X] if beta_free else [])
        return {"v": v, "lams": lams, "pat": self._pattern(beta_free),
                "vr": np.hstack(rest) if rest else None}

    def _zu(self, fr: dict, u: np.ndarray) -> np.ndarray:
        """ZΛu, shape (n,), for u in the internal order."""
        out, off = np.zeros(self.n), 0
        for vb, i in zip(fr["v"], self.order, strict=True):
            q, idx, width = self.blocks[i].q, self.dense[i][1], self.widths[i]
            out += np.einsum("nq,nq->n", vb, u[off: off + width].reshape(-1, q)[idx])
            off += width
        return out

    def _ztr(self, fr: dict, res: np.ndarray) -> np.ndarray:
        """ΛᵀZᵀres, shape (m,), internal order."""
        parts = []
        for vb, i in zip(fr["v"], self.order, strict=True):
            parts.append((self._agg[i] @ (vb * res[:, None])).ravel())
        return np.concatenate(parts)

    def _factor(self, fr: dict, w: np.ndarray) -> Factor | None:
        return factor(fr["pat"], self._p1, fr["v"][0], fr["vr"], w)

    def _solve(self, fr: dict, f: Factor, rhs: np.ndarray) -> np.ndarray:
        """H⁻¹ rhs through the blocked factor (module docstring)."""
        return solve(fr["pat"], f, rhs)

    # ------------------------------------------------------------------ PIRLS
    def mode(self, theta: np.ndarray, beta: np.ndarray | None = None) -> Mode | None:
        """PIRLS for ũ given θ and β, or for (ũ, β) jointly when ``beta`` is None.

        Returns None where the penalised deviance cannot be evaluated (non-finite η or W).
        """
        free = beta is None
        fr = self._frame(theta, free)
        start = self._warm.get(free)
        u = np.zeros(self.m) if start is None else start[0].copy()
        b = (start[1].copy() if free and start is not None
             else np.zeros(self.p) if free else np.asarray(beta, dtype=float))
        out = self._newton(fr, u, b, free)
        if out is None and start is not None:  # a bad warm start: from 0
            out = self._newton(fr, np.zeros(self.m),
                               np.zeros(self.p) if free else b, free)
        if out is None:
            return None
        u, b, eta, ll, f, it = out
        self._warm[free] = (u, b)
        return Mode(u=u[self._perm], beta=b, eta=eta, loglik=ll,
                    logdet=f.logdet(), l1=f.l1, iterations=it)

    def _newton(self, fr, u, b, free):
        base = self.offset + self.X @ b
        eta = base + self._zu(fr, u)
        with np.errstate(over="ignore", invalid="ignore"):
            ll = self.loglik(eta)
        pdev = -2.0 * ll + u @ u
        if not np.isfinite(pdev):
            return None
        last = False
        for it in range(1, _MAXIT + 1):
            ey, w = self._moments(eta)
            f = self._factor(fr, w)
            if f is None:
                return None
            if last:
                return u, b, eta, ll, f, it
            res = self.y - ey
            g = self._ztr(fr, res) - u
            if free:
                g = np.concatenate([g, self.X.T @ res])
            step = self._solve(fr, f, g)
            dec = float(g @ step)
            if not np.isfinite(dec):
                return None
            if dec < 1e-24:
                return u, b, eta, ll, f, it
            su, sb = step[: self.m], step[self.m:]
            t = 1.0
            for _ in range(11):
                un = u + t * su
                bn = b + t * sb if free else b
                eta_n = (self.offset + self.X @ bn if free else base) + self._zu(fr, un)
                with np.errstate(over="ignore", invalid="ignore"):
                    ll_n = self.loglik(eta_n)
                pdev_n = -2.0 * ll_n + un @ un
                if np.isfinite(pdev_n) and pdev_n <= pdev + 1e-12 * abs(pdev):
                    break
                t *= 0.5
            else:
                if dec < 1e-12 * max(1.0, abs(pdev)):  # rounding: at the mode already
                    return u, b, eta, ll, f, it
                return None
            u, b, eta, ll, pdev = un, bn, eta_n, ll_n, pdev_n
            if free:
                base = self.offset + self.X @ b
            last = dec < 1e-9
        return None

    # ------------------------------------------------------------------ deviances
    def deviance0(self, theta: np.ndarray) -> float:
        """Stage 1 (lme4's nAGQ = 0): the Laplace deviance at the joint mode of (ũ, β)."""
        md = self.mode(theta, None)
        return np.inf if md is None else md.deviance

    def deviance(self, theta: np.ndarray, beta: np.ndarray) -> float:
        """The Laplace deviance D(θ, β) (module docstring); +∞ where it cannot be evaluated."""
        md = self.mode(theta, beta)
        return np.inf if md is None else md.deviance

    def agq_deviance(self, theta: np.ndarray, beta: np.ndarray, nodes: int) -> float:
        """D_K(θ, β) for one scalar random-effects block (module docstring)."""
        if len(self.blocks) != 1 or self.blocks[0].q != 1:
            raise ValueError("adaptive Gauss-Hermite quadrature (nAGQ > 1) needs a single "
                             "grouping factor with one random term")
        md = self.mode(theta, beta)
        if md is None:
            return np.inf
        return self._agq(md, theta, nodes)

    def _agq(self, md: Mode, theta: np.ndarray, nodes: int) -> float:
        z, w = gh_rule(nodes)
        zq, idx = self.dense[0]
        lam = float(self.lams(theta)[0][0, 0])
        l1 = md.l1[:, 0, 0]
        sd = 1.0 / l1
        shift = (zq[:, 0] * lam * sd[idx])[:, None] * z[None, :]  # (n, K)
        with np.errstate(over="ignore", invalid="ignore"):
            ker = self._kernel(md.eta[:, None] + shift)
        h = self._p1 @ ker  # (J, K): Σ_{i ∈ j} log p without constants
        uk = md.u[:, None] + sd[:, None] * z[None, :]
        terms = h - 0.5 * uk**2 + 0.5 * z[None, :] ** 2 + np.log(w)[None, :]
        val = 2.0 * np.log(l1).sum() - 2.0 * logsumexp(terms, axis=1).sum() - 2.0 * self._const
        return float(val) if np.isfinite(val) else np.inf

    def rx_vcov(self, theta: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """``(R_XᵀR_X)⁻¹`` at the mode given (θ, β): lme4's ``unsc()`` (σ = 1), shape (p, p).

        R_XᵀR_X is the Schur complement ``XᵀWX − XᵀWZΛ (ΛᵀZᵀWZΛ + I)⁻¹ ΛᵀZᵀWX`` with W at ũ.
        """
        md = self.mode(theta, beta)
        if md is None:
            return np.full((self.p, self.p), np.nan)
        _, w = self._moments(md.eta)
        f = self._factor(self._frame(theta, True), w)
        if f is None:
            return np.full((self.p, self.p), np.nan)
        lx = f.schur.lx
        return linalg.cho_solve((lx, True), np.eye(self.p))


def fit_laplace(design, nAGQ: int = 1):
    """Glmer's ML fit of a GLMM design: :func:`bayesmix.reml.laplace_fit.fit_laplace`."""
    from bayesmix.reml.laplace_fit import fit_laplace as fit

    return fit(design, nAGQ=nAGQ)
