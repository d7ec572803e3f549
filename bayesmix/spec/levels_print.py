"""A Spec as level equations: the inverse of :func:`bayesmix.spec.levels.parse_levels`.

:func:`print_levels` writes the equations and :func:`equation_arguments` the grouping
arguments that read them back::

    Spec.from_equations(print_levels(spec), **equation_arguments(spec)) == spec

Models of three or more levels need the level of every predictor (``Spec.variable_levels``,
which :meth:`Spec.from_formula` finds from the data); coefficients between level 1 and the
top level are not part of a Spec, so their names are derived from the γ names (γ010 -> β01)
or from their positions.  Not every Spec can be written: several blocks over one grouping
factor, or a random effect of a term that no coefficient's path reaches, raise a SpecError.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

from bayesmix.errors import SpecError
from bayesmix.spec.equations import quote
from bayesmix.spec.formula_convert import CROSSED_LETTERS, NESTED_LETTERS
from bayesmix.spec.levels import Layout
from bayesmix.spec.model import RandomTerm, Spec

_CANNOT = "cannot be written as level equations"


@dataclass(frozen=True)
class _Plan:
    mode: str
    depth: int
    keys: tuple[int, ...]  # per block of spec.random: its level (nested) or crossed index
    entries: tuple[str, ...] | None  # the grouping arguments; None if they cannot be told


@dataclass
class _Node:
    name: str
    level: int
    vars: tuple[str, ...]
    leaf: bool = False
    children: list[_Node] = field(default_factory=list)
    effects: list[tuple[int, int, str, int]] = field(default_factory=list)  # key, index,
    # name, block

    def child(self, variables: tuple[str, ...]) -> _Node:
        """The intermediate coefficient that multiplies ``variables``, made if new."""
        for c in self.children:
            if not c.leaf and set(c.vars) == set(variables):
                return c
        self.children.append(_Node("", self.level + 1, variables))
        return self.children[-1]


def _letter(block: RandomTerm, letters: tuple[str, ...]) -> str | None:
    first = {n[:1] for n in block.names}
    return first.pop() if len(first) == 1 and first <= set(letters) else None


def _plan(spec: Spec) -> _Plan:
    groupings = [b.grouping for b in spec.random]
    twice = [g for g in groupings if groupings.count(g) > 1]
    if twice:
        raise SpecError(f"this model {_CANNOT}: it has several random-effect blocks over "
                        f"{twice[0]}, and the equations give one per grouping factor; use "
                        "its formula")
    chain = sorted(spec.random, key=lambda b: len(b.factor), reverse=True)
    nested = all(a.factor[: len(b.factor)] == b.factor for a, b in itertools.pairwise(chain))
    top = max((lvl for _, lvl in spec.variable_levels), default=1)
    if len(chain) > 1 and not nested:
        home = Layout("crossed", (), tuple(b.factor for b in spec.random)).cluster
        others = iter(CROSSED_LETTERS[1:])
        for b in spec.random:
            want = "U" if b.grouping == spec.cluster else next(others)
            if _letter(b, CROSSED_LETTERS) != want or spec.cluster != home:
                raise SpecError(f"this model {_CANNOT}: its crossed effects need the letters U "
                                f"(over {home}, the factor with the most columns), then V, W, "
                                f"Q, S in order, not {', '.join(b.names)}")
        return _Plan("crossed", 2, tuple(range(len(chain))), tuple(groupings))
    lettered = [_letter(b, NESTED_LETTERS) for b in spec.random]
    if len(chain) == 1 and top <= 2 and lettered[0] is None:
        return _Plan("single", 2, (2,), (spec.cluster,))
    keys = tuple(NESTED_LETTERS.index(x) + 2 if x else 2 + chain.index(b)
                 for x, b in zip(lettered, spec.random, strict=True))
    depth = max(*keys, top)
    if len(set(keys)) < len(keys):
        raise SpecError(f"this model {_CANNOT}: two of its blocks are at one level")
    by_level = {k: b.factor for k, b in zip(keys, spec.random, strict=True)}
    outward = [by_level[k] for k in sorted(by_level)]
    if (by_level.get(2) != tuple(spec.cluster.split(":")) or depth < 3
            or any(len(a) <= len(b) for a, b in itertools.pairwise(outward))):
        raise SpecError(f"this model {_CANNOT}: the letters of its random effects (r, u, v, "
                        "w) do not follow its nested grouping factors")
    return _Plan("nested", depth, keys, _nested_entries(spec, by_level, depth))


def _nested_entries(spec: Spec, by_level: dict[int, tuple[str, ...]],
                    depth: int) -> tuple[str, ...] | None:
    """The ``levels`` argument: each level's columns beyond the next level's."""
    cols = tuple(spec.cluster.split(":"))
    factors = dict(by_level)
    if len(factors) < depth - 1:
        if len(cols) != depth - 1:
            return None
        guess = {k: cols[: depth - k + 1] for k in range(2, depth + 1)}
        if any(guess[k] != f for k, f in factors.items()):
            return None
        factors = guess
    return tuple(":".join(factors[k][len(factors.get(k + 1, ())):])
                 for k in range(2, depth + 1))


def equation_arguments(spec: Spec) -> dict[str, object]:
    """The grouping arguments of :meth:`Spec.from_equations` for ``spec.to_equations()``.

    Returns
    -------
    dict
        ``{"cluster": ...}``, ``{"levels": [...]}`` or ``{"crossed": [...]}``, with
        ``"diagonal"`` listing the factors whose effects are independent, if any, and the
        ``"trials"`` or ``"exposure"`` column of a binomial or Poisson model.

    Raises
    ------
    SpecError
        If the model cannot be written as level equations, or a level without random effects
        leaves its grouping column unknown.
    """
    plan = _plan(spec)
    if plan.entries is None:
        raise SpecError(f"the grouping columns of the levels of this model cannot be told "
                        f"from {spec.cluster!r}; name them when reading the equations")
    key = {"single": "cluster", "nested": "levels", "crossed": "crossed"}[plan.mode]
    out: dict[str, object] = {key: plan.entries[0] if key == "cluster" else list(plan.entries)}
    diagonal = [plan.entries[k - 2 if plan.mode != "crossed" else k]
                for k, b in zip(plan.keys, spec.random, strict=True) if not b.correlated]
    if diagonal:
        out["diagonal"] = diagonal
    if spec.trials is not None:  # the link line names the family; the columns are data
        out["trials"] = spec.trials
    if spec.exposure is not None:
        out["exposure"] = spec.exposure
    return out


def _levels_of(spec: Spec, plan: _Plan) -> dict[str, int]:
    levels = dict(spec.variable_levels)
    if plan.mode != "nested":
        return levels
    unknown = [v for v in spec.predictors if v not in levels]
    if unknown:
        raise SpecError(f"the level of {unknown[0]!r} is not known, and a model of "
                        f"{plan.depth} levels needs it for its equations: pass the data to "
                        "Spec.from_formula(formula, data) so that each variable's level is "
                        "found")
    return levels


def _split(variables: tuple[str, ...], levels: dict[str, int], lo: int,
           hi: int) -> dict[int, tuple[str, ...]] | None:
    """The variables by level, or None if one lies outside lo..hi."""
    if any(not lo <= levels[v] <= hi for v in variables):
        return None
    return {k: tuple(v for v in variables if levels[v] == k) for k in range(lo, hi + 1)}


def _tree(spec: Spec, plan: _Plan) -> list[_Node]:
    levels = _levels_of(spec, plan)
    roots = [_Node(c.name, 1, c.variables) for c in spec.coefficients]
    for root, coef in zip(roots, spec.coefficients, strict=True):
        for g in coef.gammas:
            node = root
            if plan.mode == "nested":
                parts = _split(g.variables, levels, 2, plan.depth)
                if parts is None or _split(coef.variables, levels, 1, 1) is None:
                    raise SpecError(f"this model {_CANNOT}: {g.name} multiplies "
                                    f"{coef.variables + g.variables}, which mixes the levels "
                                    "of its variables")
                for k in range(2, plan.depth):
                    node = node.child(parts[k])
                node.children.append(_Node(g.name, plan.depth, parts[plan.depth], leaf=True))
            else:
                node.children.append(_Node(g.name, 2, g.variables, leaf=True))
    for b, (key, block) in enumerate(zip(plan.keys, spec.random, strict=True)):
        top = key if plan.mode == "nested" else 2
        for i, (name, term) in enumerate(zip(block.names, block.terms, strict=True)):
            parts = _split(term, levels, 1, top - 1) if plan.mode == "nested" else {1: term}
            node = next((r for r in roots if parts and set(r.vars) == set(parts[1])), None)
            if node is None:
                raise SpecError(f"this model {_CANNOT}: the random effect {name} over "
                                f"{block.grouping} multiplies {':'.join(term) or '1'}, which "
                                "is not the path of a level-1 coefficient")
            for k in range(2, top):
                node = node.child(parts[k])  # type: ignore[index]
            node.effects.append((key, i, name, b))
    return roots


def _sub(name: str) -> str:
    return re.sub(r"^\D*", "", name)


def _name_nodes(roots: list[_Node], spec: Spec, depth: int) -> None:
    """Names of the coefficients between level 1 and the top level."""
    used = {c.name for c in spec.coefficients} | {
        g.name for c in spec.coefficients for g in c.gammas} | {
        n for b in spec.random for n in b.names}
    todo = [(r, c, i) for r in roots for i, c in enumerate(r.children)]
    while todo:
        parent, node, idx = todo.pop(0)
        if node.leaf:
            continue
        letter, psub = ("b" if node.level == 2 else "g"), _sub(parent.name)
        subs = {_sub(n.name) for n in _flatten([node]) if n.leaf}
        prefixes = {x[: node.level] for x in subs if x.isdigit() and len(x) == depth}
        names = [letter + p for p in prefixes if len(prefixes) == 1 and p[:-1] == psub
                 and all(x.isdigit() and len(x) == depth for x in subs)]
        if psub.isdigit() and idx < 10:
            names.append(f"{letter}{psub}{idx}")
        names.append(f"{letter}{psub}_{idx}")
        name, k = next((n for n in names if n not in used), None), 1
        while name is None or name in used:
            name, k = f"{letter}{psub}_{idx}_{k}", k + 1
        node.name = name
        used.add(name)
        todo.extend((node, c, i) for i, c in enumerate(node.children))


def _flatten(nodes: list[_Node]) -> list[_Node]:
    out = []
    for n in nodes:
        out.append(n)
        out.extend(_flatten(n.children))
    return out


def print_levels(spec: Spec) -> str:
    """Write a Spec as level equations that :func:`parse_levels` reads back.

    Parameters
    ----------
    spec : Spec

    Returns
    -------
    str
        One line per equation: level 1, then the equations of the level-1 coefficients, of
        the level-2 coefficients, ...

    Raises
    ------
    SpecError
        If the model cannot be written so (see the module docstring).
    """
    plan = _plan(spec)
    randoms = Layout(plan.mode, (), ()).randoms
    roots = _tree(spec, plan)
    if plan.mode == "nested":
        _name_nodes(roots, spec, plan.depth)

    def product(node: _Node) -> str:
        return "*".join([node.name, *(quote(v, randoms) for v in node.vars)])

    groupings = [b.grouping for b in spec.random]
    rhs = " + ".join(map(product, roots))
    if spec.family.is_gaussian:
        lines = [f"{quote(spec.outcome, randoms)} = {rhs} + e"]
    else:  # the link around the outcome, no residual (bayesmix.spec.family_syntax)
        lines = [f"{spec.family.link}({quote(spec.outcome, randoms)}) = {rhs}"]
    level = roots
    while level:
        # Lines of one level in tree order, those with effects of the block that varies at
        # the next level permuted so that the block's effects come in its order.
        want = {"single": 2, "crossed": groupings.index(spec.cluster)}.get(
            plan.mode, level[0].level + 1)
        rank = {id(n): e[1] for n in level for e in n.effects if e[0] == want}
        slots = [i for i, n in enumerate(level) if id(n) in rank]
        ordered = sorted((level[i] for i in slots), key=lambda n: rank[id(n)])
        level = list(level)
        for i, n in zip(slots, ordered, strict=True):
            level[i] = n
        for node in level:
            effects = [e[2] for e in sorted(node.effects, key=lambda e: e[3])]
            lines.append(f"{node.name} = {' + '.join([*map(product, node.children), *effects])}")
        level = [c for n in level for c in n.children if not c.leaf]
    return "\n".join(lines)
