"""Benchmark: bayesmix's three likelihood forms against bambi, lme4 and brms, in one run.

    python benchmarks/run.py --cases dung,sleepstudy,hsb,1k,10k --repeats 3 --out benchmarks/results
    python benchmarks/run.py --cases 100k --repeats 3 --peers bambi,lme4
    python benchmarks/run.py --cases 1M --repeats 1 --peers lme4
    python benchmarks/run.py --gradient           # time per gradient at J=1,000, n=10k vs 1M

Every (case, tool) run is a subprocess of its own (peak memory = that process's max RSS, from
``os.wait4``); figures are medians over ``--repeats``.  Writes ``<out>/bench-<cases>.json``
(also printed) and a Markdown table ``<out>/bench-<cases>.md``.  Peers run where installed
(bambi in the venv, ``Rscript`` with lme4 / brms); ratios are computed pair by pair within
the run.  Draws: 4 chains x 1,000 (+1,000 warm-up) for every sampler.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from simulate import SIZES, ensure  # noqa: E402

MODELS = {
    "dung": ("models/dung.toml", "pr_dung ~ flies + (1 | oven_block)"),
    "sleepstudy": ("models/sleepstudy.toml", "Reaction ~ Days + (Days | Subject)"),
    "hsb": ("models/hsb.toml", "MathAch ~ cses * (MEANSES + Sector) + (cses | School)"),
}
SYN_FORMULA = "y ~ X * M + (X | cluster)"
DRAWS, TUNE, CHAINS = 1000, 1000, 4


def case_info(case: str) -> dict:
    if case in MODELS:
        toml, formula = MODELS[case]
        import tomllib

        meta = tomllib.loads((ROOT / toml).read_text())
        data = (ROOT / toml).parent / meta["data"]
        return {"case": case, "model": str(ROOT / toml), "data": str(data.resolve()),
                "formula": formula, "cluster": meta["cluster"],
                "reference": meta.get("reference", {})}
    path = ensure(case, HERE / "data")
    n, J = SIZES[case]
    return {"case": case, "model": None, "data": str(path), "formula": SYN_FORMULA,
            "cluster": "cluster", "n": n, "J": J, "reference": {}}


# ------------------------------------------------------------------------------- children


def _ess_rhat(post, names):
    import numpy as np
    from arviz_stats import ess, rhat

    ess_min, rhat_max = np.inf, 0.0
    for name in names:
        da = post[name]
        e = np.asarray(ess(da, method="bulk"))
        r = np.asarray(rhat(da))
        ok = np.isfinite(e)
        if ok.any():
            ess_min = min(ess_min, float(e[ok].min()))
            rhat_max = max(rhat_max, float(np.nanmax(r[ok])))
    return ess_min, rhat_max


def child_bayesmix(info: dict, likelihood: str, sampler: str, backend: str) -> dict:
    t0 = time.perf_counter()
    import numpy as np
    import pandas as pd

    import bayesmix as bm
    from bayesmix.stats import cluster_stats

    t_import = time.perf_counter() - t0
    if info["model"]:
        spec = bm.Spec.from_file(info["model"])
    else:
        spec = bm.Spec.from_formula(SYN_FORMULA, level2=["M"])
    start = time.perf_counter()
    data = pd.read_csv(info["data"])
    t_read = time.perf_counter() - start
    start = time.perf_counter()
    design = bm.build_design(spec, data, )
    t_design = time.perf_counter() - start
    start = time.perf_counter()
    stats = None if likelihood == "rows" else cluster_stats(design)
    t_stats = time.perf_counter() - start
    start = time.perf_counter()
    built = bm.build_model(design, spec.priors, likelihood=likelihood, stats=stats)
    t_build = time.perf_counter() - start
    settings = bm.SamplerSettings(draws=DRAWS, tune=TUNE, chains=CHAINS, random_seed=11,
                                  sampler=sampler, backend=backend, progressbar=False,
                                  target_accept=(spec.sampler.target_accept if spec.sampler
                                                 else 0.8))
    fit = bm.sample(built, settings)
    post = fit.posterior
    q = design.q
    names = ["beta", "sd_u", "sigma"]
    import xarray as xr

    if q > 1:
        iu = np.triu_indices(q, 1)
        corr = post["corr_u"].to_numpy()[..., iu[0], iu[1]]
        post = post.assign(corr_off=xr.DataArray(corr, dims=("chain", "draw", "pair")))
        names.append("corr_off")
    ess_min, rhat_max = _ess_rhat(post, names)
    div = int(np.asarray(fit.idata["sample_stats"]["diverging"]).sum())
    tm = dict(fit.timings)
    compile_s = tm.get("compile", 0.0)
    sample_s = tm["sample"]
    u_s = tm.get("u_draws", 0.0)
    wall = t_read + t_design + t_stats + t_build + compile_s + sample_s + u_s
    return {"import_s": t_import, "read_s": t_read, "design_s": t_design, "stats_s": t_stats,
            "build_s": t_build, "compile_s": compile_s, "sample_s": sample_s, "u_draws_s": u_s,
            "wall_s": wall, "ess_min": ess_min, "rhat_max": rhat_max, "divergences": div,
            "backend": fit.settings.backend, "n": design.n, "J": design.J}


def child_bambi(info: dict) -> dict:
    t0 = time.perf_counter()
    import arviz as az  # noqa: F401
    import bambi as bmb
    import numpy as np
    import pandas as pd

    t_import = time.perf_counter() - t0
    data = pd.read_csv(info["data"])
    for var, ref in info["reference"].items():
        levels = [ref, *sorted(set(data[var].astype(str)) - {ref})]
        data[var] = pd.Categorical(data[var].astype(str), categories=levels)
    data[info["cluster"]] = data[info["cluster"]].astype(str)
    start = time.perf_counter()
    model = bmb.Model(info["formula"], data)
    model.build()
    t_build = time.perf_counter() - start
    start = time.perf_counter()
    idata = model.fit(draws=DRAWS, tune=TUNE, chains=CHAINS, inference_method="nutpie",
                      random_seed=11, progressbar=False)
    t_fit = time.perf_counter() - start
    post = idata["posterior"]
    names = [v for v in post.data_vars
             if "|" not in v or v.endswith("_sigma")]
    names = [v for v in names if not v.endswith("_mean")] or names
    ess_min, rhat_max = _ess_rhat(post, names)
    div = int(np.asarray(idata["sample_stats"]["diverging"]).sum())
    return {"import_s": t_import, "build_s": t_build, "compile_s": None, "sample_s": t_fit,
            "wall_s": t_build + t_fit, "ess_min": ess_min, "rhat_max": rhat_max,
            "divergences": div, "note": "uncorrelated U; compile inside sample_s"}


R_LME4 = r"""
suppressMessages(library(lme4)); a <- commandArgs(TRUE)
t0 <- proc.time()[["elapsed"]]
d <- read.csv(a[1], colClasses = setNames("character", a[3]))
ref <- jsonlite::fromJSON(a[4])
for (v in names(ref)) d[[v]] <- relevel(factor(d[[v]]), ref = ref[[v]])
t1 <- proc.time()[["elapsed"]]
w <- character(0)
m <- withCallingHandlers(lmer(as.formula(a[2]), data = d, REML = TRUE),
       warning = function(x) { w <<- c(w, conditionMessage(x)); invokeRestart("muffleWarning") })
t2 <- proc.time()[["elapsed"]]
cat(jsonlite::toJSON(list(read_s = t1 - t0, fit_s = t2 - t1, warnings = w), auto_unbox = TRUE))
"""

R_BRMS = r"""
suppressMessages(library(brms)); a <- commandArgs(TRUE)
d <- read.csv(a[1], colClasses = setNames("character", a[3]))
ref <- jsonlite::fromJSON(a[4])
for (v in names(ref)) d[[v]] <- relevel(factor(d[[v]]), ref = ref[[v]])
t0 <- proc.time()[["elapsed"]]
fit <- brm(as.formula(a[2]), data = d, chains = 4, iter = 2000, warmup = 1000, cores = 2,
           seed = 11, refresh = 0, silent = 2)
t1 <- proc.time()[["elapsed"]]
el <- rstan::get_elapsed_time(fit$fit)
s <- posterior::summarise_draws(posterior::as_draws_df(fit), "ess_bulk", "rhat")
s <- s[grepl("^(b_|sd_|cor_|sigma)", s$variable), ]
np <- nuts_params(fit); div <- sum(np$Value[np$Parameter == "divergent__"])
cat(jsonlite::toJSON(list(total_s = t1 - t0, sample_s = max(rowSums(el)),
    ess_min = min(s$ess_bulk), rhat_max = max(s$rhat), divergences = div), auto_unbox = TRUE))
"""


def child_r(info: dict, which: str) -> dict:
    script = R_LME4 if which == "lme4" else R_BRMS
    with tempfile.NamedTemporaryFile("w", suffix=".R", delete=False) as fh:
        fh.write(script)
    ref = json.dumps(info["reference"]) if info["reference"] else "{}"
    out = subprocess.run(["Rscript", fh.name, info["data"], info["formula"], info["cluster"],
                          ref], capture_output=True, text=True)
    os.unlink(fh.name)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if which == "lme4":
        return {"wall_s": res["fit_s"], "read_s": res["read_s"],
                "warnings": res.get("warnings") or []}
    return {"compile_s": res["total_s"] - res["sample_s"], "sample_s": res["sample_s"],
            "wall_s": res["total_s"], "ess_min": res["ess_min"], "rhat_max": res["rhat_max"],
            "divergences": res["divergences"]}


def child_gradient(case: str, likelihood: str, calls: int) -> dict:
    import pandas as pd

    import bayesmix as bm
    from bayesmix.sampling import _compile_c

    info = case_info(case)
    spec = bm.Spec.from_formula(SYN_FORMULA, level2=["M"])
    design = bm.build_design(spec, pd.read_csv(info["data"]))
    built = bm.build_model(design, likelihood=likelihood)
    model = _compile_c(built)
    logp = model._make_logp_func()
    x = model._make_initial_points(1)
    logp(x)
    start = time.perf_counter()
    for _ in range(calls):
        logp(x)
    per = (time.perf_counter() - start) / calls
    return {"case": case, "likelihood": likelihood, "n": design.n, "J": design.J,
            "grad_ms": per * 1e3}


# ------------------------------------------------------------------------------- parent


def _run_measured(args: list[str]) -> dict:
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child: exec the measuring process with stdout to a temp file
        fd = os.open(args[0], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1)
        err = os.open(args[0] + ".err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(err, 2)
        python = BAMBI_PYTHON if args[1:4:2] == ["run", "bambi"] else sys.executable
        os.execv(python, [python, __file__, "--child", *args[1:]])
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - start
    text = Path(args[0]).read_text().strip()
    if os.waitstatus_to_exitcode(status) != 0 or not text:
        errtext = Path(args[0] + ".err").read_text().strip()
        return {"error": errtext[-1500:] or "failed"}
    res = json.loads(text.splitlines()[-1])
    res["peak_mem_mb"] = usage.ru_maxrss / 1024
    res["process_s"] = elapsed
    return res


def measure(case: str, tool: str, repeats: int) -> dict:
    runs = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(_run_measured([f"{tmp}/out.json", "run", case, tool]))
        if "error" in runs[-1]:
            break
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"case": case, "tool": tool, **runs[0]}
    med: dict = {"case": case, "tool": tool, "repeats": len(ok)}
    for key in ok[0]:
        vals = [r.get(key) for r in ok]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in vals):
            med[key] = statistics.median(vals)
        else:
            med[key] = vals[0]
    if med.get("ess_min") is not None and med.get("wall_s"):
        ess_s = [r["ess_min"] / r["wall_s"] for r in ok]
        med["ess_per_s"] = statistics.median(ess_s)
    return med


def tools_for(case: str, peers: set[str]) -> list[str]:
    tools = ["bayesmix:collapsed", "bayesmix:sufficient"]
    n = SIZES[case][0] if case in SIZES else 0
    if n <= 100_000:
        tools.append("bayesmix:rows")
    if case in ("dung", "sleepstudy"):
        tools.append("bayesmix:collapsed:pymc")
    # Both nutpie back ends, whichever "auto" picks for the plain entry.
    tools += ["bayesmix:collapsed:numba", "bayesmix:collapsed:c"]
    if "bambi" in peers and _has("bambi", BAMBI_PYTHON):
        tools.append("bambi")
    if "lme4" in peers and shutil.which("Rscript"):
        tools.append("lme4")
    if "brms" in peers and shutil.which("Rscript"):
        tools.append("brms")
    return tools


BAMBI_PYTHON = os.environ.get("BAYESMIX_BAMBI_PYTHON", sys.executable)
"""bambi needs PyMC 5 and bayesmix PyMC 6: bambi runs in a virtual environment of its own
(``--bambi-python`` or ``BAYESMIX_BAMBI_PYTHON``)."""


def _has(module: str, python: str | None = None) -> bool:
    if python and python != sys.executable:
        return subprocess.run([python, "-c", f"import {module}"],
                              capture_output=True).returncode == 0
    import importlib.util

    return importlib.util.find_spec(module) is not None


def ratios(rows: list[dict]) -> list[dict]:
    out = []
    by_case: dict[str, dict[str, dict]] = {}
    for r in rows:
        by_case.setdefault(r["case"], {})[r["tool"]] = r
    for case, tools in by_case.items():
        ref = tools.get("bayesmix:collapsed")
        if not ref or "error" in ref:
            continue
        for tool, r in tools.items():
            if tool == "bayesmix:collapsed" or "error" in r:
                continue
            item = {"case": case, "versus": tool,
                    "wall_ratio": r["wall_s"] / ref["wall_s"]}
            if r.get("ess_per_s") and ref.get("ess_per_s"):
                item["ess_per_s_ratio"] = ref["ess_per_s"] / r["ess_per_s"]
            out.append(item)
    return out


def _fmt(v, digits=2):
    if v is None:
        return "–"
    if isinstance(v, float):
        if v >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}f}"
    return str(v)


def markdown(rows: list[dict], rats: list[dict]) -> str:
    head = ("| case | tool | stats s | build s | compile s | sample s | u s | wall s | "
            "min ESS | ESS/s | R-hat | div | peak MB |")
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['case']} | {r['tool']} | error: {r['error'][:60]} |"
                         + " |" * 11)
            continue
        lines.append("| " + " | ".join([
            r["case"], r["tool"], _fmt(r.get("stats_s"), 3), _fmt(r.get("build_s")),
            _fmt(r.get("compile_s")), _fmt(r.get("sample_s")), _fmt(r.get("u_draws_s")),
            _fmt(r.get("wall_s")), _fmt(r.get("ess_min"), 0), _fmt(r.get("ess_per_s"), 1),
            _fmt(r.get("rhat_max"), 3), _fmt(r.get("divergences"), 0),
            _fmt(r.get("peak_mem_mb"), 0)]) + " |")
    if rats:
        lines += ["", "| case | collapsed vs | wall: peer / collapsed | ESS/s: collapsed / peer |",
                  "|---|---|---|---|"]
        for x in rats:
            lines.append(f"| {x['case']} | {x['versus']} | {_fmt(x['wall_ratio'])} | "
                         f"{_fmt(x.get('ess_per_s_ratio'), 1)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind = sys.argv[2]
        if kind == "run":
            case, tool = sys.argv[3], sys.argv[4]
            info = case_info(case)
            if tool.startswith("bayesmix"):
                parts = [*tool.split(":"), ""]
                lik, extra = parts[1], parts[2]
                sampler = "pymc" if extra == "pymc" else "nutpie"
                backend = extra if extra in ("numba", "c") else "auto"
                res = child_bayesmix(info, lik, sampler, backend)
            elif tool == "bambi":
                res = child_bambi(info)
            else:
                res = child_r(info, tool)
        else:
            res = child_gradient(sys.argv[3], sys.argv[4], int(sys.argv[5]))
        print(json.dumps(res))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="dung,sleepstudy,hsb,1k,10k")
    ap.add_argument("--sizes", help="synthetic sizes, added to --cases (e.g. 1k,10k,100k)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peers", default="bambi,lme4,brms")
    ap.add_argument("--tools", help="only these tools (comma-separated)")
    ap.add_argument("--gradient", action="store_true", help="time per gradient, J=1,000")
    ap.add_argument("--bambi-python", help="Python of a virtual environment with bambi and "
                    "nutpie (bambi needs PyMC 5)")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    if args.bambi_python:
        global BAMBI_PYTHON
        BAMBI_PYTHON = args.bambi_python
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.gradient:
        rows = []
        for case in ("10kj1000", "1Mj1000"):
            for lik, calls in (("collapsed", 2000), ("sufficient", 2000), ("rows", 20)):
                with tempfile.TemporaryDirectory() as tmp:
                    rows.append(_run_measured([f"{tmp}/o.json", "grad", case, lik,
                                               str(calls)]))
        text = json.dumps(rows, indent=1)
        print(text)
        (out / "gradient.json").write_text(text + "\n")
        return
    cases = [c for c in args.cases.split(",") if c]
    if args.sizes:
        cases += args.sizes.split(",")
    peers = set(args.peers.split(",")) if args.peers else set()
    rows = []
    for case in cases:
        tools = tools_for(case, peers)
        if args.tools:
            tools = [t for t in tools if t in args.tools.split(",")]
        for tool in tools:
            reps = 1 if tool == "brms" else args.repeats
            r = measure(case, tool, reps)
            print(json.dumps(r), flush=True)
            rows.append(r)
    rats = ratios(rows)
    tag = "-".join(cases)
    if args.tools:  # a subset of tools must not overwrite a full run's table
        tag += "-" + "-".join(t.replace(":", "_") for t in args.tools.split(","))
    result = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
              "draws": {"chains": CHAINS, "draws": DRAWS, "tune": TUNE},
              "rows": rows, "ratios": rats}
    (out / f"bench-{tag}.json").write_text(json.dumps(result, indent=1) + "\n")
    md = markdown(rows, rats)
    (out / f"bench-{tag}.md").write_text(md)
    print(json.dumps({"ratios": rats}))
    print(md)


if __name__ == "__main__":
    main()
