"""Benchmark: the crossed collapsed likelihood against the sufficient form.

    nice -n 10 python benchmarks/crossed_collapsed.py                  # both data sets
    nice -n 10 python benchmarks/crossed_collapsed.py --scaling        # gradient vs Q only

For data/penicillin.csv (``models/penicillin_crossed.toml``) and data/crossed_slope.csv
(``y ~ x + (1 + x | subject) + (1 | item)``), each form: time per log density and gradient
(PyTensor's C back end as nutpie calls it, median of 5 runs of 200 calls), then one nutpie run
of 2 chains × 1,000 draws after 1,000 warm-up, chains one after the other (``cores=1``):
sampling time, min bulk ESS over γ, SDs and σ, ESS per second, divergences.  ``--scaling``
times the gradient alone on simulated crossed data (two intercept factors) of growing Q.
One JSON object per line.  Speed is measured here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

import bayesmix as bm
from bayesmix.sampling import _compile_c

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "penicillin": ("penicillin.csv", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
    "crossed_slope": ("crossed_slope.csv", "y ~ x + (1 + x | subject) + (1 | item)"),
}


def grad_ms(built: bm.BuiltModel) -> float:
    model = _compile_c(built)
    logp = model._make_logp_func()
    point = model._make_initial_points(1)
    logp(point)
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(200):
            logp(point)
        runs.append((time.perf_counter() - start) / 200)
    return float(np.median(runs)) * 1e3


def min_ess(fit: bm.Fit) -> float:
    from arviz_stats import ess

    post = fit.posterior
    names = ["beta", "sigma"] + [v for v in post.data_vars if str(v).startswith("sd_u_")]
    return float(min(np.min(np.asarray(ess(post[v], method="bulk"))) for v in names))


def case(name: str, sample: bool) -> list[dict]:
    path, formula = CASES[name]
    design = bm.build_design(bm.Spec.from_formula(formula), pd.read_csv(ROOT / "data" / path))
    rows = []
    for form in ("collapsed", "sufficient"):
        built = bm.build_model(design, likelihood=form)
        row = {"case": name, "form": form, "Q": sum(fe.J * fe.q for fe in design.effects),
               "grad_ms": round(grad_ms(built), 4)}
        if sample:
            settings = bm.SamplerSettings(draws=1000, tune=1000, chains=2, cores=1,
                                          random_seed=1, progressbar=False, backend="c",
                                          target_accept=0.9)
            fit = bm.sample(built, settings)
            ess = min_ess(fit)
            div = int(fit.sample_stats["diverging"].sum()) if "diverging" in \
                fit.sample_stats else -1
            row.update({"compile_s": round(fit.timings.get("compile", 0.0), 2),
                        "sample_s": round(fit.timings["sample"], 2),
                        "u_draws_s": round(fit.timings.get("u_draws", 0.0), 2),
                        "min_bulk_ess": round(ess), "ess_per_s": round(
                            ess / fit.timings["sample"], 1), "divergences": div})
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def scaling(sizes: list[int]) -> None:
    rng = np.random.default_rng(3)
    for Q in sizes:
        a = Q * 3 // 4
        b = Q - a
        n = 4 * Q
        fa, fb = rng.integers(0, a, n), rng.integers(0, b, n)
        fa[:a], fb[:b] = np.arange(a), np.arange(b)
        y = rng.normal(size=a)[fa] + rng.normal(size=b)[fb] + rng.normal(size=n)
        data = pd.DataFrame({"y": y, "a": fa, "b": fb})
        design = bm.build_design(bm.Spec.from_formula("y ~ 1 + (1 | a) + (1 | b)"), data)
        for form in ("collapsed", "sufficient"):
            built = bm.build_model(design, likelihood=form)
            print(json.dumps({"case": "simulated", "Q": Q, "n": n, "form": form,
                              "grad_ms": round(grad_ms(built), 4)}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scaling", action="store_true")
    ap.add_argument("--no-sample", action="store_true")
    ap.add_argument("--sizes", default="100,200,400,800,1500")
    args = ap.parse_args()
    if args.scaling:
        scaling([int(s) for s in args.sizes.split(",")])
        return
    for name in CASES:
        case(name, not args.no_sample)


if __name__ == "__main__":
    main()
