"""lme4 formulas to Spec parts (level-1 coefficients, γ's, random blocks) and back.

Each fixed term's variables are split into a level-1 part, which names the coefficient β_q,
and a level-2 part, which names γ_qs.  "Level 2" is relative to the innermost grouping factor
(``cluster``: the factor with the most columns, ``schoolid:childid`` in
``(1 | schoolid/childid)``; the first one of crossed factors): a variable constant within each
of its units.  Every ``(terms | factor)`` becomes a :class:`~bayesmix.spec.model.RandomTerm`;
those over ``cluster`` are also the coefficients' U terms.

Names of the random effects follow the level notation: ``U_q`` with one grouping factor;
with nested factors ``r_q`` at level 2, ``u_q0`` at level 3, ``v_q00`` at level 4 (Raudenbush
& Bryk; HLM); with crossed factors ``U_q`` over ``cluster`` and ``V_q``, ``W_q``, ... over the
others in the order written.  q is the index of the coefficient whose level-1 term the effect
multiplies.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bayesmix.errors import DataError, SpecError
from bayesmix.spec.formula import Bar, ParsedFormula, Term, _quote
from bayesmix.spec.model import Coefficient, Gamma, RandomTerm

if TYPE_CHECKING:
    import pandas as pd

    from bayesmix.spec.model import Spec

NESTED_LETTERS = ("r", "u", "v", "w")
"""Random-effect letters of levels 2, 3, 4, 5 in a nested model of three or more levels."""
CROSSED_LETTERS = ("U", "V", "W", "Q", "S")
"""Random-effect letters of crossed factors: ``cluster`` first, then in the order written."""


@dataclass(frozen=True)
class FormulaParts:
    """What a formula says, in the Spec's terms."""

    outcome: str
    cluster: str
    coefficients: tuple[Coefficient, ...]
    random: tuple[RandomTerm, ...]
    variable_levels: tuple[tuple[str, int], ...] = ()


def _check_data(data: object, columns: tuple[str, ...]) -> None:
    if not hasattr(data, "columns") or not hasattr(data, "groupby"):
        raise DataError(f"data must be a pandas DataFrame, not {type(data).__name__}")
    for column in columns:
        if column not in data.columns:  # type: ignore[attr-defined]
            raise DataError(f"the grouping factor {column!r} is not a column of the data")


def constant_within(data: pd.DataFrame, factor: tuple[str, ...], variables: list[str]) -> set[str]:
    """The variables that take one value within every unit of ``factor`` (columns combined)."""
    _check_data(data, factor)
    out = set()
    grouped = data.groupby(list(factor), observed=True, sort=False)
    for var in variables:
        if var not in data.columns:
            continue
        nunique = grouped[var].nunique(dropna=False)
        if len(nunique) and int(np.max(nunique.to_numpy())) <= 1:
            out.add(var)
    return out


def _nested_chain(bars: tuple[Bar, ...]) -> list[tuple[str, ...]] | None:
    """The distinct factors innermost first, if each one's columns extend the next's."""
    factors = sorted({b.factor for b in bars}, key=len, reverse=True)
    for inner, outer in itertools.pairwise(factors):
        if inner[: len(outer)] != outer:
            return None
    return factors


def _variable_levels(
    data: pd.DataFrame, chain: list[tuple[str, ...]], variables: list[str]
) -> tuple[tuple[str, int], ...]:
    """Level of each variable in a nested model: 1 + the number of levels it is constant in."""
    levels = dict.fromkeys(variables, 1)
    for depth, factor in enumerate(chain, start=2):
        for var in constant_within(data, factor, [v for v in variables if levels[v] == depth - 1]):
            levels[var] = depth
    return tuple(levels.items())


def _effect_name(letter: str, q: int, depth: int, used: set[str]) -> str:
    base = f"{letter}{q}" + "0" * depth if q < 10 else f"{letter}{q}_" + "0" * max(depth, 1)
    name, k = base, 1
    while name in used:
        name = f"{letter}{q}_{k}"
        k += 1
    used.add(name)
    return name


def spec_parts_from_formula(
    parsed: ParsedFormula,
    *,
    data: pd.DataFrame | None = None,
    level2: tuple[str, ...] | list[str] | None = None,
) -> FormulaParts:
    """Turn a parsed formula into level-1 coefficients and random blocks.

    Parameters
    ----------
    parsed : ParsedFormula
    data : DataFrame, optional
        Used to find the variables constant within the units of ``cluster`` (level 2) and,
        with nested factors, the level of every variable.
    level2 : sequence of str, optional
        The level-2 variables, overriding ``data``.

    Returns
    -------
    FormulaParts
    """
    cluster = parsed.cluster
    primary = parsed.random
    all_vars = list(dict.fromkeys(v for t in parsed.fixed + primary for v in t))
    chain = _nested_chain(parsed.bars)
    variable_levels: tuple[tuple[str, int], ...] = ()
    if level2 is not None:
        l2 = {level2} if isinstance(level2, str) else set(level2)
        unused = [v for v in l2 if v not in all_vars]
        if unused:
            raise SpecError(
                f"`level2` names {unused[0]!r}, which the formula does not use; the formula's "
                f"variables are {', '.join(all_vars) or 'none'}",
                text=parsed.text,
            )
    elif data is not None:
        random_vars = {v for t in primary for v in t}
        cluster_factor = next(b.factor for b in parsed.bars if b.grouping == cluster)
        _check_data(data, tuple(c for b in parsed.bars for c in b.factor))
        l2 = constant_within(data, cluster_factor, [v for v in all_vars if v not in random_vars])
        if chain is not None and len(chain) > 1:
            every = list(dict.fromkeys(
                v for t in parsed.fixed + tuple(t for b in parsed.bars for t in b.terms)
                for v in t))
            variable_levels = _variable_levels(data, chain, every)
    else:
        l2 = set()
    for term in primary:
        bad = [v for v in term if v in l2]
        if bad:
            raise SpecError(
                f"{bad[0]!r} is a level-2 variable (constant within each {cluster}), so "
                f"it cannot have a random effect across {cluster}; drop it from the "
                "random part",
                text=parsed.text,
            )
    # Level-1 parts in order: intercept first, then as they appear (random terms included).
    keys: list[frozenset[str]] = []
    l1_of: dict[frozenset[str], Term] = {}
    for term in [(), *parsed.fixed, *primary]:
        l1 = tuple(v for v in term if v not in l2)
        key = frozenset(l1)
        if key not in l1_of:
            l1_of[key] = l1
            keys.append(key)
    has_intercept_coef = () in parsed.fixed or () in primary or any(
        all(v in l2 for v in t) for t in parsed.fixed
    )
    if not has_intercept_coef:
        keys.remove(frozenset())
    gammas: dict[frozenset[str], list[Term]] = {k: [] for k in keys}
    for term in parsed.fixed:
        l1 = frozenset(v for v in term if v not in l2)
        gammas[l1].append(tuple(v for v in term if v in l2))
    start = 0 if has_intercept_coef else 1
    index = {key: q for q, key in enumerate(keys, start=start)}
    names = _name_effects(parsed.bars, cluster, chain, index, l2)
    random_of = {frozenset(t): names[(b.grouping, frozenset(t))]
                 for b in parsed.bars if b.grouping == cluster for t in b.terms}
    coefficients = []
    for key in keys:
        q = index[key]
        # The constant γ_q0 first, then the level-2 terms in written order.
        l2_terms = sorted(gammas[key], key=lambda t: (len(t) > 0,))
        gam = []
        s = 1
        for t in l2_terms:
            if not t:
                gam.append(Gamma(_gamma_name(q, 0), ()))
            else:
                gam.append(Gamma(_gamma_name(q, s), t))
                s += 1
        coefficients.append(
            Coefficient(name=f"b{q}", variables=l1_of[key], gammas=tuple(gam),
                        random=random_of.get(key))
        )
    random = tuple(
        RandomTerm(
            factor=b.factor,
            terms=b.terms,
            names=tuple(names[(b.grouping, frozenset(t))] for t in b.terms),
            structure="diagonal" if b.diagonal else "unstructured",
        )
        for b in parsed.bars
    )
    return FormulaParts(parsed.outcome, cluster, tuple(coefficients), random, variable_levels)


def _name_effects(
    bars: tuple[Bar, ...],
    cluster: str,
    chain: list[tuple[str, ...]] | None,
    index: dict[frozenset[str], int],
    l2: set[str],
) -> dict[tuple[str, frozenset[str]], str]:
    """Level-notation names of every random effect (module docstring)."""
    groupings = list(dict.fromkeys(b.grouping for b in bars))
    letter: dict[str, tuple[str, int]] = {}
    if len(groupings) == 1:
        letter[cluster] = ("U", 0)
    elif chain is not None:
        for depth, factor in enumerate(chain):
            name = NESTED_LETTERS[depth] if depth < len(NESTED_LETTERS) else f"l{depth + 2}_"
            letter[":".join(factor)] = (name, depth)
    else:
        others = [g for g in groupings if g != cluster]
        letter[cluster] = (CROSSED_LETTERS[0], 0)
        for k, g in enumerate(others, start=1):
            letter[g] = ((CROSSED_LETTERS[k], 0) if k < len(CROSSED_LETTERS)
                         else (f"U{k}_", 0))
    used: set[str] = set()
    out: dict[tuple[str, frozenset[str]], str] = {}
    for bar in bars:
        for term in bar.terms:
            l1 = frozenset(v for v in term if v not in l2)
            q = index.get(l1)
            if q is None or (bar.grouping != cluster and any(v in l2 for v in term)):
                q = len(index) + len(used)
            name, depth = letter[bar.grouping]
            out[(bar.grouping, frozenset(term))] = _effect_name(name, q, depth, used)
    return out


def _gamma_name(q: int, s: int) -> str:
    return f"g{q}{s}" if q < 10 and s < 10 else f"g{q}_{s}"


def _random_part(block: RandomTerm) -> str:
    parts = ["1" if () in block.terms else "0"]
    parts += [":".join(_quote(v) for v in t) for t in block.terms if t]
    bar = "|" if block.correlated else "||"
    return f"({' + '.join(parts)} {bar} {':'.join(_quote(c) for c in block.factor)})"


def spec_to_formula(spec: Spec) -> str:
    """Write a Spec as an lme4 formula, fixed terms in the column order of X.

    ``Spec.from_formula(spec.to_formula())`` gives the same design matrices.  A binomial
    outcome is written ``cbind(k, n - k)`` and a Poisson exposure ``offset(log(t))``, as in
    lme4; like lme4's, the formula does not name the family (pass ``family=`` with it).
    """
    fixed = []
    terms = spec.fixed_terms
    has_intercept = any(not t.variables for t in terms)
    fixed.append("1" if has_intercept else "0")
    fixed += [":".join(_quote(v) for v in t.variables) for t in terms if t.variables]
    if spec.exposure is not None:
        fixed.append(f"offset(log({_quote(spec.exposure)}))")
    random = " + ".join(_random_part(b) for b in spec.random)
    outcome = _quote(spec.outcome)
    if spec.trials is not None:  # lme4's two-column binomial response
        outcome = f"cbind({outcome}, {_quote(spec.trials)} - {outcome})"
    return f"{outcome} ~ {' + '.join(fixed)} + {random}"

