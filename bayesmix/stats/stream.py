"""Per-cluster statistics of CSV or Parquet files larger than memory, chunk by chunk.

Two passes: :func:`scan_levels` finds what coding a chunk needs from the whole data (cluster
labels, categorical levels, transform constants: :class:`bayesmix.stats.levels.LevelScan`), then
:func:`stream_cluster_stats` codes and sums each chunk (:func:`bayesmix.stats.pieces.piece_sums`,
the same NumPy code as every engine) into J × d(d+1)/2 accumulators.  The chunks come from
pandas / pyarrow (``engine="pandas"``: a file, or a list read file after file) or from DuckDB
(``engine="duckdb"``: globs, folders, lists; :mod:`bayesmix.stats.duckdb_engine`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from bayesmix.errors import DataError
from bayesmix.scaling import Scaling
from bayesmix.spec.model import Spec
from bayesmix.stats import ClusterStats
from bayesmix.stats.pieces import DenseSums, drop_missing, piece_scaling, piece_sums


@dataclass(frozen=True)
class Levels:
    """What must be known before a file can be coded chunk by chunk.

    Attributes
    ----------
    clusters : tuple of str
        Cluster labels in the order :func:`bayesmix.build_design` gives them (sorted like
        ``pd.factorize(sort=True)``; the labels are the values as text).
    categorical : dict of str to tuple of str
        Levels of every categorical variable the model uses, reference level first (as
        :func:`bayesmix.build_design` codes them: the spec's reference level, else the first in
        sorted order).
    fitted : dict
        The constants of the transformed variables over the whole file (group and grand
        means, scale(), poly(); :mod:`bayesmix.stats.transform_sums`), as ``Design.fitted``.
    """

    clusters: tuple[str, ...]
    categorical: dict[str, tuple[str, ...]]
    fitted: dict = field(default_factory=dict)


def _iter_chunks(path: str | Path, columns: list[str], chunk_rows: int) -> Iterator[pd.DataFrame]:
    """DataFrames of at most ``chunk_rows`` rows of ``columns``, from a CSV or Parquet file."""
    path = Path(path)
    if path.suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq  # lazy: pyarrow is only needed for Parquet

        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(batch_size=chunk_rows, columns=columns):
            yield batch.to_pandas()
    else:
        yield from pd.read_csv(path, usecols=columns, chunksize=chunk_rows)


def scan_levels(
    path: str | Path, spec: Spec, *, chunk_rows: int = 1_000_000, engine: str = "pandas"
) -> Levels:
    """First pass over a file: the cluster labels and the levels of categorical variables.

    Reads only the columns the model uses, chunk by chunk (:class:`bayesmix.stats.levels.
    LevelScan`); memory grows with the number of distinct values, not with the rows.  A
    column is categorical when the spec lists it under ``categorical`` or its first chunk is
    not numeric (text or boolean), as in :func:`bayesmix.build_design`.

    Parameters
    ----------
    path : str or Path
        CSV, or Parquet (``.parquet``; needs pyarrow); with ``engine="duckdb"`` also a glob
        (``"events/*.parquet"``) or a list of files.
    spec : Spec
    chunk_rows : int
    engine : {"pandas", "duckdb"}
        Who reads the file (:func:`bayesmix.stats.duckdb_engine.duckdb_chunks`).

    Returns
    -------
    Levels
    """
    from bayesmix.stats.levels import LevelScan

    scan = LevelScan(spec)
    for chunk in _chunks(path, scan.columns, chunk_rows, engine):
        scan.add(chunk)
    return scan.levels()


def _chunks(path, columns: list[str], chunk_rows: int, engine: str) -> Iterator[pd.DataFrame]:
    if engine == "duckdb":
        from bayesmix.stats.duckdb_engine import duckdb_chunks

        return duckdb_chunks(path, columns, chunk_rows)
    if engine != "pandas":
        raise DataError(f"engine must be 'pandas' or 'duckdb' for a file, not {engine!r}")
    if isinstance(path, list | tuple):  # several files, one after another
        return (chunk for one in path for chunk in _iter_chunks(one, columns, chunk_rows))
    return _iter_chunks(path, columns, chunk_rows)


def _streamable(spec: Spec) -> None:
    """Refuse what the streamed statistics do not carry (they would be silently dropped)."""
    what = ("sampling weights" if spec.weights is not None else
            "sigma_by" if spec.sigma_by is not None else None)
    if what is not None:
        raise DataError(f"statistics computed from pieces of the data (files, a Dask "
                        f"DataFrame) do not carry {what} yet; collect the rows into a pandas "
                        "DataFrame and use build_design")


def check_levels(spec: Spec, levels: Levels) -> None:
    """Refuse what cannot be streamed, and ``levels`` that lack a transform's constants."""
    _streamable(spec)
    missing_fits = [k for k in _stateful_keys(spec) if k not in levels.fitted]
    if missing_fits:
        raise DataError(f"`levels` lacks the constants of {missing_fits[0]} (a mean, scale or "
                        "poly over the whole data); let scan_levels(path, spec) find them")


def _stateful_keys(spec: Spec) -> list[str]:
    from bayesmix.spec.transforms import Poly, to_text
    from bayesmix.stats.transform_sums import stateful_nodes

    return [to_text(n) for n in stateful_nodes(spec) if not (isinstance(n, Poly) and n.raw)]


def stream_cluster_stats(
    path: str | Path,
    spec: Spec,
    *,
    levels: Levels | None = None,
    scaling: Scaling | None = None,
    chunk_rows: int = 262_144,
    missing: Literal["error", "drop"] = "error",
    engine: Literal["pandas", "duckdb"] = "pandas",
) -> ClusterStats:
    """Per-cluster cross-products of CSV or Parquet files, in chunks, in constant memory.

    The result equals ``cluster_stats(build_design(spec, pd.read_csv(path)))`` (to rounding,
    once both are on one scale: ``streamed.to_scaling(in_memory.scaling)``),
    without ever holding the file: pandas ``read_csv(chunksize=...)`` or pyarrow's
    ``ParquetFile.iter_batches`` (or DuckDB's record batches) give ``chunk_rows`` rows at a
    time, each is coded like :func:`bayesmix.build_design` and summed per cluster
    (:func:`bayesmix.stats.pieces.piece_sums`).  Memory is O(chunk_rows · d² + J · d²).

    Categorical levels and cluster labels must be known up front, because a chunk may not
    hold all of them: pass ``levels`` (e.g. from a previous run or a data dictionary), or let a
    first pass (:func:`scan_levels`, reading only those columns) find them.

    Unlike :func:`bayesmix.build_design`, this does not check that level-2 variables are
    constant within clusters or that X has full column rank (both need the whole data); check
    them on a sample, or fit the design of a sample first.

    Parameters
    ----------
    path : str, Path or list
        CSV, or Parquet (``.parquet``; pyarrow is imported only then); with
        ``engine="duckdb"`` also a glob (``"events/*.parquet"``) or a list of files.
    spec : Spec
    levels : Levels, optional
        Cluster labels and categorical levels; found by :func:`scan_levels` when not given.
    scaling : Scaling, optional
        Centres and scales of the columns; by default the means and spreads of the first
        chunk (any centre near the data keeps the sums free of cancellation, and the
        estimates do not depend on which is used).
    chunk_rows : int
        Rows per chunk.
    missing : {"error", "drop"}
        Rows with a missing value in a used column raise (default) or are dropped (with a
        warning that counts them, once, at the end).
    engine : {"pandas", "duckdb"}
        Who reads the files: pandas / pyarrow, or DuckDB (:mod:`bayesmix.stats.duckdb_engine`).

    Returns
    -------
    ClusterStats
        With ``J = len(levels.clusters)``, clusters in ``levels.clusters`` order.
    """
    if missing not in ("error", "drop"):
        raise DataError(f"missing must be 'error' or 'drop', not {missing!r}")
    if levels is None:
        levels = scan_levels(path, spec, chunk_rows=max(chunk_rows, 1_000_000), engine=engine)
    J = len(levels.clusters)
    check_levels(spec, levels)
    columns = list(dict.fromkeys(spec.columns))
    total: DenseSums | None = None
    rows = dropped = 0  # of the chunks before the first complete row (no scaling yet)
    for chunk in _chunks(path, columns, chunk_rows, engine):
        if total is None:
            kept, lost = drop_missing(chunk, missing, offset=rows)
            if len(kept) == 0:
                rows, dropped = rows + len(chunk), dropped + lost
                continue
            total = DenseSums(J, scaling or piece_scaling(spec, kept, levels))
            total.rows, total.dropped = rows, dropped
        total.add(piece_sums(chunk, spec, levels, total.scaling, missing=missing,
                             offset=total.rows))
    if total is None:
        raise DataError(f"{path} holds no usable rows")
    if total.dropped:
        warnings.warn(
            f"dropped {total.dropped} of {total.rows} rows with missing values", UserWarning,
            stacklevel=2,
        )
    return total.stats()
