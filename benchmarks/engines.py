"""Benchmark: the statistics pass on Dask and DuckDB against one process streaming, one run.

    python benchmarks/engines.py                      # 10M rows, 10,000 clusters
    python benchmarks/engines.py --rows 1000000 --clusters 1000 --files 8

Data: the cross-level Gaussian model ``y ~ x * w + (1 + x | g)`` simulated (seed 15) and
written as ``--files`` Parquet files to ``benchmarks/data/stats-<rows>/`` (git-ignored; made
once).  Each tool runs in a fresh subprocess and computes both passes (levels, then the
per-cluster sums) of ``bm.cluster_stats``:

``stream``  one process, pandas / pyarrow batches, file after file (``engine="pandas"``)
``dask``    ``distributed.LocalCluster`` with 2 worker processes (1 thread each),
            ``dd.read_parquet(folder)``; the cluster's start-up is timed apart
``duckdb``  one process, DuckDB's record batches over the glob (``engine="duckdb"``)

Reported per tool: wall time of the pass, rows per second, peak memory of the client process
(``wait4``'s ru_maxrss; the Dask workers are other processes), and the largest relative
difference of its statistics from the stream's.  Ratios to ``stream`` are in the same run.
JSON lines on stdout, also written to ``benchmarks/results/engines-<rows>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FORMULA = "y ~ x * w + (1 + x | g)"


def make_data(rows: int, clusters: int, files: int) -> Path:
    import numpy as np
    import pandas as pd

    folder = HERE / "data" / f"stats-{rows}-{clusters}-{files}"
    if (folder / "_done").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(15)
    w_j = rng.normal(size=clusters)
    u = rng.multivariate_normal([0, 0], [[0.64, 0.1], [0.1, 0.16]], size=clusters)
    per = -(-rows // files)
    for k in range(files):
        n = min(per, rows - k * per)
        g = rng.integers(0, clusters, n)
        x = rng.normal(size=n)
        w = w_j[g]
        y = 10 + 2 * x + w + 0.5 * x * w + u[g, 0] + u[g, 1] * x + rng.normal(size=n)
        pd.DataFrame({"y": y, "x": x, "w": w, "g": g}).to_parquet(
            folder / f"part-{k:03d}.parquet", row_group_size=250_000)
    (folder / "_done").write_text("")
    return folder


def child(tool: str, folder: str, out: str) -> None:
    import numpy as np

    import bayesmix as bm

    spec = bm.Spec.from_formula(FORMULA)
    files = sorted(str(p) for p in Path(folder).glob("*.parquet"))
    res: dict = {"tool": tool}
    if tool == "dask":
        import dask.dataframe as dd
        from distributed import Client, LocalCluster

        start = time.perf_counter()
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
        res["startup_s"] = time.perf_counter() - start
        start = time.perf_counter()
        st = bm.cluster_stats(spec, dd.read_parquet(files))
        res["pass_s"] = time.perf_counter() - start
        client.close()
        cluster.close()
    else:
        source = files if tool == "stream" else f"{folder}/*.parquet"
        start = time.perf_counter()
        st = bm.cluster_stats(spec, source, engine="pandas" if tool == "stream" else "duckdb")
        res["pass_s"] = time.perf_counter() - start
    np.savez(out, n=st.n, M=st.raw_M())
    res["rows"] = int(st.n.sum())
    print(json.dumps(res))


def run(tool: str, folder: Path, out: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", tool, str(folder), str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    if status != 0:
        return {"tool": tool, "error": stderr[-1500:]}
    res = json.loads(stdout.strip().splitlines()[-1])
    res["client_peak_mb"] = usage.ru_maxrss / 1024
    res["rows_per_s"] = res["rows"] / res["pass_s"]
    return res


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:5])
        return
    import numpy as np

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--clusters", type=int, default=10_000)
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--tools", default="stream,dask,duckdb")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    start = time.perf_counter()
    folder = make_data(args.rows, args.clusters, args.files)
    size = sum(p.stat().st_size for p in folder.glob("*.parquet"))
    print(json.dumps({"data": str(folder), "rows": args.rows, "clusters": args.clusters,
                      "files": args.files, "parquet_mb": size / 2**20,
                      "make_s": time.perf_counter() - start}), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, stats = [], {}
    for tool in args.tools.split(","):
        res = run(tool, folder, out / f"stats-{tool}.npz")
        if "error" not in res:
            stats[tool] = np.load(out / f"stats-{tool}.npz")
        rows.append(res)
    base = next((r for r in rows if r["tool"] == "stream" and "error" not in r), None)
    for res in rows:
        if base is not None and res["tool"] in stats and res is not base:
            ref, got = stats["stream"], stats[res["tool"]]
            res["n_equal"] = bool(np.array_equal(ref["n"], got["n"]))
            scale = np.abs(ref["M"]).max(axis=(1, 2), keepdims=True)
            res["max_rel_diff_M"] = float(np.max(np.abs(got["M"] - ref["M"]) / scale))
            res["ratio_to_stream"] = res["pass_s"] / base["pass_s"]
        print(json.dumps(res), flush=True)
    (out / f"engines-{args.rows}.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
