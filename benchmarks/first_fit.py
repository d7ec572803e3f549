"""Time to first posterior: wall time of ``bayesmix fit MODEL`` on cold and warm caches.

Each run is a fresh process (``python -m bayesmix.cli fit``), imports included, 4 chains x 1,000
draws (the CLI's defaults). Per model, all in one temporary cache (PyTensor's ``compiledir`` and
Numba's ``NUMBA_CACHE_DIR``; PyTensor's ``base_compiledir`` holds its Numba cache and
bayesmix's kernel cache, :mod:`bayesmix.kernel_cache`):

``cold``
    empty caches;
``warm_other_data``
    after a fit of *another data set of the same structure* (a tenth of the clusters dropped,
    the outcome shuffled and, if Gaussian, rescaled), which is what issue 14 calls warm:
    compiled code that depends only on the model's structure is reused, code that bakes the
    data in is not;
``warm_same_data``
    a second fit of the same data.

The CLI's own split (import, design, build, compile, sample, u draws, log-lik, checks) is
parsed from its ``Time`` line. JSON lines are printed and written to
``benchmarks/results/first_fit.json``::

    python benchmarks/first_fit.py --models dung,sleepstudy,hsb,egsingle_three_level,contraception
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"


def _other_data_model(model: str, folder: Path) -> Path:
    """A copy of the model file on another data set of the same structure.

    The rows of the first tenth of the (outermost) clusters dropped, the outcome shuffled,
    and a Gaussian outcome also rescaled (× 1.7 + 3): other statistics, other sizes, another
    standardising scale.
    """
    import bayesmix as bm

    path = MODELS / f"{model}.toml"
    spec = bm.Spec.from_file(path)
    data = bm.load_data(spec)
    cluster = spec.cluster.replace("/", ":").split(":")[0]  # the outermost factor
    units = data[cluster].unique()
    data = data[~data[cluster].isin(units[: max(1, len(units) // 10)])].copy()
    rng = np.random.default_rng(1)
    cols = [spec.outcome] + ([spec.trials] if spec.trials else [])
    data[cols] = data[cols].to_numpy()[rng.permutation(len(data))]
    if spec.family.is_gaussian:
        data[spec.outcome] = data[spec.outcome] * 1.7 + 3.0
    csv = folder / f"{model}_other.csv"
    data.to_csv(csv, index=False)
    raw = tomllib.loads(path.read_text())
    text = path.read_text().replace(f'data = "{raw["data"]}"', f'data = "{csv}"')
    out = folder / f"{model}_other.toml"
    out.write_text(text)
    return out


def _run(model_file: Path, env: dict[str, str]) -> dict:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bayesmix.cli", "fit", str(model_file)],
                          capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        return {"wall_s": wall, "error": proc.stderr[-2000:]}
    tail = proc.stdout[proc.stdout.rfind("Time "):]
    line = " ".join(tail.split("process wall time")[0].split())
    parts = dict((k.strip(), float(v)) for k, v in
                 re.findall(r"([a-z+\- ()]+?) (\d+\.\d+)(?:,|$)", line.split(":", 1)[1]))
    age = re.search(r"process wall time (\d+\.\d+)", tail)
    return {"wall_s": round(wall, 2), "split": parts,
            "process_s": float(age.group(1)) if age else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="dung,sleepstudy,hsb")
    args = parser.parse_args(argv)
    rows = []
    for model in args.models.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            env = dict(os.environ)
            env["PYTENSOR_FLAGS"] = f"base_compiledir={folder / 'pytensor'}"
            env["NUMBA_CACHE_DIR"] = str(folder / "numba")
            original = MODELS / f"{model}.toml"
            row = {"model": model, "cold": _run(original, env)}
            other = _other_data_model(model, folder)
            # warm: the same structure fitted before on other data, in a clean cache
            env2 = dict(env)
            env2["PYTENSOR_FLAGS"] = f"base_compiledir={folder / 'pytensor2'}"
            env2["NUMBA_CACHE_DIR"] = str(folder / "numba2")
            _run(other, env2)
            row["warm_other_data"] = _run(original, env2)
            row["warm_same_data"] = _run(original, env2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = ROOT / "benchmarks" / "results" / "first_fit.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1) + "\n")
    print(pd.DataFrame([{"model": r["model"], **{k: r[k]["wall_s"] for k in
                                                  ("cold", "warm_other_data", "warm_same_data")}}
                        for r in rows]).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
