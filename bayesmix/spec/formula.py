"""lme4 formulas: the parser (conversion to and from a Spec is in :mod:`.formula_convert`).

Supported syntax: ``y ~ a + b + a:b``, ``a*b`` (= a + b + a:b, distributing over parentheses
as in ``X*(M + W)``), ``1``, ``0`` / ``-1`` (no intercept, also first: ``y ~ -1 + X``),
``- term``, and random parts ``(1 + X | g)``, ``(0 + X | g)``, ``(1 + X || g)`` (independent
effects), ``(1 | a:b)`` (the units of b within a), ``(1 | a/b)`` (= ``(1 | a) + (1 | a:b)``),
several of them, on one factor or on several (nested or crossed).  Names that are not plain
identifiers go in backticks.  Refused with a SpecError: a variable multiplied by itself
(``X:X``, ``X*X``: R reads it as X, which is rarely meant), a subtracted random part,
parentheses nested deeper than :data:`MAX_DEPTH`, products that expand to more than
:data:`MAX_TERMS` terms, and one term with two random effects over the same factor.

``formulae`` (bambi's engine) was considered: it builds design matrices, but bayesmix needs
each fixed term split into its level-1 and level-2 parts to name the γ's, and the grammar of
multilevel models is this small; categorical coding lives in :mod:`bayesmix.design`, shared
by every way in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NoReturn

from bayesmix.errors import SpecError
from bayesmix.spec.transforms import CALLS, call_at, is_call, parse_call

Term = tuple[str, ...]  # variables of one term, in written order; () is the intercept

_TOKEN = re.compile(
    r"(?P<space>\s+)|(?P<quoted>`[^`]+`)|(?P<name>[^\W\d][\w.]*)|(?P<number>\d+)"
    r"|(?P<op>\|\||[~+\-*:()|^/])"
)


@dataclass(frozen=True)
class Bar:
    """One random part ``(terms | factor)`` (or ``||``), after expanding ``a/b``.

    Attributes
    ----------
    terms : tuple of Term
        Random terms in order; ``()`` is the random intercept.
    factor : tuple of str
        The grouping columns (``("a", "b")`` for ``a:b``).
    diagonal : bool
        ``||``: independent effects.
    position : int
        1-based position of the bar's ``(`` in the formula.
    """

    terms: tuple[Term, ...]
    factor: tuple[str, ...]
    diagonal: bool
    position: int

    @property
    def grouping(self) -> str:
        """The factor as lme4 writes it, ``"a:b"``."""
        return ":".join(self.factor)


@dataclass(frozen=True)
class ParsedFormula:
    """A formula split into outcome, fixed terms and random parts.

    Attributes
    ----------
    outcome : str
    fixed : tuple of Term
        Fixed terms in order; ``()`` is the intercept.
    bars : tuple of Bar
        The random parts in order (``(1 | a/b)`` gives two: on ``a`` and on ``a:b``).
    text : str
        The formula as given.
    """

    outcome: str
    fixed: tuple[Term, ...]
    bars: tuple[Bar, ...]
    text: str

    @property
    def cluster(self) -> str:
        """The innermost grouping factor (most columns; the first one of equal depth)."""
        return max(self.bars, key=lambda b: len(b.factor)).grouping

    @property
    def random(self) -> tuple[Term, ...]:
        """The random terms over :attr:`cluster`, in order."""
        return tuple(t for b in self.bars if b.grouping == self.cluster for t in b.terms)


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
            elif m.group("name") and call_at(text, i, m.group("name")):
                transform, end = parse_call(text, i)
                self.tokens.append(("name", transform.name, i + 1))
                i = end
                continue
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
        self.random: list[Bar] = []

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
        if bar[1] not in ("|", "||"):
            self.fail(f"expected '|', found {bar[1]!r}", bar[2])
        ordered = tuple(([()] if intercept is not False else []) + [t for t in terms if t])
        if not ordered:
            self.fail("this random part has no term; write (1 | g) for a random intercept",
                      start[2])
        for factor in self.parse_grouping():
            self.random.append(Bar(ordered, factor, bar[1] == "||", start[2]))
        self.take(")")

    def parse_grouping(self) -> list[tuple[str, ...]]:
        """``g``, ``a:b`` or ``a/b/c`` (= a, a:b, a:b:c) after the bar."""
        chain: list[list[str]] = [[]]
        while True:
            tok = self.take()
            if tok[0] != "name":
                self.fail("expected the name of a grouping factor (a column)", tok[2])
            if tok[1] in chain[-1] or any(tok[1] in part for part in chain):
                self.fail(f"{tok[1]!r} appears twice in this grouping factor", tok[2])
            chain[-1].append(tok[1])
            nxt = self.peek_op((":", "/"))
            if nxt is None:
                break
            self.i += 1
            if nxt[1] == "/":
                chain.append([])
        out: list[tuple[str, ...]] = []
        prefix: tuple[str, ...] = ()
        for part in chain:
            prefix = prefix + tuple(part)
            out.append(prefix)
        return out

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
                f"write {v} alone, or I({v}^2) for a square (poly({v}, 2) for orthogonal "
                "polynomials)",
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
                    f"unknown function {text}(); a formula's variables may be calls of "
                    f"{', '.join(CALLS)}, or add the transformed variable as a column of the "
                    "data", pos,
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
        if text == "^" or text == "/":  # '/' only nests grouping factors, after a bar
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
                "no random part: a multilevel model needs one, e.g. `(1 | g)` for a random "
                "intercept or `(1 + X | g)` for a random slope too"
            )
        seen: dict[tuple[str, frozenset[str]], Bar] = {}
        for bar in self.random:
            for term in bar.terms:
                key = (":".join(sorted(bar.factor)), frozenset(term))
                if key in seen:
                    label = ":".join(term) or "the intercept"
                    self.fail(f"{label} has a random effect over {bar.grouping} twice; keep "
                              "one", bar.position)
                seen[key] = bar
        fixed = ([()] if intercept is not False else []) + [t for t in terms if t]
        return ParsedFormula(outcome, tuple(fixed), tuple(self.random), self.text)


def _dedupe(terms: list[Term]) -> list[Term]:
    out: dict[frozenset[str], Term] = {}
    for t in terms:
        out.setdefault(frozenset(t), t)
    return list(out.values())


def parse_formula(text: str) -> ParsedFormula:
    """Parse an lme4 formula.

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


def _quote(name: str) -> str:
    if is_call(name):
        return name
    return name if re.fullmatch(r"[^\W\d][\w.]*", name) else f"`{name}`"
