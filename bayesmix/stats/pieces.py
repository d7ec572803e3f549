"""One piece of the data → its per-cluster sums: the computation every engine runs.

A piece is a pandas DataFrame of rows (a chunk of a file, a Dask partition, a DuckDB record
batch).  :func:`piece_sums` codes it exactly as :func:`bayesmix.build_design` would, with the
cluster labels, categorical levels and transform constants of the whole data fixed in
:class:`bayesmix.stats.stream.Levels`, standardises the columns with a
:class:`bayesmix.scaling.Scaling` chosen once (:func:`piece_scaling`), and sums, per cluster
present in the piece, the upper triangle of ``w̃ w̃ᵀ`` for ``w̃ = [x̃, z̃, ỹ]`` of every row
(:func:`bayesmix.stats.grouped_gram`'s NumPy code: a sparse indicator product).  Sums of
pieces add, in any order and grouping; :func:`stats_from_sums` turns the total into
:class:`bayesmix.stats.ClusterStats`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayesmix.errors import DataError
from bayesmix.scaling import Scaling
from bayesmix.spec.model import Spec
from bayesmix.stats import ClusterStats, _symmetric, _upper_sums


@dataclass(frozen=True)
class PieceSums:
    """The sums of one piece, for the k clusters present in it.

    Attributes
    ----------
    units : ndarray of int, shape (k,)
        Cluster codes (positions in ``levels.clusters``).
    n : ndarray of int, shape (k,)
        Rows per cluster.
    upper : ndarray, shape (k, d (d + 1) / 2)
        Σ over the cluster's rows of the upper triangle of ``w̃ w̃ᵀ`` (``np.triu_indices``
        order), d = p + q + 1.
    p, q : int
    rows, dropped : int
        Rows read, and rows dropped for missing values (``missing="drop"``).
    """

    units: np.ndarray
    n: np.ndarray
    upper: np.ndarray
    p: int
    q: int
    rows: int
    dropped: int

    def to_frame(self) -> pd.DataFrame:
        """One row per cluster code: ``n`` and the sums ``m0 .. m{D-1}`` (for Dask)."""
        frame = pd.DataFrame(self.upper, index=pd.Index(self.units, name="unit"),
                             columns=[f"m{k}" for k in range(self.upper.shape[1])])
        frame.insert(0, "n", self.n.astype(np.float64))
        return frame


def code_piece(spec: Spec, piece: pd.DataFrame, levels, cluster_pos: pd.Index
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple, tuple]:
    """Atoms (n, a), y (n,), cluster codes (n,) and the columns' atoms, as build_design."""
    from bayesmix.design.coding import Coder, model_columns

    # The design's own coder, with the levels fixed: a level not in `levels` is an error.
    cols = model_columns(spec, Coder(spec, piece, levels=dict(levels.categorical),
                                     fitted=levels.fitted))
    codes = cluster_pos.get_indexer(piece[spec.cluster].astype(str))
    if (codes < 0).any():
        bad = piece[spec.cluster][codes < 0].iloc[0]
        raise DataError(f"cluster {bad!r} is not among the cluster labels given in `levels`")
    if spec.outcome in spec.transforms:  # log(y) ~ ...: stateless (stats.transform_sums)
        from bayesmix.design.derive import Deriver

        y = Deriver(spec, piece).values(spec.transforms[spec.outcome])
    else:
        y = piece[spec.outcome].to_numpy(dtype=float)
    _, atoms, x_factors, z_factors = cols.atom_matrix()
    return atoms, y, codes, x_factors, z_factors


def drop_missing(piece: pd.DataFrame, missing: str, where: str = "data row {}",
                 offset: int = 0) -> tuple[pd.DataFrame, int]:
    """The piece without rows that miss a value; ``missing="error"`` raises naming them.

    ``where`` formats the first bad row's position (within the piece, plus ``offset``) in
    the error: ``"data row {}"`` for a file, ``"row {} of partition 3"`` for Dask.
    """
    na = piece.isna().any(axis=1).to_numpy()
    if not na.any():
        return piece, 0
    if missing == "error":
        col = piece.columns[piece.isna().any()].tolist()
        first = offset + int(np.flatnonzero(na)[0])
        raise DataError(
            f"missing values in {', '.join(repr(c) for c in col)} (first at "
            f"{where.format(first)}); pass missing='drop' to drop those rows"
        )
    return piece.loc[~na], int(na.sum())


def piece_scaling(spec: Spec, piece: pd.DataFrame, levels) -> Scaling:
    """Centres and scales from one piece's columns (any centre near the data will do)."""
    piece = piece.dropna()
    if len(piece) == 0:
        raise DataError("the first piece of the data holds no complete rows to take the "
                        "columns' centres from; pass scaling=")
    atoms, y, _, x_factors, z_factors = code_piece(spec, piece, levels,
                                                   pd.Index(levels.clusters))
    return Scaling.from_arrays(atoms, y, x_factors, z_factors)


def piece_labels(spec: Spec, piece: pd.DataFrame, levels) -> tuple[tuple[str, ...],
                                                                   tuple[str, ...]]:
    """The names of X's and Z's columns, as :func:`bayesmix.build_design` gives them."""
    from bayesmix.design.coding import Coder, model_columns

    cols = model_columns(spec, Coder(spec, piece.dropna(), levels=dict(levels.categorical),
                                     fitted=levels.fitted))
    return tuple(cols.fixed_names), tuple(cols.random_names)


def piece_sums(piece: pd.DataFrame, spec: Spec, levels, scaling: Scaling, *,
               missing: str = "error", where: str = "data row {}", offset: int = 0
               ) -> PieceSums:
    """The per-cluster sums of one piece (module docstring).

    Parameters
    ----------
    piece : DataFrame
        Rows with the model's columns (``spec.columns``).
    spec : Spec
    levels : Levels
        Cluster labels, categorical levels and constants of the whole data.
    scaling : Scaling
        The same for every piece.
    missing : {"error", "drop"}
    where, offset : str, int
        How an error names the first row with a missing value (:func:`drop_missing`).

    Returns
    -------
    PieceSums
    """
    rows = len(piece)
    piece, dropped = drop_missing(piece, missing, where, offset)
    d = scaling.p + scaling.q + 1
    if len(piece) == 0:
        return PieceSums(np.zeros(0, np.int64), np.zeros(0, np.int64),
                         np.zeros((0, d * (d + 1) // 2)), scaling.p, scaling.q, rows, dropped)
    atoms, y, codes, _, _ = code_piece(spec, piece, levels, pd.Index(levels.clusters))
    units, local = np.unique(codes, return_inverse=True)
    Xs, Zs, ys = scaling.standardize(atoms, y)
    W = np.concatenate([Xs, Zs, ys[:, None]], axis=1)
    upper = _upper_sums(W, local, units.size)
    n = np.bincount(local, minlength=units.size)
    return PieceSums(units, n, upper, scaling.p, scaling.q, rows, dropped)


class DenseSums:
    """Per-cluster sums of all J clusters, to which pieces are added (one process)."""

    def __init__(self, J: int, scaling: Scaling) -> None:
        d = scaling.p + scaling.q + 1
        self.scaling = scaling
        self.n = np.zeros(J, dtype=np.int64)
        self.upper = np.zeros((J, d * (d + 1) // 2))
        self.rows = self.dropped = 0

    def add(self, part: PieceSums) -> None:
        """Add one piece's sums (its clusters are distinct, so plain indexing adds)."""
        self.n[part.units] += part.n
        self.upper[part.units] += part.upper
        self.rows += part.rows
        self.dropped += part.dropped

    def stats(self) -> ClusterStats:
        """The :class:`bayesmix.stats.ClusterStats` of everything added."""
        return stats_from_sums(self.n, self.upper, self.scaling)


def stats_from_sums(n: np.ndarray, upper: np.ndarray, scaling: Scaling) -> ClusterStats:
    """ClusterStats from per-cluster counts (J,) and upper-triangle sums (J, d(d+1)/2)."""
    d = scaling.p + scaling.q + 1
    return ClusterStats(n=np.asarray(n, dtype=np.int64), M=_symmetric(upper, d),
                        p=scaling.p, q=scaling.q, scaling=scaling)
