"""DuckDB as the reader of files larger than memory, on one machine.

``bm.cluster_stats(spec, "events/*.parquet", engine="duckdb")`` lets DuckDB do what it does
better than a loop over files: expand globs and lists of files (hive-partitioned folders
included), read only the model's columns from Parquet (projection push-down) or CSV, decode
them on several threads within a memory limit, and hand the rows over as Arrow record
batches of ``chunk_rows`` rows.  Each batch is then coded and summed per cluster by the same
NumPy code as every other source (:func:`bayesmix.stats.pieces.piece_sums`, through
:func:`bayesmix.stats.stream.stream_cluster_stats`), so the client holds one batch and the
J × d(d+1)/2 sums, never the file.

Why the sums are not a SQL ``GROUP BY``: the products of the standardised columns of X and Z
would have to be written as SQL expressions, i.e. a second coder of the design (dummies,
contrasts, interactions, centring, poly) beside :mod:`bayesmix.design.coding`, which could
drift from it.  The per-cluster table is small (10⁶ clusters × 21 sums = 168 MB), so the one
thing a spilling GROUP BY would add is not needed here.

DuckDB is optional (``pip install "bayesmix[duckdb]"``); this module imports it only when used.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from bayesmix.errors import DataError

MEMORY_LIMIT = "1GB"
"""DuckDB's ``memory_limit`` for the scans (it spills or streams beyond it)."""
THREADS = 2
"""DuckDB's threads: decoding overlaps with the coding and summing in Python; more threads
hold more batches in flight (memory) for little gain, since the NumPy side is the slower."""


def _files(path: str | Path | list) -> list[str]:
    files = [str(p) for p in path] if isinstance(path, list | tuple) else [str(path)]
    if not files:
        raise DataError("no files were given")
    return files


def _reader(files: list[str]) -> str:
    parquet = [f.endswith((".parquet", ".pq")) or f.endswith("/") or Path(f).is_dir()
               for f in files]
    if all(parquet):
        return "read_parquet"
    if not any(parquet):
        return "read_csv"
    raise DataError("give either Parquet or CSV files, not both: " + ", ".join(files))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def duckdb_chunks(path: str | Path | list, columns: list[str], chunk_rows: int, *,
                  memory_limit: str = MEMORY_LIMIT) -> Iterator[pd.DataFrame]:
    """DataFrames of at most ``chunk_rows`` rows of ``columns``, read by DuckDB.

    Parameters
    ----------
    path : str, Path or list
        A file, a glob (``"events/*.parquet"``, ``"events/**/*.parquet"``), a folder of
        Parquet files, or a list of them.
    columns : list of str
    chunk_rows : int
    memory_limit : str
        DuckDB's memory limit (``"1GB"``).

    Yields
    ------
    DataFrame
        In the files' row order.
    """
    import duckdb

    files = _files(path)
    files = [f.rstrip("/") + "/**/*.parquet" if Path(f).is_dir() else f for f in files]
    reader = _reader(files)
    con = duckdb.connect(config={"memory_limit": memory_limit,
                                 "preserve_insertion_order": True, "threads": THREADS})
    try:
        try:
            names = [d[0] for d in con.sql(f"DESCRIBE SELECT * FROM {reader}($files)",
                                           params={"files": files}).fetchall()]
        except duckdb.Error as err:  # no such file, unreadable file
            raise DataError(f"DuckDB cannot read {', '.join(files)}: {err}") from err
        absent = [c for c in columns if c not in names]
        if absent:
            raise DataError(f"{', '.join(files)} has no column {absent[0]!r} (it has "
                            f"{', '.join(names)})")
        sql = f"SELECT {', '.join(map(_quote, columns))} FROM {reader}($files)"
        batches = con.sql(sql, params={"files": files}).to_arrow_reader(chunk_rows)
        for batch in batches:
            yield batch.to_pandas()
    finally:
        con.close()
