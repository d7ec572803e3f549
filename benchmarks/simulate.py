"""Synthetic cross-level data for the benchmark (the seed's model, data/simulate_cross_level.py).

    y_ij = b0_j + b1_j X_ij + e_ij,  b0_j = g00 + g01 M_j + U0_j,  b1_j = g10 + g11 M_j + U1_j

Sizes: 1k (J=50), 10k (J=500), 100k (J=1,000), 1M (J=5,000); also 1Mj1000 (n=1M, J=1,000) for
the time-per-gradient comparison.  Vectorised; writes CSV (read by R and Python alike).

    python benchmarks/simulate.py --sizes 1k,10k,100k,1M --out benchmarks/data
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

TRUTH = {"g00": 10.0, "g01": 2.0, "g10": 1.5, "g11": -0.8, "sd_U0": 1.0, "sd_U1": 0.5,
         "corr": 0.3, "sigma": 2.0}
SIZES = {"1k": (1_000, 50), "10k": (10_000, 500), "100k": (100_000, 1_000),
         "1M": (1_000_000, 5_000), "10kj1000": (10_000, 1_000), "1Mj1000": (1_000_000, 1_000)}


def simulate(n: int, J: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cluster = np.sort(rng.integers(0, J, size=n))
    cluster[:J] = np.arange(J)  # every cluster present
    cluster.sort()
    M = rng.normal(size=J)
    sd = np.array([TRUTH["sd_U0"], TRUTH["sd_U1"]])
    cov = np.array([[1, TRUTH["corr"]], [TRUTH["corr"], 1]]) * np.outer(sd, sd)
    U = rng.multivariate_normal(np.zeros(2), cov, size=J)
    b0 = TRUTH["g00"] + TRUTH["g01"] * M + U[:, 0]
    b1 = TRUTH["g10"] + TRUTH["g11"] * M + U[:, 1]
    X = rng.normal(0.5 * M[cluster], 1.0)
    y = b0[cluster] + b1[cluster] * X + rng.normal(0, TRUTH["sigma"], size=n)
    return pd.DataFrame({"y": y.round(6), "X": X.round(6), "M": M[cluster].round(6),
                         "cluster": np.char.add("c", cluster.astype(str))})


def path_for(size: str, out: Path) -> Path:
    return out / f"cross_level_{size}.csv"


def ensure(size: str, out: Path) -> Path:
    path = path_for(size, out)
    if not path.exists():
        out.mkdir(parents=True, exist_ok=True)
        n, J = SIZES[size]
        simulate(n, J).to_csv(path, index=False)
    return path


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1k,10k,100k,1M")
    ap.add_argument("--out", default="benchmarks/data")
    args = ap.parse_args()
    for s in args.sizes.split(","):
        print(ensure(s, Path(args.out)))
