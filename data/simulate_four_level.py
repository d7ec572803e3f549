"""Simulate a four-level nested data set with a fixed seed; write the data and the truth.

    y = b0 + b1 * x + u_region + u_district + u_school + u_student + e

6 regions, 5 districts in each region, 6 schools in each district, 8 students in each school,
2 measures of each student (2,880 rows); x is a level-1 (measure-level) predictor ~ N(0, 1).
The ids repeat across parents: districts are 1..5 in every region, schools 1..6 in every
district, students 1..8 in every school, so a unit is identified only by its whole path
(region:district:school:student).  The random effects are independent normal intercepts.

Run from the repository root: ``python data/simulate_four_level.py`` (numpy only).  Writes
``data/four_level.csv`` (columns y, x, region, district, school, student, measure) and
``data/four_level_truth.json``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

SEED = 20250604
SIZES = {"region": 6, "district": 5, "school": 6, "student": 8, "measure": 2}
TRUTH = {
    "b0": 10.0,
    "b1": 2.0,
    "sd_region": 2.0,
    "sd_district": 1.5,
    "sd_school": 1.0,
    "sd_student": 0.8,
    "sigma": 0.5,
}


def simulate(seed: int = SEED) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(1, SIZES["region"] + 1):
        u_r = rng.normal(0.0, TRUTH["sd_region"])
        for d in range(1, SIZES["district"] + 1):
            u_d = rng.normal(0.0, TRUTH["sd_district"])
            for s in range(1, SIZES["school"] + 1):
                u_s = rng.normal(0.0, TRUTH["sd_school"])
                for p in range(1, SIZES["student"] + 1):
                    u_p = rng.normal(0.0, TRUTH["sd_student"])
                    for m in range(1, SIZES["measure"] + 1):
                        x = rng.normal(0.0, 1.0)
                        e = rng.normal(0.0, TRUTH["sigma"])
                        y = TRUTH["b0"] + TRUTH["b1"] * x + u_r + u_d + u_s + u_p + e
                        rows.append({"y": round(float(y), 6), "x": round(float(x), 6),
                                     "region": r, "district": d, "school": s,
                                     "student": p, "measure": m})
    return rows


if __name__ == "__main__":
    here = Path(__file__).parent
    rows = simulate()
    with open(here / "four_level.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (here / "four_level_truth.json").write_text(
        json.dumps({"seed": SEED, "sizes": SIZES, "rows": len(rows), **TRUTH}, indent=2) + "\n"
    )
    print(f"wrote {len(rows)} rows")
