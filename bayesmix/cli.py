"""The ``bayesmix`` command: fit, summary, equations, compare, loo, compare-models."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bayesmix.settings import LIKELIHOODS


def _add_sampler_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--draws", type=int, help="draws per chain")
    p.add_argument("--tune", type=int, help="warm-up draws per chain")
    p.add_argument("--chains", type=int, help="number of chains")
    p.add_argument("--seed", type=int, dest="random_seed", help="random seed")
    p.add_argument("--target-accept", type=float, dest="target_accept")
    p.add_argument("--sampler", choices=["nutpie", "pymc", "numpyro"])
    p.add_argument("--likelihood", choices=list(LIKELIHOODS))
    p.add_argument("--missing", choices=["error", "drop"], default="error",
                   help="rows with missing values: refuse (default) or drop with a warning")


WIDTH = 100
"""Widest line ``bayesmix fit`` and ``bayesmix summary`` print."""
GRAPH_TOLERANCE = 1e-6
"""Largest |graph − explicit| log-likelihood difference reported as agreeing (as the tests)."""
STAGES = (("import", "import"), ("design", "design"), ("build", "build"),
          ("compile", "compile"), ("sample", "sample"), ("u_draws", "u draws"),
          ("log_likelihood", "log-lik"))
"""Keys of ``Fit.timings`` in pipeline order, with their printed names."""


def check_out_path(path: str | Path, force: bool = False) -> Path:
    """Check ``--out`` before any sampling (``--force`` to overwrite).

    :func:`bayesmix.fit_result.check_output_path`, with its errors prefixed by ``--out``.
    """
    from bayesmix.fit_result import FitFileError, check_output_path

    try:
        return check_output_path(path, overwrite=force)
    except FitFileError as exc:
        raise FitFileError(f"--out: {exc}") from None


def reconstruction_line(rec, width: int = WIDTH) -> str:
    """The reconstruction in one line: largest error and the graph-vs-explicit check."""
    text = (f"Reconstruction: max |Y - (Xb+Zu+e)| = {rec.max_abs_error:.2g}"
            if rec.max_abs_error == rec.max_abs_error else  # NaN: a GLMM has no e
            "Reconstruction: eta = Xb + Zu (+ offset), mu beside y")
    graph = rec.graph_max_abs_error
    if graph is not None:
        verdict = "agree" if graph <= GRAPH_TOLERANCE else "DISAGREE"
        text += (f"; graph vs explicit log-lik, {rec.draws_checked} draws: {verdict} "
                 f"({graph:.2g})")
    hint = "  [--reconstruct]"
    return text + hint if len(text) + len(hint) <= width else text


def _header(fit, source: str) -> str:
    import textwrap

    design, post = fit.design, fit.posterior
    first = f"Model {fit.spec.name or source}: {fit.spec.to_formula()}"
    units = (f"{design.J} clusters ({fit.spec.cluster})" if design.single_factor else
             ", ".join(f"{fe.J} {fe.name}" for fe in design.effects))
    second = (f"n = {design.n}, {units}; {fit.likelihood} "
              f"likelihood, {fit.settings.sampler}, {post.sizes['chain']} chains x "
              f"{post.sizes['draw']} draws")
    lines = textwrap.wrap(first, WIDTH, subsequent_indent="    ")
    return "\n".join(lines + textwrap.wrap(second, WIDTH, subsequent_indent="    "))


def timing_line(timings: dict[str, float], total: float, checks: float, sampler: str,
                kernels: str | None = None) -> str:
    """``Time 9.2 s: import 1.9, design 0.1, ..., sample 3.85, checks 0.31, other 0.4``.

    ``compile`` includes the first call of the compiled functions (a JIT on first call is
    compile time, not sampling); ``other`` is the rest of the command (reading the model file
    and data, printing).  ``kernels`` ("loaded" or "compiled") says whether nutpie's Numba
    kernels came from the structure cache (:mod:`bayesmix.kernel_cache`).
    """
    import textwrap

    labels = dict(STAGES)
    if kernels is not None:
        labels["compile"] = f"compile (kernels {kernels})"
    if "compile" not in timings:  # PyMC's and numpyro's samplers compile inside sampling
        labels["sample"] = f"compile+sample ({sampler})"
    parts = [f"{labels[key]} {timings[key]:.2f}" for key, _ in STAGES if key in timings]
    parts.append(f"checks {checks:.2f}")
    known = sum(timings.get(k, 0.0) for k, _ in STAGES) + checks
    parts.append(f"other {max(total - known, 0.0):.2f}")
    return "\n".join(textwrap.wrap(f"Time {total:.1f} s: " + ", ".join(parts), WIDTH,
                                    subsequent_indent="    ", break_on_hyphens=False))


def process_seconds() -> float | None:
    """Seconds since this process started (Linux ``/proc``), or None elsewhere.

    Includes the interpreter's start-up and the command-line module's imports, which happen
    before any timer of ``bayesmix fit`` can run.
    """
    import os

    try:
        with open("/proc/self/stat") as fh:
            start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _cmd_fit(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    out = check_out_path(args.out, args.force) if args.out else None  # before sampling

    t_import = time.perf_counter()
    import bayesmix as bm

    t_import = time.perf_counter() - t_import
    fit = bm.fit(
        args.model,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        random_seed=args.random_seed,
        target_accept=args.target_accept,
        sampler=args.sampler,
        likelihood=args.likelihood,
        missing=args.missing,
    )
    t0 = time.perf_counter()
    summary = bm.summarize(fit, warn=False)
    rec = bm.reconstruct(fit)
    checks = time.perf_counter() - t0
    print(_header(fit, args.model) + "\n")
    print(summary.table.to_string() if args.full else summary.compact(WIDTH))
    print()
    if args.reconstruct:
        print(rec)
    else:
        print(reconstruction_line(rec))
    if out is not None:
        fit.save(out, overwrite=args.force)
        print(f"Saved the fit to {out}")
    total = time.perf_counter() - start
    timings = dict(fit.timings)
    timings["import"] = timings.get("import", 0.0) + t_import  # bayesmix's own, and PyMC's
    print(timing_line(timings, total, checks, fit.settings.sampler,
                      fit.posterior.attrs.get("kernel_cache")))
    age = process_seconds()
    if age is not None:
        print(f"    process wall time {age:.1f} s (Python start-up and the CLI's imports "
              f"{max(age - total, 0.0):.1f} s)")
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    import bayesmix as bm

    fit = bm.Fit.load(args.file)
    summary = bm.summarize(fit, warn=False)
    print(_header(fit, args.file) + "\n")
    print(summary.table.to_string() if args.full else summary.compact(WIDTH))
    if args.reconstruct:
        print()
        print(bm.reconstruct(fit))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``bayesmix`` command."""
    parser = argparse.ArgumentParser(
        prog="bayesmix",
        description="Bayesian two-level models in level-1 / level-2 notation.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fit", help="fit a model file; print the summary and the reconstruction")
    p.add_argument("model", help="model file (TOML), e.g. models/dung.toml")
    p.add_argument("--out", help="save the fit to this file (netCDF4); checked before sampling")
    p.add_argument("--force", action="store_true", help="let --out overwrite an existing file")
    p.add_argument("--reconstruct", action="store_true",
                   help="print the reconstruction table (Y, Xb, Zu, e per row), not one line")
    p.add_argument("--full", action="store_true",
                   help="print ArviZ's full summary table (all columns, unrounded)")
    _add_sampler_options(p)
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser("summary", help="print the summary of a saved fit")
    p.add_argument("file", help="a fit saved with `bayesmix fit --out FILE`")
    p.add_argument("--reconstruct", action="store_true", help="also print the reconstruction")
    p.add_argument("--full", action="store_true",
                   help="print ArviZ's full summary table (all columns, unrounded)")
    p.set_defaults(func=_cmd_summary)

    from bayesmix.render.cli import add_arguments as add_equations_arguments
    from bayesmix.render.cli import run_equations_cli

    p = sub.add_parser("equations", help="print a model's L1/L2, combined and matrix equations")
    add_equations_arguments(p)
    p.set_defaults(func=run_equations_cli)

    from bayesmix.compare_cli import add_arguments as add_compare_arguments

    p = sub.add_parser(
        "compare", help="REML fit and Bayesian posterior side by side (tables, --plot FILE)"
    )
    add_compare_arguments(p)
    p.set_defaults(func=_cmd_compare)

    from bayesmix import cli_reml

    p = sub.add_parser("reml", help="REML / ML estimates of a model file (its rows may stay "
                       "in files or on a Dask cluster: --data, --scheduler)")
    cli_reml.add_arguments(p)
    p.set_defaults(func=cli_reml.run_reml_cli)

    from bayesmix import cli_loo

    p = sub.add_parser("loo", help="PSIS-LOO (ELPD, SE, p_loo, Pareto k) of model files or fits")
    cli_loo.add_loo_arguments(p)
    p.set_defaults(func=cli_loo.run_loo_cli)

    p = sub.add_parser("compare-models", help="rank models by PSIS-LOO (table, --plot FILE)")
    cli_loo.add_compare_models_arguments(p)
    p.set_defaults(func=cli_loo.run_compare_models_cli)
    return parser


def _cmd_compare(args: argparse.Namespace) -> int:
    from bayesmix.api import fit
    from bayesmix.compare_cli import run_compare_cli

    return run_compare_cli(args, fit_function=fit)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bayesmix`` command."""
    from bayesmix.errors import BayesmixError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (BayesmixError, FileNotFoundError) as exc:
        print(f"bayesmix: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        # SamplingInterrupted carries its own one-line message; a bare Ctrl-C elsewhere too.
        print(f"bayesmix: {exc or 'interrupted (Ctrl-C)'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
