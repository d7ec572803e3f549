"""Benchmark: several grouping factors (three levels, nested, crossed) against lme4 and brms.

    python benchmarks/levels.py --cases egsingle --peers brms       # three-level posterior
    python benchmarks/levels.py --cases gradient                    # nested gradient, 10k vs 1M
    python benchmarks/levels.py --cases insteval --peers lme4       # crossed REML (+ posterior)

Every (case, tool) runs in a subprocess of its own, in one run, and prints one JSON object per
line (also written to ``benchmarks/results/levels-<cases>.json``).  Draws: 4 chains × 1,000
after 1,000 warm-up for every sampler.  Speed is measured here, never asserted in tests.

Cases
-----
egsingle
    mlmRev's egsingle (7,230 rows, 1,721 children in 60 schools), the growth model of
    ``models/egsingle_three_level.toml``: bayesmix's default (nested collapsed) against brms
    (``brm(..., chains = 4, cores = 4)``), wall time including compilation, min bulk ESS over
    γ, SDs, correlations and σ, max R-hat, divergences.
gradient
    Time per log-density-and-gradient of the nested collapsed form on simulated three-level
    data with the same units (200 schools × 25 children) at 10k and 1M rows.
insteval
    lme4's InstEval (73,421 rows; 2,972 students × 1,128 lecturers × 14 departments):
    ``y ~ service + (1 | s) + (1 | d) + (1 | dept)``, REML with bayesmix and lme4 in the same
    run; ``--posterior`` adds bayesmix's full posterior (row-wise form).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DRAWS, TUNE, CHAINS = 1000, 1000, 4
EGSINGLE = ("math ~ 1 + year + black + lowinc + year:black + year:lowinc"
            " + (1 + year | schoolid) + (1 + year | schoolid:childid)")
INSTEVAL = "y ~ service + (1 | s) + (1 | d) + (1 | dept)"

R_BRMS = r"""
suppressPackageStartupMessages({library(brms); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1]); d$schoolid <- factor(d$schoolid); d$childid <- factor(d$childid)
t0 <- Sys.time()
m <- brm(as.formula(args[2]), data = d, chains = 4, cores = 4, iter = 2000, warmup = 1000,
         seed = 1, refresh = 0, silent = 2)
total <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
s <- summary(m)
pars <- rbind(s$fixed, do.call(rbind, s$random), s$spec_pars)
times <- rstan::get_elapsed_time(m$fit)
cat(toJSON(list(total_s = total, sample_s = max(rowSums(times)),
  ess_min = min(pars$Bulk_ESS), rhat_max = max(pars$Rhat),
  divergences = sum(rstan::get_divergent_iterations(m$fit))), auto_unbox = TRUE), "\n")
"""

R_LME4 = r"""
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
for (v in c("s", "d", "dept")) d[[v]] <- factor(d[[v]])
t0 <- Sys.time()
m <- lmer(as.formula(args[2]), data = d, REML = TRUE)
fit_s <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
cat(toJSON(list(fit_s = fit_s, criterion = as.numeric(REMLcrit(m)),
  sd = as.data.frame(VarCorr(m))$sdcor), auto_unbox = TRUE, digits = NA), "\n")
"""


def _ess_rhat(fit) -> tuple[float, float]:
    import numpy as np
    from arviz_stats import ess, rhat

    from bayesmix.checks.summary import summary_dataset

    ds = summary_dataset(fit)
    e_min, r_max = np.inf, 0.0
    for name in ds.data_vars:
        e = np.asarray(ess(ds[name], method="bulk"))
        r = np.asarray(rhat(ds[name]))
        e_min = min(e_min, float(np.nanmin(e)))
        r_max = max(r_max, float(np.nanmax(r)))
    return e_min, r_max


def child_bayesmix_posterior(case: str) -> dict:
    t0 = time.perf_counter()
    import numpy as np
    import pandas as pd

    import bayesmix as bm

    if case == "egsingle":
        data = pd.read_csv(ROOT / "data" / "egsingle.csv")
        spec = bm.Spec.from_formula(EGSINGLE, data)
    else:
        data = pd.read_csv(ROOT / "data" / "insteval.csv.gz")
        spec = bm.Spec.from_formula(INSTEVAL, categorical=["s", "d", "dept"])
    settings = bm.SamplerSettings(draws=DRAWS, tune=TUNE, chains=CHAINS, random_seed=11,
                                  progressbar=False)
    fit = bm.fit(spec, data, settings=settings)
    wall = time.perf_counter() - t0
    ess_min, rhat_max = _ess_rhat(fit)
    div = int(np.asarray(fit.idata["sample_stats"]["diverging"]).sum())
    return {"wall_s": wall, "ess_min": ess_min, "rhat_max": rhat_max, "divergences": div,
            "likelihood": fit.likelihood, "timings": fit.timings, "n": fit.design.n}


def child_gradient(n: int) -> dict:
    import numpy as np
    import pandas as pd

    import bayesmix as bm
    from bayesmix.sampling import _compile_c

    rng = np.random.default_rng(5)
    schools, children = 200, 25
    child = rng.integers(0, schools * children, n)
    school = child // children
    x = rng.normal(size=n)
    u_school = rng.normal(size=schools)
    u_child = 0.7 * rng.normal(size=schools * children)
    y = 1 + 0.5 * x + u_school[school] + u_child[child] + rng.normal(size=n)
    data = pd.DataFrame({"y": y, "x": x, "school": school, "child": child % children})
    spec = bm.Spec.from_formula("y ~ x + (1 + x | school) + (1 + x | school:child)")
    design = bm.build_design(spec, data)
    built = bm.build_model(design)
    model = _compile_c(built)
    logp = model._make_logp_func()
    point = model._make_initial_points(1)
    logp(point)
    calls = 200
    start = time.perf_counter()
    for _ in range(calls):
        logp(point)
    per = (time.perf_counter() - start) / calls
    return {"n": n, "units": [schools, schools * children], "likelihood": built.likelihood,
            "grad_ms": per * 1e3}


def child_reml(case: str) -> dict:
    t0 = time.perf_counter()
    import pandas as pd

    import bayesmix as bm

    data = pd.read_csv(ROOT / "data" / "insteval.csv.gz")
    spec = bm.Spec.from_formula(INSTEVAL, categorical=["s", "d", "dept"])
    start = time.perf_counter()
    reml = bm.fit_reml(spec, data)
    fit_s = time.perf_counter() - start
    return {"wall_s": time.perf_counter() - t0, "fit_s": fit_s,
            "criterion": float(reml.criterion), "converged": bool(reml.converged)}


def run_r(script: str, data: Path, formula: str, timeout: float | None = None) -> dict:
    """Run an R peer; a run past ``timeout`` seconds is reported as a lower bound."""
    with tempfile.NamedTemporaryFile("w", suffix=".R", delete=False) as fh:
        fh.write(script)
    start = time.perf_counter()
    try:
        out = subprocess.run(["Rscript", fh.name, str(data), formula], capture_output=True,
                             text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {timeout:.0f} s", "total_s_lower_bound":
                time.perf_counter() - start}
    finally:
        os.unlink(fh.name)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        return {"error": out.stderr[-1500:]}
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["process_s"] = wall
    return res


def run_child(*args: str) -> dict:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True,
                         text=True)
    if out.returncode != 0:
        return {"error": out.stderr[-1500:]}
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["process_s"] = time.perf_counter() - start
    return res


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, arg = sys.argv[2], sys.argv[3]
        if kind == "posterior":
            res = child_bayesmix_posterior(arg)
        elif kind == "gradient":
            res = child_gradient(int(arg))
        else:
            res = child_reml(arg)
        print(json.dumps(res))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="egsingle,gradient,insteval")
    ap.add_argument("--peers", default="lme4,brms")
    ap.add_argument("--posterior", action="store_true", help="InstEval's full posterior too")
    ap.add_argument("--peer-timeout", type=float, default=3600.0,
                    help="seconds before a peer run is stopped and reported as a lower bound")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    peers = set(args.peers.split(",")) if args.peers else set()
    rows = []

    def emit(row: dict) -> None:
        rows.append(row)
        print(json.dumps(row), flush=True)

    for case in args.cases.split(","):
        if case == "egsingle":
            bm_row = {"case": case, "tool": "bayesmix", **run_child("posterior", case)}
            emit(bm_row)
            if "brms" in peers:
                br = {"case": case, "tool": "brms",
                      **run_r(R_BRMS, ROOT / "data" / "egsingle.csv", EGSINGLE,
                              args.peer_timeout)}
                emit(br)
                brms_s = br.get("total_s", br.get("total_s_lower_bound"))
                if "wall_s" in bm_row and brms_s is not None:
                    bound = "" if "total_s" in br else " (at least: brms did not finish)"
                    emit({"case": case, "ratio": f"brms wall / bayesmix wall{bound}",
                          "value": brms_s / bm_row["wall_s"]})
        elif case == "gradient":
            small = {"case": case, "tool": "bayesmix", **run_child("gradient", "10000")}
            big = {"case": case, "tool": "bayesmix", **run_child("gradient", "1000000")}
            emit(small)
            emit(big)
            if "grad_ms" in small and "grad_ms" in big:
                emit({"case": case, "ratio": "grad 1M / grad 10k",
                      "value": big["grad_ms"] / small["grad_ms"]})
        elif case == "insteval":
            mine = {"case": case, "tool": "bayesmix REML", **run_child("reml", case)}
            emit(mine)
            if "lme4" in peers:
                ref = {"case": case, "tool": "lme4 REML",
                       **run_r(R_LME4, ROOT / "data" / "insteval.csv.gz", INSTEVAL)}
                emit(ref)
                if "fit_s" in mine and "fit_s" in ref:
                    emit({"case": case, "ratio": "bayesmix REML / lme4 REML (fit time)",
                          "value": mine["fit_s"] / ref["fit_s"]})
            if args.posterior:
                emit({"case": case, "tool": "bayesmix posterior",
                      **run_child("posterior", case)})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"levels-{args.cases.replace(',', '-')}.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
