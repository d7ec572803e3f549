"""The layout shared by the equations of models with several grouping factors: its types.

A :class:`Layout` holds the factors as the equations show them (:class:`FactorView`: letter,
unit index, effects and covariance blocks) and the tree of coefficients (:class:`CoefNode`):
a level-1 coefficient (π_p, or β_p for crossed factors) per level-1 term, the coefficients of
the higher levels below it (β_pq, θ_pqs), the fixed effects γ at the top, and each random
effect attached to the coefficient it varies.  :func:`bayesmix.render.factors_tree.layout`
builds it; the notation is described in :mod:`bayesmix.render.factors`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from bayesmix.notation import INTERCEPT
from bayesmix.render import forms, ir
from bayesmix.render.ir import (
    Ident,
    Symbol,
    Text,
)
from bayesmix.render.transform_nodes import variable_node

if TYPE_CHECKING:
    from bayesmix.render.forms import _Gamma

Atom = tuple[str, str | None]
"""One coded variable: (column, level of a categorical column or None)."""

UNIT_INDEX = ("j", "k", "l", "m", "s", "t")
"""Unit subscripts: of levels 2, 3, ... (nested) or of the factors in order (crossed)."""
COEF_LETTERS = ("pi", "beta", "theta", "delta")
"""Coefficients of levels 1, 2, 3, 4 of a nested model; the top level's are γ."""


@dataclass(frozen=True)
class EffectView:
    """One random effect of a factor, placed in the level equations.

    Attributes
    ----------
    name : str
        Its code name (``"r0"``, ``"u00"``, ``"V0"``), as in the fit and the priors.
    column : int
        Its column in the factor's Zq (and its position in ``u_<factor>``).
    atoms : tuple of Atom
        The variables of the level-1 column it multiplies.
    parts : tuple of str
        The subscripts shown before the unit indices (``("0", "0")`` for u_00k).
    extra : tuple of Atom
        Level-2 variables it multiplies inside its equation (crossed factors only).
    """

    name: str
    column: int
    atoms: tuple[Atom, ...]
    parts: tuple[str, ...]
    suffix: str = ""
    extra: tuple[Atom, ...] = ()


@dataclass(frozen=True)
class FactorView:
    """A grouping factor as the equations show it.

    Attributes
    ----------
    name : str
        lme4's name (``"schoolid:childid"``).
    label : str
        Short name (``"childid"``: a nested factor's own column).
    letter : str
        Letter of its effects (``"r"``, ``"u"``, ``"U"``, ``"V"``).
    index : str
        Its units' subscript (``"j"``).
    level : int
        2, 3, ... for nested factors; 2 for crossed ones.
    tail : str
        Unit subscripts its effects carry (``"jk"`` for r_0jk in three levels, ``"j"``).
    effects : tuple of EffectView
        In the column order of its Zq.
    blocks : tuple of (tuple of int, bool)
        Columns of each covariance block and whether it is correlated.
    units : int or None
        Number of units, with a design.
    """

    name: str
    label: str
    letter: str
    index: str
    level: int
    tail: str
    effects: tuple[EffectView, ...]
    blocks: tuple[tuple[tuple[int, ...], bool], ...]
    units: int | None = None

    @property
    def correlated(self) -> bool:
        """Whether T of this factor is one unrestricted matrix."""
        return len(self.blocks) == 1 and self.blocks[0][1]

    @property
    def groups(self) -> list[tuple[int, ...]]:
        """Columns of the independent groups of effects (each effect alone in a ``||`` block)."""
        return [g for cols, corr in self.blocks for g in ([cols] if corr else [(c,) for c in cols])]

    def sym(self, e: EffectView, tail: tuple[ir.Node, ...] | None = None,
            sep: str = "") -> Symbol:
        """The effect's symbol: r_0jk by default, or with the unit subscripts ``tail``."""
        parts, psep = index_parts(e.parts, e.suffix)
        tail = (Ident(self.tail),) if tail is None else tail
        return Symbol(self.letter, (*parts, *tail), sep=sep or psep)

    def sym_plain(self, e: EffectView) -> Symbol:
        """The effect without unit subscripts (``sd(r_0)``)."""
        parts, sep = index_parts(e.parts, e.suffix)
        return Symbol(self.letter, parts, sep=sep)

    def vector(self, tail: tuple[ir.Node, ...] | None = None) -> ir.Node:
        """The effects of one unit: a symbol when there is one, else a column."""
        syms = [self.sym(e, tail) for e in self.effects]
        return syms[0] if len(syms) == 1 else ir.Matrix(tuple((s,) for s in syms))


@dataclass
class CoefNode:
    """A coefficient of the level equations (π, β, θ) or, at the top level, a fixed effect γ."""

    depth: int
    parts: tuple[str, ...]
    suffix: str
    atoms: tuple[Atom, ...]
    upper: tuple[tuple[int, tuple[Atom, ...]], ...]
    children: list[CoefNode] = field(default_factory=list)
    effects: list[tuple[FactorView, EffectView]] = field(default_factory=list)
    gamma: _Gamma | None = None

    def walk(self) -> list[CoefNode]:
        """The node and every node below it, depth first."""
        return [self, *(n for c in self.children for n in c.walk())]

    @property
    def path(self) -> tuple[Atom, ...]:
        """The variables it multiplies in the combined equation, highest level first."""
        groups = sorted((*self.upper, (self.depth, self.atoms)), key=lambda x: -x[0])
        return tuple(a for _, g in groups for a in g)


@dataclass(frozen=True)
class Layout:
    """Everything the multi-factor forms share.

    Attributes
    ----------
    kind : {"nested", "crossed"}
    depth : int
        Number of levels (2 for crossed factors).
    factors : tuple of FactorView
        Innermost first (nested) or the cluster first (crossed).
    roots : tuple of CoefNode
        The level-1 coefficients.
    levels : dict of str to int
        Level of each variable.
    """

    kind: Literal["nested", "crossed"]
    depth: int
    factors: tuple[FactorView, ...]
    roots: tuple[CoefNode, ...]
    levels: dict[str, int]

    @property
    def obs(self) -> str:
        """Subscript of an observation: ``"ijk"``."""
        return "i" + "".join(f.index for f in self.factors)

    @property
    def resid(self) -> str:
        """The residual's letter: e (nested, as Raudenbush & Bryk) or ε."""
        return "e" if self.kind == "nested" else "epsilon"

    def nodes(self, depth: int) -> list[CoefNode]:
        """Every node at one depth, in tree order."""
        return [n for r in self.roots for n in r.walk() if n.depth == depth]

    @property
    def leaves(self) -> dict[int, CoefNode]:
        """The γ of each column of X."""
        return {n.gamma.column: n for r in self.roots for n in r.walk() if n.gamma is not None}

    def var_sub(self, level: int) -> str:
        """Subscript of a level-``level`` variable: ``"ijk"``, ``"jk"``, ``"k"``."""
        if level <= 1:
            return self.obs
        if self.kind == "crossed":
            return self.factors[0].index
        return "".join(f.index for f in self.factors[level - 2:])

    def level(self, atom: Atom) -> int:
        """The level of a variable (1 when unknown)."""
        return self.levels.get(atom[0], 1)

    def var(self, atom: Atom, sub: tuple[ir.Node, ...] | None = None) -> ir.Node:
        """A variable with the subscript of its level (or ``sub``)."""
        return variable_node(atom[0], (Ident(self.var_sub(self.level(atom))),)
                             if sub is None else sub, atom[1])

    def coef_sym(self, node: CoefNode, tail: tuple[ir.Node, ...] | None = None) -> Symbol:
        """π_0jk, β_01k, γ_000 (or γ_01 from the name, crossed)."""
        if node.gamma is not None and self.kind == "crossed":
            return forms.gamma_sym(node.gamma.name)
        parts, sep = index_parts(node.parts, node.suffix)
        if node.gamma is not None:
            return Symbol("gamma", parts, sep=sep)
        letter = COEF_LETTERS[node.depth - 1] if self.kind == "nested" else "beta"
        if tail is None:
            tail = (Ident("".join(f.index for f in self.factors[node.depth - 1:])),)
        return Symbol(letter, (*parts, *tail), sep=sep)

    def path_vars(self, node: CoefNode, extra: tuple[Atom, ...] = ()) -> list[ir.Node]:
        """The variables a node multiplies in the combined equation, highest level first."""
        return [self.var(a) for a in (*extra, *node.path)]

    def owner(self) -> dict[int, CoefNode]:
        """The coefficient each effect varies, by ``id`` of the effect."""
        return {id(e): n for r in self.roots for n in r.walk() for _, e in n.effects}


def index_parts(parts: tuple[str, ...], suffix: str = "") -> tuple[tuple[ir.Node, ...], str]:
    """Subscript nodes of an index path: ``("0", "1")`` -> 01; with an index ≥ 10, 0,12."""
    wide = any(len(p) > 1 for p in parts)
    nodes: list[ir.Node] = ([Ident(p) for p in parts] if wide
                            else ([Ident("".join(parts))] if parts else []))
    if suffix:
        nodes.append(Text(suffix))
    return tuple(nodes), ("," if wide else "")


def term_name(atoms: tuple[Atom, ...]) -> str:
    """lme4-style name of a product of atoms (``"(Intercept)"`` for none)."""
    if not atoms:
        return INTERCEPT
    return ":".join(v if lev is None else f"{v}[{lev}]" for v, lev in atoms)
