"""The ``bayesmix compare`` command's body (wired up in :mod:`bayesmix.cli`).

::

    bayesmix compare models/dung.toml                       # REML fitted here
    bayesmix compare models/hsb.toml --reml hsb_lmer.json   # a fit made in R
    bayesmix compare models/dung.toml --plot dung.png --method ML
    bayesmix compare models/dung.toml --reml-only           # the REML fit alone, no sampling
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from bayesmix.errors import BayesmixError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``compare`` command's arguments to a (sub)parser.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    """
    parser.add_argument("model", help="model file (TOML), e.g. models/dung.toml")
    parser.add_argument("--reml", default=None, metavar="FILE.json",
                        help="a REML fit in bayesmix's JSON format (e.g. written from R by "
                             "scripts/write_reml_json.R); default: fit REML here")
    parser.add_argument("--method", default="REML", choices=["REML", "ML"],
                        help="estimation method when fitting here (default: REML)")
    parser.add_argument("--plot", default=None, metavar="FILE",
                        help="write the forest and caterpillar plots (.png, .pdf, .svg)")
    parser.add_argument("--data", default=None,
                        help="data file (CSV); default: the model file's `data`")
    parser.add_argument("--write-reml", default=None, metavar="FILE.json",
                        help="also write the REML fit as JSON")
    parser.add_argument("--reml-only", action="store_true",
                        help="print the REML fit only, without sampling the posterior")


def run_compare_cli(
    args: argparse.Namespace,
    fit_function: Callable[..., Any] | None = None,
    out: TextIO | None = None,
) -> int:
    """Run ``bayesmix compare``: fit (or read) REML, sample the posterior, print both tables.

    Parameters
    ----------
    args : argparse.Namespace
        From a parser set up by :func:`add_arguments`.
    fit_function : callable, optional
        ``fit_function(spec, data) -> Fit`` (the Bayesian fit, with the model file's sampler
        settings); ``bayesmix.fit`` by default.
    out : file, optional
        Where to print (stdout by default).

    Returns
    -------
    int
        Exit status: 0, or 1 when the REML fit did not converge (the tables are still printed,
        without verdicts).
    """
    import pandas as pd

    from bayesmix.compare import compare
    from bayesmix.design import build_design
    from bayesmix.plots import plot_compare
    from bayesmix.reml import fit_reml, read_reml, write_reml
    from bayesmix.spec.model import Spec

    out = out or sys.stdout
    spec = Spec.from_file(args.model)
    data_path = Path(args.data) if args.data else spec.data_path
    if data_path is None:
        raise BayesmixError(f"{args.model} names no data file; give one with --data FILE.csv")
    data = pd.read_csv(data_path)
    design = build_design(spec, data)
    if args.reml:
        reml = read_reml(args.reml, design=design)
    else:
        reml = fit_reml(design, method=args.method)
    if args.write_reml:
        write_reml(reml, args.write_reml)
    if args.reml_only:
        print(reml, file=out)
        return 0 if reml.converged else 1
    if fit_function is None:
        import bayesmix

        fit_function = getattr(bayesmix, "fit", None)
        if not callable(fit_function):
            raise BayesmixError("bayesmix.fit is not available; pass fit_function")
    fit = fit_function(spec, data)
    cmp = compare(fit, reml)
    print(cmp, file=out)
    if args.plot:
        plot_compare(cmp, args.plot)
        print(f"\nFigure written to {args.plot}", file=out)
    return 0 if reml.converged else 1
