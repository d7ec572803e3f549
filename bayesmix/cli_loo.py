r"""The ``bayesmix loo`` and ``bayesmix compare-models`` commands (wired up in :mod:`bayesmix.cli`).

::

    bayesmix loo models/dung.toml                            # fit, then PSIS-LOO by cluster
    bayesmix loo models/sleepstudy.toml --unit observation   # new observations of the subjects
    bayesmix loo --fit dung.nc                               # a fit saved with `fit --out`
    bayesmix compare-models models/sleepstudy.toml models/sleepstudy_uncorrelated.toml \
        --plot compare.png

A MODEL is a model file (TOML), fitted here with its own ``[sampler]`` settings (the sampler
options override them), or a saved fit (``.nc``, read with :meth:`bayesmix.Fit.load`);
``--fit FILE`` names saved fits only. Every file is read and the unit checked against every
model before anything is sampled.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from bayesmix.errors import BayesmixError

UNIT_HELP = ("what is left out: a whole cluster of the outermost grouping factor, its effects "
             "integrated out (predicting new clusters; the default unless factors are crossed) "
             "or one observation (new observations of the fitted clusters)")
METHODS = ("stacking", "BB-pseudo-BMA", "pseudo-BMA")


@dataclass
class Source:
    """One model of the command line: a model file to fit, or a saved fit.

    Attributes
    ----------
    path : str
        The file as given.
    name : str
        The model's name in the output (its ``name``, else the file's stem; made unique).
    spec, data, design
        Model files: the model, its data and design (read before any sampling).
    fit : Fit or None
        Saved fits at once; model files once :func:`fit_sources` has run.
    """

    path: str
    name: str
    spec: Any = None
    data: Any = None
    design: Any = None
    fit: Any = None


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """Add MODEL ..., ``--fit FILE ...``, ``--unit`` and the sampler options to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    """
    from bayesmix.cli import _add_sampler_options

    parser.add_argument("models", nargs="*", metavar="MODEL",
                        help="model file (TOML) to fit with its [sampler] settings, or a fit "
                             "saved with `bayesmix fit --out FILE.nc`")
    parser.add_argument("--fit", dest="fits", action="extend", nargs="+", default=[],
                        metavar="FILE", help="saved fit(s) (.nc) to score without sampling")
    parser.add_argument("--unit", choices=["cluster", "observation"], default=None,
                        help=UNIT_HELP)
    _add_sampler_options(parser)


def add_loo_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``loo`` command's arguments to a (sub)parser.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    """
    add_source_arguments(parser)


def add_compare_models_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``compare-models`` command's arguments to a (sub)parser.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    """
    add_source_arguments(parser)
    parser.add_argument("--plot", default=None, metavar="FILE",
                        help="write the comparison plot (.png, .pdf, .svg)")
    parser.add_argument("--method", choices=METHODS, default="stacking",
                        help="how the model weights are found (default: stacking)")


def read_sources(args: argparse.Namespace, at_least: int = 1) -> list[Source]:
    """Read every model file and saved fit, and check ``--unit`` on each, before sampling.

    Parameters
    ----------
    args : argparse.Namespace
        From a parser set up by :func:`add_source_arguments`.
    at_least : int
        Fewest models the command needs.

    Returns
    -------
    list of Source
        In command-line order (MODEL arguments, then ``--fit`` files), names made unique.

    Raises
    ------
    BayesmixError
        Too few models, a model file given to ``--fit``, an unreadable file, or a unit the
        model does not have (crossed factors with ``--unit cluster``).
    """
    import bayesmix as bm

    given = [(p, Path(p).suffix.lower() == ".nc") for p in args.models]
    for p in args.fits:
        if Path(p).suffix.lower() in (".toml", ".json"):
            raise BayesmixError(f"--fit {p}: a model file, not a saved fit; put model files "
                                "before --fit (every file after --fit is read as a saved fit)")
        given.append((p, True))
    if len(given) < at_least:
        raise BayesmixError(f"give at least {at_least} model file(s) or saved fit(s) (--fit); "
                            f"got {len(given)}")
    sources = []
    for path, saved in given:
        if saved:
            fit = bm.Fit.load(path)
            sources.append(Source(path, fit.spec.name or Path(path).stem, spec=fit.spec,
                                  design=fit.design, fit=fit))
            continue
        spec = bm.Spec.from_file(path)
        data = bm.load_data(spec)
        design = bm.build_design(spec, data, missing=args.missing)
        sources.append(Source(path, spec.name or Path(path).stem, spec, data, design))
    for s in sources:
        _check_unit(s, args.unit)
    _unique_names(sources)
    return sources


def _check_unit(source: Source, unit: str | None) -> None:
    from bayesmix.pointwise import marginal_unit

    if unit == "cluster":
        try:
            marginal_unit(source.design)
        except BayesmixError as exc:
            raise BayesmixError(f"{source.path}: {exc} (--unit observation)") from None


def _unique_names(sources: list[Source]) -> None:
    names = [s.name for s in sources]
    for s in sources:
        if names.count(s.name) > 1:
            s.name = f"{s.name} ({Path(s.path).name})"
    names = [s.name for s in sources]
    for i, s in enumerate(sources):
        if names.count(s.name) > 1:
            s.name = f"{s.name} #{i + 1}"


def fit_sources(sources: list[Source], args: argparse.Namespace) -> None:
    """Fit each model file (its ``[sampler]`` settings, overridden by the sampler options)."""
    import bayesmix as bm

    for s in sources:
        if s.fit is None:
            s.fit = bm.fit(s.spec, s.data, draws=args.draws, tune=args.tune,
                           chains=args.chains, random_seed=args.random_seed,
                           target_accept=args.target_accept, sampler=args.sampler,
                           likelihood=args.likelihood, missing=args.missing)


def unit_label(design, unit: str) -> str:
    """``"cluster (oven_block)"`` or ``"observation"``."""
    from bayesmix.pointwise import marginal_unit

    return f"cluster ({marginal_unit(design)})" if unit == "cluster" else unit


def loo_table(results: dict[str, Any], designs: dict[str, Any]):
    """One row per model: unit left out, count, ELPD, SE, p_loo, draws and Pareto k counts.

    Parameters
    ----------
    results : dict of str to ELPDData
        :func:`bayesmix.loo` results (with ``.unit``) by model name.
    designs : dict of str to Design
        The models' designs, by the same names.

    Returns
    -------
    DataFrame
        Indexed by model; Pareto k counted as good (k <= ``good_k``, which depends on the
        number of draws), bad (up to 1) and very bad (above 1). The columns name the bound
        when every model has the same, else a column ``good k`` gives it.
    """
    import numpy as np
    import pandas as pd

    bounds = {r.good_k for r in results.values()}
    same = len(bounds) == 1
    good = f"k<={bounds.pop():.2f}" if same else "k good"
    rows = {}
    for name, r in results.items():
        k = np.asarray(r.pareto_k)
        rows[name] = {
            "left out": unit_label(designs[name], r.unit),
            "units": r.n_data_points,
            "elpd_loo": r.elpd,
            "SE": r.se,
            "p_loo": r.p,
            "draws": r.n_samples,
            **({} if same else {"good k": r.good_k}),
            good: int(np.sum(k <= r.good_k)),
            "k<=1" if same else "k bad": int(np.sum((k > r.good_k) & (k <= 1))),
            "k>1": int(np.sum(k > 1)),
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")


def high_k_note(name: str, result: Any, design: Any) -> str | None:
    """``"dung: Pareto k > 0.50 for 2 of 3 clusters (oven_block): 1, 2"``, or None if none.

    Parameters
    ----------
    name : str
        The model's name.
    result : ELPDData
        A :func:`bayesmix.loo` result with its pointwise ``pareto_k``.
    design : Design
        The model's design (for the cluster factor's name).
    """
    from bayesmix.loo_cv import high_k_units

    found = high_k_units(result)
    if found is None:
        return None
    count, total, shown = found
    what = unit_label(design, result.unit).replace("cluster", "clusters", 1).replace(
        "observation", "observations", 1)
    return f"{name}: Pareto k > {result.good_k:.2f} for {count} of {total} {what}: {shown}"


def run_loo_cli(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run ``bayesmix loo``: fit or read each model, print its PSIS-LOO estimate.

    Parameters
    ----------
    args : argparse.Namespace
        From a parser set up by :func:`add_loo_arguments`.
    out : file, optional
        Where to print (stdout by default).

    Returns
    -------
    int
        Exit status 0.
    """
    import bayesmix as bm

    out = out or sys.stdout
    sources = read_sources(args)
    fit_sources(sources, args)
    results = {s.name: bm.loo(s.fit, args.unit, warn=False) for s in sources}
    designs = {s.name: s.fit.design for s in sources}
    table = loo_table(results, designs)
    print("PSIS-LOO: expected log predictive density of left-out units (higher is better)\n",
          file=out)
    print(table.to_string(float_format=lambda v: f"{v:.2f}"), file=out)
    print(file=out)
    legend = ("Pareto k: good up to min(1 - 1/log10(draws), 0.7) (reliable), bad up to 1, very "
              "bad above 1. Where k is high: more draws, or bm.kfold(fit) (exact refits, each "
              "without a fold of clusters).")
    print(textwrap.fill(legend, 100), file=out)
    _print_notes(results, designs, out)
    return 0


def _print_notes(results: dict[str, Any], designs: dict[str, Any], out: TextIO) -> None:
    for name, r in results.items():
        note = high_k_note(name, r, designs[name])
        if note:
            print(textwrap.fill(note, 100, initial_indent="- ", subsequent_indent="  "), file=out)


def check_same_data(sources: list[Source]) -> None:
    """Refuse, before sampling, models whose designs have different rows or outcomes.

    :func:`bayesmix.kfold.check_same_data` with the files' paths as names.

    Raises
    ------
    BayesmixError
        Naming the first model and one that differs.
    """
    from bayesmix.kfold import check_same_data as same

    same({str(s.path): s.design for s in sources})


def _check_plot_path(path: str | None) -> None:
    if path is None:
        return
    from matplotlib.figure import Figure

    p = Path(path)
    kinds = Figure().canvas.get_supported_filetypes()
    if p.suffix.lstrip(".").lower() not in kinds:
        raise BayesmixError(f"--plot {path}: give a file ending in .png, .pdf or .svg "
                            f"(matplotlib writes {', '.join(sorted(kinds))})")
    if p.is_dir():
        raise BayesmixError(f"--plot {path} is a folder; give a file name in it")
    if not p.parent.is_dir():
        raise BayesmixError(f"--plot {path}: the folder {p.parent} does not exist")


def run_compare_models_cli(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run ``bayesmix compare-models``: fit or read the models, rank them by PSIS-LOO.

    Parameters
    ----------
    args : argparse.Namespace
        From a parser set up by :func:`add_compare_models_arguments`.
    out : file, optional
        Where to print (stdout by default).

    Returns
    -------
    int
        Exit status 0.
    """
    import bayesmix as bm

    out = out or sys.stdout
    _check_plot_path(args.plot)
    sources = read_sources(args, at_least=2)
    check_same_data(sources)
    fit_sources(sources, args)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PSIS-LOO")  # as notes below, with names
        cmp = bm.compare_models({s.name: s.fit for s in sources}, args.unit,
                                method=args.method)
    print(f"Models compared by leave-one-{cmp.unit}-out ELPD (PSIS-LOO)", file=out)
    print(cmp.table.to_string(float_format=lambda v: f"{v:.2f}"), file=out)
    print(file=out)
    legend = ("elpd: expected log predictive density (higher is better), se its SE, p the "
              "effective number of parameters; elpd_diff and dse: difference from the top "
              "model and its SE; p_worse: probability that the model predicts worse than the "
              f"top one; weight: {args.method} weights; diag_*: warnings (Pareto k above the "
              "threshold, small differences or few units).")
    print(textwrap.fill(legend, 100), file=out)
    _print_notes(cmp.elpd, {s.name: s.fit.design for s in sources}, out)
    if args.plot:
        import matplotlib.pyplot as plt

        pc = cmp.plot()
        pc.savefig(args.plot, bbox_inches="tight")
        plt.close(pc.get_viz("figure"))
        print(f"\nFigure written to {args.plot}", file=out)
    return 0
