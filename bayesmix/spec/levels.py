"""Level equations of any depth, and crossed factors: from lines to the parts of a Spec.

The syntax is described in :mod:`bayesmix.spec.equations`.  :func:`make_layout` turns
``cluster=`` / ``levels=`` / ``crossed=`` / ``diagonal=`` into a :class:`Layout`;
:func:`parse_levels` reads the equations against it.  The Spec that results is the one
:meth:`Spec.from_formula` gives for the same model (two-level view relative to the innermost
factor: one Coefficient per level-1 coefficient, whose γ's are all the fixed effects under it),
except for the names, which are kept as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import partial

from bayesmix.errors import SpecError
from bayesmix.spec.equations import (
    TWO_LEVEL,
    Factor,
    Line,
    check_equation,
    check_level1,
    children,
    read_lines,
    sort_lines,
)
from bayesmix.spec.formula_convert import CROSSED_LETTERS, NESTED_LETTERS
from bayesmix.spec.model import Coefficient, Gamma, RandomTerm


@dataclass(frozen=True)
class Layout:
    """The grouping factors the equations refer to.

    Attributes
    ----------
    mode : {"single", "nested", "crossed"}
    entries : tuple of str
        As given: the cluster, the ``levels`` (innermost first) or the ``crossed`` factors.
    factors : tuple of tuple of str
        The grouping factor of each entry: for nested levels the columns from the top level
        down (level 2 first: ``("schoolid", "childid")``, then ``("schoolid",)``).
    diagonal : frozenset of int
        Indices of the factors whose effects are independent (``||``).
    """

    mode: str
    entries: tuple[str, ...]
    factors: tuple[tuple[str, ...], ...]
    diagonal: frozenset[int] = frozenset()

    @property
    def depth(self) -> int:
        """The number of levels."""
        return len(self.factors) + 1 if self.mode == "nested" else 2

    @property
    def home(self) -> int:
        """Index of ``cluster``: the factor with the most columns (the first of equally many)."""
        return max(range(len(self.factors)), key=lambda k: (len(self.factors[k]), -k))

    @property
    def cluster(self) -> str:
        """The innermost (nested) grouping factor, lme4-style; with crossed ones, U's."""
        return ":".join(self.factors[self.home])

    @property
    def randoms(self) -> dict[str, str]:
        """Random-effect letters as written -> normalised."""
        if self.mode == "nested":
            return {**{c: c for c in NESTED_LETTERS}, "U": "U"}
        if self.mode == "crossed":
            return {**{c: c for c in CROSSED_LETTERS}, "u": "U", "v": "V", "w": "W"}
        return TWO_LEVEL

    def block_of(self, f: Factor, level: int, line: Line) -> int:
        """The factor an effect on the line of a level-``level`` coefficient varies over."""
        letter = f.name[0]
        if self.mode == "crossed":
            k = CROSSED_LETTERS.index(letter)
            if k >= len(self.factors):
                raise line.fail(f"{f.name}: {letter} effects vary over crossed factor {k + 1}, "
                                f"but `crossed` lists {len(self.factors)}", f.pos)
            others = [j for j in range(len(self.factors)) if j != self.home]
            return self.home if k == 0 else others[k - 1]
        if self.mode == "single":
            return 0
        want = NESTED_LETTERS[level - 1]
        if letter != want:
            what = ("U is the letter of two-level models" if letter == "U" else
                    f"{f.name} is a level-{NESTED_LETTERS.index(letter) + 2} random effect")
            raise line.fail(f"{what}, but the equation of {line.left.name} is at level "
                            f"{level + 1}, where random effects are {want} ({want}0, {want}1, "
                            f"...): r at level 2, u at 3, v at 4, w at 5", f.pos)
        return level - 1


def _entries(value: object, key: str, example: str) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(
        isinstance(v, str) and v and all(c.strip() for c in v.split(":")) for v in items
    ):
        raise SpecError(f"`{key}` is a list of grouping columns, e.g. {key}={example}; "
                        f"got {value!r}")
    columns = [c for v in items for c in v.split(":")] if key == "levels" else list(items)
    twice = [c for c in columns if columns.count(c) > 1]
    if twice:
        raise SpecError(f"`{key}` names {twice[0]!r} twice")
    return tuple(items)


def make_layout(
    cluster: object = None,
    levels: object = None,
    crossed: object = None,
    diagonal: object = False,
) -> Layout:
    """Check and combine the grouping arguments of :meth:`Spec.from_equations`.

    Parameters
    ----------
    cluster : str, optional
        The grouping column of a two-level model.
    levels : sequence of str, optional
        The grouping columns of level 2, 3, ... innermost first (up to 5 levels).
    crossed : sequence of str, optional
        Crossed grouping factors (2 to 5): U effects vary over the one with the most columns
        (the first of equally many: lme4's cluster), V, W, Q, S over the others in order.
    diagonal : bool or sequence of str
        Factors (entries of the above, or groupings such as ``"schoolid:childid"``) whose
        effects are independent; True for all.

    Returns
    -------
    Layout
    """
    given = [k for k, v in (("cluster", cluster), ("levels", levels), ("crossed", crossed))
             if v is not None]
    if len(given) != 1:
        raise SpecError(
            "name the grouping of the equations once: cluster=\"g\" (two levels), "
            "levels=[\"childid\", \"schoolid\"] (level 2, 3, ..., innermost first) or "
            f"crossed=[\"plate\", \"sample\"]; got {' and '.join(given) or 'none'}")
    if cluster is not None:
        if not isinstance(cluster, str) or not cluster:
            hint = ("; for several factors pass levels=[...] (nested, innermost first) or "
                    "crossed=[...]" if isinstance(cluster, (list, tuple)) else "")
            raise SpecError(f"the cluster must be a column name (text), not {cluster!r}{hint}")
        levels = (cluster,)
    if levels is not None:
        entries = _entries(levels, "levels", '["childid", "schoolid"]')
        if not 1 <= len(entries) <= len(NESTED_LETTERS):
            raise SpecError(f"`levels` names the grouping columns of levels 2 to "
                            f"{len(NESTED_LETTERS) + 1} at most (1 to {len(NESTED_LETTERS)} "
                            f"entries), not {len(entries)}")
        factors = tuple(tuple(c for e in reversed(entries[k:]) for c in e.split(":"))
                        for k in range(len(entries)))
        mode = "nested" if len(entries) > 1 else "single"
    else:
        entries = _entries(crossed, "crossed", '["plate", "sample"]')
        if not 2 <= len(entries) <= len(CROSSED_LETTERS):
            raise SpecError(f"`crossed` lists 2 to {len(CROSSED_LETTERS)} grouping factors, "
                            f"not {len(entries)}")
        factors = tuple(tuple(e.split(":")) for e in entries)
        for a in factors:
            for b in factors:
                if a != b and a[: len(b)] == b:
                    raise SpecError(f"`crossed`: {':'.join(a)} is nested in {':'.join(b)}; "
                                    "nested factors go in levels=[...], innermost first")
        mode = "crossed"
    return Layout(mode, entries, factors, _diagonal(diagonal, entries, factors))


def _diagonal(value: object, entries: tuple[str, ...],
              factors: tuple[tuple[str, ...], ...]) -> frozenset[int]:
    if isinstance(value, bool):
        return frozenset(range(len(factors)) if value else ())
    names = (value,) if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise SpecError(f"`diagonal` is True, False or a list of grouping factors, not {value!r}")
    known = {n: k for k, (e, f) in enumerate(zip(entries, factors, strict=True))
             for n in (e, ":".join(f))}
    bad = [n for n in names if n not in known]
    if bad:
        raise SpecError(f"`diagonal` names {bad[0]!r}, which is not a grouping factor of the "
                        f"equations ({', '.join(entries)})")
    return frozenset(known[n] for n in names)


@dataclass(frozen=True)
class LevelParts:
    """What the equations say, in the Spec's terms."""

    outcome: str
    cluster: str
    coefficients: tuple[Coefficient, ...]
    random: tuple[RandomTerm, ...]
    variable_levels: tuple[tuple[str, int], ...] = ()


@dataclass
class _Node:
    name: str
    level: int
    vars: tuple[str, ...]  # what it multiplies on its parent's line
    where: Line  # the line it appears on (right side)
    pos: int
    line: Line | None = None  # its own equation; None for a fixed effect (leaf)
    children: list[_Node] = field(default_factory=list)


def _check_cycles(defs: dict[str, Line]) -> None:
    """Refuse a coefficient defined through itself (``b0 = b00``, ``b00 = b0``)."""

    def kids(name: str) -> list[Factor]:
        return [f for f, _ in children(defs[name]) if f.name in defs]

    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in defs:
        if start in state:
            continue
        state[start] = 1
        path, stack = [start], [iter(kids(start))]
        while stack:
            f = next(stack[-1], None)
            if f is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(f.name) == 1:
                cycle = " -> ".join([*path[path.index(f.name):], f.name])
                raise defs[path[-1]].fail(f"a cycle: {cycle}; a coefficient cannot be defined "
                                          "through itself", f.pos)
            elif f.name not in state:
                state[f.name] = 1
                path.append(f.name)
                stack.append(iter(kids(f.name)))


def _walk(outcome: Line, defs: dict[str, Line],
          layout: Layout) -> tuple[list[_Node], list[_Node]]:
    """The tree of coefficients under the level-1 line (roots, and all nodes level by level)."""
    seen: dict[str, Line] = {}
    roots: list[_Node] = []
    nodes: list[_Node] = []
    todo: list[tuple[Line, int, list[_Node]]] = [(outcome, 1, roots)]
    while todo:
        line, level, into = todo.pop(0)
        for f, variables in children(line):
            if f.name in seen:
                other = seen[f.name]
                where = "twice in this equation" if other is line else (
                    f"also in the equation on line {other.lineno}")
                raise line.fail(f"{f.name} appears {where}; each coefficient belongs to one "
                                "equation" if f.name in defs else
                                f"γ name {f.name} is used twice ({where}); give each γ its "
                                "own name", f.pos)
            seen[f.name] = line
            node = _Node(f.name, level, variables, line, f.pos, defs.get(f.name))
            into.append(node)
            nodes.append(node)
            if node.line is not None:
                todo.append((node.line, level + 1, node.children))
            elif level == 1:
                q, r = f.name[1:], "r" if layout.mode == "nested" else "U"
                raise SpecError(f"level-1 coefficient {f.name} has no level-2 equation; add a "
                                f"line such as `{f.name} = g{q}0` (fixed) or `{f.name} = g{q}0 "
                                f"+ {r}{q}` (random)", line=line.lineno)
    for name, line in defs.items():
        if name not in seen:
            raise line.fail(f"{name} has a level-2 equation but the level-1 equation has no "
                            f"{name}; level 1 has {', '.join(sorted(n.name for n in roots))}"
                            if layout.depth == 2 else
                            f"{name} has an equation but no other equation uses it")
    return roots, nodes


def _check_depth(nodes: list[_Node], layout: Layout) -> None:
    depth, how = layout.depth, {"nested": f"`levels` names {len(layout.entries)} grouping "
                                f"columns ({layout.depth} levels)"}.get(
        layout.mode, f"`{'cluster' if layout.mode == 'single' else 'crossed'}` gives two levels")
    deep = [n for n in nodes if n.line is not None and n.level >= depth]
    if deep:
        n = max(deep, key=lambda n: n.level)
        raise n.line.fail(  # type: ignore[union-attr]
            f"the equations have at least {n.level + 1} levels ({n.name} is a level-{n.level} "
            f"coefficient with an equation of its own), but {how}: pass levels=[...] with the "
            "grouping column of each level above the first, innermost first", n.line.left.pos)
    leaves = [n for n in nodes if n.line is None and n.level < depth]
    if leaves:
        n = leaves[0]
        if all(m.line is not None or m.level < depth for m in nodes):
            shallow = max(m.level for m in nodes)
            raise n.where.fail(f"{how}, but the equations have {shallow}: {n.name} has no "
                               f"level-{n.level + 1} equation; drop the extra columns from "
                               "`levels`", n.pos)
        raise n.where.fail(f"{n.name} is a level-{n.level} coefficient without an equation; in "
                           f"a model of {depth} levels it needs a level-{n.level + 1} equation "
                           f"such as `{n.name} = g{n.name[1:]}0`", n.pos)


def _subscript_key(name: str) -> tuple[tuple[int, ...], str]:
    """γ order in models of three or more levels: subscripts read from the last index."""
    sub = re.sub(r"^\D*", "", name)
    parts = sub.split("_") if "_" in sub else list(sub)
    nums = tuple(int(p) for p in parts if p.isdigit())
    return tuple(reversed(nums)), name


def parse_levels(text: str, layout: Layout) -> LevelParts:
    """Parse level equations of any depth (module docstring of :mod:`.equations`).

    Parameters
    ----------
    text : str
        The equations, one per line.
    layout : Layout
        The grouping factors, from :func:`make_layout`.

    Returns
    -------
    LevelParts
        Outcome, cluster, coefficients (each with all the γ's under it), random blocks
        (nested ones outermost first, each block's effects in the order written) and, with
        three or more levels, each predictor's level.

    Raises
    ------
    SpecError
        With the line and position of the fault.
    """
    outcome, defs = sort_lines(read_lines(text, layout.randoms))
    check_level1(outcome)
    _check_cycles(defs)
    roots, nodes = _walk(outcome, defs, layout)
    _check_depth(nodes, layout)
    var_level: dict[str, tuple[int, Line, int]] = {}
    effects: list[tuple[int, int, int, str, tuple[str, ...]]] = []
    coefficients = []
    for root in roots:
        leaves: list[Gamma] = []
        random = None
        todo = [(root, ())]
        while todo:
            node, path = todo.pop()
            for v in node.vars:
                here = (node.level, node.where, node.pos)
                first = var_level.setdefault(v, here)
                if layout.depth > 2 and first[0] != node.level:
                    a, b = sorted((first, here), key=lambda x: (x[1].lineno, x[2]))
                    raise b[1].fail(f"{v} is a level-{a[0]} variable (line {a[1].lineno}) and "
                                    f"a level-{b[0]} variable here; a variable has one level",
                                    b[2])
            if node.line is None:
                leaves.append(Gamma(node.name, path))
                continue
            block_of = partial(layout.block_of, level=node.level, line=node.line)
            for k, f in check_equation(node.line, node.level, block_of, layout.depth):
                effects.append((k, node.line.lineno, f.pos, f.name, root.vars + path))
                random = f.name if k == layout.home and node is root else random
            todo.extend((c, path + c.vars) for c in reversed(node.children))
        if layout.depth > 2:
            leaves.sort(key=lambda g: _subscript_key(g.name))
            if not leaves and random is None:
                raise root.line.fail(  # type: ignore[union-attr]
                    f"{root.name} has neither a fixed effect nor a level-2 random effect (r); "
                    f"write e.g. `{root.name} = b{root.name[1:]}0` with a level-3 equation")
        coefficients.append(Coefficient(root.name, root.vars, tuple(leaves), random))
    # Nested blocks outermost first, as lme4 expands a/b; crossed ones in the order given.
    order = sorted({e[0] for e in effects}, reverse=layout.mode == "nested")
    blocks = []
    for k in order:
        mine = sorted(e for e in effects if e[0] == k)
        blocks.append(RandomTerm(layout.factors[k], tuple(e[4] for e in mine),
                                 tuple(e[3] for e in mine),
                                 "diagonal" if k in layout.diagonal else "unstructured"))
    if effects and not any(e[0] == layout.home for e in effects):
        letter = {"nested": "r", "crossed": "U"}.get(layout.mode, "U")
        raise SpecError(f"no random effect varies over {layout.cluster} ({letter}0, ...); a "
                        f"model needs one over {layout.entries[layout.home]} (or drop it from the "
                        "grouping)")
    return LevelParts(outcome.left.name, layout.cluster, tuple(coefficients), tuple(blocks),
                      _variable_levels(coefficients, blocks, var_level, layout))


def _variable_levels(
    coefficients: list[Coefficient], blocks: list[RandomTerm],
    var_level: dict[str, tuple[int, Line, int]], layout: Layout,
) -> tuple[tuple[str, int], ...]:
    """Each predictor's level, in the order to_formula writes them (fixed terms, then random)."""
    if layout.depth == 2:
        return ()
    if not any(lvl == layout.depth for lvl, _, _ in var_level.values()) and not any(
            b.factor == layout.factors[-1] for b in blocks):
        raise SpecError(f"level {layout.depth} ({layout.entries[-1]}) has no variable and no "
                        "random effect, so the model has fewer levels: drop "
                        f"{layout.entries[-1]!r} from `levels`")
    items = sorted(((len(g.variables), q, s), c.variables + g.variables)
                   for q, c in enumerate(coefficients) for s, g in enumerate(c.gammas))
    names = [v for _, vs in items for v in vs] + [
        v for b in blocks for t in b.terms for v in t]
    return tuple((v, var_level[v][0]) for v in dict.fromkeys(names))
