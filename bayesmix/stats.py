"""Per-cluster cross-products in one pass: the sufficient statistics of a Gaussian 2-level model.

For cluster j with rows X_j (n_j × p), Z_j (n_j × q, the random terms' level-1 columns Zq) and
y_j, stack ``W_j = [X_j, Z_j, y_j]`` (n_j × d, d = p + q + 1) and keep ``M_j = W_jᵀ W_j``.
Every block the likelihoods and the profiled REML need is a slice of M:

    X_jᵀX_j = M[:, :p, :p]     X_jᵀZ_j = M[:, :p, p:p+q]    X_jᵀy_j = M[:, :p, -1]
    Z_jᵀZ_j = M[:, p:p+q, p:p+q]                            Z_jᵀy_j = M[:, p:p+q, -1]
    y_jᵀy_j = M[:, -1, -1]

Computed with vectorised NumPy in row chunks (a sparse cluster-indicator product per chunk), so
memory is O(chunk · d² + J · d²) whatever n is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from bayesmix.design import Design


@dataclass(frozen=True)
class ClusterStats:
    """Cross-products per cluster.

    Attributes
    ----------
    n : ndarray of int, shape (J,)
        Rows per cluster n_j.
    M : ndarray, shape (J, d, d)
        ``W_jᵀ W_j`` with ``W = [X, Zq, y]``.
    p, q : int
        Columns of X and random terms.
    """

    n: np.ndarray
    M: np.ndarray
    p: int
    q: int

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
    X: np.ndarray,
    Zq: np.ndarray,
    y: np.ndarray,
    cluster_index: np.ndarray,
    J: int,
    *,
    chunk_rows: int = 262_144,
) -> ClusterStats:
    """Per-cluster ``[X, Zq, y]ᵀ[X, Zq, y]`` in one chunked pass.

    Parameters
    ----------
    X : ndarray, shape (n, p)
    Zq : ndarray, shape (n, q)
    y : ndarray, shape (n,)
    cluster_index : ndarray of int, shape (n,)
        Codes 0..J-1.
    J : int
        Number of clusters.
    chunk_rows : int
        Rows per chunk; bounds the temporary memory at ``chunk_rows · d²`` floats.

    Returns
    -------
    ClusterStats
    """
    n, p = X.shape
    q = Zq.shape[1]
    d = p + q + 1
    M = np.zeros((J, d * d))
    for start in range(0, n, chunk_rows):
        stop = min(start + chunk_rows, n)
        W = np.concatenate([X[start:stop], Zq[start:stop], y[start:stop, None]], axis=1)
        outer = (W[:, :, None] * W[:, None, :]).reshape(stop - start, d * d)
        idx = cluster_index[start:stop]
        C = sp.csr_array(
            (np.ones(stop - start), (idx, np.arange(stop - start))), shape=(J, stop - start)
        )
        M += C @ outer
    counts = np.bincount(cluster_index, minlength=J)
    return ClusterStats(n=counts, M=M.reshape(J, d, d), p=p, q=q)


def cluster_stats(design: Design, *, chunk_rows: int = 262_144) -> ClusterStats:
    """The per-cluster cross-products of a design (see :func:`cross_products`)."""
    return cross_products(
        design.X, design.Zq, design.y, design.cluster_index, design.J, chunk_rows=chunk_rows
    )
