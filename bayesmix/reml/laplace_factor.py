"""The blocked factorisation of the PIRLS Hessian on a sparsity pattern fixed once per problem.

The Hessian of the penalised deviance (halved; :mod:`bayesmix.reml.laplace`) in the internal
column order — the block with the most columns first (index 1), then the other blocks' columns
("rest", m_rest of them), then X when β is free — is ::

    H = [A₁  C ]      A₁ = Λ₁ᵀZ₁ᵀWZ₁Λ₁ + I   (block-diagonal: one q₁ × q₁ block per level)
        [Cᵀ  B ],     C  = Λ₁ᵀZ₁ᵀWR,   B = RᵀWR + diag(I_{m_rest}, 0),   R = [Z_rest Λ_rest, X]

Every row of Z lies in one level of every block, so row i of R has the same K columns whatever
θ and W are (``cols``, n × K).  Hence the nonzeros of C and B, and those of
``GᵀG`` (G = L₁⁻¹C, A₁ = L₁L₁ᵀ: the products of two entries of C in the same level of block 1),
sit at positions computed once here, and each factorisation is a handful of
``np.bincount`` calls over those index maps — O(n K² + Σ_j c_j²) for c_j the entries of C in
level j — followed by the factorisation of the Schur complement ``S = B − GᵀG`` (s × s):

* dense Cholesky where s ≤ :data:`DENSE_SCHUR` (every reference fit; the pattern is compressed,
  so S is scattered from its nonzeros only);
* otherwise scipy's SuperLU (``splu``, no pivoting, minimum-degree ordering of SᵀS + ... as
  ``MMD_AT_PLUS_A``) of the random-effects part S_uu, with the p columns of X eliminated
  densely after it (their Schur complement ``S_xx − S_xu S_uu⁻¹ S_ux`` is R_XᵀR_X).

``log|L|² = 2 Σ log diag L₁ + log|S_uu|`` (the X rows excluded).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy import linalg
from scipy.sparse import linalg as splinalg

DENSE_SCHUR = 1500
"""Largest Schur complement (random-effects columns of the other blocks plus p) held dense."""


def _pairs_by_group(group: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """All ordered pairs (a, b) of positions with ``group[a] == group[b]`` (group sorted)."""
    counts = np.bincount(group, minlength=n_groups)
    starts = np.cumsum(counts) - counts
    reps = counts[group]
    idx1 = np.repeat(np.arange(group.size), reps)
    pos = np.arange(idx1.size) - np.repeat(np.cumsum(reps) - reps, reps)
    idx2 = starts[group[idx1]] + pos
    return idx1, idx2


class Pattern:
    """Index maps of C, B and GᵀG for one column layout (β fixed or free).

    Parameters
    ----------
    lev1 : ndarray, shape (n,)
        Level of block 1 of every row.
    j1, q1 : int
        Levels and terms of block 1.
    cols : ndarray, shape (n, K)
        Columns of R (0 … s − 1) that row i touches.
    m_rest : int
        Random-effects columns in R (the first m_rest of the s).
    """

    def __init__(self, lev1: np.ndarray, j1: int, q1: int, cols: np.ndarray,
                 m_rest: int) -> None:
        n, k = cols.shape
        s = int(cols.max()) + 1 if cols.size else m_rest
        s = max(s, m_rest)
        self.s, self.m_rest, self.q1, self.j1 = s, m_rest, q1, j1
        self.k = k
        # C's entries: (level of block 1, column of R), each row's K of them.
        key = lev1[:, None].astype(np.int64) * s + cols
        ukey, cinv = np.unique(key.ravel(), return_inverse=True)
        self.c_inv = cinv.reshape(n, k)
        self.c_lev, self.c_col = ukey // s, ukey % s
        self.nc = ukey.size
        # GᵀG: pairs of C's entries in one level (ukey is sorted by level).
        self.g1, self.g2 = _pairs_by_group(self.c_lev, j1)
        # B: each row's K × K products.
        r_tgt = (cols[:, :, None].astype(np.int64) * s + cols[:, None, :]).ravel()
        g_tgt = self.c_col[self.g1] * s + self.c_col[self.g2]
        d = np.arange(m_rest, dtype=np.int64)
        d_tgt = d * s + d
        upat, inv = np.unique(np.concatenate([r_tgt, g_tgt, d_tgt]), return_inverse=True)
        self.r_inv = inv[: r_tgt.size]
        self.g_inv = inv[r_tgt.size: r_tgt.size + g_tgt.size]
        self.d_inv = inv[r_tgt.size + g_tgt.size:]
        self.rows, self.colidx = upat // s, upat % s
        self.nnz = upat.size

    # ------------------------------------------------------------------ products
    def c_data(self, wv1: np.ndarray, vr: np.ndarray) -> np.ndarray:
        """C's nonzeros, shape (nc, q1), from w v₁ (n, q1) and R's row values (n, K)."""
        out = np.empty((self.nc, self.q1))
        flat = self.c_inv.ravel()
        for c in range(self.q1):
            out[:, c] = np.bincount(flat, weights=(wv1[:, c: c + 1] * vr).ravel(),
                                    minlength=self.nc)
        return out

    def s_data(self, w: np.ndarray, vr: np.ndarray, gdata: np.ndarray) -> np.ndarray:
        """S's nonzeros (on the compressed pattern)."""
        wv = w[:, None] * vr
        rv = (wv[:, :, None] * vr[:, None, :]).ravel()
        if self.q1 == 1:
            gv = gdata[self.g1, 0] * gdata[self.g2, 0]
        else:
            gv = np.einsum("kc,kc->k", gdata[self.g1], gdata[self.g2])
        out = (np.bincount(self.r_inv, weights=rv, minlength=self.nnz)
               - np.bincount(self.g_inv, weights=gv, minlength=self.nnz))
        out[self.d_inv] += 1.0
        return out

    def gt_dot(self, gdata: np.ndarray, y1: np.ndarray) -> np.ndarray:
        """Gᵀ y₁, shape (s,), for y₁ of shape (J₁ q₁,)."""
        y = y1.reshape(self.j1, self.q1)[self.c_lev]
        return np.bincount(self.c_col, weights=np.einsum("kc,kc->k", gdata, y),
                           minlength=self.s)

    def g_dot(self, gdata: np.ndarray, d2: np.ndarray) -> np.ndarray:
        """G d₂, shape (J₁ q₁,)."""
        vals = gdata * d2[self.c_col][:, None]
        out = np.empty((self.j1, self.q1))
        for c in range(self.q1):
            out[:, c] = np.bincount(self.c_lev, weights=vals[:, c], minlength=self.j1)
        return out.ravel()


@dataclass
class Schur:
    """A factored Schur complement S (s × s), random-effects part first (m_rest columns)."""

    m_rest: int
    dense: np.ndarray | None = None  # lower Cholesky factor of S
    lu: object = None  # splu of S_uu
    sux: np.ndarray | None = None  # S_uu⁻¹ S_ux
    lx: np.ndarray | None = None  # lower Cholesky factor of S_xx − S_xu S_uu⁻¹ S_ux
    logdet_u: float = 0.0

    @classmethod
    def factor(cls, pat: Pattern, vals: np.ndarray) -> Schur | None:
        """Factor S from its nonzeros on ``pat`` (None where not positive definite)."""
        s, mr = pat.s, pat.m_rest
        if not np.all(np.isfinite(vals)):
            return None
        if s <= DENSE_SCHUR:
            mat = np.zeros((s, s))
            mat[pat.rows, pat.colidx] = vals
            try:
                ls = np.linalg.cholesky(mat)
            except np.linalg.LinAlgError:
                return None
            ld = 2.0 * float(np.log(np.diag(ls)[:mr]).sum())
            lx = ls[mr:, mr:]
            return cls(m_rest=mr, dense=ls, lx=lx, logdet_u=ld)
        full = sp.csc_array((vals, (pat.rows, pat.colidx)), shape=(s, s))
        suu = sp.csc_array(full[:mr, :mr])
        try:
            lu = splinalg.splu(suu, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                               options={"SymmetricMode": True})
        except RuntimeError:
            return None
        du = lu.U.diagonal()
        if np.any(du <= 0) or not np.all(np.isfinite(du)):
            return None
        ld = float(np.log(du).sum())
        if s == mr:
            return cls(m_rest=mr, lu=lu, sux=np.zeros((mr, 0)), lx=np.zeros((0, 0)),
                       logdet_u=ld)
        sux = full[:mr, mr:].toarray()
        y = lu.solve(sux)
        sx = full[mr:, mr:].toarray() - sux.T @ y
        try:
            lx = np.linalg.cholesky(sx)
        except np.linalg.LinAlgError:
            return None
        return cls(m_rest=mr, lu=lu, sux=y, lx=lx, logdet_u=ld)

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """S⁻¹ rhs."""
        if self.dense is not None:
            return linalg.cho_solve((self.dense, True), rhs)
        mr = self.m_rest
        ru, rx = rhs[:mr], rhs[mr:]
        zu = self.lu.solve(ru)
        if rx.size == 0:
            return zu
        dx = linalg.cho_solve((self.lx, True), rx - self.sux.T @ ru)
        return np.concatenate([zu - self.sux @ dx, dx])


@dataclass
class Factor:
    """The factored H: L₁ (J₁, q₁, q₁), G's nonzeros and the Schur complement."""

    l1: np.ndarray
    gdata: np.ndarray | None
    schur: Schur | None

    def logdet(self) -> float:
        """log|L|² of the random-effects part (X's rows excluded)."""
        d1 = np.log(np.diagonal(self.l1, axis1=1, axis2=2)).sum()
        return float(2.0 * d1 + (0.0 if self.schur is None else self.schur.logdet_u))


def factor(pat: Pattern | None, p1: sp.csr_array, v1: np.ndarray, vr: np.ndarray | None,
           w: np.ndarray) -> Factor | None:
    """Factor H at weights w (None where it is not positive definite or not finite)."""
    n, q1 = v1.shape
    j1 = p1.shape[0]
    wv1 = w[:, None] * v1
    if q1 == 1:
        a1 = (p1 @ (wv1[:, 0] * v1[:, 0])).reshape(j1, 1, 1) + 1.0
        if not np.all(np.isfinite(a1)) or np.any(a1 <= 0):
            return None
        l1 = np.sqrt(a1)
    else:
        a1 = p1 @ (wv1[:, :, None] * v1[:, None, :]).reshape(n, q1 * q1)
        a1 = a1.reshape(j1, q1, q1) + np.eye(q1)
        if not np.all(np.isfinite(a1)):
            return None
        try:
            l1 = np.linalg.cholesky(a1)
        except np.linalg.LinAlgError:
            return None
    if pat is None:
        return Factor(l1, None, None)
    cdata = pat.c_data(wv1, vr)
    if q1 == 1:
        gdata = cdata / l1[pat.c_lev, 0]
    else:
        gdata = np.einsum("kcd,kd->kc", np.linalg.inv(l1)[pat.c_lev], cdata)
    sch = Schur.factor(pat, pat.s_data(w, vr, gdata))
    if sch is None:
        return None
    return Factor(l1, gdata, sch)


def solve(pat: Pattern | None, f: Factor, rhs: np.ndarray) -> np.ndarray:
    """H⁻¹ rhs through the blocked factor."""
    j1, q1 = f.l1.shape[0], f.l1.shape[1]
    k1 = j1 * q1
    r1 = rhs[:k1].reshape(j1, q1, 1)
    y1 = (r1 / f.l1 if q1 == 1 else np.linalg.solve(f.l1, r1)).reshape(-1)
    if pat is None:
        d1, d2 = y1, np.zeros(0)
    else:
        d2 = f.schur.solve(rhs[k1:] - pat.gt_dot(f.gdata, y1))
        d1 = y1 - pat.g_dot(f.gdata, d2)
    d1 = d1.reshape(j1, q1, 1)
    lt = np.swapaxes(f.l1, 1, 2)
    d1 = (d1 / lt if q1 == 1 else np.linalg.solve(lt, d1)).reshape(-1)
    return np.concatenate([d1, d2])
