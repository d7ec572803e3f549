r"""The ``bayesmix reml`` command (wired up in :mod:`bayesmix.cli`).

::

    bayesmix reml models/sleepstudy.toml                          # the model file's data
    bayesmix reml models/hsb.toml --method ML
    bayesmix reml models/hsb.toml --data "hsb/*.parquet"          # DuckDB reads the files
    bayesmix reml models/hsb.toml --data big.csv --engine pandas  # one file in chunks
    bayesmix reml models/hsb.toml --data "s3://bucket/hsb/*.parquet" --scheduler tcp://host:8786

With ``--data`` the rows are not read into memory: the per-cluster statistics are computed
where the rows are (:mod:`bayesmix.stats.sources`; one-factor Gaussian models) and REML is
fitted from them.  ``--scheduler`` connects to a Dask cluster and reads ``--data`` there
with ``dask.dataframe.read_parquet`` (or ``read_csv`` for ``.csv`` files).
"""

from __future__ import annotations

import argparse

from bayesmix.errors import BayesmixError


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    p.add_argument("model", help="model file (TOML)")
    p.add_argument("--method", choices=["REML", "ML"], default="REML")
    p.add_argument("--data", help="the rows, left where they are: a CSV or Parquet file, a "
                   "glob or a folder (default: the model file's data, read into memory)")
    p.add_argument("--engine", choices=["pandas", "duckdb"],
                   help="who reads --data files (default: duckdb for globs and folders, "
                   "pandas for one file)")
    p.add_argument("--scheduler", help="address of a Dask scheduler: --data is read and "
                   "summed on its workers")


def run_reml_cli(args: argparse.Namespace) -> int:
    """Fit by REML / ML and print the estimates."""
    import bayesmix as bm

    spec = bm.Spec.from_file(args.model)
    if args.scheduler and not args.data:
        raise BayesmixError("--scheduler reads --data on the cluster; give --data too")
    if args.data is None:
        reml = bm.fit_reml(spec, bm.load_data(spec), method=args.method)
    elif args.scheduler:
        import dask.dataframe as dd
        from distributed import Client

        with Client(args.scheduler):
            read = dd.read_csv if args.data.endswith(".csv") else dd.read_parquet
            reml = bm.fit_reml(spec, read(args.data), method=args.method)
    else:
        from bayesmix.reml.from_stats import reml_from_source

        reml = reml_from_source(spec, args.data, args.method, engine=args.engine)
    print(repr(reml))
    return 0
