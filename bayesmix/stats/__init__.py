"""Per-cluster cross-products in one pass: the sufficient statistics of a Gaussian 2-level model.

For cluster j with rows X_j (n_j × p), Z_j (n_j × q, the random terms' level-1 columns Zq) and
y_j, stack ``W_j = [X_j, Z_j, y_j]`` (n_j × d, d = p + q + 1) and keep ``M_j = W_jᵀ W_j``.
Every block the likelihoods and the profiled REML need is a slice of M:

    X_jᵀX_j = M[:, :p, :p]     X_jᵀZ_j = M[:, :p, p:p+q]    X_jᵀy_j = M[:, :p, -1]
    Z_jᵀZ_j = M[:, p:p+q, p:p+q]                            Z_jᵀy_j = M[:, p:p+q, -1]
    y_jᵀy_j = M[:, -1, -1]

The columns are first centred and scaled (:mod:`bayesmix.scaling`): M holds the cross-products
of ``W̃ = [X̃, Z̃, ỹ]``, so that no digits are lost to cancellation when a column is far from 0
(``Days + 100``, years, incomes); ``stats.scaling`` says how to map every estimate back, and
:meth:`ClusterStats.raw_M` gives the cross-products of the raw columns when they are wanted.

Computed with vectorised NumPy in row chunks (a sparse cluster-indicator product per chunk), so
memory is O(chunk · d² + J · d²) whatever n is.  :mod:`bayesmix.stats.stream` computes the
same from CSV or Parquet files larger than memory, chunk by chunk, and
:mod:`bayesmix.stats.sources` from a Dask DataFrame or through DuckDB.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from bayesmix.design import Design
from bayesmix.scaling import Scaling


@dataclass(frozen=True)
class ClusterStats:
    """Cross-products per cluster.

    Attributes
    ----------
    n : ndarray of int, shape (J,)
        Rows per cluster n_j (with level-1 sampling weights: Σ_i w_i|j, floats).
    M : ndarray, shape (J, d, d)
        ``W̃_jᵀ W̃_j`` with ``W̃ = [X̃, Z̃, ỹ]``, the standardised columns of ``scaling``
        (with level-1 weights: ``Σ_i w_i|j W̃_iᵀW̃_i``).
    p, q : int
        Columns of X and random terms.
    scaling : Scaling
        How the columns were centred and scaled; the slices below are all on that scale.
    weight : ndarray, shape (J,), or None
        Level-2 sampling weights w_j: cluster j's log-likelihood counts w_j times
        (:mod:`bayesmix.weights`); None: 1.
    """

    n: np.ndarray
    M: np.ndarray
    p: int
    q: int
    scaling: Scaling
    weight: np.ndarray | None = None

    @property
    def w(self) -> np.ndarray:
        """The level-2 weights, ones when unweighted, shape (J,)."""
        return np.ones(self.J) if self.weight is None else self.weight

    @property
    def n_total(self) -> float:
        """Σ_j w_j n_j: the number of rows the (weighted) likelihood counts."""
        return float(np.sum(self.w * self.n))

    def raw_M(self) -> np.ndarray:
        """Cross-products of the raw columns ``[X, Zq, y]``, ``Aᵀ M A``, shape (J, d, d).

        For inspection and tests: on badly centred data these lose the digits the
        standardised M keeps.
        """
        a = self.scaling.full_matrix()
        return np.einsum("ba,jbc,cd->jad", a, self.M, a)

    def to_scaling(self, scaling: Scaling) -> ClusterStats:
        """The same statistics on another standardised scale (exact linear map).

        ``W̃₁ = W̃₀ B`` with ``B = A₀ A₁⁻¹``, so ``M₁ = Bᵀ M₀ B``; both scales being centred
        near the data, B is well conditioned.
        """
        if self.scaling.same_as(scaling):
            return self
        b = self.scaling.full_matrix() @ np.linalg.inv(scaling.full_matrix())
        M = np.einsum("ba,jbc,cd->jad", b, self.M, b)
        return ClusterStats(n=self.n, M=M, p=self.p, q=self.q, scaling=scaling,
                            weight=self.weight)

    @property
    def XX(self) -> np.ndarray:
        """X_jᵀX_j, shape (J, p, p)."""
        return self.M[:, : self.p, : self.p]

    @property
    def XZ(self) -> np.ndarray:
        """X_jᵀZ_j, shape (J, p, q)."""
        return self.M[:, : self.p, self.p : self.p + self.q]

    @property
    def ZZ(self) -> np.ndarray:
        """Z_jᵀZ_j, shape (J, q, q)."""
        return self.M[:, self.p : self.p + self.q, self.p : self.p + self.q]

    @property
    def Xy(self) -> np.ndarray:
        """X_jᵀy_j, shape (J, p)."""
        return self.M[:, : self.p, -1]

    @property
    def Zy(self) -> np.ndarray:
        """Z_jᵀy_j, shape (J, q)."""
        return self.M[:, self.p : self.p + self.q, -1]

    @property
    def yy(self) -> np.ndarray:
        """y_jᵀy_j, shape (J,)."""
        return self.M[:, -1, -1]

    @property
    def J(self) -> int:
        """Number of clusters."""
        return int(self.n.shape[0])


def cross_products(
    atoms: np.ndarray,
    y: np.ndarray,
    cluster_index: np.ndarray,
    J: int,
    *,
    scaling: Scaling,
    chunk_rows: int = 262_144,
    row_weights: np.ndarray | None = None,
    cluster_weights: np.ndarray | None = None,
) -> ClusterStats:
    """Per-cluster ``W̃ᵀW̃``, ``W̃ = [X̃, Z̃, ỹ]`` standardised by ``scaling``, in one pass.

    Parameters
    ----------
    atoms : ndarray, shape (n, a)
        The coded variable columns (``design.atoms``); X̃ and Z̃ are formed from them chunk
        by chunk (:meth:`bayesmix.scaling.Scaling.standardize`).
    y : ndarray, shape (n,)
    cluster_index : ndarray of int, shape (n,)
        Codes 0..J-1.
    J : int
        Number of clusters.
    scaling : Scaling
        Centres and scales (``design.scaling``: :mod:`bayesmix.scaling`).
    chunk_rows : int
        Rows per chunk; bounds the temporary memory at ``chunk_rows · d²`` floats.
    row_weights : ndarray, shape (n,), optional
        Level-1 weights w_i|j: ``M_j = Σ_i w_i|j W̃_iᵀW̃_i`` and ``n_j = Σ_i w_i|j``.
    cluster_weights : ndarray, shape (J,), optional
        Level-2 weights w_j, kept in :attr:`ClusterStats.weight`.

    Returns
    -------
    ClusterStats
    """
    n = y.shape[0]
    p, q = scaling.p, scaling.q
    d = p + q + 1
    upper = np.zeros((J, d * (d + 1) // 2))
    for start in range(0, n, chunk_rows):
        stop = min(start + chunk_rows, n)
        Xs, Zs, ys = scaling.standardize(atoms[start:stop], y[start:stop])
        W = np.concatenate([Xs, Zs, ys[:, None]], axis=1)
        if row_weights is not None:
            W = W * np.sqrt(row_weights[start:stop])[:, None]
        upper += _upper_sums(W, cluster_index[start:stop], J)
    counts = (np.bincount(cluster_index, minlength=J) if row_weights is None
              else np.bincount(cluster_index, row_weights, J))
    return ClusterStats(n=counts, M=_symmetric(upper, d), p=p, q=q, scaling=scaling,
                        weight=cluster_weights)


def _upper_sums(W: np.ndarray, index: np.ndarray, J: int) -> np.ndarray:
    """Per-unit sums of the upper triangle of w wᵀ over rows: shape (J, d(d+1)/2)."""
    rows_, cols_ = np.triu_indices(W.shape[1])
    C = sp.csr_array((np.ones(len(index)), (index, np.arange(len(index)))),
                     shape=(J, len(index)))
    return C @ (W[:, rows_] * W[:, cols_])


def _symmetric(upper: np.ndarray, d: int) -> np.ndarray:
    rows_, cols_ = np.triu_indices(d)
    M = np.empty((upper.shape[0], d, d))
    M[:, rows_, cols_] = upper
    M[:, cols_, rows_] = upper
    return M


def grouped_gram(W: np.ndarray, index: np.ndarray, J: int, *,
                 chunk_rows: int = 262_144) -> np.ndarray:
    """``W_jᵀW_j`` for every unit j of ``index``: shape (J, d, d), in row chunks.

    Only the upper triangle is summed (d(d+1)/2 products per row); M is symmetric.
    """
    d = W.shape[1]
    upper = np.zeros((J, d * (d + 1) // 2))
    for start in range(0, W.shape[0], chunk_rows):
        stop = min(start + chunk_rows, W.shape[0])
        upper += _upper_sums(W[start:stop], index[start:stop], J)
    return _symmetric(upper, d)


def cluster_stats(
    design: Design, *, scaling: Scaling | None = None, chunk_rows: int = 262_144
) -> ClusterStats:
    """The per-cluster cross-products of a design (see :func:`cross_products`).

    ``scaling`` defaults to the design's own column means and SDs.  Needs one grouping
    factor (several: :mod:`bayesmix.nested` for nested ones).
    """
    design.require_single_factor("the per-cluster statistics")
    return cross_products(
        design.atoms, design.y, design.cluster_index, design.J,
        scaling=scaling if scaling is not None else design.scaling,
        chunk_rows=chunk_rows,
        row_weights=design.weights1,
        cluster_weights=design.weights2,
    )
