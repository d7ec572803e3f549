"""``bm.cluster_stats``: the per-cluster statistics of a model from wherever its rows are.

=================================  =========================================================
source                             engine (how the rows are read and summed)
=================================  =========================================================
a :class:`bayesmix.Design`         in memory (:func:`bayesmix.stats.cluster_stats`)
a pandas DataFrame                 ``build_design`` first (every check), then in memory
a CSV or Parquet file              ``"pandas"``: chunks (:mod:`bayesmix.stats.stream`)
a glob, folder or list of files    ``"duckdb"``: DuckDB's record batches
                                   (:mod:`bayesmix.stats.duckdb_engine`); a list can also
                                   be read by ``"pandas"``, file after file
a Dask DataFrame                   ``"dask"``: on the workers
                                   (:mod:`bayesmix.stats.dask_engine`)
=================================  =========================================================

Every engine codes its pieces with the same code (:mod:`bayesmix.stats.pieces`) and returns the
same :class:`bayesmix.stats.ClusterStats`, equal to the in-memory statistics (to rounding,
on one scale: ``stats.to_scaling(other.scaling)``).  Statistics from pieces skip the checks
that need all rows at once (a level-2 variable constant within clusters, X of full rank):
run ``build_design`` on a sample for those.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pandas as pd

from bayesmix.design import Design, build_design
from bayesmix.errors import DataError
from bayesmix.scaling import Scaling
from bayesmix.spec.model import Spec
from bayesmix.stats import ClusterStats
from bayesmix.stats import cluster_stats as design_stats

Engine = Literal["pandas", "duckdb", "dask"]


def is_rows_elsewhere(source: Any) -> bool:
    """Whether ``source`` names rows not in this process: files or a Dask DataFrame."""
    from bayesmix.stats.dask_engine import is_dask_frame

    return isinstance(source, str | Path | list | tuple) or is_dask_frame(source)


def default_engine(source: Any) -> Engine:
    """``"dask"`` for a Dask DataFrame, ``"duckdb"`` for globs, folders and lists, else pandas."""
    from bayesmix.stats.dask_engine import is_dask_frame

    if is_dask_frame(source):
        return "dask"
    if isinstance(source, list | tuple):
        return "duckdb"
    text = str(source)
    return "duckdb" if any(ch in text for ch in "*?[") or Path(text).is_dir() else "pandas"


def cluster_stats(
    spec: Spec | Design | str | Path,
    source: Any = None,
    *,
    engine: Engine | None = None,
    levels=None,
    scaling: Scaling | None = None,
    chunk_rows: int = 262_144,
    missing: Literal["error", "drop"] = "error",
) -> ClusterStats:
    """Per-cluster cross-products ``M_j = W̃_jᵀW̃_j`` of a model's data (module docstring).

    Parameters
    ----------
    spec : Spec, Design or path of a model file
        A Design carries its rows (then no ``source``).
    source : DataFrame, str, Path, list or dask.dataframe.DataFrame, optional
        The rows; a model file's data file by default.
    engine : {"pandas", "duckdb", "dask"}, optional
        Chosen from the source by default (:func:`default_engine`).
    levels : Levels, optional
        Cluster labels, categorical levels and transform constants of the whole data
        (:class:`bayesmix.stats.stream.Levels`); a first pass finds them when not given.
    scaling : Scaling, optional
        The standardised scale of the sums; by default from the first piece.
    chunk_rows : int
        Rows per piece read from files.
    missing : {"error", "drop"}

    Returns
    -------
    ClusterStats
        J = number of clusters, in sorted label order (as :func:`bayesmix.build_design`).
    """
    if isinstance(spec, Design):
        if source is not None:
            raise DataError("a Design carries its rows; give cluster_stats(design) alone, or "
                            "cluster_stats(spec, source)")
        return design_stats(spec, scaling=scaling, chunk_rows=chunk_rows)
    if not isinstance(spec, Spec):
        spec = Spec.from_file(spec)
    if source is None:
        if spec.data_path is None:
            raise DataError("give the data: cluster_stats(spec, source)")
        source = spec.data_path
    return stats_of_source(spec, source, engine=engine, levels=levels, scaling=scaling,
                           chunk_rows=chunk_rows, missing=missing)[0]


def stats_of_source(spec: Spec, source: Any, *, engine: Engine | None = None, levels=None,
                    scaling: Scaling | None = None, chunk_rows: int = 262_144,
                    missing: str = "error") -> tuple[ClusterStats, Any]:
    """The statistics of any source and the :class:`Levels` they were coded with."""
    engine = engine or default_engine(source)
    if isinstance(source, pd.DataFrame):
        if engine != "pandas":
            raise DataError(f"a pandas DataFrame is read in memory, not by {engine!r}")
        design = build_design(spec, source, missing=missing)
        return design_stats(design, scaling=scaling, chunk_rows=chunk_rows), None
    if engine == "dask":
        from bayesmix.stats.dask_engine import dask_cluster_stats, is_dask_frame

        if not is_dask_frame(source):
            raise DataError("engine='dask' reads a Dask DataFrame "
                            "(dask.dataframe.read_parquet(...))")
        stats, levels, _ = dask_cluster_stats(source, spec, levels=levels, scaling=scaling,
                                              missing=missing)
        return stats, levels
    if engine not in ("pandas", "duckdb"):
        raise DataError(f"engine must be 'pandas', 'duckdb' or 'dask', not {engine!r}")
    if not isinstance(source, str | Path | list | tuple):
        raise DataError(f"engine={engine!r} reads files; got a {type(source).__name__}")
    from bayesmix.stats.stream import scan_levels, stream_cluster_stats

    if levels is None:
        levels = scan_levels(source, spec, chunk_rows=max(chunk_rows, 1_000_000),
                             engine=engine)
    stats = stream_cluster_stats(source, spec, levels=levels, scaling=scaling,
                                 chunk_rows=chunk_rows, missing=missing, engine=engine)
    return stats, levels


def first_rows(spec: Spec, source: Any, engine: str | None = None,
               rows: int = 1_000) -> pd.DataFrame:
    """The first rows of the model's columns in files or a Dask DataFrame (column names)."""
    engine = engine or default_engine(source)
    columns = list(dict.fromkeys(spec.columns))
    if engine == "dask":
        return source[columns].partitions[0].compute().head(rows)
    from bayesmix.stats.stream import _chunks

    return next(iter(_chunks(source, columns, rows, engine)))
