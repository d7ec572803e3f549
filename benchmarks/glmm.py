"""Benchmark: GLMM posteriors (binomial, Bernoulli) against brms, bambi and glmer, in one run.

    python benchmarks/glmm.py --cases cbpp --peers brms
    python benchmarks/glmm.py --cases bern100k --peers bambi,glmer
    python benchmarks/glmm.py --cases cbpp --peers brms --likelihood auto,agq,laplace
    python benchmarks/glmm.py --cases bern100k --peers bambi,glmer \
        --bambi-python /path/to/venv/bin/python --draws 500 --tune 500

Every (case, tool) runs in a subprocess of its own and prints one JSON object per line (also
written to ``benchmarks/results/glmm-<cases>.json``).  Draws: 4 chains × 1,000 after 1,000
warm-up for every sampler (``--draws`` / ``--tune`` change both for every Python tool in the
run).  Speed is measured here, never asserted in tests.

bambi 0.17 needs PyMC 5, bayesmix PyMC 6: bambi runs in a virtual environment of its own
(``python -m venv bambi-venv && bambi-venv/bin/python -m pip install bambi nutpie``), named by
``--bambi-python``.

Cases
-----
cbpp
    lme4's cbpp, ``models/cbpp.toml`` (binomial, random herd): bayesmix's defaults against
    ``brm(incidence | trials(size) ~ period + (1 | herd), family = binomial)``; wall time
    including compilation, min bulk ESS over γ and the SD, max R-hat, divergences.
bern100k
    Simulated (seed 20261202): 100,000 rows in 1,000 clusters, a cross-level Bernoulli model
    ``y ~ x * w + (1 + x | g)``, x level-1 N(0, 1), w cluster-level N(0, 1),
    γ = (−0.5, 0.8, 0.4, 0.3), SD(U0) = 0.8, SD(U1) = 0.4, corr 0.3.  bayesmix (correlated
    U, LKJ) against bambi (``y ~ x * w + (1 + x | g)``, Bernoulli, nutpie: bambi's group
    terms are uncorrelated, so it fits a smaller model) in ESS per second of wall time, and
    the posterior means against glmer's Laplace fit (in posterior SDs).
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
BERN = "y ~ x * w + (1 + x | g)"

R_BRMS_CBPP = r"""
suppressPackageStartupMessages({library(brms); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1]); d$herd <- factor(d$herd); d$period <- factor(d$period)
t0 <- Sys.time()
m <- brm(incidence | trials(size) ~ period + (1 | herd), family = binomial(), data = d,
         chains = 4, cores = 2, iter = 2000, warmup = 1000, seed = 1, refresh = 0, silent = 2)
total <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
s <- summary(m)
pars <- rbind(s$fixed, do.call(rbind, s$random))
cat(toJSON(list(total_s = total, ess_min = min(pars$Bulk_ESS), rhat_max = max(pars$Rhat),
  divergences = sum(rstan::get_divergent_iterations(m$fit)),
  means = as.list(setNames(pars$Estimate, rownames(pars)))), auto_unbox = TRUE), "\n")
"""

R_GLMER = r"""
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1]); d$g <- factor(d$g)
t0 <- Sys.time()
m <- glmer(as.formula(args[2]), family = binomial, data = d)
total <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
cat(toJSON(list(total_s = total, beta = unname(fixef(m)), terms = names(fixef(m))),
  auto_unbox = TRUE, digits = NA), "\n")
"""


def simulate_bern100k(path: Path) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(20261202)
    J, m = 1000, 100
    g = np.repeat(np.arange(J), m)
    x = rng.normal(size=J * m)
    w = rng.normal(size=J)
    sd = np.array([0.8, 0.4])
    corr = np.array([[1.0, 0.3], [0.3, 1.0]])
    u = rng.multivariate_normal(np.zeros(2), corr * np.outer(sd, sd), size=J)
    eta = -0.5 + 0.8 * x + 0.4 * w[g] + 0.3 * x * w[g] + u[g, 0] + u[g, 1] * x
    y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    pd.DataFrame({"y": y, "x": x, "w": w[g], "g": g}).to_csv(path, index=False)


def child_bayesmix(case: str, data: str, likelihood: str = "auto", draws: int = DRAWS,
                   tune: int = TUNE) -> dict:
    t0 = time.perf_counter()
    import numpy as np
    import pandas as pd

    import bayesmix as bm

    t_import = time.perf_counter() - t0
    if case == "cbpp":
        spec = bm.Spec.from_file(ROOT / "models" / "cbpp.toml")
        frame = bm.load_data(spec)
    else:
        spec = bm.Spec.from_formula(BERN, family="bernoulli")
        frame = pd.read_csv(data)
    start = time.perf_counter()
    fit = bm.fit(spec, frame, draws=draws, tune=tune, chains=CHAINS, random_seed=1,
                 progressbar=False, likelihood=likelihood)
    wall = time.perf_counter() - start
    s = bm.summarize(fit, warn=False)
    table = s.table
    beta = fit.posterior["beta"]
    return {"import_s": t_import, "fit_s": wall, "wall_s": t_import + wall,
            "timings": dict(fit.timings), "likelihood": fit.likelihood,
            "ess_min": s.min_ess_bulk, "rhat_max": s.max_rhat, "divergences": s.divergences,
            "terms": list(fit.design.fixed_terms),
            "beta_mean": beta.mean(("chain", "draw")).to_numpy().tolist(),
            "beta_sd": beta.std(("chain", "draw")).to_numpy().tolist(),
            "summary_rows": list(table.index), "n": fit.design.n,
            "ess_per_s": s.min_ess_bulk / wall if np.isfinite(s.min_ess_bulk) else None}


def child_bambi(data: str, draws: int = DRAWS, tune: int = TUNE) -> dict:
    t0 = time.perf_counter()
    import bambi as bmb
    import numpy as np
    import pandas as pd
    from arviz_stats import ess, rhat

    t_import = time.perf_counter() - t0
    frame = pd.read_csv(data)
    frame["g"] = frame["g"].astype(str)
    start = time.perf_counter()
    model = bmb.Model(BERN, frame, family="bernoulli")
    idata = model.fit(draws=draws, tune=tune, chains=CHAINS, inference_method="nutpie",
                      random_seed=11, progressbar=False)
    wall = time.perf_counter() - start
    post = idata["posterior"]
    names = [v for v in post.data_vars if "|" not in v or v.endswith("_sigma")]
    ess_min = min(float(np.nanmin(np.asarray(ess(post[v], method="bulk")))) for v in names)
    rhat_max = max(float(np.nanmax(np.asarray(rhat(post[v])))) for v in names)
    div = int(np.asarray(idata["sample_stats"]["diverging"]).sum())
    return {"import_s": t_import, "fit_s": wall, "wall_s": t_import + wall,
            "ess_min": ess_min, "rhat_max": rhat_max, "divergences": div,
            "ess_per_s": ess_min / wall, "note": "uncorrelated U (bambi's group terms)"}


def run_r(script: str, *args: str, timeout: float | None = None) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".R", delete=False) as fh:
        fh.write(script)
    start = time.perf_counter()
    try:
        out = subprocess.run(["Rscript", fh.name, *args], capture_output=True, text=True,
                             timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {timeout:.0f} s",
                "total_s_lower_bound": time.perf_counter() - start}
    finally:
        os.unlink(fh.name)
    if out.returncode != 0:
        return {"error": out.stderr[-1500:]}
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["process_s"] = time.perf_counter() - start
    return res


def run_child(*args: str, timeout: float | None = None, python: str | None = None) -> dict:
    """Run this file as ``--child KIND CASE DATA DRAWS TUNE [LIKELIHOOD]``; last line: JSON."""
    start = time.perf_counter()
    try:
        out = subprocess.run([python or sys.executable, __file__, "--child", *args],
                             capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {timeout:.0f} s",
                "total_s_lower_bound": time.perf_counter() - start}
    if out.returncode != 0:
        return {"error": out.stderr[-1500:]}
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["process_s"] = time.perf_counter() - start
    return res


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, case, data = sys.argv[2], sys.argv[3], sys.argv[4]
        draws, tune = int(sys.argv[5]), int(sys.argv[6])
        res = (child_bambi(data, draws, tune) if kind == "bambi"
               else child_bayesmix(case, data, sys.argv[7], draws, tune))
        print(json.dumps(res))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="cbpp,bern100k")
    ap.add_argument("--peers", default="brms,bambi,glmer")
    ap.add_argument("--peer-timeout", type=float, default=3600.0)
    ap.add_argument("--likelihood", default="auto",
                    help="bayesmix's likelihood forms, comma-separated (auto, cells, rows, "
                         "laplace, agq); each is one bayesmix row")
    ap.add_argument("--draws", type=int, default=DRAWS)
    ap.add_argument("--tune", type=int, default=TUNE)
    ap.add_argument("--bambi-python", default=sys.executable,
                    help="the Python of a virtual environment with bambi and nutpie")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    sizes = (str(args.draws), str(args.tune))
    peers = set(args.peers.split(",")) if args.peers else set()
    rows: list[dict] = []

    def emit(row: dict) -> None:
        rows.append(row)
        print(json.dumps(row), flush=True)

    tmp = Path(tempfile.mkdtemp())
    for case in args.cases.split(","):
        data = ROOT / "data" / "cbpp.csv" if case == "cbpp" else tmp / "bern100k.csv"
        if case == "bern100k":
            simulate_bern100k(data)
        mines = []
        for form in args.likelihood.split(","):
            mine = {"case": case, "tool": f"bayesmix:{form}",
                    "draws": args.draws, "tune": args.tune,
                    **run_child("bayesmix", case, str(data), *sizes, form)}
            emit(mine)
            mines.append(mine)
        if case == "cbpp" and "brms" in peers:
            br = {"case": case, "tool": "brms",
                  **run_r(R_BRMS_CBPP, str(data), timeout=args.peer_timeout)}
            emit(br)
            for mine in mines:
                if "total_s" in br and "wall_s" in mine:
                    emit({"case": case, "ratio": f"brms wall / {mine['tool']} wall",
                          "value": br["total_s"] / mine["wall_s"]})
        if case == "bern100k" and "bambi" in peers:
            ba = {"case": case, "tool": "bambi", "draws": args.draws, "tune": args.tune,
                  **run_child("bambi", case, str(data), *sizes, timeout=args.peer_timeout,
                              python=args.bambi_python)}
            emit(ba)
            for mine in mines:
                if ba.get("ess_per_s") and mine.get("ess_per_s"):
                    emit({"case": case, "ratio": f"{mine['tool']} ESS/s / bambi ESS/s",
                          "value": mine["ess_per_s"] / ba["ess_per_s"]})
        if case == "bern100k" and "glmer" in peers and any("beta_mean" in m for m in mines):
            gl = {"case": case, "tool": "glmer",
                  **run_r(R_GLMER, str(data), BERN, timeout=args.peer_timeout)}
            emit(gl)
            for mine in mines:
                if "beta" in gl and "beta_mean" in mine:
                    z = [(m - b) / s for m, b, s in zip(mine["beta_mean"], gl["beta"],
                                                        mine["beta_sd"], strict=True)]
                    emit({"case": case, "tool": mine["tool"],
                          "ratio": "(posterior mean - glmer) / posterior sd",
                          "value": z, "max_abs": max(abs(v) for v in z)})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"glmm-{args.cases.replace(',', '-')}.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
