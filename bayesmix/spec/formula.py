"""lme4 formulas with one grouping factor: parsing, conversion to L1/L2, and back.

Supported syntax: ``y ~ a + b + a:b``, ``a*b`` (= a + b + a:b, distributing over parentheses
as in ``X*(M + W)``), ``1``, ``0`` / ``-1`` (no intercept, also first: ``y ~ -1 + X``),
``- term``, and one random part ``(1 + X | g)`` or ``(0 + X | g)``.  Names that are not plain
identifiers go in backticks.  Refused with a SpecError: a variable multiplied by itself
(``X:X``, ``X*X``: R reads it as X, which is rarely meant), a subtracted random part,
parentheses nested deeper than :data:`MAX_DEPTH` and products that expand to more than
:data:`MAX_TERMS` terms.

``formulae`` (bambi's engine) was considered: it builds design matrices, but bayesmix needs
each fixed term split into its level-1 and level-2 parts to name the γ's, and the grammar of
two-level models with one grouping factor is this small; categorical coding lives in
:mod:`bayesmix.design`, shared by every way in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

import numpy as np

from bayesmix.errors import DataError, SpecError
from bayesmix.spec.model import Coefficient, Gamma

if TYPE_CHECKING:
    import pandas as pd

    from bayesmix.spec.model import Spec

Term = tuple[str, ...]  # variables of one term, in written order; () is the intercept

_TOKEN = re.compile(
    r"(?P<space>\s+)|(?P<quoted>`[^`]+`)|(?P<name>[^\W\d][\w.]*)|(?P<number>\d+)"
    r"|(?P<op>\|\||[~+\-*:()|^/])"
)


@dataclass(frozen=True)
class ParsedFormula:
    """A formula split into outcome, fixed terms and one random part.

    Attributes
    ----------
    outcome : str
    fixed : tuple of Term
        Fixed terms in order; ``()`` is the intercept.
    random : tuple of Term
        Random terms in order; ``()`` is the random intercept.
    cluster : str
        The grouping factor.
    text : str
        The formula as given.
    """

    outcome: str
    fixed: tuple[Term, ...]
    random: tuple[Term, ...]
    cluster: str
    text: str


MAX_DEPTH = 50
"""Deepest nesting of parentheses a formula may have."""

MAX_TERMS = 1024
"""Most terms one product may expand to (``x1*...*x10`` gives 1023)."""


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str, int]] = []
        i = depth = 0
        while i < len(text):
            m = _TOKEN.match(text, i)
            if m is None:
                self.fail(f"unexpected character {text[i]!r}", i + 1)
            if m.group("quoted"):
                self.tokens.append(("name", m.group("quoted")[1:-1], i + 1))
            elif m.group("name"):
                self.tokens.append(("name", m.group("name"), i + 1))
            elif m.group("number"):
                self.tokens.append(("number", m.group("number"), i + 1))
            elif m.group("op"):
                self.tokens.append(("op", m.group("op"), i + 1))
                depth += {"(": 1, ")": -1}.get(m.group("op"), 0)
                if depth > MAX_DEPTH:
                    self.fail(f"parentheses are nested more than {MAX_DEPTH} deep; remove the "
                              "redundant ones", i + 1)
            i = m.end()
        self.i = 0
        self.random: list[tuple[list[Term], bool, str, int]] = []

    def fail(self, message: str, pos: int | None = None) -> NoReturn:
        raise SpecError(message, text=self.text, line=None, position=pos)

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def peek_op(self, ops: tuple[str, ...]) -> tuple[str, str, int] | None:
        tok = self.peek()
        return tok if tok is not None and tok[0] == "op" and tok[1] in ops else None

    def take(self, text: str | None = None) -> tuple[str, str, int]:
        tok = self.peek()
        if tok is None:
            self.fail(f"the formula ends where {text or 'a term'!r} was expected",
                      len(self.text) + 1)
        if text is not None and tok[1] != text:
            self.fail(f"expected {text!r}, found {tok[1]!r}", tok[2])
        self.i += 1
        return tok

    # sum := ['+' | '-'] product (('+' | '-') product)*
    def parse_sum(self, top: bool = False) -> tuple[list[Term], bool | None]:
        terms: dict[frozenset[str], Term] = {}
        intercept: bool | None = None
        sign, sign_pos = "+", 0
        if (tok := self.peek_op(("+", "-"))) is not None:  # `-1 + X`, as in R
            sign, sign_pos = tok[1], tok[2]
            self.i += 1
        while True:
            tok = self.peek()
            if self.peek_op(("(",)) and top and self._is_random():
                if sign == "-":
                    self.fail("a random part cannot be subtracted; write `+ (1 | g)` (and "
                              "`(0 + X | g)` for no random intercept)", sign_pos)
                self.parse_random()
            else:
                new, icpt = self.parse_product()
                if sign == "-":
                    if icpt is not None:
                        intercept = not icpt  # `- 1` drops the intercept, `- 0` keeps it (R)
                    for t in new:
                        terms.pop(frozenset(t), None)
                else:
                    if icpt is not None:
                        intercept = icpt
                    for t in new:
                        terms.setdefault(frozenset(t), t)
            if (tok := self.peek_op(("+", "-"))) is not None:
                sign, sign_pos = tok[1], tok[2]
                self.i += 1
                continue
            return list(terms.values()), intercept

    def _is_random(self) -> bool:
        depth = 0
        for kind, text, _ in self.tokens[self.i :]:
            if kind != "op":
                continue
            if text == "(":
                depth += 1
            elif text == ")":
                depth -= 1
                if depth == 0:
                    return False
            elif text in ("|", "||") and depth == 1:
                return True
        return False

    def parse_random(self) -> None:
        start = self.take("(")
        terms, intercept = self.parse_sum()
        bar = self.take()
        if bar[1] == "||":
            self.fail(
                "uncorrelated random effects (||) are not supported: bayesmix gives U a full "
                "covariance T with an LKJ prior; write (1 + X | g)",
                bar[2],
            )
        if bar[1] != "|":
            self.fail(f"expected '|', found {bar[1]!r}", bar[2])
        cluster = self.take()
        if cluster[0] != "name":
            self.fail("expected the name of the grouping factor after '|'", cluster[2])
        self.take(")")
        ordered = ([()] if intercept is not False else []) + [t for t in terms if t]
        self.random.append((ordered, intercept is not False, cluster[1], start[2]))

    # product := interaction ('*' interaction)*
    def parse_product(self) -> tuple[list[Term], bool | None]:
        terms, icpt = self.parse_interaction()
        while (tok := self.peek_op(("*",))) is not None:
            self.i += 1
            right, _ = self.parse_interaction()
            if len(terms) * (len(right) + 1) + len(right) > MAX_TERMS:
                self.fail(f"this product expands to more than {MAX_TERMS} terms; write the "
                          "interactions you need with ':' instead of '*'", tok[2])
            combined = list(terms) + list(right)
            combined += [self._join(a, b, tok[2]) for a in terms for b in right]
            terms = _dedupe(combined)
        return terms, icpt

    # interaction := atom (':' atom)*
    def parse_interaction(self) -> tuple[list[Term], bool | None]:
        terms, icpt = self.parse_atom()
        while (tok := self.peek_op((":",))) is not None:
            self.i += 1
            right, _ = self.parse_atom()
            if len(terms) * len(right) > MAX_TERMS:
                self.fail(f"this interaction expands to more than {MAX_TERMS} terms", tok[2])
            terms = _dedupe([self._join(a, b, tok[2]) for a in terms for b in right])
        return terms, icpt

    def _join(self, a: Term, b: Term, pos: int) -> Term:
        twice = [v for v in b if v in a]
        if twice:
            v = _quote(twice[0])
            self.fail(
                f"{v} is multiplied by itself; in R `{v}:{v}` and `{v}*{v}` mean just {v}, so "
                f"write {v} alone, or for a square add a column such as {v}_sq = {v}**2 to the "
                f"data (transformations such as I({v}^2) are not supported yet)",
                pos,
            )
        return a + b

    def parse_atom(self) -> tuple[list[Term], bool | None]:
        tok = self.take()
        kind, text, pos = tok
        if kind == "name":
            nxt = self.peek()
            if nxt is not None and nxt[1] == "(":
                self.fail(
                    f"function calls such as {text}(...) are not supported in formulas yet; "
                    "add the transformed variable as a column of the data (categorical coding "
                    "is automatic for text columns; set `categorical=` for numeric codes)",
                    pos,
                )
            return [(text,)], None
        if kind == "number":
            if text == "1":
                return [], True
            if text == "0":
                return [], False
            self.fail(f"a number ({text}) can only be 0 or 1 (the intercept)", pos)
        if text == "(":
            terms, icpt = self.parse_sum()
            self.take(")")
            return terms, icpt
        if text == "^" or text == "/":
            self.fail(f"the operator {text!r} is not supported; write the terms out", pos)
        self.fail(f"unexpected {text!r}", pos)

    def parse(self) -> ParsedFormula:
        tilde = [i for i, t in enumerate(self.tokens) if t[1] == "~"]
        if len(tilde) != 1:
            self.fail("a formula has exactly one '~' (outcome ~ terms)",
                      self.tokens[tilde[1]][2] if len(tilde) > 1 else None)
        if tilde[0] != 1 or self.tokens[0][0] != "name":
            self.fail("the left side of '~' must be the outcome column alone",
                      self.tokens[0][2] if self.tokens else None)
        outcome = self.tokens[0][1]
        self.i = 2
        terms, intercept = self.parse_sum(top=True)
        if self.peek() is not None:
            tok = self.peek()
            self.fail(f"unexpected {tok[1]!r}", tok[2])
        if not self.random:
            self.fail(
                "no random part: a two-level model needs one, e.g. `(1 | g)` for a random "
                "intercept or `(1 + X | g)` for a random slope too"
            )
        if len(self.random) > 1:
            clusters = {r[2] for r in self.random}
            if len(clusters) > 1:
                self.fail(
                    f"bayesmix fits two-level models with one grouping factor; this formula "
                    f"has {len(clusters)} ({', '.join(sorted(clusters))})",
                    self.random[1][3],
                )
            self.fail("write the random terms of one grouping factor in one (... | g)",
                      self.random[1][3])
        rterms, _, cluster, _ = self.random[0]
        fixed = ([()] if intercept is not False else []) + [t for t in terms if t]
        return ParsedFormula(outcome, tuple(fixed), tuple(rterms), cluster, self.text)


def _dedupe(terms: list[Term]) -> list[Term]:
    out: dict[frozenset[str], Term] = {}
    for t in terms:
        out.setdefault(frozenset(t), t)
    return list(out.values())


def parse_formula(text: str) -> ParsedFormula:
    """Parse an lme4 formula with one grouping factor.

    Raises
    ------
    SpecError
        With the position of the fault in the formula.
    """
    if not isinstance(text, str):
        raise SpecError(
            f"a formula is a string such as 'y ~ X + (1 | g)', not {type(text).__name__}"
        )
    return _Parser(text).parse()


def _level2_from_data(data: pd.DataFrame, cluster: str, variables: list[str]) -> set[str]:
    if not hasattr(data, "columns") or not hasattr(data, "groupby"):
        raise DataError(f"data must be a pandas DataFrame, not {type(data).__name__}")
    if cluster not in data.columns:
        raise DataError(f"the grouping factor {cluster!r} is not a column of the data")
    level2 = set()
    for var in variables:
        if var not in data.columns:
            continue
        nunique = data.groupby(cluster, observed=True, sort=False)[var].nunique(dropna=False)
        if len(nunique) and int(np.max(nunique.to_numpy())) <= 1:
            level2.add(var)
    return level2


def spec_parts_from_formula(
    parsed: ParsedFormula,
    *,
    data: pd.DataFrame | None = None,
    level2: tuple[str, ...] | list[str] | None = None,
) -> tuple[str, str, tuple[Coefficient, ...]]:
    """Turn a parsed formula into L1/L2 coefficients.

    Each fixed term's variables are split into level-1 and level-2 parts; the level-1 part
    names the coefficient β_q, the level-2 part the γ_qs.  Random terms must be level-1.

    Returns
    -------
    outcome, cluster, coefficients
    """
    all_vars = list(dict.fromkeys(v for t in parsed.fixed + parsed.random for v in t))
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
        random_vars = {v for t in parsed.random for v in t}
        l2 = _level2_from_data(data, parsed.cluster, [v for v in all_vars
                                                      if v not in random_vars])
    else:
        l2 = set()
    for term in parsed.random:
        bad = [v for v in term if v in l2]
        if bad:
            raise SpecError(
                f"{bad[0]!r} is a level-2 variable (constant within each {parsed.cluster}), so "
                f"it cannot have a random effect across {parsed.cluster}; drop it from the "
                "random part",
                text=parsed.text,
            )
    # Level-1 parts in order: intercept first, then as they appear (random terms included).
    keys: list[frozenset[str]] = []
    l1_of: dict[frozenset[str], Term] = {}
    for term in [(), *parsed.fixed, *parsed.random]:
        l1 = tuple(v for v in term if v not in l2)
        key = frozenset(l1)
        if key not in l1_of:
            l1_of[key] = l1
            keys.append(key)
    has_intercept_coef = () in parsed.fixed or () in parsed.random or any(
        all(v in l2 for v in t) for t in parsed.fixed
    )
    if not has_intercept_coef:
        keys.remove(frozenset())
    gammas: dict[frozenset[str], list[Term]] = {k: [] for k in keys}
    for term in parsed.fixed:
        l1 = frozenset(v for v in term if v not in l2)
        gammas[l1].append(tuple(v for v in term if v in l2))
    random_keys = {frozenset(t) for t in parsed.random}
    start = 0 if has_intercept_coef else 1
    coefficients = []
    for q, key in enumerate(keys, start=start):
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
            Coefficient(
                name=f"b{q}",
                variables=l1_of[key],
                gammas=tuple(gam),
                random=f"U{q}" if key in random_keys else None,
            )
        )
    return parsed.outcome, parsed.cluster, tuple(coefficients)


def _gamma_name(q: int, s: int) -> str:
    return f"g{q}{s}" if q < 10 and s < 10 else f"g{q}_{s}"


def _quote(name: str) -> str:
    return name if re.fullmatch(r"[^\W\d][\w.]*", name) else f"`{name}`"


def spec_to_formula(spec: Spec) -> str:
    """Write a Spec as an lme4 formula, fixed terms in the column order of X.

    ``Spec.from_formula(spec.to_formula())`` gives the same design matrices.
    """
    fixed = []
    terms = spec.fixed_terms
    has_intercept = any(not t.variables for t in terms)
    fixed.append("1" if has_intercept else "0")
    fixed += [":".join(_quote(v) for v in t.variables) for t in terms if t.variables]
    random_coefs = spec.random_coefficients
    rand = ["1" if any(not c.variables for c in random_coefs) else "0"]
    rand += [":".join(_quote(v) for v in c.variables) for c in random_coefs if c.variables]
    return (
        f"{_quote(spec.outcome)} ~ {' + '.join(fixed)} + "
        f"({' + '.join(rand)} | {_quote(spec.cluster)})"
    )
