"""Build the equation IR of a model.

Forms: levels, combined, per-cluster matrix, whole-data matrix, distributions.

Conventions (notation of :mod:`bayesmix.notation` and of the seeds):

* level 1: ``y_ij = β_0j + β_1j · X_ij + ... + ε_ij``; level-1 variables carry ``ij``,
  level-2 variables ``j``;
* level 2: ``β_qj = γ_q0 + γ_q1 · M_j + ... + U_qj``.  A coefficient without U is still
  written with its subscript j, ``β_1j = γ_10`` (as lme4 users read it: the same value in
  every cluster); the seed question writes ``β_10`` for it;
* the combined form lists the fixed part (every γ times its level-2 and level-1 variables, in
  coefficient order), then the random part (every U times its level-1 variables), then ε_ij;
  ``grouping="coefficient"`` lists each β's expansion in turn instead, which is the seed
  answer's order in its equations (1) and (3);
* products are written level-2 variables first, then level-1 (``γ_11 · M_j · X_ij``,
  ``U_1j · X_ij``), as the seed answer does;
* with a design, categorical predictors appear as their treatment-coded columns, each an
  indicator ``[Sector_j = Catholic]``, and coefficients of a multi-column product carry the
  level in their subscript as in the design's labels (``γ_10[B]``);
* the whole-data matrix form orders the rows by cluster, so Z is block-diagonal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from bayesmix.notation import INTERCEPT
from bayesmix.render import ir
from bayesmix.render.ir import (
    Dots,
    Equation,
    FormIR,
    Ident,
    Keyword,
    Matrix,
    Note,
    Num,
    Product,
    Sum,
    Symbol,
    Text,
)
from bayesmix.render.transform_nodes import variable_node

if TYPE_CHECKING:
    from bayesmix.design import Design
    from bayesmix.priors import Prior, ResolvedPriors
    from bayesmix.render.estimates import Estimates
    from bayesmix.spec.model import Coefficient, Spec

Grouping = Literal["fixed-random", "coefficient"]


# ---------------------------------------------------------------------------- structure
@dataclass(frozen=True)
class _Factor:
    """One variable of a term, with its coded level for a categorical column."""

    var: str
    level: str | None
    level2: bool

    def node(self, row: ir.Node | None = None, *, bare: bool = False) -> ir.Node:
        if bare:
            sub: tuple[ir.Node, ...] = ()
        elif self.level2:
            sub = (Ident("j"),)
        else:
            sub = (Ident("ij"),) if row is None else (row, Ident("j"))
        return variable_node(self.var, sub, self.level)


@dataclass(frozen=True)
class _Gamma:
    name: str  # "g01", "g10[B]"
    factors: tuple[_Factor, ...]  # level-2 factors
    column: int  # index in X (spec.fixed_terms order without a design)


@dataclass(frozen=True)
class _Column:
    """One level-1 column: a coefficient β (or one coded column of it) and its level-2 eq."""

    name: str  # "b1", "b1[B]"
    factors: tuple[_Factor, ...]  # level-1 factors
    gammas: tuple[_Gamma, ...]
    random: str | None  # "U1", "U1[B]"
    random_index: int | None  # index r among the random terms


@dataclass(frozen=True)
class _Structure:
    columns: tuple[_Column, ...]
    fixed: tuple[tuple[_Column, _Gamma], ...]  # in X's column order
    random: tuple[_Column, ...]  # in Z's per-cluster column order


def _parse_term(term: str, variables: tuple[str, ...]) -> list[tuple[str, str | None]]:
    """Split a coded term name (``"X[B]:Sector[Catholic]"``) along known variables."""
    if not variables:
        return []
    out: list[tuple[str, str | None]] = []
    pos = 0
    for k, var in enumerate(variables):
        if not term.startswith(var, pos):
            raise ValueError(f"cannot read term {term!r} as a product of {variables}")
        pos += len(var)
        last = k == len(variables) - 1
        if pos < len(term) and term[pos] == "[":
            end = len(term) - 1 if last else term.find("]:" + variables[k + 1], pos)
            if end < 0 or term[end] != "]":
                raise ValueError(f"cannot read term {term!r} as a product of {variables}")
            out.append((var, term[pos + 1 : end]))
            pos = end + 1
        else:
            out.append((var, None))
        if not last:
            if term[pos : pos + 1] != ":":
                raise ValueError(f"cannot read term {term!r} as a product of {variables}")
            pos += 1
    return out


def structure(spec: Spec, design: Design | None = None) -> _Structure:
    """Collect the level-1 columns, γ's and U's of a model, coded by the design if given."""
    if design is None:
        return _structure_symbolic(spec)
    return _structure_coded(spec, design)


def _structure_symbolic(spec: Spec) -> _Structure:
    order = {(t.coefficient.name, t.gamma.name): k for k, t in enumerate(spec.fixed_terms)}
    columns = []
    r = 0
    for coef in spec.coefficients:
        gammas = tuple(
            _Gamma(g.name, tuple(_Factor(v, None, True) for v in g.variables),
                   order[(coef.name, g.name)])
            for g in coef.gammas
        )
        ri = None
        if coef.random is not None:
            ri, r = r, r + 1
        columns.append(
            _Column(coef.name, tuple(_Factor(v, None, False) for v in coef.variables), gammas,
                    coef.random, ri)
        )
    return _finish(tuple(columns), len(spec.fixed_terms))


def _level1_split(label: str, coef: Coefficient) -> tuple[str, str]:
    """``"b1[B] (X[B])"`` -> (``"[B]"``, ``"X[B]"``) for coefficient b1."""
    if label == f"{coef.name} {INTERCEPT}":
        return "", INTERCEPT
    rest = label[len(coef.name) :]
    if rest.startswith(" ("):
        return "", rest[2:-1]
    end = rest.find("] (" + coef.variables[0])
    return rest[: end + 1], rest[end + 3 : -1]


def _structure_coded(spec: Spec, design: Design) -> _Structure:
    coefs = {c.name: c for c in spec.coefficients}
    by_gamma = {g.name: (c, g) for c in spec.coefficients for g in c.gammas}
    # level-1 columns of the design, in order
    raw_cols: list[tuple[Coefficient, str, tuple[_Factor, ...], int | None]] = []
    m = 0
    for coef in spec.coefficients:
        while m < len(design.level1_names) and (
            design.level1_names[m].startswith(coef.name + " ")
            or design.level1_names[m].startswith(coef.name + "[")
        ):
            suffix, term = _level1_split(design.level1_names[m], coef)
            parts = _parse_term(term, coef.variables) if term != INTERCEPT else []
            factors = tuple(_Factor(v, lev, False) for v, lev in parts)
            r = int(design.random_of_level1[m])
            raw_cols.append((coef, suffix, factors, r if r >= 0 else None))
            m += 1
    gammas_of: dict[int, list[_Gamma]] = {i: [] for i in range(len(raw_cols))}
    for k, (gname, term) in enumerate(zip(design.gamma_names, design.fixed_terms, strict=True)):
        base = gname.split("[", 1)[0]
        coef, gamma = by_gamma[base]
        variables = coef.variables + gamma.variables
        parts = _parse_term(term, variables) if term != INTERCEPT else []
        l1 = tuple(lev for _, lev in parts[: len(coef.variables)])
        l2 = tuple(_Factor(v, lev, True) for v, lev in parts[len(coef.variables) :])
        for i, (c, _, factors, _) in enumerate(raw_cols):
            if c.name == coef.name and tuple(f.level for f in factors) == l1:
                gammas_of[i].append(_Gamma(gname, l2, k))
                break
    columns = tuple(
        _Column(
            coef.name + suffix,
            factors,
            tuple(gammas_of[i]),
            (coefs[coef.name].random or "") + suffix if r is not None else None,
            r,
        )
        for i, (coef, suffix, factors, r) in enumerate(raw_cols)
    )
    return _finish(columns, design.p)


def _finish(columns: tuple[_Column, ...], p: int) -> _Structure:
    fixed: list[tuple[_Column, _Gamma] | None] = [None] * p
    for col in columns:
        for g in col.gammas:
            fixed[g.column] = (col, g)
    random = sorted((c for c in columns if c.random is not None),
                    key=lambda c: c.random_index or 0)
    return _Structure(columns, tuple(f for f in fixed if f is not None), tuple(random))


# ---------------------------------------------------------------------------- symbols
def label_node(label: str) -> ir.Node:
    """Make a cluster label or a level a subscript part (an identifier if alphanumeric)."""
    return Ident(label) if label.isascii() and label.isalnum() else Text(label)


def _name_parts(name: str, prefix_len: int = 1) -> tuple[tuple[ir.Node, ...], str]:
    """``"g01" -> ((Ident("01"),), "")``; ``"g1_10" -> ((1, 10), ",")``; suffix as Text."""
    core, bracket, rest = name[prefix_len:].partition("[")
    sep = "," if "_" in core else ""
    parts: list[ir.Node] = [label_node(x) for x in core.split("_") if x]
    if bracket:
        parts.append(Text("[" + rest))
    return tuple(parts), sep


def beta_sym(col: _Column) -> Symbol:
    """β_qj of a level-1 column."""
    parts, _ = _name_parts(col.name)
    return Symbol("beta", (*parts, Ident("j")))


def gamma_sym(name: str) -> Symbol:
    """γ_qs from its code name (``"g01"``)."""
    parts, sep = _name_parts(name)
    return Symbol("gamma", parts, sep=sep)


def u_sym(col: _Column, cluster: str | None = None) -> Symbol:
    """U_qj, or U_{q,label} for a given cluster."""
    parts, _ = _name_parts(col.random or "")
    if cluster is None:
        return Symbol("U", (*parts, Ident("j")))
    return Symbol("U", (*parts, label_node(cluster)), sep=",")


def y_sym(row: ir.Node | None = None, cluster: str | None = None) -> Symbol:
    """y_ij, y_{1j} or y_{i,label}."""
    return Symbol("y", _obs_sub(row, cluster), sep="," if cluster is not None else "")


def eps_sym(row: ir.Node | None = None, cluster: str | None = None) -> Symbol:
    """ε_ij, ε_{1j} or ε_{i,label}."""
    return Symbol("epsilon", _obs_sub(row, cluster), sep="," if cluster is not None else "")


def _obs_sub(row: ir.Node | None, cluster: str | None) -> tuple[ir.Node, ...]:
    if row is None and cluster is None:
        return (Ident("ij"),)
    if cluster is None:
        return (row or Ident("i"), Ident("j"))
    return (row or Ident("i"), label_node(cluster))


def _gamma_value(g: _Gamma, est: Estimates | None, digits: int) -> ir.Node:
    if est is None:
        return gamma_sym(g.name)
    return Num(float(est.beta[g.column]), digits)


def _product(first: ir.Node, factors: list[ir.Node]) -> ir.Node:
    return Product((first, *factors)) if factors else first


def _cell(factors: list[ir.Node]) -> ir.Node:
    if not factors:
        return Num(1.0)
    return factors[0] if len(factors) == 1 else Product(tuple(factors))


# ---------------------------------------------------------------------------- forms
@dataclass(frozen=True)
class Context:
    """What every form builder needs."""

    spec: Spec
    design: Design | None
    estimates: Estimates | None
    structure: _Structure
    digits: int
    max_rows: int
    max_clusters: int
    grouping: Grouping


def _source_note(ctx: Context, what: ir.Node) -> tuple[Note, ...]:
    if ctx.estimates is None:
        return ()
    return (Note((what, Text(f": {ctx.estimates.source}")),),)


def levels(ctx: Context) -> FormIR:
    """Level 1 and level 2 equations.

    Returns
    -------
    FormIR
    """
    st = ctx.structure
    l1_terms: list[ir.Node] = [
        _product(beta_sym(col), [f.node() for f in col.factors]) for col in st.columns
    ]
    blocks: list[ir.Block] = [
        Equation(y_sym(), Sum((*l1_terms, eps_sym())), label="Level 1")
    ]
    for k, col in enumerate(st.columns):
        terms: list[ir.Node] = [
            _product(_gamma_value(g, ctx.estimates, ctx.digits), [f.node() for f in g.factors])
            for g in col.gammas
        ]
        notes: tuple[Note, ...] = ()
        if col.random is not None:
            terms.append(u_sym(col))
        elif col.factors:
            what = (
                "varies with level-2 predictors only"
                if any(g.factors for g in col.gammas)
                else "is the same in every cluster"
            )
            notes = (Note((Text("no U: "), beta_sym(col), Text(f" {what}")),),)
        blocks.append(
            Equation(beta_sym(col), Sum(tuple(terms)), label="Level 2" if k == 0 else None,
                     notes=notes)
        )
    blocks.append(Note((
        Symbol("y"), Text(f": {ctx.spec.outcome}; clusters "), Symbol("j"),
        Text(f": {ctx.spec.cluster}"),
    )))
    blocks.extend(_independence_note(ctx))
    blocks.extend(_source_note(ctx, Symbol("gamma")))
    return FormIR("levels", "Level-1 and level-2 equations", tuple(blocks))


def _cross_level_notes(st: _Structure) -> tuple[Note, ...]:
    notes = []
    for col, g in st.fixed:
        if col.factors and g.factors:
            inter = Product(
                tuple(f.node(bare=True) for f in (*col.factors, *g.factors)), op="times"
            )
            notes.append(Note((gamma_sym(g.name), Text(": cross-level interaction "), inter)))
    return tuple(notes)


def combined(ctx: Context) -> FormIR:
    """Substitute the level-2 equations into level 1: one equation for y_ij.

    Returns
    -------
    FormIR
    """
    st = ctx.structure

    def fixed_terms(col: _Column) -> list[ir.Node]:
        l1 = [f.node() for f in col.factors]
        return [
            _product(_gamma_value(g, ctx.estimates, ctx.digits),
                     [f.node() for f in g.factors] + l1)
            for g in col.gammas
        ]

    def random_terms(col: _Column) -> list[ir.Node]:
        if col.random is None:
            return []
        return [_product(u_sym(col), [f.node() for f in col.factors])]

    terms: list[ir.Node] = []
    if ctx.grouping == "coefficient":
        for col in st.columns:
            terms += fixed_terms(col) + random_terms(col)
    else:
        for col in st.columns:
            terms += fixed_terms(col)
        for col in st.columns:
            terms += random_terms(col)
    terms.append(eps_sym())
    eq = Equation(y_sym(), Sum(tuple(terms)), notes=_cross_level_notes(st))
    notes = _source_note(ctx, Symbol("gamma"))
    return FormIR("combined", "Combined (mixed) equation", (eq, *notes))


def _row_nodes() -> list[ir.Node | None]:
    """Row indices of the per-cluster display: 1, ⋮ (None), n_j."""
    return [Ident("1"), None, Symbol("n", (Ident("j"),))]


def _x_row(st: _Structure, row: ir.Node) -> tuple[ir.Node, ...]:
    return tuple(
        _cell([f.node(row) for f in g.factors] + [f.node(row) for f in col.factors])
        for col, g in st.fixed
    )


def _z_row(st: _Structure, row: ir.Node) -> tuple[ir.Node, ...]:
    return tuple(_cell([f.node(row) for f in col.factors]) for col in st.random)


def _vdots_row(width: int) -> tuple[ir.Node, ...]:
    return tuple(Dots("v") for _ in range(width))


def matrix_cluster(ctx: Context) -> FormIR:
    """One cluster's rows in matrix form, ``Y_j = X_j β + Z_j U_j + ε_j``, as the seed question.

    Returns
    -------
    FormIR
    """
    st = ctx.structure
    p, q = len(st.fixed), len(st.random)
    ys, xs, zs, es = [], [], [], []
    for row in _row_nodes():
        if row is None:
            ys.append((Dots("v"),))
            es.append((Dots("v"),))
            xs.append(_vdots_row(p))
            zs.append(_vdots_row(q))
        else:
            ys.append((y_sym(row),))
            es.append((eps_sym(row),))
            xs.append(_x_row(st, row))
            zs.append(_z_row(st, row))
    gam = tuple((_gamma_value(g, ctx.estimates, ctx.digits),) for _, g in st.fixed)
    us = tuple((u_sym(col),) for col in st.random)
    j = (Ident("j"),)
    compact = Equation(
        Symbol("Y", j, bold=True),
        Sum((
            Product((Symbol("X", j, bold=True), Symbol("beta", bold=True)), op="juxt"),
            Product((Symbol("Z", j, bold=True), Symbol("U", j, bold=True)), op="juxt"),
            Symbol("epsilon", j, bold=True),
        )),
    )
    full = Equation(
        Matrix(tuple(ys)),
        Sum((
            Product((Matrix(tuple(xs)), Matrix(gam))),
            Product((Matrix(tuple(zs)), Matrix(us))),
            Matrix(tuple(es)),
        )),
    )
    notes = [
        Note((Text("rows: observations "), Symbol("i"), Text(" = 1 to "), Symbol("n", j),
              Text(" of cluster "), Symbol("j"), Text("; the columns of "),
              Symbol("Z", j, bold=True), Text(" are the level-1 columns of the coefficients "
                                              "that have a U, so they repeat columns of "),
              Symbol("X", j, bold=True))),
    ]
    return FormIR(
        "matrix_cluster", "Matrix form of one cluster j",
        (compact, full, *notes, *_source_note(ctx, Symbol("gamma"))),
    )


# ---------------------------------------------------------------------------- whole data
@dataclass(frozen=True)
class _Selection:
    """Rows (in cluster order) and clusters shown; None marks an elision."""

    rows: tuple[tuple[int, int] | None, ...]  # (row index, position i within its cluster)
    row_gap: tuple[Literal["cluster", "within"] | None, ...]
    clusters: tuple[int | None, ...]
    shown_rows: int
    shown_clusters: int


def select_rows(design: Design, max_rows: int, max_clusters: int) -> _Selection:
    """Choose the rows and clusters of the whole-data display.

    All rows when ``n <= max_rows``.  Otherwise the first ``max_clusters - 1`` clusters and
    the last one, each with at most ``max(2, max_rows // shown)`` rows (its first rows, ⋮, its
    last row); Z shows the same clusters' columns, so its block structure stays visible.
    """
    codes = design.cluster_index
    order = np.argsort(codes, kind="stable")
    J = design.J
    by_cluster = [order[codes[order] == c] for c in range(J)]
    if design.n <= max_rows:
        shown = list(range(J))
        budget = design.n
    else:
        keep = max(int(max_clusters), 2)
        shown = list(range(J)) if J <= keep else [*range(keep - 1), J - 1]
        budget = max(2, int(max_rows) // len(shown))
    rows: list[tuple[int, int] | None] = []
    gaps: list[Literal["cluster", "within"] | None] = []
    clusters: list[int | None] = []
    prev = -1
    for c in shown:
        if c != prev + 1:
            rows.append(None)
            gaps.append("cluster")
            clusters.append(None)
        clusters.append(c)
        idx = by_cluster[c]
        if len(idx) <= budget:
            picks: list[int | None] = list(range(len(idx)))
        else:
            picks = [*range(budget - 1), None, len(idx) - 1]
        for pos in picks:
            if pos is None:
                rows.append(None)
                gaps.append("within")
            else:
                rows.append((int(idx[pos]), pos + 1))
                gaps.append(None)
        prev = c
    n_shown = sum(r is not None for r in rows)
    return _Selection(tuple(rows), tuple(gaps), tuple(clusters), n_shown, len(shown))


def _symbolic_whole(ctx: Context) -> list[ir.Block]:
    """Y = Xβ + Zu + e with the clusters' blocks, without data."""
    J = Symbol("J")

    def vec(base: str) -> Matrix:
        return Matrix((
            (Symbol(base, (Ident("1"),), bold=True),),
            (Symbol(base, (Ident("2"),), bold=True),),
            (Dots("v"),),
            (Symbol(base, (J,), bold=True),),
        ))

    zero = Num(0.0)

    def z(k: ir.Node) -> ir.Node:
        return Symbol("Z", (k,), bold=True)

    zmat = Matrix((
        (z(Ident("1")), zero, Dots("h"), zero),
        (zero, z(Ident("2")), Dots("h"), zero),
        (Dots("v"), Dots("v"), Dots("d"), Dots("v")),
        (zero, zero, Dots("h"), z(J)),
    ))
    st = ctx.structure
    block = Equation(
        vec("Y"),
        Sum((
            Product((vec("X"), Symbol("beta", bold=True)), op="juxt"),
            Product((zmat, vec("U")), op="juxt"),
            vec("epsilon"),
        )),
    )
    beta = Equation(
        Symbol("beta", bold=True),
        Matrix(tuple((_gamma_value(g, ctx.estimates, ctx.digits),) for _, g in st.fixed)),
    )
    u_j = Equation(
        Symbol("U", (Ident("j"),), bold=True), Matrix(tuple((u_sym(col),) for col in st.random))
    )
    note = Note((
        Text("rows stacked cluster by cluster, "), Symbol("j"), Text(" = 1 to "), J,
        Text(", so "), Symbol("Z", bold=True), Text(" is block-diagonal; "),
        Symbol("X", (Ident("j"),), bold=True), Text(", "),
        Symbol("Z", (Ident("j"),), bold=True), Text(" as in the matrix form of one cluster"),
    ))
    return [block, beta, u_j, note]


def _numeric_whole(ctx: Context, design: Design) -> list[ir.Block]:
    sel = select_rows(design, ctx.max_rows, ctx.max_clusters)
    est = ctx.estimates
    st = ctx.structure
    digits = ctx.digits
    q = design.q
    labels = design.clusters
    codes = design.cluster_index
    resid = est.residuals if est is not None else None

    def num(x: float) -> Num:
        return Num(float(x), digits)

    ys, xs, zs, es = [], [], [], []
    z_width = sum(q if c is not None else 1 for c in sel.clusters)
    for item, gap in zip(sel.rows, sel.row_gap, strict=True):
        if item is None:
            ys.append((Dots("v"),))
            es.append((Dots("v"),))
            xs.append(_vdots_row(design.p))
            zrow: list[ir.Node] = []
            for c in sel.clusters:
                if c is None:
                    zrow.append(Dots("d" if gap == "cluster" else "v"))
                else:
                    zrow.extend(Dots("v") for _ in range(q))
            zs.append(tuple(zrow))
            continue
        i, pos = item
        ys.append((num(design.y[i]),))
        xs.append(tuple(num(x) for x in design.X[i]))
        zrow = []
        for c in sel.clusters:
            if c is None:
                zrow.append(Dots("h"))
            else:
                zrow.extend(num(design.Zq[i, r] if codes[i] == c else 0.0) for r in range(q))
        zs.append(tuple(zrow))
        label = labels[codes[i]]
        es.append((num(resid[i]) if resid is not None else eps_sym(Ident(str(pos)), label),))
    assert all(len(r) == z_width for r in zs)
    beta = tuple(
        (num(est.beta[g.column]) if est is not None else gamma_sym(g.name),) for _, g in st.fixed
    )
    us: list[tuple[ir.Node, ...]] = []
    for c in sel.clusters:
        if c is None:
            us.append((Dots("v"),))
            continue
        for col in st.random:
            r = col.random_index or 0
            us.append((num(est.u[c, r]) if est is not None else u_sym(col, labels[c]),))
    full = Equation(
        Matrix(tuple(ys)),
        Sum((
            Product((Matrix(tuple(xs)), Matrix(beta)), op="juxt"),
            Product((Matrix(tuple(zs)), Matrix(tuple(us))), op="juxt"),
            Matrix(tuple(es)),
        )),
    )
    blocks: list[ir.Block] = [full]
    if est is not None:
        xb = design.X @ est.beta
        zu = design.linear_predictor(np.zeros(design.p), est.u)

        def column(values: np.ndarray) -> Matrix:
            return Matrix(tuple(
                (num(values[item[0]]),) if item is not None else (Dots("v"),)
                for item in sel.rows
            ))

        blocks.append(Equation(
            column(design.y),
            Sum((column(xb), column(zu), column(resid))),  # type: ignore[arg-type]
        ))
    notes: list[ir.Block] = []
    if np.any(np.diff(codes) < 0):
        notes.append(Note((Text(
            f"rows sorted by {design.spec.cluster} (stable), so "), Symbol("Z", bold=True),
            Text(" is block-diagonal; the data's own row order differs"))))
    else:
        notes.append(Note((Text(f"rows in {design.spec.cluster} order, so "),
                           Symbol("Z", bold=True), Text(" is block-diagonal"))))
    if sel.shown_rows < design.n or sel.shown_clusters < design.J:
        notes.append(Note((
            Text(f"showing {sel.shown_rows} of {design.n} rows and {sel.shown_clusters} of "
                 f"{design.J} clusters; "), Dots("v"), Text(" and "), Dots("h"),
            Text(f" mark rows and columns left out (max_rows={ctx.max_rows})"),
        )))
    names = ", ".join(design.fixed_names)
    notes.append(Note((Text("columns of "), Symbol("X", bold=True), Text(f": {names}"))))
    if est is not None:
        e_eq = Sum((Symbol("y", bold=True),
                    Product((Num(-1.0), Symbol("X", bold=True), Symbol("beta", bold=True)),
                            op="juxt"),
                    Product((Num(-1.0), Symbol("Z", bold=True), Symbol("u", bold=True)),
                            op="juxt")))
        notes.append(Note((Symbol("beta", bold=True), Text(", "), Symbol("u", bold=True),
                           Text(f": {est.source}; "), Symbol("e", bold=True), Text(" = "),
                           e_eq)))
    return [*blocks, *notes]


def matrix(ctx: Context) -> FormIR:
    """Write the whole data as ``Y = Xβ + Zu + e``, with numbers when a design is given.

    Returns
    -------
    FormIR
    """
    compact = Equation(
        Symbol("Y", bold=True),
        Sum((
            Product((Symbol("X", bold=True), Symbol("beta", bold=True)), op="juxt"),
            Product((Symbol("Z", bold=True), Symbol("u", bold=True)), op="juxt"),
            Symbol("e", bold=True),
        )),
    )
    design = ctx.design
    body = _symbolic_whole(ctx) if design is None else _numeric_whole(ctx, design)
    return FormIR("matrix", "Matrix form of the whole data", (compact, *body))


# ---------------------------------------------------------------------------- distributions
_PARAM_SYMBOLS = {"nu", "mu", "sigma", "beta", "alpha", "eta", "lambda"}


def _param(key: str) -> ir.Node:
    key = "lambda" if key == "lam" else key
    return Symbol(key) if key in _PARAM_SYMBOLS else Text(key)


def _prior_node(prior: Prior, index: int | None = None, digits: int = 4) -> ir.Node:
    args = []
    for key, value in prior.params:
        v = value[index or 0] if isinstance(value, tuple) else value
        args.append(Keyword(_param(key), Num(float(v), digits)))
    return ir.Call(prior.dist, tuple(args))


def _u_vector(st: _Structure) -> ir.Node:
    if len(st.random) == 1:
        return u_sym(st.random[0])
    return Matrix(tuple((u_sym(col),) for col in st.random))


def _sd(col: _Column) -> ir.Node:
    parts, _ = _name_parts(col.random or "")
    return ir.Call("sd", (Symbol("U", parts),))


def _blocks(ctx: Context) -> list[tuple[list[_Column], bool]]:
    """The covariance blocks of the one factor's effects: (columns, correlated)."""
    st = ctx.structure
    out = []
    for term in ctx.spec.random:
        names = set(term.names)
        cols = [c for c in st.random if (c.random or "").split("[", 1)[0] in names]
        if cols:
            out.append((cols, term.correlated))
    return out or [(list(st.random), True)]


def _independence_note(ctx: Context) -> list[Note]:
    """With ``||`` or several blocks: which effects are independent (T (block-)diagonal)."""
    blocks = _blocks(ctx)
    if len(ctx.structure.random) < 2 or (len(blocks) == 1 and blocks[0][1]):
        return []
    groups = [g for cols, corr in blocks for g in ([cols] if corr else [[c] for c in cols])]
    parts: list[ir.Node] = []
    for k, g in enumerate(groups):
        parts += [Text(", ")] if k else []
        parts += [Text("(")] if len(g) > 1 else []
        for i, c in enumerate(g):
            parts += [*([Text(", ")] if i else []), u_sym(c)]
        parts += [Text(")")] if len(g) > 1 else []
    shape = "diagonal" if all(len(g) == 1 for g in groups) else "block-diagonal"
    return [Note((*parts, Text(f" independent (T {shape})")))]


def _corr_priors(ctx: Context, eta: float) -> list[ir.Block]:
    """One LKJ prior per correlated block of two or more effects."""
    out: list[ir.Block] = []
    blocks = _blocks(ctx)
    for cols, correlated in blocks:
        if correlated and len(cols) > 1:
            arg: tuple[ir.Node, ...] = (
                (Symbol("U", (Ident("j"),), bold=True),) if len(blocks) == 1
                else tuple(u_sym(c) for c in cols))
            out.append(Equation(ir.Call("corr", arg),
                                ir.Call("LKJ", (Keyword(Symbol("eta"), Num(eta, 4)),)),
                                rel="~"))
    return out


def _t_note(ctx: Context) -> Note:
    st = ctx.structure
    q = len(st.random)
    if q == 1:
        cov: ir.Node = ir.Call("Var", (u_sym(st.random[0]),))
        shape = ""
    else:
        cov = ir.Call("Cov", (Symbol("U", (Ident("j"),), bold=True),))
        shape = f", {q} by {q}"
        blocks = _blocks(ctx)
        if not (len(blocks) == 1 and blocks[0][1]):
            diagonal = all(not c or len(cols) == 1 for cols, c in blocks)
            shape += ", diagonal" if diagonal else ", block-diagonal"
    return Note((Symbol("T"), Text(" = "), cov,
                 Text(f"{shape}, independent across clusters "), Symbol("j")))


def distributions(ctx: Context) -> FormIR:
    """Write the random effects' and residuals' distributions and the model's priors.

    Returns
    -------
    FormIR
    """
    st = ctx.structure
    est = ctx.estimates
    q = len(st.random)
    zero = Num(0.0) if q == 1 else Symbol("0", bold=True)
    blocks: list[ir.Block] = [
        Equation(_u_vector(st), ir.Call("N", (zero, Symbol("T"))), rel="~",
                 label="Random effects",
                 notes=(_t_note(ctx),)),
        _residuals(ctx),
    ]
    if est is not None:
        t_hat = est.T
        blocks.append(Equation(
            Symbol("T", hat=True),
            Matrix(tuple(tuple(Num(float(x), ctx.digits) for x in row) for row in t_hat))
            if q > 1 else Num(float(t_hat[0, 0]), ctx.digits),
            label="Estimates",
            notes=(Note((Text(f"{est.source}; "), Symbol("T", hat=True),
                         Text(" from the estimated SDs and correlations of U")),),),
        ))
        if np.ndim(est.sigma):  # σ̂_s per group (sigma_by)
            blocks += [Equation(Symbol("sigma", (Text(str(g)),), hat=True), Num(float(v),
                                                                              ctx.digits))
                       for g, v in zip(est.design.sigma_levels, est.sigma, strict=True)]
        else:
            blocks.append(Equation(Symbol("sigma", hat=True), Num(est.sigma, ctx.digits)))
    blocks.extend(_priors(ctx))
    return FormIR("distributions", "Distributions and priors", tuple(blocks))


def _residuals(ctx: Context) -> ir.Block:
    """ε_ij ~ N(0, σ²), or N(0, σ²_s) with a residual SD per group (``sigma_by``)."""
    by = ctx.spec.sigma_by
    if by is None:
        return Equation(eps_sym(), ir.Call("N", (Num(0.0), ir.Power(Symbol("sigma"), Num(2.0)))),
                        rel="~", label="Residuals")
    return Equation(eps_sym(), ir.Call("N", (Num(0.0), ir.Power(Symbol("sigma", (Ident("s"),)),
                                                                Num(2.0)))),
                    rel="~", label="Residuals",
                    notes=(Note((Text(f"s: the {by} of observation ij; one residual SD σ_s per "
                                      f"{by} (heterogeneous level-1 variance)"),)),))


def _priors(ctx: Context) -> list[ir.Block]:
    resolved: ResolvedPriors | None = None
    if ctx.estimates is not None and ctx.estimates.priors is not None:
        resolved = ctx.estimates.priors
    elif ctx.design is not None:
        from bayesmix.priors import resolve_priors

        resolved = resolve_priors(ctx.design, ctx.spec.priors)
    if resolved is not None:
        return _priors_resolved(ctx, resolved)
    return _priors_symbolic(ctx)


def _priors_resolved(ctx: Context, pri: ResolvedPriors) -> list[ir.Block]:
    from bayesmix.priors import Prior

    st = ctx.structure
    out: list[ir.Block] = []
    alpha = None
    for k, (_, g) in enumerate(st.fixed):
        prior = Prior("Normal", mu=float(pri.beta_mu[g.column]),
                      sigma=float(pri.beta_sigma[g.column]))
        lhs = gamma_sym(g.name)
        if (pri.intercept_centred and g.column == pri.scaling.x_intercept
                and len(st.fixed) > 1):
            lhs = alpha = Symbol("alpha")
        out.append(Equation(lhs, _prior_node(prior), rel="~",
                            label="Priors" if k == 0 else None))
    for col in st.random:
        out.append(Equation(_sd(col), _prior_node(pri.sd_u, col.random_index), rel="~"))
    out += _corr_priors(ctx, pri.eta)
    out.append(Equation(Symbol("sigma"), _prior_node(pri.sigma), rel="~"))
    if alpha is not None:
        out.append(_alpha_note())
    out.append(Note((Text("priors autoscaled from the data (bayesmix.priors), with the "
                          "model's overrides"),)))
    return out


def _alpha_note() -> Note:
    return Note((
        Symbol("alpha"), Text(": the intercept at the means of the predictors ("),
        Symbol("gamma", (Ident("00"),)), Text(" plus each predictor's mean times its "
                                              "coefficient), so the posterior does not "
                                              "depend on where the predictors' 0 lies"),
    ))


def _priors_symbolic(ctx: Context) -> list[ir.Block]:
    """Write the default rule of :mod:`bayesmix.priors` in symbols, with overrides."""
    st = ctx.structure
    user = ctx.spec.priors
    s_y = Symbol("s", (Ident("y"),))
    two5 = Num(2.5)
    out: list[ir.Block] = []
    alpha = None
    for k, (col, g) in enumerate(st.fixed):
        override = None
        if user is not None:
            override = user.beta.get(g.name)
        lhs = gamma_sym(g.name)
        if override is not None:
            rhs = _prior_node(override)
        elif not col.factors and not g.factors:
            if len(st.fixed) > 1:
                lhs = alpha = Symbol("alpha")
            if user is not None and user.intercept is not None:
                rhs = _prior_node(user.intercept)
            else:
                rhs = ir.Call("Normal", (Keyword(Symbol("mu"), ir.Bar(Symbol("y"))),
                                         Keyword(Symbol("sigma"),
                                                 Product((two5, s_y), op="juxt"))))
        else:
            term = ":".join(f.var for f in (*col.factors, *g.factors))
            s_k = Symbol("s", (label_node(term),))
            rhs = ir.Call("Normal", (
                Keyword(Symbol("mu"), Num(0.0)),
                Keyword(Symbol("sigma"), ir.Frac(Product((two5, s_y), op="juxt"), s_k)),
            ))
        out.append(Equation(lhs, rhs, rel="~", label="Priors" if k == 0 else None))
    sd_user = user.sd_u if user is not None else None
    for col in st.random:
        prior = None
        if sd_user is not None and not isinstance(sd_user, dict):
            prior = sd_user if hasattr(sd_user, "dist") else None
        elif isinstance(sd_user, dict):
            prior = sd_user.get(col.random or "")
        if prior is not None:
            rhs = _prior_node(prior, col.random_index)  # type: ignore[arg-type]
        else:
            scale: ir.Node = s_y
            if col.factors:
                term = ":".join(f.var for f in col.factors)
                scale = ir.Frac(s_y, Symbol("s", (label_node(term),)))
            rhs = ir.Call("HalfStudentT", (Keyword(Symbol("nu"), Num(3.0)),
                                           Keyword(Symbol("sigma"), scale)))
        out.append(Equation(_sd(col), rhs, rel="~"))
    out += _corr_priors(ctx, user.eta if user is not None else 2.0)
    if user is not None and user.sigma is not None:
        sig_rhs = _prior_node(user.sigma)
    else:
        sig_rhs = ir.Call("HalfStudentT", (Keyword(Symbol("nu"), Num(3.0)),
                                           Keyword(Symbol("sigma"), s_y)))
    out.append(Equation(Symbol("sigma"), sig_rhs, rel="~"))
    if alpha is not None:
        out.append(_alpha_note())
    blocks = _blocks(ctx)
    centred = ("the SD of the random intercept is that at the means of the random-slope "
               "variables; " if len(blocks) == 1 and blocks[0][1] else "")
    out.append(Note((
        s_y, Text(": SD of y; "), Symbol("s", (Ident("k"),)),
        Text(f": SD of a column of X (or of Z); {centred}the numbers come from the data (pass "
             "data= to see them)"),
    )))
    return out
