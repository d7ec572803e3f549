"""Wall time of the Laplace ML fit (bm.fit_reml of a GLMM spec) against lme4's glmer.

    python benchmarks/laplace.py [--repeats 3]

Fits cbpp, grouseticks, contraception and guimmun (the models of
tests/reference/make_reference_glmm.R) with bayesmix (after one warm-up fit each) and, in the
same run, with glmer (default control, ``system.time``) through Rscript; glmer is skipped, with
a note, where Rscript or lme4 is absent.  Prints JSON: per model the median seconds of each and
their ratio, the deviances, and the evaluations bayesmix used.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd

import bayesmix as bm

ROOT = Path(__file__).resolve().parents[1]

MODELS = {
    "cbpp": dict(
        data="data/cbpp.csv", family="binomial", categorical=("period",),
        formula="cbind(incidence, size - incidence) ~ period + (1 | herd)",
        classes='c(herd = "character", period = "character")'),
    "grouseticks": dict(
        data="data/grouseticks.csv", family="poisson", categorical=("YEAR",),
        formula="TICKS ~ YEAR + zHEIGHT + (1 | INDEX) + (1 | BROOD) + (1 | LOCATION)",
        classes='c(INDEX = "character", BROOD = "character", YEAR = "character", '
                'LOCATION = "character")'),
    "contraception": dict(
        data="data/contraception.csv", family="bernoulli", categorical=(),
        formula="use ~ age + urban + livch + (1 + urban | district)",
        classes='c(woman = "character", district = "character", livch = "character")'),
    "guimmun": dict(
        data="data/guimmun.csv", family="bernoulli", categorical=(),
        formula="immun ~ kid2p + mom25p + rural + (1 | comm/mom)",
        classes='c(kid = "character", mom = "character", comm = "character")'),
}

R_TEMPLATE = """
suppressPackageStartupMessages(library(lme4))
d <- read.csv("{data}", colClasses = {classes})
fam <- {rfam}
m <- glmer({formula}, data = d, family = fam)
times <- replicate({repeats}, system.time(glmer({formula}, data = d, family = fam))[["elapsed"]])
cat(sprintf("%.6f %.10f\\n", median(times), -2 * as.numeric(logLik(m))))
"""


def time_bayesmix(name: str, repeats: int) -> dict:
    """Median wall time of bm.fit_reml (after a warm-up fit) and what it found."""
    m = MODELS[name]
    data = pd.read_csv(ROOT / m["data"])
    spec = bm.Spec.from_formula(m["formula"], family=m["family"], categorical=m["categorical"])
    fit = bm.fit_reml(spec, data)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fit = bm.fit_reml(spec, data)
        times.append(time.perf_counter() - t0)
    return {"seconds": float(np.median(times)), "deviance": float(fit.criterion),
            "converged": bool(fit.converged)}


def time_glmer(name: str, repeats: int) -> dict:
    """Median ``system.time`` of glmer (default control), or a note why it was not run."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        return {"skipped": "Rscript not found"}
    m = MODELS[name]
    rfam = "binomial" if m["family"] in ("binomial", "bernoulli") else "poisson"
    code = R_TEMPLATE.format(data=m["data"], classes=m["classes"], rfam=rfam,
                             formula=m["formula"], repeats=repeats)
    try:
        out = subprocess.run([rscript, "-e", code], cwd=ROOT, capture_output=True, text=True,
                             timeout=600, check=True)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        return {"skipped": f"glmer failed: {str(getattr(err, 'stderr', err))[-300:]}"}
    seconds, deviance = out.stdout.split()[-2:]
    return {"seconds": float(seconds), "deviance": float(deviance)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    args = parser.parse_args()
    result = {}
    for name in args.models:
        ours = time_bayesmix(name, args.repeats)
        glmer = time_glmer(name, args.repeats)
        row = {"bayesmix": ours, "glmer": glmer}
        if "seconds" in glmer:
            row["ratio"] = ours["seconds"] / glmer["seconds"]
        result[name] = row
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
