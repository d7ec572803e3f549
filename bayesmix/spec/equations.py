"""Level equations in Raudenbush–Bryk notation: the syntax (lexer and line reader).

The structure (which coefficient sits at which level, the random-effect blocks) is built in
:mod:`bayesmix.spec.levels`; the printer is :mod:`bayesmix.spec.levels_print`.

Grammar, one equation per line (``#`` starts a comment, blank lines are skipped)::

    level 1:   OUTCOME = COEF [* VAR]... + COEF [* VAR]... + ... [+ RESIDUAL]
    others:    COEF = COEF [* VAR]... + ... [+ RANDOM]...

    COEF      p0, pi0, π0 -> p0;  b0, beta0, β0, B0 -> b0;  g00, gamma00, γ00, G00 -> g00
              (subscripts as digits, ``_`` between indexes of 10 or more: g0_12; a unit
              subscript such as b0j, b0[j], p0ij is dropped)
    RANDOM    U0, u0 (two levels); r0 (level 2), u00 (level 3), v000, w0000 (levels 4, 5) with
              ``levels=``; U0, V0, W0, Q0, S0 with ``crossed=``
    RESIDUAL  e, r, eps, epsilon, ε (optionally e[ij], e_ij, e_tij)
    VAR       a column name (letters, digits, ``_``, ``.``); subscripts ``[ij]``, ``[j]`` are
              dropped; a name in backticks (`` `my var` ``) is always a variable.
    *         also ``·`` and ``×``

The level-1 line is the one whose left side is not a coefficient.  Every other line defines
one coefficient; the level of a coefficient follows from the lines, not from its letter: the
level-1 line's coefficients are level 1, and a coefficient on the right of the line of a
level-k coefficient is level k + 1.  A coefficient without a line of its own is a fixed effect
γ of the top level.  Two levels (``cluster="g"``)::

    y = b0 + b1*X + e
    b0 = g00 + g01*M + U0
    b1 = g10 + g11*M + U1

Three levels (``levels=["childid", "schoolid"]``, innermost first; π, β, γ as in HLM)::

    math = p0 + p1*year + e
    p0 = b00 + b01*black + r0           # r: varies over children (within schools)
    p1 = b10 + b11*black + r1
    b00 = g000 + g001*lowinc + u00      # u: varies over schools
    b01 = g010
    b10 = g100 + g101*lowinc + u10
    b11 = g110

is ``math ~ year*black + year*lowinc + (1 + year | schoolid/childid)``: a random effect
multiplies the variables along the path from level 1 to its line (u10 multiplies year; a u on
b11 would multiply year:black).  Four levels (``levels=["child", "class", "school"]``) add a
line per level-3 coefficient, e.g. ``g000 = g0000 + g0001*size + v000``.

Crossed factors (``crossed=["plate", "sample"]``): a level-2 line holds one effect per
factor, U over lme4's cluster (the factor with the most columns, the first of equally many),
V, W, Q, S over the others in order::

    y = b0 + b1*x + e
    b0 = g00 + U0 + V0                  # y ~ x + (1 | plate) + (1 | sample)

``diagonal=True`` (or a list of the factors concerned) makes the effects of a factor
independent, lme4's ``||``.  In models of three or more levels the γ's of a level-1
coefficient are ordered by their subscripts read from the last index (level-2 effects before
level-3 ones: γ000, γ010, γ001, γ011); the effects of a block in the order the lines are
written.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from bayesmix.errors import SpecError
from bayesmix.spec.model import Coefficient, Spec
from bayesmix.spec.transforms import call_at, is_call, parse_call

_LETTERS = {"p": "p", "pi": "p", "π": "p", "b": "b", "beta": "b", "β": "b", "B": "b",
            "g": "g", "gamma": "g", "γ": "g", "G": "g"}
_SUB = r"_?(\d+(?:_\d+)*)(?:_?[ijkt]{1,3})?"
_COEF = re.compile(rf"^(pi|p|π|beta|b|β|B|gamma|g|γ|G){_SUB}$")
_RANDOM = re.compile(rf"^([A-Za-z]){_SUB}$")
_RESIDUAL = re.compile(r"^(?:e|r|eps|epsilon|ε)(?:_?(?:ij|tij|ijk|tijk|ti|i))?$")
TWO_LEVEL = {"U": "U", "u": "U"}
"""Random-effect letters (as written -> normalised) of a model with one grouping factor."""

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<quoted>`[^`]+`)
  | (?P<name>[^\W\d][\w.]*)(?P<sub>\[[^\]]*\]|_\{[^}]*\})?
  | (?P<number>\d+(?:\.\d*)?)
  | (?P<op>[=+*·×:\-()])
    """,
    re.VERBOSE | re.UNICODE,
)


@dataclass(frozen=True)
class _Token:
    kind: str  # "name", "quoted", "number", "op"
    text: str
    pos: int  # 1-based


@dataclass(frozen=True)
class Factor:
    """One name of a product: its kind, normalised name and 1-based position in the line."""

    kind: str  # "coef", "random", "residual", "var"
    name: str
    pos: int


@dataclass(frozen=True)
class Line:
    """One equation: ``left = term + term + ...``, each term a product of factors."""

    lineno: int
    text: str
    left: Factor
    terms: tuple[tuple[Factor, ...], ...]

    def fail(self, message: str, pos: int | None = None) -> SpecError:
        """A SpecError pointing at ``pos`` (the start of the line by default) of this line."""
        start = len(self.text) - len(self.text.lstrip()) + 1
        return SpecError(message, text=self.text, line=self.lineno,
                         position=start if pos is None else pos)


def _tokenize(line: str, lineno: int) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(line):
        m = _TOKEN.match(line, i)
        if m is None:
            raise SpecError(
                f"unexpected character {line[i]!r}", text=line, line=lineno, position=i + 1
            )
        if m.group("space") is None:
            if m.group("quoted"):
                tokens.append(_Token("quoted", m.group("quoted")[1:-1], i + 1))
            elif m.group("name") and call_at(line, i, m.group("name")):
                transform, end = parse_call(line, i, lineno)
                tokens.append(_Token("quoted", transform.name, i + 1))
                i = end
                continue
            elif m.group("name"):
                tokens.append(_Token("name", m.group("name"), i + 1))
            elif m.group("number"):
                tokens.append(_Token("number", m.group("number"), i + 1))
            else:
                tokens.append(_Token("op", m.group("op"), i + 1))
        i = m.end()
    return tokens


def classify(text: str, pos: int, randoms: dict[str, str], quoted: bool = False) -> Factor:
    """What a name is: a coefficient, a random effect (letters of ``randoms``), e or a variable."""
    if quoted:
        return Factor("var", text, pos)
    m = _COEF.match(text)
    if m:
        return Factor("coef", _LETTERS[m.group(1)] + m.group(2), pos)
    m = _RANDOM.match(text)
    if m and m.group(1) in randoms:
        return Factor("random", randoms[m.group(1)] + m.group(2), pos)
    if _RESIDUAL.match(text):
        return Factor("residual", text, pos)
    return Factor("var", text, pos)


def _split_terms(tokens: list[_Token], line: str, lineno: int,
                 randoms: dict[str, str]) -> list[list[Factor]]:
    """Split the right-hand side into '+'-separated products of factors."""

    def fail(message: str, pos: int) -> SpecError:
        return SpecError(message, text=line, line=lineno, position=pos)

    terms: list[list[Factor]] = []
    current: list[Factor] = []
    expect_factor = True
    for tok in tokens:
        if tok.kind == "op":
            if tok.text == "+":
                if expect_factor:
                    raise fail("expected a term before '+'", tok.pos)
                terms.append(current)
                current = []
                expect_factor = True
            elif tok.text in "*·×:":
                if expect_factor:
                    raise fail(f"expected a name before {tok.text!r}", tok.pos)
                expect_factor = True
            elif tok.text == "-":
                raise fail("subtraction is not part of L1/L2 notation: write every term with "
                           "'+' (a γ can be negative)", tok.pos)
            elif tok.text == "=":
                raise fail("a second '=' on one line; write one equation per line", tok.pos)
            else:
                raise fail("parentheses are not part of L1/L2 notation; write the products "
                           "out (e.g. b1*X for b1·(X)); transformed variables are calls "
                           "such as log(X), I(X^2), group(X)", tok.pos)
        elif tok.kind == "number":
            raise fail(f"a number ({tok.text}) cannot be a term; write coefficients and "
                       "variables by name (the intercept is just b0, or g00)", tok.pos)
        else:
            if not expect_factor:
                raise fail(f"expected '+' or '*' before {tok.text!r}", tok.pos)
            current.append(classify(tok.text, tok.pos, randoms, tok.kind == "quoted"))
            expect_factor = False
    if expect_factor:
        pos = tokens[-1].pos + len(tokens[-1].text) if tokens else len(line) + 1
        raise fail("the equation ends where a term was expected", min(pos, len(line) + 1))
    terms.append(current)
    return terms


def term_variables(term: tuple[Factor, ...], line: Line) -> tuple[str, ...]:
    """The variables of a product, refusing one that appears twice (``b1*X*X``)."""
    seen: set[str] = set()
    for f in term:
        if f.kind != "var":
            continue
        if f.name in seen:
            v = quote(f.name, TWO_LEVEL)
            raise line.fail(
                f"{v} appears twice in one product (`{v}:{v}` means {v} in R); for a square "
                f"write I({v}^2), or poly({v}, 2) for orthogonal polynomials", f.pos)
        seen.add(f.name)
    return tuple(f.name for f in term if f.kind == "var")


def read_lines(text: str, randoms: dict[str, str]) -> list[Line]:
    """Split the text into equations; only the syntax of each line is checked here.

    Parameters
    ----------
    text : str
        The equations, one per line.
    randoms : dict
        Random-effect letters as written -> normalised (``{"U": "U", "u": "U"}``).

    Returns
    -------
    list of Line
    """
    if not isinstance(text, str):
        raise SpecError(
            f"the equations are a string (one equation per line), not {type(text).__name__}"
        )
    lines: list[Line] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        tokens = _tokenize(line, lineno)
        eq = [i for i, t in enumerate(tokens) if t.kind == "op" and t.text == "="]
        if not eq:
            raise SpecError("expected an equation `LEFT = RIGHT`", text=line, line=lineno,
                            position=len(line) - len(line.lstrip()) + 1)
        lhs, rhs = tokens[: eq[0]], tokens[eq[0] + 1 :]
        if len(lhs) != 1 or lhs[0].kind not in ("name", "quoted"):
            pos = lhs[1].pos if len(lhs) > 1 else tokens[eq[0]].pos
            raise SpecError(
                "the left side must be one name: the outcome (level 1) or a coefficient "
                "such as b0 (level 2)", text=line, line=lineno, position=pos)
        if not rhs:
            raise SpecError("the right side is empty", text=line, line=lineno,
                            position=tokens[eq[0]].pos + 1)
        terms = _split_terms(rhs, line, lineno, randoms)
        left = classify(lhs[0].text, lhs[0].pos, randoms, lhs[0].kind == "quoted")
        if left.kind not in ("coef", "var"):
            raise SpecError(f"{left.name} cannot be the left side of an equation", text=line,
                            line=lineno, position=left.pos)
        lines.append(Line(lineno, line, left, tuple(tuple(t) for t in terms)))
    return lines


def sort_lines(lines: list[Line]) -> tuple[Line, dict[str, Line]]:
    """The level-1 line and the coefficients' lines by name (each defined once)."""
    outcome: Line | None = None
    defs: dict[str, Line] = {}
    for line in lines:
        if line.left.kind == "coef":
            if line.left.name in defs:
                raise line.fail(f"{line.left.name} has a second equation (the first is on line "
                                f"{defs[line.left.name].lineno})", line.left.pos)
            defs[line.left.name] = line
        elif outcome is not None:
            raise line.fail(f"a second level-1 equation (the first is on line "
                            f"{outcome.lineno}); the left side of a level-2 equation must be a "
                            "coefficient such as b0", line.left.pos)
        else:
            outcome = line
    if outcome is None:
        raise SpecError("no level-1 equation (`y = b0 + b1*X + e`) was found")
    return outcome, defs


def children(line: Line) -> list[tuple[Factor, tuple[str, ...]]]:
    """The coefficients a line names, each with the variables it multiplies."""
    out = []
    for term in line.terms:
        coefs = [f for f in term if f.kind == "coef"]
        if len(coefs) == 1:
            out.append((coefs[0], term_variables(term, line)))
    return out


def check_level1(line: Line) -> None:
    """Each term of the level-1 line: one coefficient and variables, or the residual."""
    residual = False
    for term in line.terms:
        if [f.kind for f in term] == ["residual"]:
            if residual:
                raise line.fail("the residual appears twice", term[0].pos)
            residual = True
            continue
        bad = [f for f in term if f.kind in ("random", "residual")]
        if bad:
            raise line.fail(f"a random effect ({bad[0].name}) belongs in a level-2 equation, "
                            "not at level 1" if bad[0].kind == "random" else
                            "the residual must be a term of its own (`+ e`)", bad[0].pos)
        coefs = [f for f in term if f.kind == "coef"]
        if len(coefs) != 1:
            raise line.fail("each level-1 term needs exactly one coefficient (b0, b1, ...), "
                            "e.g. `b1*X`", term[0].pos if not coefs else coefs[1].pos)


def check_equation(line: Line, level: int, block_of: Callable[[Factor], int],
                   depth: int) -> list[tuple[int, Factor]]:
    """Check the terms of a level-``level`` coefficient's line; return its random effects.

    ``block_of`` gives the grouping factor (index) an effect varies over, or raises.
    """
    out: list[tuple[int, Factor]] = []
    for term in line.terms:
        if any(f.kind == "random" for f in term):
            if len(term) != 1:
                raise line.fail("a random effect is a term of its own; one multiplied by a "
                                "variable is written at level 1 (b1*X with b1 = g10 + U1)",
                                term[0].pos)
            k = block_of(term[0])
            if any(k == j for j, _ in out):
                raise line.fail(f"an equation has at most one {term[0].name[0]} term",
                                term[0].pos)
            out.append((k, term[0]))
            continue
        bad = [f for f in term if f.kind == "residual"]
        if bad:
            raise line.fail(f"{bad[0].name} cannot appear in the equation of a coefficient "
                            "(only coefficients, variables and random effects)", bad[0].pos)
        coefs = [f for f in term if f.kind == "coef"]
        if len(coefs) != 1:
            what = ("each level-2 term needs exactly one γ (g00, g01, ...), e.g. `g01*M`"
                    if depth == 2 else f"each term of a level-{level + 1} equation "
                    "needs exactly one coefficient, e.g. `b01*black`")
            raise line.fail(what, term[0].pos if not coefs else coefs[1].pos)
    return out


def quote(var: str, randoms: dict[str, str]) -> str:
    """A variable as the equations write it: backticks unless it reads as a variable."""
    if is_call(var):
        return var
    plain = re.fullmatch(r"[^\W\d][\w.]*", var) and classify(var, 1, randoms).kind == "var"
    return var if plain else f"`{var}`"


def parse_equations(text: str) -> tuple[str, tuple[Coefficient, ...]]:
    """Parse two-level L1/L2 equations (see :func:`bayesmix.spec.levels.parse_levels`).

    Returns
    -------
    outcome : str
        The outcome column.
    coefficients : tuple of Coefficient
        In level-1 order, each with its level-2 equation.

    Raises
    ------
    SpecError
        Naming the line and the position of the fault.
    """
    from bayesmix.spec.levels import make_layout, parse_levels

    parts = parse_levels(text, make_layout(cluster="cluster"))
    return parts.outcome, parts.coefficients


def spec_to_equations(spec: Spec) -> str:
    """Write a Spec as level equations (see :func:`bayesmix.spec.levels_print.print_levels`)."""
    from bayesmix.spec.levels_print import print_levels

    return print_levels(spec)
