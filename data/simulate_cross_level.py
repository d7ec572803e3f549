"""Simulate the seed question's cross-level model with a fixed seed; write the data and the truth.

    y_ij  = b0_j + b1_j * X_ij + e_ij,          e_ij ~ N(0, sigma^2)
    b0_j  = g00 + g01 * M_j + U0_j
    b1_j  = g10 + g11 * M_j + U1_j,             (U0_j, U1_j) ~ N(0, T)

Run from the repository root: ``python data/simulate_cross_level.py``.  Writes
``data/cross_level.csv`` (columns y, X, M, cluster) and ``data/cross_level_truth.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

SEED = 20241017
TRUTH = {
    "g00": 10.0,
    "g01": 2.0,
    "g10": 1.5,
    "g11": -0.8,
    "sd_U0": 1.0,
    "sd_U1": 0.5,
    "corr_U0_U1": 0.3,
    "sigma": 2.0,
}
J = 60


def simulate(seed: int = SEED, clusters: int = J) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(10, 31, size=clusters)
    M = rng.normal(0.0, 1.0, size=clusters)
    sd = np.array([TRUTH["sd_U0"], TRUTH["sd_U1"]])
    corr = np.array([[1.0, TRUTH["corr_U0_U1"]], [TRUTH["corr_U0_U1"], 1.0]])
    U = rng.multivariate_normal(np.zeros(2), corr * np.outer(sd, sd), size=clusters)
    rows = []
    for j in range(clusters):
        b0 = TRUTH["g00"] + TRUTH["g01"] * M[j] + U[j, 0]
        b1 = TRUTH["g10"] + TRUTH["g11"] * M[j] + U[j, 1]
        X = rng.normal(0.5 * M[j], 1.0, size=sizes[j])
        y = b0 + b1 * X + rng.normal(0.0, TRUTH["sigma"], size=sizes[j])
        for xi, yi in zip(X, y, strict=True):
            rows.append({"y": round(yi, 6), "X": round(xi, 6), "M": round(M[j], 6),
                         "cluster": f"c{j + 1:02d}"})
    return pd.DataFrame(rows)


if __name__ == "__main__":
    here = Path(__file__).parent
    data = simulate()
    data.to_csv(here / "cross_level.csv", index=False)
    (here / "cross_level_truth.json").write_text(
        json.dumps({"seed": SEED, "clusters": J, "rows": len(data), **TRUTH}, indent=2) + "\n"
    )
    print(f"wrote {len(data)} rows in {J} clusters")
