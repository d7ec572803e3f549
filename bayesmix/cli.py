"""The ``bayesmix`` command: fit, summary, equations, compare."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence


def _add_sampler_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--draws", type=int, help="draws per chain")
    p.add_argument("--tune", type=int, help="warm-up draws per chain")
    p.add_argument("--chains", type=int, help="number of chains")
    p.add_argument("--seed", type=int, dest="random_seed", help="random seed")
    p.add_argument("--target-accept", type=float, dest="target_accept")
    p.add_argument("--sampler", choices=["nutpie", "pymc", "numpyro"])
    p.add_argument("--likelihood", choices=["auto", "collapsed", "sufficient", "rows"])
    p.add_argument("--missing", choices=["error", "drop"], default="error",
                   help="rows with missing values: refuse (default) or drop with a warning")


def _cmd_fit(args: argparse.Namespace) -> int:
    import bayesmix as bm

    start = time.perf_counter()
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
    total = time.perf_counter() - start
    print(f"Model: {fit.spec.name or args.model}   {fit.spec.to_formula()}")
    print(f"Likelihood: {fit.likelihood}   sampler: {fit.settings.sampler}\n")
    print(bm.summarize(fit, warn=False))
    print("\nReconstruction (the seed's check, posterior means):")
    print(bm.reconstruct(fit))
    if args.out:
        fit.save(args.out)
        print(f"\nSaved the fit to {args.out}")
    stages = ", ".join(f"{k} {v:.2f} s" for k, v in fit.timings.items())
    note = "" if "compile" in fit.timings else "; sampling includes compiling"
    print(f"\nTime: {total:.2f} s in all ({stages}{note})")
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    import bayesmix as bm

    fit = bm.Fit.load(args.file)
    print(f"Model: {fit.spec.name or ''}   {fit.spec.to_formula()}")
    print(f"Likelihood: {fit.likelihood}   sampler: {fit.settings.sampler}\n")
    print(bm.summarize(fit, warn=False))
    if args.reconstruct:
        print("\nReconstruction (posterior means):")
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
    p.add_argument("--out", help="save the fit to this file (netCDF4)")
    _add_sampler_options(p)
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser("summary", help="print the summary of a saved fit")
    p.add_argument("file", help="a fit saved with `bayesmix fit --out FILE`")
    p.add_argument("--reconstruct", action="store_true", help="also print the reconstruction")
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


if __name__ == "__main__":
    raise SystemExit(main())
