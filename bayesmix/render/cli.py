"""The ``bayesmix equations`` command's body (wired up in :mod:`bayesmix.cli`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

ALL = "all"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``equations`` command's arguments to a (sub)parser.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    """
    from bayesmix.render.equations import FORMATS, FORMS

    parser.add_argument("model", help="model file (TOML), e.g. models/hsb.toml")
    parser.add_argument("--form", default=ALL, choices=[*FORMS, ALL],
                        help="which equations to print (default: all)")
    parser.add_argument("--format", dest="fmt", default="text", choices=list(FORMATS),
                        help="output format (default: text)")
    parser.add_argument("--max-rows", type=int, default=20,
                        help="rows of the whole-data matrices before eliding with ⋮")
    parser.add_argument("--digits", type=int, default=7, help="significant digits")
    parser.add_argument("--data", default=None,
                        help="data file (CSV); default: the model file's `data`")
    parser.add_argument("--no-data", action="store_true",
                        help="symbols only, even if the model file names a data file")


def equations_text(
    model: str | Path,
    form: str = ALL,
    fmt: str = "text",
    *,
    max_rows: int = 20,
    digits: int = 7,
    data: str | Path | None = None,
    use_data: bool = True,
) -> str:
    """Return the equations of a model file as one string.

    Parameters
    ----------
    model : str or Path
        Model file (TOML).
    form : {"levels", "combined", "matrix_cluster", "matrix", "distributions", "all"}
    fmt : {"latex", "markdown", "text"}
    max_rows : int
        Rows shown in the whole-data matrices before eliding.
    digits : int
        Significant digits.
    data : str or Path, optional
        CSV file; defaults to the data file the model file names.
    use_data : bool
        False for the symbolic forms only.

    Returns
    -------
    str
    """
    import pandas as pd

    from bayesmix.render.equations import equations
    from bayesmix.spec.model import Spec

    spec = Spec.from_file(model)
    frame = None
    if use_data:
        path = Path(data) if data is not None else spec.data_path
        if path is not None:
            frame = pd.read_csv(path)
    eq = equations(spec, frame, max_rows=max_rows, digits=digits)
    return eq.render(fmt) if form == ALL else eq[form].render(fmt)


def run_equations_cli(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run ``bayesmix equations`` from parsed arguments (see :func:`add_arguments`).

    Parameters
    ----------
    args : argparse.Namespace
        With ``model``, ``form``, ``fmt`` and optionally ``max_rows``, ``digits``, ``data``,
        ``no_data``.
    out : text stream, optional
        Where to print (default: standard output).

    Returns
    -------
    int
        Exit status 0.
    """
    fmt = getattr(args, "fmt", None) or getattr(args, "format", "text")
    result = equations_text(
        args.model,
        getattr(args, "form", ALL),
        fmt,
        max_rows=getattr(args, "max_rows", 20),
        digits=getattr(args, "digits", 7),
        data=getattr(args, "data", None),
        use_data=not getattr(args, "no_data", False),
    )
    print(result, file=out or sys.stdout)
    return 0
