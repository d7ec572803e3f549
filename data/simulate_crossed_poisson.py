"""Simulate a crossed Poisson data set with exposure (an offset); fixed seed.

    y ~ Poisson(t * exp(b0 + b1 * x + U_a + V_b))      i.e.  log E[y] = log(t) + eta

30 levels of a and 20 levels of b, fully crossed, two observations per (a, b) pair (1,200 rows),
rows in a random order.  x ~ N(0, 1) per observation; the exposure t ~ Uniform(0.5, 3), both
rounded to 6 decimals (y is drawn from the rounded values).  U ~ N(0, sd_a^2), V ~ N(0, sd_b^2).
The levels of a are labelled a01 ... a30 and those of b b01 ... b20.

Run from the repository root: ``python data/simulate_crossed_poisson.py`` (numpy only).  Writes
``data/crossed_poisson.csv`` (columns y, t, x, a, b) and ``data/crossed_poisson_truth.json``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

SEED = 20250611
LEVELS_A = 30
LEVELS_B = 20
REPLICATES = 2
TRUTH = {
    "b0": 0.5,
    "b1": 0.3,
    "sd_a": 0.6,
    "sd_b": 0.4,
}


def simulate(seed: int = SEED) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    U = rng.normal(0.0, TRUTH["sd_a"], size=LEVELS_A)
    V = rng.normal(0.0, TRUTH["sd_b"], size=LEVELS_B)
    cells = [(j, k) for j in range(LEVELS_A) for k in range(LEVELS_B) for _ in range(REPLICATES)]
    order = rng.permutation(len(cells))
    rows = []
    for i in order:
        j, k = cells[i]
        x = round(float(rng.normal(0.0, 1.0)), 6)
        t = round(float(rng.uniform(0.5, 3.0)), 6)
        mu = t * np.exp(TRUTH["b0"] + TRUTH["b1"] * x + U[j] + V[k])
        y = int(rng.poisson(mu))
        rows.append({"y": y, "t": t, "x": x, "a": f"a{j + 1:02d}", "b": f"b{k + 1:02d}"})
    return rows


if __name__ == "__main__":
    here = Path(__file__).parent
    rows = simulate()
    with open(here / "crossed_poisson.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (here / "crossed_poisson_truth.json").write_text(
        json.dumps({"seed": SEED, "levels_a": LEVELS_A, "levels_b": LEVELS_B,
                    "replicates": REPLICATES, "rows": len(rows), **TRUTH}, indent=2) + "\n"
    )
    print(f"wrote {len(rows)} rows")
