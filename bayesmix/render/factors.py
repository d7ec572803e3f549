"""Equations of models with several grouping factors: the layout, the level and combined forms.

**Nested** factors (each one's columns extend the next outer one's: ``(1 | school/child)``)
are written in Raudenbush & Bryk's notation of three-level models, generalised to four and
five levels; a variable's level comes from ``Spec.variable_levels`` (1 = varies within the
innermost units)::

    level 1:  y_ijk = π_0jk + π_1jk · year_ijk + e_ijk
    level 2:  π_pjk = β_p0k + β_p1k · black_jk + ... + r_pjk
    level 3:  β_pqk = γ_pq0 + γ_pq1 · lowinc_k + ... + u_pqk

(four levels: ``β_pqkl = θ_pq0l + ... + u_pqkl`` and ``θ_pqsl = γ_pqs0 + ... + v_pqsl``).  The
subscripts of a γ come from its name when it has one digit per level (``g001`` -> γ_001, as
:meth:`Spec.from_equations` reads them); otherwise from its position (a formula's ``g02`` is
γ_001 in the example; a note lists the fit's names).  A random effect multiplies the variables
along the path from level 1 to its coefficient.

**Crossed** factors (and any other combination) keep the two-level form with one index per
factor: ``y_ijk = β_0jk + ... + ε_ijk``, ``β_0jk = γ_00 + γ_01 · M_j + U_0j + V_0k``; an
effect of a term that has a level-2 variable multiplies it there (``V_1k · M_j``).

:func:`bayesmix.render.factors_tree.layout` builds this tree (types in
:mod:`bayesmix.render.factors_layout`); :mod:`bayesmix.render.factors_matrix` and
:mod:`bayesmix.render.factors_dist` write the matrix forms and the distributions from it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bayesmix.render import forms, ir
from bayesmix.render.factors_layout import (
    CoefNode,
    EffectView,
    FactorView,
    Layout,
    term_name,
)
from bayesmix.render.factors_tree import layout
from bayesmix.render.ir import (
    Equation,
    FormIR,
    Ident,
    Indicator,
    Note,
    Num,
    Product,
    Sum,
    Symbol,
    Text,
    Var,
)

if TYPE_CHECKING:
    from bayesmix.render.forms import Context


def y_sym(lay: Layout) -> Symbol:
    """y_ijk."""
    return Symbol("y", (Ident(lay.obs),))


def resid_sym(lay: Layout) -> Symbol:
    """e_ijk (nested) or ε_ijk (crossed)."""
    return Symbol(lay.resid, (Ident(lay.obs),))


def coef_value(ctx: Context, lay: Layout, node: CoefNode) -> ir.Node:
    """A node's symbol, or its estimate for a γ when estimates are given."""
    if node.gamma is not None and ctx.estimates is not None:
        return Num(float(ctx.estimates.beta[node.gamma.column]), ctx.digits)
    return lay.coef_sym(node)


def _product(first: ir.Node, rest: list[ir.Node]) -> ir.Node:
    return Product((first, *rest)) if rest else first


def index_note(ctx: Context, lay: Layout) -> Note:
    """What each subscript runs over."""
    parts: list[ir.Node] = [Symbol("y"), Text(f": {ctx.spec.outcome}; "), Symbol("i"),
                            Text(": rows")]
    for k, f in enumerate(lay.factors):
        size = [f"{f.units:,} units"] if f.units is not None else []
        what = f.name
        if lay.kind == "nested" and k < len(lay.factors) - 1:
            what = f"{f.label} within {lay.factors[k + 1].label}"
            size.insert(0, f.name)
        extra = f" ({', '.join(size)})" if size else ""
        parts += [Text("; "), Symbol(f.index), Text(f": {what}{extra}")]
    if lay.kind == "crossed":
        parts.append(Text("; crossed: each row lies in one unit of every factor"))
    return Note(tuple(parts))


def name_notes(lay: Layout) -> list[Note]:
    """Where the displayed subscripts differ from the code names of the fit."""
    if lay.kind != "nested":
        return []
    pairs: list[tuple[ir.Node, str]] = []
    for _, leaf in sorted(lay.leaves.items()):
        shown = "g" + "".join(leaf.parts)
        if leaf.gamma is not None and leaf.gamma.name != shown:
            pairs.append((lay.coef_sym(leaf), leaf.gamma.name))
    for f in lay.factors:
        for e in f.effects:
            if e.name != f.letter + "".join(e.parts) + e.suffix:
                pairs.append((f.sym_plain(e), e.name))
    if not pairs:
        return []
    body: list[ir.Node] = [Text("names in the fit and the priors: ")]
    for k, (sym, name) in enumerate(pairs):
        body += [*([Text(", ")] if k else []), sym, Text(f" = {name}")]
    return [Note(tuple(body))]


def independence_notes(lay: Layout) -> list[Note]:
    """One note per factor whose effects are not all correlated (``||`` or several blocks)."""
    out = []
    for f in lay.factors:
        if len(f.effects) < 2 or f.correlated:
            continue
        parts: list[ir.Node] = []
        for k, cols in enumerate(f.groups):
            syms = [f.sym(f.effects[c]) for c in cols]
            parts += [Text(", ")] if k else []
            if len(syms) == 1:
                parts.append(syms[0])
            else:
                parts.append(Text("("))
                for i, s in enumerate(syms):
                    parts += [*([Text(", ")] if i else []), s]
                parts.append(Text(")"))
        diagonal = all(len(cols) == 1 for cols in f.groups)
        what = "diagonal" if diagonal else "block-diagonal"
        out.append(Note((*parts, Text(f" independent (T of {f.name} {what})"))))
    return out


# ---------------------------------------------------------------------------- forms
def levels(ctx: Context) -> FormIR:
    """The level equations of a multi-factor model (module docstring).

    Returns
    -------
    FormIR
    """
    lay = layout(ctx)
    l1 = [_product(lay.coef_sym(r), [lay.var(a) for a in r.atoms]) for r in lay.roots]
    blocks: list[ir.Block] = [
        Equation(y_sym(lay), Sum((*l1, resid_sym(lay))), label="Level 1")
    ]
    for d in range(1, lay.depth):
        for k, node in enumerate(lay.nodes(d)):
            terms: list[ir.Node] = [
                _product(coef_value(ctx, lay, c), [lay.var(a) for a in c.atoms])
                for c in node.children
            ]
            terms += [_product(f.sym(e), [lay.var(a) for a in e.extra])
                      for f, e in node.effects]
            blocks.append(Equation(lay.coef_sym(node), Sum(tuple(terms) or (Num(0.0),)),
                                   label=f"Level {d + 1}" if k == 0 else None,
                                   notes=_fixed_note(lay, node)))
    blocks.append(index_note(ctx, lay))
    blocks += name_notes(lay) + independence_notes(lay)
    blocks.extend(forms._source_note(ctx, Symbol("gamma")))
    return FormIR("levels", "Level equations", tuple(blocks))


def _fixed_note(lay: Layout, node: CoefNode) -> tuple[Note, ...]:
    below = node.walk()
    if node.gamma is not None or any(n.effects for n in below):
        return ()
    if node.depth == 1 and not node.atoms:
        return ()
    varies = any(n.atoms for n in below if n is not node)
    unit = lay.factors[node.depth - 1].label if lay.kind == "nested" else "unit"
    what = ("varies with higher-level predictors only" if varies
            else f"is the same in every {unit}")
    return (Note((Text("no random effect: "), lay.coef_sym(node), Text(f" {what}"))),)


def combined(ctx: Context) -> FormIR:
    """One equation for y: fixed part, random part factor by factor (innermost first), residual.

    Returns
    -------
    FormIR
    """
    lay = layout(ctx)
    leaves = lay.leaves

    def fixed(node: CoefNode) -> ir.Node:
        return _product(coef_value(ctx, lay, node), lay.path_vars(node))

    def random(f: FactorView, e: EffectView, node: CoefNode) -> ir.Node:
        return _product(f.sym(e), lay.path_vars(node, e.extra))

    owner = lay.owner()
    terms: list[ir.Node] = []
    if ctx.grouping == "coefficient":
        for r in lay.roots:
            sub = r.walk()
            terms += [fixed(n) for n in sub if n.gamma is not None]
            terms += [random(f, e, owner[id(e)]) for f in lay.factors for e in f.effects
                      if owner[id(e)] in sub]
    else:
        terms += [fixed(leaves[c]) for c in sorted(leaves)]
        terms += [random(f, e, owner[id(e)]) for f in lay.factors for e in f.effects]
    terms.append(resid_sym(lay))
    notes = []
    for c in sorted(leaves):
        node = leaves[c]
        used = [lvl for lvl, atoms in (*node.upper, (node.depth, node.atoms)) if atoms]
        if lay.kind == "crossed":
            used = [lay.level(a) for a in (*node.upper[0][1], *node.atoms)]
        if len(set(used)) > 1:
            atoms = [a for _, g in (*node.upper, (node.depth, node.atoms)) for a in g]
            inter = Product(tuple(Var(a[0]) if a[1] is None else Indicator(Var(a[0]), a[1])
                                  for a in atoms), op="times")
            notes.append(Note((lay.coef_sym(node), Text(": cross-level interaction "), inter)))
    eq = Equation(y_sym(lay), Sum(tuple(terms)), notes=tuple(notes))
    blocks: list[ir.Block] = [eq, index_note(ctx, lay)]
    blocks.extend(forms._source_note(ctx, Symbol("gamma")))
    return FormIR("combined", "Combined (mixed) equation", tuple(blocks))


def why_in_z_notes(lay: Layout) -> list[Note]:
    """The seed question: why X's columns appear again in Z, one note per column."""
    owner = lay.owner()
    by_term: dict[str, list[tuple[FactorView, ir.Node]]] = {}
    for f in lay.factors:
        for e in f.effects:
            by_term.setdefault(term_name((*e.extra, *owner[id(e)].path)), []).append(
                (f, f.sym(e)))
    out = [Note((Text("why columns of "), Symbol("X", bold=True), Text(" appear again in "),
                 Symbol("Z", bold=True), Text(": a column appears in Z once for every "
                                              "factor whose effects multiply it"),))]
    for term, uses in by_term.items():
        parts: list[ir.Node] = [Text(f"column {'1' if term == '(Intercept)' else term}: ")]
        for k, (f, sym) in enumerate(uses):
            z_f = Symbol("Z", (Text(f"({f.label})"),), bold=True)
            parts += [Text(", ") if k else Text("in "), z_f, Text(" ("), sym, Text(")")]
        out.append(Note(tuple(parts)))
    return out


def effect_list(f: FactorView) -> list[ir.Node]:
    """A factor's effects separated by commas, for a note."""
    out: list[ir.Node] = []
    for k, e in enumerate(f.effects):
        out += [*([Text(", ")] if k else []), f.sym(e)]
    return out
