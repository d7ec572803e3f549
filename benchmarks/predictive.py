"""Cost of the predictive layer, and PSIS-LOO against exact leave-one-cluster-out refits.

Cases (JSON on stdout, one object per case):

``groups``  the cross-level model at n = 1M rows (J = 5,000; benchmarks/simulate.py): the
            seconds spent adding ``observed_data`` and ``log_likelihood`` to the fit against
            the fit's whole wall time (target < 10%); then ``bm.loo(unit="observation")``,
            which computes the (draws × rows) conditional log-likelihood in chunks, with its
            peak memory.  Peer in the same run: ``pm.compute_log_likelihood`` on PyMC's
            row-wise model would hold draws × rows float64 values (32 GB at 4,000 × 1M); its
            size is reported, it is not run.
``loco``    sleepstudy and pastes (three levels): PSIS-LOO by cluster against K = J exact
            refits (``bm.kfold``): ELPDs, SEs, and the correlation of the per-cluster values
            (targets: |Δ ELPD| < 2 SE, r ≥ 0.95).

    python benchmarks/predictive.py --cases groups,loco [--size 1M]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def case_groups(size: str) -> dict:
    from simulate import ensure

    import bayesmix as bm

    data = pd.read_csv(ensure(size, HERE / "data"))
    spec = bm.Spec.from_equations(
        """
        y = b0 + b1*X + e
        b0 = g00 + g01*M + U0
        b1 = g10 + g11*M + U1
        """, cluster="cluster")
    start = time.perf_counter()
    fit = bm.fit(spec, data, random_seed=1, progressbar=False)
    wall = time.perf_counter() - start
    groups = fit.timings["log_likelihood"]
    S = fit.settings.draws * fit.settings.chains
    print(json.dumps({
        "case": "groups", "size": size, "n": fit.design.n, "J": fit.design.J,
        "fit_wall_s": round(wall, 2), "timings": {k: round(v, 3) for k, v in fit.timings.items()},
        "groups_s": round(groups, 3), "groups_fraction": round(groups / wall, 4),
        "stored": sorted(fit.idata["log_likelihood"].data_vars),
        "max_rss_mb": round(_rss_mb(), 1),
        "peer_pm_compute_log_likelihood_gb": round(S * fit.design.n * 8 / 1e9, 1),
    }), flush=True)
    out = {"case": "loo_cluster_and_observation", "size": size}
    for unit in ("cluster", "observation"):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = bm.loo(fit, unit)
        out[unit] = {"seconds": round(time.perf_counter() - start, 2), "elpd": result.elpd,
                     "se": result.se, "p": result.p,
                     "max_pareto_k": float(result.pareto_k.max())}
    out["max_rss_mb_after"] = round(_rss_mb(), 1)
    return out


def case_loco() -> dict:
    import bayesmix as bm

    out = {"case": "loco", "models": {}}
    for name in ("sleepstudy", "pastes_nested"):
        fit = bm.fit(ROOT / "models" / f"{name}.toml", draws=500, tune=500, progressbar=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            approx = bm.loo(fit, "cluster")
        start = time.perf_counter()
        exact = bm.kfold(fit, k=approx.n_data_points)
        seconds = time.perf_counter() - start
        out["models"][name] = {
            "J": int(approx.n_data_points), "psis_elpd": approx.elpd, "psis_se": approx.se,
            "exact_elpd": exact.elpd, "exact_se": exact.se,
            "diff_in_se": abs(approx.elpd - exact.elpd) / exact.se,
            "corr": float(np.corrcoef(approx.elpd_i.values, exact.elpd_i.values)[0, 1]),
            "max_pareto_k": float(approx.pareto_k.max()), "refits_s": round(seconds, 1),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="groups,loco")
    ap.add_argument("--size", default="1M")
    args = ap.parse_args()
    for case in args.cases.split(","):
        result = case_groups(args.size) if case == "groups" else case_loco()
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
