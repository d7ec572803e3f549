"""Per-cluster statistics of a Dask DataFrame, computed where its partitions are.

Two passes over the partitions, both on the workers; only small objects reach the client:

1. **Levels** — every partition is scanned (:class:`bayesmix.stats.levels.LevelScan`: cluster
   labels, categorical values, the transforms' sums) and the scans are merged pairwise in a
   tree of ``dask.delayed`` tasks (:data:`SPLIT_EVERY` at a time), so the client receives
   one scan: memory of the order of the number of distinct values.
2. **Sums** — ``map_partitions`` codes each partition exactly as
   :func:`bayesmix.build_design` would, with those levels, and sums, per cluster present in
   it, the upper triangle of ``w̃ w̃ᵀ`` (:func:`bayesmix.stats.pieces.piece_sums`: the NumPy code
   of the in-memory path).  Dask's own ``groupby("unit").sum(split_out=...)`` adds the
   partitions' rows of each cluster (a shuffle-free tree reduction for ``split_out=1``, hash
   partitioned for many clusters).  The client receives J × (1 + d(d+1)/2) floats.

The columns are standardised before summing with one :class:`bayesmix.scaling.Scaling`
taken from the first partition that has complete rows, so the float64 sums are of centred
values (no cancellation for ``Days + 1e6``).  Dask's sums are not compensated; on the test
data the statistics equal the in-memory ones to 1e-10 relative for any partitioning.

Dask is optional (``pip install "bayesmix[dask]"``); this module imports it only when used.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from bayesmix.errors import DataError
from bayesmix.scaling import Scaling
from bayesmix.spec.model import Spec
from bayesmix.stats import ClusterStats
from bayesmix.stats.levels import LevelScan
from bayesmix.stats.pieces import piece_scaling, piece_sums, stats_from_sums
from bayesmix.stats.stream import Levels, _streamable, check_levels

SPLIT_EVERY = 8
"""Scans merged per task in the tree reduction of the first pass."""
BOOKKEEPING = -1
"""The ``unit`` of each partition's extra row: rows read (``n``) and dropped (``m0``)."""


def is_dask_frame(obj: Any) -> bool:
    """Whether ``obj`` is a Dask DataFrame (decided without importing Dask)."""
    module = type(obj).__module__
    return (module.startswith("dask.") or module.startswith("dask_expr")) and hasattr(
        obj, "map_partitions")


def _columns(ddf, spec: Spec) -> list[str]:
    columns = list(dict.fromkeys(spec.columns))
    absent = [c for c in columns if c not in ddf.columns]
    if absent:
        raise DataError(f"the Dask DataFrame has no column {absent[0]!r} (the model uses "
                        f"{', '.join(columns)}; it has {', '.join(map(str, ddf.columns))})")
    return columns


def _scan(piece: pd.DataFrame, spec: Spec) -> LevelScan:
    return LevelScan(spec).add(piece)


def _merge(*scans: LevelScan) -> LevelScan:
    out = scans[0]
    for scan in scans[1:]:
        out = out.merge(scan)
    return out


def dask_levels(ddf, spec: Spec) -> Levels:
    """Pass 1 on the workers: the :class:`bayesmix.stats.stream.Levels` of a Dask DataFrame."""
    import dask

    columns = _columns(ddf, spec)
    _streamable(spec)  # refuse before any work is sent
    tasks = [dask.delayed(_scan)(part, spec) for part in ddf[columns].to_delayed()]
    while len(tasks) > 1:
        tasks = [dask.delayed(_merge)(*tasks[k : k + SPLIT_EVERY])
                 for k in range(0, len(tasks), SPLIT_EVERY)]
    (scan,) = dask.compute(tasks[0])
    return scan.levels()


def _first_scaling(ddf, spec: Spec, levels: Levels) -> Scaling:
    """Centres and scales from the first partition with a complete row (usually the first)."""
    for k in range(ddf.npartitions):
        piece = ddf.partitions[k].compute()
        if piece.notna().all(axis=1).any():
            return piece_scaling(spec, piece, levels)
    raise DataError("the Dask DataFrame holds no complete rows of the model's columns")


def _partition_sums(piece: pd.DataFrame, spec: Spec, levels: Levels, scaling: Scaling,
                    missing: str, partition_info: dict | None = None) -> pd.DataFrame:
    number = "?" if partition_info is None else partition_info.get("number", "?")
    part = piece_sums(piece, spec, levels, scaling, missing=missing,
                      where=f"row {{}} of partition {number}")
    frame = part.to_frame()
    book = pd.DataFrame(0.0, index=pd.Index([BOOKKEEPING], name="unit"), columns=frame.columns)
    book.iloc[0, :2] = [part.rows, part.dropped]
    return pd.concat([frame, book]).reset_index()


def dask_cluster_stats(
    ddf,
    spec: Spec,
    *,
    levels: Levels | None = None,
    scaling: Scaling | None = None,
    missing: str = "error",
    split_out: int | None = None,
) -> tuple[ClusterStats, Levels, dict]:
    """The per-cluster statistics of a Dask DataFrame (module docstring).

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
        With the columns the model uses; on a ``distributed`` cluster when a ``Client`` is
        active, else on Dask's local scheduler.
    spec : Spec
    levels : Levels, optional
        Found by pass 1 (:func:`dask_levels`) when not given.
    scaling : Scaling, optional
        From the first partition with complete rows when not given.
    missing : {"error", "drop"}
        A row with a missing value raises (naming the column, the row and the partition) or
        is dropped and counted.
    split_out : int, optional
        Output partitions of the groupby-sum; by default 1 up to 100,000 clusters, then one
        per 100,000.

    Returns
    -------
    stats : ClusterStats
        Clusters in ``levels.clusters`` order.
    levels : Levels
    counts : dict
        ``rows`` read and ``dropped``.
    """
    if missing not in ("error", "drop"):
        raise DataError(f"missing must be 'error' or 'drop', not {missing!r}")
    columns = _columns(ddf, spec)
    frame = ddf[columns]
    if levels is None:
        levels = dask_levels(frame, spec)
    check_levels(spec, levels)
    J = len(levels.clusters)
    if scaling is None:
        scaling = _first_scaling(frame, spec, levels)
    d = scaling.p + scaling.q + 1
    meta = pd.DataFrame({"unit": pd.Series([], dtype=np.int64), "n": pd.Series([], dtype=float),
                         **{f"m{k}": pd.Series([], dtype=float)
                            for k in range(d * (d + 1) // 2)}})
    sums = frame.map_partitions(_partition_sums, spec, levels, scaling, missing, meta=meta)
    if split_out is None:
        split_out = max(1, J // 100_000)
    table = sums.groupby("unit").sum(split_out=split_out).compute()
    counts = {"rows": 0, "dropped": 0}
    if BOOKKEEPING in table.index:
        book = table.loc[BOOKKEEPING]
        counts = {"rows": int(book["n"]), "dropped": int(book["m0"])}
        table = table.drop(index=BOOKKEEPING)
    if counts["rows"] == counts["dropped"]:
        raise DataError("the Dask DataFrame holds no usable rows")
    if counts["dropped"]:
        warnings.warn(f"dropped {counts['dropped']} of {counts['rows']} rows with missing "
                      "values", UserWarning, stacklevel=3)
    table = table.reindex(np.arange(J), fill_value=0.0)
    upper = table[[f"m{k}" for k in range(d * (d + 1) // 2)]].to_numpy(dtype=float)
    stats = stats_from_sums(np.rint(table["n"].to_numpy()).astype(np.int64), upper, scaling)
    return stats, levels, counts
