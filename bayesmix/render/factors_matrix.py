"""Matrix forms of models with several grouping factors.

The random part is partitioned by factor, ``Zu = Σ_g Z_(g) u_(g)``: for a factor with J_g
units and q_g effects, ``Z_(g)`` (n × J_g q_g) holds in row i the row's values of the factor's
effect columns in the block of the row's own unit, 0 elsewhere (``design.effects[g].Z``).

* One unit (:func:`matrix_unit`): a unit of the level-3 factor with its level-2 units (nested;
  the factors above contribute one block each), or a unit of the first crossed factor with
  its rows grouped by the units of the second; ``Z`` of the inner factor is block-diagonal,
  that of the unit's own factor one stacked block.
* The whole data (:func:`matrix`): every ``Z_(g)`` with the design's numbers, rows sorted by
  the factors (outermost first), long matrices cut short with ⋮ and ⋯.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bayesmix.render import forms, ir
from bayesmix.render.factors import coef_value, effect_list, why_in_z_notes
from bayesmix.render.factors_layout import (
    CoefNode,
    FactorView,
    Layout,
)
from bayesmix.render.factors_tree import layout
from bayesmix.render.ir import (
    Dots,
    Equation,
    FormIR,
    Ident,
    Matrix,
    Note,
    Num,
    Product,
    Sum,
    Symbol,
    Text,
)

if TYPE_CHECKING:
    from bayesmix.design import Design
    from bayesmix.render.forms import Context


def _bold(base: str, f: FactorView | None = None, unit: str | None = None) -> Symbol:
    sub: list[ir.Node] = [Text(f"({f.label})")] if f is not None else []
    if unit is not None:
        sub.append(Ident(unit))
    return Symbol(base, tuple(sub), sep="," if len(sub) > 1 else "", bold=True)


def _cell(nodes: list[ir.Node]) -> ir.Node:
    if not nodes:
        return Num(1.0)
    return nodes[0] if len(nodes) == 1 else Product(tuple(nodes))


def _beta(ctx: Context, lay: Layout) -> Matrix:
    leaves = lay.leaves
    return Matrix(tuple((coef_value(ctx, lay, leaves[c]),) for c in sorted(leaves)))


# ---------------------------------------------------------------------------- one unit
def matrix_unit(ctx: Context) -> FormIR:
    """One unit's rows in matrix form, the inner factor's Z block-diagonal (module docstring).

    Returns
    -------
    FormIR
    """
    lay = layout(ctx)
    nested = lay.kind == "nested"
    inner, top = (lay.factors[0], lay.factors[1]) if nested else lay.factors[1::-1]
    above = lay.factors[2:] if nested else ()
    rest = () if nested else lay.factors[2:]
    a = "".join(f.index for f in lay.factors[1:]) if nested else top.index
    count = Symbol(inner.index.upper(), (Ident(a),) if nested else ())
    owner = lay.owner()
    leaves = lay.leaves

    def sub(level: int, row: ir.Node, b: ir.Node) -> tuple[ir.Node, ...]:
        if level <= 1:
            return (row, b, Ident(a)) if nested else (row, Ident(a), b)
        if not nested:
            return (Ident(a),)
        if level == 2:
            return (b, Ident(a))
        return (Ident("".join(f.index for f in lay.factors[level - 2:])),)

    def cells(node: CoefNode, row: ir.Node, b: ir.Node, extra=()) -> ir.Node:
        return _cell([lay.var(x, sub(lay.level(x), row, b)) for x in (*extra, *node.path)])

    units: list[ir.Node | None] = [Ident("1"), None, count]
    ys, xs, zs, ws, es = [], [], [], [], []
    qi = len(inner.effects)
    for k, b in enumerate(units):
        if b is None:
            ys.append((Dots("v"),))
            es.append((Dots("v"),))
            xs.append(tuple(Dots("v") for _ in leaves))
            zs.append(tuple(Dots("d") if c == qi else Dots("v") for c in range(2 * qi + 1)))
            ws.append([tuple(Dots("v") for _ in f.effects) for f in (top, *above)])
            continue
        n_b = Symbol("n", (b, Ident(a)) if nested else (Ident(a), b))
        for row in (Ident("1"), None, n_b):
            if row is None:
                ys.append((Dots("v"),))
                es.append((Dots("v"),))
                xs.append(tuple(Dots("v") for _ in leaves))
                zs.append(tuple(Dots("v") for _ in range(2 * qi + 1)))
                ws.append([tuple(Dots("v") for _ in f.effects) for f in (top, *above)])
                continue
            obs = sub(1, row, b)
            ys.append((Symbol("y", obs),))
            es.append((Symbol(lay.resid, obs),))
            xs.append(tuple(cells(leaves[c], row, b) for c in sorted(leaves)))
            own = [cells(owner[id(e)], row, b, e.extra) for e in inner.effects]
            zero = [Num(0.0)] * qi
            zs.append(tuple([*own, Dots("h"), *zero] if k == 0 else [*zero, Dots("h"), *own]))
            ws.append([tuple(cells(owner[id(e)], row, b, e.extra) for e in f.effects)
                       for f in (top, *above)])
    u_inner: list[tuple[ir.Node, ...]] = []
    for b in units:
        if b is None:
            u_inner.append((Dots("v"),))
            continue
        tail = (b, Ident(a)) if nested else (b,)
        u_inner += [(inner.sym(e, tail),) for e in inner.effects]
    terms: list[ir.Node] = [Product((Matrix(tuple(xs)), _beta(ctx, lay)))]
    stacked = [(inner, Matrix(tuple(zs)), Matrix(tuple(u_inner)))]
    for g, f in enumerate((top, *above)):
        z = Matrix(tuple(row[g] for row in ws))
        stacked.append((f, z, Matrix(tuple((f.sym(e),) for e in f.effects))))
    if not nested:
        stacked = [stacked[1], stacked[0]]
    terms += [Product((z, u)) for _, z, u in stacked]
    terms += [Product((_bold("Z", f, a), _bold("u", f)), op="juxt") for f in rest]
    compact_terms: list[ir.Node] = [Product((_bold("X", None, a), Symbol("beta", bold=True)),
                                            op="juxt")]
    for f, _, _ in stacked:
        own = nested or f is top  # crossed: the inner factor's effects are shared by all
        compact_terms.append(Product((_bold("Z", f, a), _bold("u", f, a if own else None)),
                                     op="juxt"))
    for f in rest:
        compact_terms.append(Product((_bold("Z", f, a), _bold("u", f)), op="juxt"))
    compact_terms.append(_bold(lay.resid, None, a))
    compact = Equation(_bold("Y", None, a), Sum(tuple(compact_terms)))
    full = Equation(Matrix(tuple(ys)), Sum((*terms, Matrix(tuple(es)))))
    blocks: list[ir.Block] = [compact, full, *_unit_notes(lay, inner, top, a, count)]
    if rest:
        blocks.append(Note((Text("the effects of " + ", ".join(f.name for f in rest)
                                 + " enter the same way as those of the whole-data form"),)))
    blocks += why_in_z_notes(lay)
    blocks.extend(forms._source_note(ctx, Symbol("gamma")))
    title = (f"Matrix form of one {top.label} unit {a} with its {inner.label} units" if nested
             else f"Matrix form of one {top.label} unit {a}")
    return FormIR("matrix_cluster", title, tuple(blocks))


def _unit_notes(lay: Layout, inner: FactorView, top: FactorView, a: str,
                count: Symbol) -> list[Note]:
    j = Symbol(inner.index)
    if lay.kind == "nested":
        lead = [Text("rows: observations "), Symbol("i"), Text(" of "), Text(inner.label + " "),
                j, Text(" = 1 to "), count, Text(f" within {top.label} "), Symbol(a),
                Text(", stacked; "), _bold("Z", inner, a),
                Text(" is block-diagonal, one block per unit "), j, Text("; "),
                _bold("Z", top, a), Text(" is one block for the whole unit")]
    else:
        lead = [Text(f"rows: the observations of {top.label} "), Symbol(a),
                Text(f", grouped by {inner.label} "), j, Text(" = 1 to "), count,
                Text(" (a block may be empty); "), _bold("Z", inner, a),
                Text(f" is block-diagonal over them, but the effects of each {inner.label} "),
                Symbol(inner.index), Text(" ("), *effect_list(inner),
                Text(f") are shared by every {top.label}, unlike "), *effect_list(top)]
    return [Note(tuple(lead))]


# ---------------------------------------------------------------------------- whole data
@dataclass(frozen=True)
class Selection:
    """Rows shown (sorted by the factors; None marks ⋮) and each factor's units shown.

    Attributes
    ----------
    rows : tuple of int or None
    gaps : tuple of bool or None
        For a None row: whether whole top-level units are left out there.
    units : tuple of tuple of int or None
        Per factor of the layout: unit codes in order, None where units are left out.
    """

    rows: tuple[int | None, ...]
    gaps: tuple[bool | None, ...]
    units: tuple[tuple[int | None, ...], ...]


def select(design: Design, lay: Layout, max_rows: int, max_units: int) -> Selection:
    """Choose the rows and units of the whole-data display.

    Rows are sorted by the factors, outermost (nested) or first (crossed) factor first.  All
    rows when ``n <= max_rows``; otherwise the first ``max_units - 1`` units of the top
    factor and its last one, each with at most ``max(2, max_rows // shown)`` rows (its first
    rows, ⋮, its last row).  Each factor shows the units of the rows shown.
    """
    fes = {fe.name: fe for fe in design.effects}
    index = [fes[f.name].grouping.index for f in lay.factors]
    keys = index[::-1] if lay.kind == "nested" else index
    order = np.lexsort((np.arange(design.n), *keys[::-1]))
    top = keys[0]
    rows: list[int | None] = []
    gaps: list[bool | None] = []
    if design.n <= max_rows:
        rows = [int(i) for i in order]
        gaps = [None] * len(rows)
    else:
        J = int(top.max()) + 1
        keep = max(int(max_units), 2)
        shown = list(range(J)) if J <= keep else [*range(keep - 1), J - 1]
        budget = max(2, int(max_rows) // len(shown))
        prev = -1
        for c in shown:
            if c != prev + 1:
                rows.append(None)
                gaps.append(True)
            prev = c
            idx = order[top[order] == c]
            picks = list(idx) if len(idx) <= budget else [*idx[: budget - 1], None, idx[-1]]
            for i in picks:
                rows.append(None if i is None else int(i))
                gaps.append(False if i is None else None)
    units = []
    for g, f in enumerate(lay.factors):
        codes = sorted({int(index[g][i]) for i in rows if i is not None})
        out: list[int | None] = []
        prev = -1
        for c in codes:
            if c != prev + 1:
                out.append(None)
            out.append(c)
            prev = c
        if prev < fes[f.name].J - 1:
            out.append(None)
        units.append(tuple(out))
    return Selection(tuple(rows), tuple(gaps), tuple(units))


def _numeric(ctx: Context, lay: Layout, design: Design) -> list[ir.Block]:
    sel = select(design, lay, ctx.max_rows, ctx.max_clusters)
    est = ctx.estimates
    fes = {fe.name: fe for fe in design.effects}
    facs = [fes[f.name] for f in lay.factors]
    resid = est.residuals if est is not None else None
    u_est = est.factor_u() if est is not None else None

    def num(x: float) -> Num:
        return Num(float(x), ctx.digits)

    ys, xs, es = [], [], []
    zs: list[list[tuple[ir.Node, ...]]] = [[] for _ in facs]
    inner = facs[0]
    for i, gap in zip(sel.rows, sel.gaps, strict=True):
        if i is None:
            ys.append((Dots("v"),))
            es.append((Dots("v"),))
            xs.append(tuple(Dots("v") for _ in range(design.p)))
            for g, fe in enumerate(facs):
                zs[g].append(tuple(
                    c for u in sel.units[g] for c in (
                        (Dots("d" if gap else "v"),) if u is None
                        else tuple(Dots("v") for _ in range(fe.q)))))
            continue
        ys.append((num(design.y[i]),))
        xs.append(tuple(num(x) for x in design.X[i]))
        for g, fe in enumerate(facs):
            own = int(fe.grouping.index[i])
            zs[g].append(tuple(
                c for u in sel.units[g] for c in (
                    (Dots("h"),) if u is None
                    else tuple(num(fe.Zq[i, r] if u == own else 0.0) for r in range(fe.q)))))
        unit = int(inner.grouping.index[i])
        pos = int(np.sum(inner.grouping.index[:i] == unit)) + 1
        labels = [inner.grouping.levels[unit]]
        if lay.kind == "crossed":
            labels = [fe.grouping.levels[int(fe.grouping.index[i])] for fe in facs]
        es.append((num(resid[i]),) if resid is not None else (Symbol(
            lay.resid, (Ident(str(pos)), *(forms.label_node(x) for x in labels)), sep=","),))
    terms: list[ir.Node] = [Product((Matrix(tuple(xs)), _beta(ctx, lay)), op="juxt")]
    for g, (f, fe) in enumerate(zip(lay.factors, facs, strict=True)):
        us: list[tuple[ir.Node, ...]] = []
        for u in sel.units[g]:
            if u is None:
                us.append((Dots("v"),))
                continue
            label = forms.label_node(fe.grouping.levels[u])
            for e in f.effects:
                us.append((num(u_est[f.name][u, e.column]),) if u_est is not None
                          else (f.sym(e, (label,), sep=","),))
        terms.append(Product((Matrix(tuple(zs[g])), Matrix(tuple(us))), op="juxt"))
    blocks: list[ir.Block] = [Equation(Matrix(tuple(ys)),
                                       Sum((*terms, Matrix(tuple(es)))))]
    if est is not None:
        def column(values: np.ndarray) -> Matrix:
            return Matrix(tuple((num(values[i]),) if i is not None else (Dots("v"),)
                                for i in sel.rows))

        parts = [column(design.X @ est.beta)]
        parts += [column(fe.Z @ u_est[fe.name].ravel()) for fe in facs]  # type: ignore[index]
        blocks.append(Equation(column(design.y), Sum((*parts, column(resid)))))  # type: ignore[arg-type]
    return blocks + _whole_notes(ctx, lay, design, sel)


def _whole_notes(ctx: Context, lay: Layout, design: Design, sel: Selection) -> list[Note]:
    names = [f.label for f in (lay.factors[::-1] if lay.kind == "nested" else lay.factors)]
    how = ("every Z_(g) is block-diagonal" if lay.kind == "nested" else
           f"Z_({lay.factors[0].label}) is block-diagonal, the others are not: the "
           "factors are crossed")
    notes = [Note((Text(f"rows sorted by {', then '.join(names)} (stable), so {how}"),))]
    width = sum((f.units or 0) * len(f.effects) for f in lay.factors)
    sizes = Sum(tuple(Product((Num(f.units or 0), Num(len(f.effects))), op="times")
                      for f in lay.factors))
    zparts: list[ir.Node] = [Symbol("Z", bold=True), Text(" = [")]
    for k, f in enumerate(lay.factors):
        zparts += [*([Text(" | ")] if k else []), _bold("Z", f)]
    zparts += [Text("], "), Product((Num(design.n), ir.Paren(sizes)), op="times"), Text(" = "),
               Product((Num(design.n), Num(width)), op="times"), Text(": each "),
               Symbol("Z", (Text("(g)"),), bold=True),
               Text(" holds, in row i, the row's values of the factor's effect columns in the "
                    "block of the row's own unit, 0 elsewhere")]
    spec_order = [fe.name for fe in design.effects]
    if spec_order != [f.name for f in lay.factors]:
        zparts.append(Text(f"; design.Z holds the blocks in the order {', '.join(spec_order)}"))
    notes.append(Note(tuple(zparts)))
    n_shown = sum(i is not None for i in sel.rows)
    if n_shown < design.n:
        shown = ", ".join(
            f"{sum(u is not None for u in units)} of {f.units} {f.label}"
            for f, units in zip(lay.factors, sel.units, strict=True))
        notes.append(Note((Text(f"showing {n_shown} of {design.n} rows ({shown}); "),
                           Dots("v"), Text(" and "), Dots("h"),
                           Text(f" mark rows and columns left out (max_rows={ctx.max_rows})"))))
    names_x = ", ".join(design.fixed_names)
    notes.append(Note((Text("columns of "), Symbol("X", bold=True), Text(f": {names_x}"))))
    notes += why_in_z_notes(lay)
    if ctx.estimates is not None:
        notes.append(Note((Symbol("beta", bold=True), Text(", "), Symbol("u", bold=True),
                           Text(f": {ctx.estimates.source}; "), Symbol("e", bold=True),
                           Text(" = "), _residual())))
    return notes


def _residual() -> ir.Node:
    """The residual ``y - Xβ - Σ_g Z_(g) u_(g)``."""
    g = (Text("(g)"),)
    return Sum((Symbol("y", bold=True),
                Product((Num(-1.0), Symbol("X", bold=True), Symbol("beta", bold=True)),
                        op="juxt"),
                Product((Num(-1.0), Symbol("Sigma", (Ident("g"),)), Symbol("Z", g, bold=True),
                         Symbol("u", g, bold=True)), op="juxt")))


def _symbolic(ctx: Context, lay: Layout) -> list[ir.Block]:
    out: list[ir.Block] = [Equation(Symbol("beta", bold=True), _beta(ctx, lay))]
    for f in lay.factors:
        big = Symbol("J", (Text(f"({f.label})"),))
        rows: list[tuple[ir.Node, ...]] = []
        for unit in (Ident("1"), Ident("2"), None, big):
            if unit is None:
                rows.append((Dots("v"),))
            else:
                rows += [(f.sym(e, (unit,), sep=","),) for e in f.effects]
        out.append(Equation(_bold("u", f), Matrix(tuple(rows))))
    z_g = Symbol("Z", (Text("(g)"),), bold=True)
    dims = Product((Symbol("n"), Product((Symbol("J", (Ident("g"),)),
                                          Symbol("q", (Ident("g"),))), op="juxt")), op="times")
    out.append(Note((Text("each "), z_g, Text(" is "), dims,
                     Text(": row i holds the row's values of the factor's effect columns in the "
                          "block of its own unit, 0 elsewhere"))))
    return out + why_in_z_notes(lay)


def matrix(ctx: Context) -> FormIR:
    """The whole data as ``Y = Xβ + Σ_g Z_(g) u_(g) + e``, with numbers given a design.

    Returns
    -------
    FormIR
    """
    lay = layout(ctx)
    terms: list[ir.Node] = [Product((Symbol("X", bold=True), Symbol("beta", bold=True)),
                                    op="juxt")]
    terms += [Product((_bold("Z", f), _bold("u", f)), op="juxt") for f in lay.factors]
    compact = Equation(Symbol("Y", bold=True), Sum((*terms, Symbol("e", bold=True))))
    design = ctx.design
    body = _symbolic(ctx, lay) if design is None else _numeric(ctx, lay, design)
    return FormIR("matrix", "Matrix form of the whole data", (compact, *body))
