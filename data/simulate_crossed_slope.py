"""Simulate a crossed (subjects x items) data set with a random slope; fixed seed.

    y = b0 + b1 * x + (U0_subject + U1_subject * x) + V_item + e

40 subjects and 15 items, fully crossed, one measure per subject-item pair (600 rows); x is a
level-1 predictor ~ N(0, 1).  (U0, U1) ~ N(0, T) with SDs sd_U0, sd_U1 and correlation
corr_U0_U1; V ~ N(0, sd_item^2); e ~ N(0, sigma^2).  Subjects and items are both numbered from
1, so the same label means different units in the two factors.

Run from the repository root: ``python data/simulate_crossed_slope.py`` (numpy only).  Writes
``data/crossed_slope.csv`` (columns y, x, subject, item) and ``data/crossed_slope_truth.json``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

SEED = 20250605
SUBJECTS = 40
ITEMS = 15
TRUTH = {
    "b0": 5.0,
    "b1": 1.0,
    "sd_U0": 1.0,
    "sd_U1": 0.5,
    "corr_U0_U1": 0.4,
    "sd_item": 0.7,
    "sigma": 1.0,
}


def simulate(seed: int = SEED) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    sd = np.array([TRUTH["sd_U0"], TRUTH["sd_U1"]])
    corr = np.array([[1.0, TRUTH["corr_U0_U1"]], [TRUTH["corr_U0_U1"], 1.0]])
    U = rng.multivariate_normal(np.zeros(2), corr * np.outer(sd, sd), size=SUBJECTS)
    V = rng.normal(0.0, TRUTH["sd_item"], size=ITEMS)
    rows = []
    for j in range(SUBJECTS):
        for k in range(ITEMS):
            x = rng.normal(0.0, 1.0)
            e = rng.normal(0.0, TRUTH["sigma"])
            y = TRUTH["b0"] + TRUTH["b1"] * x + U[j, 0] + U[j, 1] * x + V[k] + e
            rows.append({"y": round(float(y), 6), "x": round(float(x), 6),
                         "subject": j + 1, "item": k + 1})
    return rows


if __name__ == "__main__":
    here = Path(__file__).parent
    rows = simulate()
    with open(here / "crossed_slope.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (here / "crossed_slope_truth.json").write_text(
        json.dumps({"seed": SEED, "subjects": SUBJECTS, "items": ITEMS, "rows": len(rows),
                    **TRUTH}, indent=2) + "\n"
    )
    print(f"wrote {len(rows)} rows")
