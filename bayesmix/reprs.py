"""Short terminal reprs and notebook HTML reprs of Spec, Design, Fit and Prediction.

The classes keep only two-line ``__repr__`` / ``_repr_html_`` methods that call these
functions, so the reprs live in one place.  Each text repr is a few lines (well under
1,500 characters whatever the data size) with the facts one checks first; the HTML repr
shows the same as a small table.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import numpy as np

MAX_ITEMS = 8
"""Longest list (of clusters, X columns, ...) shown in full; longer ones are elided."""


def elide(items: Sequence[Any], max_items: int = MAX_ITEMS) -> str:
    """``a, b, c`` or ``a, b, c, …, y, z (26 in all)`` for long lists."""
    names = [str(i) for i in items]
    if len(names) <= max_items:
        return ", ".join(names)
    head, tail = names[: max_items - 2], names[-2:]
    return ", ".join([*head, "…", *tail]) + f" ({len(names)} in all)"


def _html_table(title: str, rows: list[tuple[str, str]], extra: str = "") -> str:
    body = "".join(
        f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
        f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
        for k, v in rows
    )
    return f"<div><strong>{html.escape(title)}</strong><table>{body}</table>{extra}</div>"


def _text(title: str, rows: list[tuple[str, str]]) -> str:
    width = max((len(k) for k, _ in rows), default=0)
    return "\n".join([title] + [f"  {k.ljust(width)}  {v}" for k, v in rows])


# ------------------------------------------------------------------------------- Spec
def _spec_rows(spec: Any) -> list[tuple[str, str]]:
    from bayesmix.errors import SpecError

    try:
        eq = spec.to_equations().splitlines()
    except SpecError:  # not expressible as level equations (e.g. nested, levels unknown)
        eq = []
    if spec.single_factor and eq:
        rows = [("level 1", eq[0])] + [("level 2" if i == 0 else "", line)
                                       for i, line in enumerate(eq[1:])]
        rows.append(("cluster", str(spec.cluster)))
    else:
        rows = [("equations" if i == 0 else "", line) for i, line in enumerate(eq)]
        for block in spec.random:
            structure = "" if block.correlated else ", independent"
            rows.append(("random" if block is spec.random[0] else "",
                         f"{', '.join(block.names)} over {block.grouping}{structure}"))
    if spec.categorical:
        rows.append(("categorical", ", ".join(spec.categorical)))
    if spec.reference:
        rows.append(("reference", ", ".join(f"{k} = {v}" for k, v in spec.reference)))
    if spec.data_path is not None:
        rows.append(("data", str(spec.data_path)))
    if spec.priors is not None:
        rows.append(("priors", "overridden (see .priors)"))
    return rows


def _spec_title(spec: Any) -> str:
    name = f" {spec.name!r}" if spec.name else ""
    return f"Spec{name}: {spec.to_formula()}"


def spec_text(spec: Any) -> str:
    """Terminal repr of a :class:`~bayesmix.Spec`."""
    return _text(_spec_title(spec), _spec_rows(spec))


def spec_html(spec: Any) -> str:
    """Notebook repr of a :class:`~bayesmix.Spec`."""
    return _html_table(_spec_title(spec), _spec_rows(spec))


# ----------------------------------------------------------------------------- Design
def _design_rows(design: Any) -> list[tuple[str, str]]:
    if not design.single_factor:
        return _factor_design_rows(design)
    Z = design.Z
    cluster = design.spec.cluster
    return [
        ("size", f"n = {design.n} rows, J = {design.J} clusters ({cluster}), p = {design.p} "
                 f"fixed, q = {design.q} random per cluster"),
        ("y", f"{design.spec.outcome}: mean {_num(np.mean(design.y))}, "
              f"sd {_num(np.std(design.y, ddof=1) if design.n > 1 else 0.0)}"),
        (f"X ({design.n} x {design.p})", elide(design.fixed_names)),
        (f"Z ({Z.shape[0]} x {Z.shape[1]})",
         f"sparse, {Z.nnz} non-zeros; {elide(design.random_names)} per {cluster}"),
        ("clusters", elide(design.clusters)),
        ("see", ".X_frame, .Z_frame(), .level2, .y, .X, .Z"),
    ]


def _factor_design_rows(design: Any) -> list[tuple[str, str]]:
    Z = design.Z
    rows = [
        ("size", f"n = {design.n} rows, p = {design.p} fixed, "
                 + ", ".join(f"{fe.J} {fe.name} x {fe.q}" for fe in design.effects)),
        ("y", f"{design.spec.outcome}: mean {_num(np.mean(design.y))}, "
              f"sd {_num(np.std(design.y, ddof=1) if design.n > 1 else 0.0)}"),
        (f"X ({design.n} x {design.p})", elide(design.fixed_names)),
        (f"Z ({Z.shape[0]} x {Z.shape[1]})",
         f"sparse, {Z.nnz} non-zeros, [" + " | ".join(f"Z_{fe.name}" for fe in design.effects)
         + "]"),
    ]
    for fe in design.effects:
        parent = f", within {fe.grouping.parent}" if fe.grouping.parent else ""
        blocks = "; ".join(f"{', '.join(b.names)} {b.structure}" for b in fe.blocks)
        rows.append((fe.name, f"{fe.J} units{parent}: {blocks}"))
        if fe.grouping.note:
            rows.append(("", fe.grouping.note))
    return rows


def design_text(design: Any) -> str:
    """Terminal repr of a :class:`~bayesmix.Design`."""
    return _text(f"Design: {design.spec.to_formula()}", _design_rows(design))


def design_html(design: Any) -> str:
    """Notebook repr of a :class:`~bayesmix.Design`: the facts and the first rows of X."""
    head = design.X_frame.head(5).to_html(float_format=lambda v: f"{v:.4g}")
    return _html_table(f"Design: {design.spec.to_formula()}", _design_rows(design),
                       f"<p>First rows of X:</p>{head}")


# -------------------------------------------------------------------------------- Fit
def _fit_header(fit: Any) -> tuple[str, str]:
    post = fit.posterior
    title = f"Fit{' ' + repr(fit.spec.name) if fit.spec.name else ''}: {fit.spec.to_formula()}"
    d = fit.design
    units = (f"J = {d.J} clusters" if d.single_factor
             else ", ".join(f"{fe.J} {fe.name}" for fe in d.effects))
    fam = fit.spec.family
    family = "" if fam.is_gaussian else f"{fam.name} family ({fam.link} link), "
    line = (f"{family}{fit.likelihood} likelihood, {fit.settings.sampler}, "
            f"{post.sizes['chain']} chains "
            f"x {post.sizes['draw']} draws; n = {d.n}, {units}")
    return title, line


def _summary(fit: Any):
    from bayesmix.checks.summary import summarize

    return summarize(fit, warn=False)


def fit_text(fit: Any) -> str:
    """Terminal repr of a :class:`~bayesmix.Fit`: the rounded summary, without warnings."""
    title, line = _fit_header(fit)
    s = _summary(fit)
    table = s.compact().split("\n\n")[0]
    n = len(s.warnings)
    more = f"; {n} warning{'s' if n > 1 else ''}: bm.summarize(fit)" if n else ""
    return "\n".join([title, line, "", table, "", s.diagnostics + more])


def fit_html(fit: Any) -> str:
    """Notebook repr of a :class:`~bayesmix.Fit`."""
    title, line = _fit_header(fit)
    return (f"<div><strong>{html.escape(title)}</strong><p>{html.escape(line)}</p>"
            f"{_summary(fit)._repr_html_()}</div>")


# ------------------------------------------------------------------------- Prediction
def _prediction_head(pred: Any) -> tuple[str, Any]:
    table = pred.summary()
    kept = getattr(pred, "has_draws", True)
    draws = pred.draws if kept else None
    kind = "expected values" if pred.kind == "mean" else "new observations"
    size = " (summary only)"
    if draws is not None and "chain" in getattr(draws, "dims", ()):
        size = f" from {draws.sizes['chain']} chains x {draws.sizes['draw']} draws"
    new = getattr(pred, "new_clusters", ())
    title = (f"Prediction ({kind}) of {len(table)} rows{size}; clusters not in the fit: "
             f"{elide(new) if len(new) else 'none'}")
    return title, table


def prediction_text(pred: Any, max_rows: int = 10) -> str:
    """Terminal repr of a :class:`~bayesmix.Prediction`: the first rows of its summary."""
    from bayesmix.checks.summary import significant

    title, table = _prediction_head(pred)
    shown = table.head(max_rows).map(significant)
    text = shown.to_string()
    if len(table) > max_rows:
        text += f"\n… {len(table) - max_rows} more rows: .summary()"
    return f"{title}\n{text}"


def prediction_html(pred: Any, max_rows: int = 10) -> str:
    """Notebook repr of a :class:`~bayesmix.Prediction`."""
    from bayesmix.checks.summary import significant

    title, table = _prediction_head(pred)
    more = f"<p>… {len(table) - max_rows} more rows: .summary()</p>" if len(table) > max_rows \
        else ""
    return (f"<div><strong>{html.escape(title)}</strong>"
            f"{table.head(max_rows).map(significant).to_html()}{more}</div>")


def _num(v: float) -> str:
    from bayesmix.checks.summary import significant

    return significant(float(v))
