"""Build the layout of a multi-factor model: its factors and its tree of coefficients.

:func:`layout` reads the factors (from the design, or the Spec without one), each
variable's level (the Spec's ``variable_levels``, else found in the data: 1 + the number of
nested factors it is constant within), and builds the tree of
:class:`~bayesmix.render.factors_layout.CoefNode`: nested models from the columns of X
(a π per level-1 term, the intercept first; β, θ below by the variables of each level; the
γ's at the top), crossed ones from the Spec's coefficients; each random effect is attached
to the coefficient it varies.
"""

from __future__ import annotations

import itertools
import re
from typing import TYPE_CHECKING

from bayesmix.render import forms
from bayesmix.render.factors_layout import (
    COEF_LETTERS,
    UNIT_INDEX,
    Atom,
    CoefNode,
    EffectView,
    FactorView,
    Layout,
)
from bayesmix.render.ir import Ident, Text

if TYPE_CHECKING:
    from bayesmix.render.forms import Context


def _digits(name: str) -> tuple[str, ...] | None:
    """Index path of a code name: ``"g001"`` -> (0, 0, 1), ``"g0_12"`` -> (0, 12)."""
    m = re.fullmatch(r"[^\W\d_]+(\d+(?:_\d+)*)", name)
    if m is None:
        return None
    core = m.group(1)
    return tuple(core.split("_")) if "_" in core else tuple(core)


def _letter(name: str) -> str:
    m = re.match(r"[^\W\d_]+", name)
    return m.group(0) if m else name


def layout(ctx: Context) -> Layout:
    """Build the factors and the coefficient tree of a multi-factor model.

    Parameters
    ----------
    ctx : Context

    Returns
    -------
    Layout
    """
    spec, design = ctx.spec, ctx.design
    raw = _raw_factors(ctx)
    chain = sorted(raw, key=lambda r: len(r[1]), reverse=True)
    nested = len(chain) > 1 and all(
        a[1][: len(b[1])] == b[1] for a, b in itertools.pairwise(chain)
    ) and len(chain) <= len(COEF_LETTERS) and chain[0][0] == spec.cluster
    l1 = set(spec.level1_variables)
    if nested:
        levels = _nested_levels(ctx, [r[1] for r in chain])
        order, kind, depth = chain, "nested", len(chain) + 1
    else:
        levels = {v: 2 if v in spec.level2_variables and v not in l1 else 1
                  for v in spec.variables}
        order = sorted(raw, key=lambda r: r[0] != spec.cluster)
        kind, depth = "crossed", 2
    views = []
    for k, (name, cols, effects, blocks) in enumerate(order):
        letter = _letter(effects[0][0]) if effects else "U"
        label = cols[-1] if nested and k < len(order) - 1 else name
        if nested and k == len(order) - 1:
            label = ":".join(cols)
        tail = "".join(UNIT_INDEX[k: len(order)]) if nested else UNIT_INDEX[k]
        units = None
        if design is not None:
            units = next(fe.J for fe in design.effects if fe.name == name)
        views.append((name, label, letter, UNIT_INDEX[k], k + 2 if nested else 2, tail,
                      effects, blocks, units))
    roots = _tree(ctx, kind, depth, levels)  # type: ignore[arg-type]
    factors = []
    for name, label, letter, index, lvl, tail, effects, blocks, units in views:
        placed = []
        for e_name, col, atoms in effects:
            placed.append(_place(roots, kind, lvl, levels, e_name, col, atoms))
        fv = FactorView(name, label, letter, index, lvl, tail,
                        tuple(e for e, _ in placed), blocks, units)
        for e, node in placed:
            node.effects.append((fv, e))
        factors.append(fv)
    return Layout(kind, depth, tuple(factors), tuple(roots), levels)  # type: ignore[arg-type]


def _nested_levels(ctx: Context, chain: list[tuple[str, ...]]) -> dict[str, int]:
    """Each predictor's level: the Spec's, else from the data (constant within units)."""
    spec, design = ctx.spec, ctx.design
    known = dict(spec.variable_levels)
    if not known and design is not None:
        from bayesmix.spec.formula_convert import constant_within

        levels = dict.fromkeys(spec.predictors, 1)
        for depth, cols in enumerate(chain, start=2):
            below = [v for v, lvl in levels.items() if lvl == depth - 1]
            for v in constant_within(design.data, cols, below):
                levels[v] = depth
        return levels
    l1 = set(spec.level1_variables)
    return {v: known.get(v, 1 if v in l1 else 2) for v in spec.predictors}


def _fixed_columns(ctx: Context) -> list[tuple[str, tuple[Atom, ...], int]]:
    """(γ name, its variables, column of X) of every fixed effect."""
    design = ctx.design
    if design is None:
        return [(t.gamma.name, tuple((v, None) for v in t.variables), k)
                for k, t in enumerate(ctx.spec.fixed_terms)]
    parse = _atom_parser(ctx)
    return [(g, tuple(parse(design.atom_names[a]) for a in f), k)
            for k, (g, f) in enumerate(zip(design.gamma_names, design.fixed_factors,
                                           strict=True))]


def _raw_factors(ctx: Context) -> list[tuple[str, tuple[str, ...], list, tuple]]:
    """(name, columns, [(effect, column, atoms)], blocks) per factor, in the spec's order."""
    spec, design = ctx.spec, ctx.design
    out = []
    if design is not None and design.effects:
        atoms_of = _atom_parser(ctx)
        for fe in design.effects:
            names = fe.names
            effects = [(names[c], c, tuple(atoms_of(design.atom_names[a]) for a in f))
                       for c, f in enumerate(fe.factors)]
            blocks = tuple((b.columns, b.structure == "unstructured") for b in fe.blocks)
            out.append((fe.name, fe.grouping.columns, effects, blocks))
        return out
    for g in spec.groupings:
        terms = [t for t in spec.random if t.grouping == g]
        effects, blocks, c = [], [], 0
        for t in terms:
            cols = tuple(range(c, c + len(t.terms)))
            effects += [(n, c + i, tuple((v, None) for v in term))
                        for i, (n, term) in enumerate(zip(t.names, t.terms, strict=True))]
            blocks.append((cols, t.correlated))
            c += len(t.terms)
        out.append((g, terms[0].factor, effects, tuple(blocks)))
    return out


def _atom_parser(ctx: Context):
    variables = sorted(ctx.spec.predictors, key=len, reverse=True)

    def parse(name: str) -> Atom:
        for v in variables:
            if name == v:
                return (v, None)
            if name.startswith(v + "[") and name.endswith("]"):
                return (v, name[len(v) + 1: -1])
        return (name, None)

    return parse


def _child(node: CoefNode, atoms: tuple[Atom, ...], depth: int) -> CoefNode:
    for c in node.children:
        if c.gamma is None and set(c.atoms) == set(atoms):
            return c
    index = 0 if not atoms else 1 + sum(1 for c in node.children if c.atoms)
    child = CoefNode(depth, (*node.parts, str(index)), node.suffix, atoms,
                     (*node.upper, (node.depth, node.atoms)))
    node.children.append(child)
    return child


def _tree(ctx: Context, kind: str, depth: int, levels: dict[str, int]) -> list[CoefNode]:
    if kind == "nested":
        return _nested_tree(ctx, depth, levels)
    roots = []
    for col in ctx.structure.columns:
        parts, _ = forms._name_parts(col.name)
        idx = tuple(p.text for p in parts if isinstance(p, Ident))
        suffix = "".join(p.text for p in parts if isinstance(p, Text))
        idx = tuple(idx[0]) if len(idx) == 1 and idx[0].isdigit() else idx
        root = CoefNode(1, idx, suffix, tuple((f.var, f.level) for f in col.factors), ())
        for g in col.gammas:
            leaf = _child(root, tuple((f.var, f.level) for f in g.factors), depth)
            leaf.gamma = g
        roots.append(root)
    return roots


def _nested_tree(ctx: Context, depth: int, levels: dict[str, int]) -> list[CoefNode]:
    """π's by level-1 term (the intercept first), β, θ below, the γ's of X at the top."""
    columns = _fixed_columns(ctx)

    def at(atoms: tuple[Atom, ...], d: int) -> tuple[Atom, ...]:
        return tuple(a for a in atoms if levels.get(a[0], 1) == d)

    keys = list(dict.fromkeys(frozenset(at(atoms, 1)) for _, atoms, _ in columns))
    keys.sort(key=lambda k: len(k) > 0)
    roots: list[CoefNode] = []
    for _, atoms, _ in columns:
        first = at(atoms, 1)
        if not any(set(r.atoms) == set(first) for r in roots):
            roots.append(CoefNode(1, (str(keys.index(frozenset(first))),), "", first, ()))
    roots.sort(key=lambda r: int(r.parts[0]))
    for name, atoms, column in columns:
        node = next(r for r in roots if set(r.atoms) == set(at(atoms, 1)))
        for d in range(2, depth):
            node = _child(node, at(atoms, d), d)
        top = tuple(a for a in atoms if levels.get(a[0], 1) >= depth)
        leaf = _child(node, top, depth)
        leaf.gamma = forms._Gamma(name, (), column)
    nodes = [n for r in roots for n in r.walk()]
    positional = [n.parts for n in nodes]
    for root in roots:
        _names_from_gammas(root, depth)
    keys = [(n.depth, n.parts, n.suffix) for n in nodes]
    if len(set(keys)) < len(keys) or any(
            n.gamma is not None and _digits(n.gamma.name) not in (None, n.parts)
            and len(_digits(n.gamma.name) or ()) == depth for n in nodes):
        for n, parts in zip(nodes, positional, strict=True):
            n.parts = parts
    return roots


def _names_from_gammas(node: CoefNode, depth: int) -> None:
    """Take the subscripts of γ's named with one digit per level (``g001``) and their parents'."""
    for child in node.children:
        _names_from_gammas(child, depth)
    leaves = [n for n in node.walk() if n.gamma is not None]
    named = [_digits(n.gamma.name) for n in leaves]  # type: ignore[union-attr]
    if node.depth == 1 or not named or any(d is None or len(d) != depth for d in named):
        return
    prefixes = {d[: node.depth] for d in named if d is not None}
    if len(prefixes) == 1:
        prefix = prefixes.pop()
        if prefix[:-1] == node.parts[:-1]:
            for n in node.walk():
                n.parts = prefix + n.parts[node.depth:]
    if node.gamma is not None:
        d = _digits(node.gamma.name)
        if d is not None and len(d) == depth and d[:-1] == node.parts[:-1]:
            node.parts = d


def _place(roots: list[CoefNode], kind: str, level: int, levels: dict[str, int], name: str,
           column: int, atoms: tuple[Atom, ...]) -> tuple[EffectView, CoefNode]:
    """Attach an effect of a level-``level`` factor to the coefficient it varies."""
    first = tuple(a for a in atoms if levels.get(a[0], 1) <= 1)
    root = next((r for r in roots if set(r.atoms) == set(first)), None)
    if root is None:
        used = [int(r.parts[0]) for r in roots if r.parts and r.parts[0].isdigit()]
        root = CoefNode(1, (str(max(used, default=-1) + 1),), "", first, ())
        roots.append(root)
    if kind == "crossed":
        extra = tuple(a for a in atoms if a not in first)
        parts = _digits(name) or (name[len(_letter(name)):],)
        return EffectView(name, column, atoms, parts, "", extra), root
    node = root
    for d in range(2, level):
        node = _child(node, tuple(a for a in atoms if levels.get(a[0], 1) == d), d)
    return EffectView(name, column, atoms, node.parts, node.suffix), node


