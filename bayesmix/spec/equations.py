"""Parser (and printer) for level-1 / level-2 equations in Raudenbush–Bryk notation.

Grammar, one equation per line (``#`` starts a comment, blank lines are skipped)::

    level 1:  OUTCOME = TERM1 + TERM1 + ... [+ RESIDUAL]
              TERM1   = COEF [* VAR]...            (factors in any order, e.g. X*b1)
    level 2:  COEF = TERM2 + TERM2 + ... [+ RANDOM]
              TERM2   = GAMMA [* VAR]...

    COEF      b0, b1, beta1, β1 (optionally b0j, b0[j], b_0)   -> normalised to b0, b1, ...
    GAMMA     g00, g01, gamma01, γ01                           -> g00, g01, ...
    RANDOM    U0, u0, U0j, U0[j]                               -> U0, U1, ...
    RESIDUAL  e, r, eps, epsilon, ε (optionally e[ij], e_ij)
    VAR       a column name (letters, digits, ``_``, ``.``); subscripts ``[ij]``, ``[j]`` are
              dropped; a name in backticks (`` `my var` ``) is always a variable.
    *         also ``·`` and ``×``

The level-1 line is the one whose left side is not a coefficient name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bayesmix.errors import SpecError
from bayesmix.spec.model import Coefficient, Gamma, Spec

_COEF = re.compile(r"^(?:b|beta|β|B)_?(\d+)(?:_?j)?$")
_GAMMA = re.compile(r"^(?:g|gamma|γ|G)_?(\d+(?:_\d+)?)$")
_RANDOM = re.compile(r"^(?:U|u)_?(\d+)(?:_?j)?$")
_RESIDUAL = re.compile(r"^(?:e|r|eps|epsilon|ε)(?:_?ij)?$")

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
class _Factor:
    kind: str  # "coef", "gamma", "random", "residual", "var"
    name: str
    pos: int


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
            elif m.group("name"):
                tokens.append(_Token("name", m.group("name"), i + 1))
            elif m.group("number"):
                tokens.append(_Token("number", m.group("number"), i + 1))
            else:
                tokens.append(_Token("op", m.group("op"), i + 1))
        i = m.end()
    return tokens


def _classify(tok: _Token) -> _Factor:
    if tok.kind == "quoted":
        return _Factor("var", tok.text, tok.pos)
    text = tok.text
    for kind, pattern, prefix in (
        ("coef", _COEF, "b"),
        ("gamma", _GAMMA, "g"),
        ("random", _RANDOM, "U"),
    ):
        m = pattern.match(text)
        if m:
            return _Factor(kind, f"{prefix}{m.group(1)}", tok.pos)
    if _RESIDUAL.match(text):
        return _Factor("residual", text, tok.pos)
    return _Factor("var", text, tok.pos)


def _split_terms(tokens: list[_Token], line: str, lineno: int) -> list[list[_Factor]]:
    """Split the right-hand side into '+'-separated products of factors."""
    terms: list[list[_Factor]] = []
    current: list[_Factor] = []
    expect_factor = True
    for tok in tokens:
        if tok.kind == "op":
            if tok.text == "+":
                if expect_factor:
                    raise SpecError(
                        "expected a term before '+'", text=line, line=lineno, position=tok.pos
                    )
                terms.append(current)
                current = []
                expect_factor = True
            elif tok.text in "*·×:":
                if expect_factor:
                    raise SpecError(
                        f"expected a name before {tok.text!r}",
                        text=line,
                        line=lineno,
                        position=tok.pos,
                    )
                expect_factor = True
            elif tok.text == "-":
                raise SpecError(
                    "subtraction is not part of L1/L2 notation: write every term with '+' "
                    "(a γ can be negative)",
                    text=line,
                    line=lineno,
                    position=tok.pos,
                )
            elif tok.text == "=":
                raise SpecError(
                    "a second '=' on one line; write one equation per line",
                    text=line,
                    line=lineno,
                    position=tok.pos,
                )
            else:
                raise SpecError(
                    "parentheses are not part of L1/L2 notation; write the products out "
                    "(e.g. b1*X for b1·(X))",
                    text=line,
                    line=lineno,
                    position=tok.pos,
                )
        elif tok.kind == "number":
            raise SpecError(
                f"a number ({tok.text}) cannot be a term; write coefficients and variables by "
                "name (the intercept is just b0, or g00)",
                text=line,
                line=lineno,
                position=tok.pos,
            )
        else:
            if not expect_factor:
                raise SpecError(
                    f"expected '+' or '*' before {tok.text!r}",
                    text=line,
                    line=lineno,
                    position=tok.pos,
                )
            current.append(_classify(tok))
            expect_factor = False
    if expect_factor:
        pos = tokens[-1].pos + len(tokens[-1].text) if tokens else len(line) + 1
        raise SpecError("the equation ends where a term was expected", text=line, line=lineno,
                        position=min(pos, len(line) + 1))
    terms.append(current)
    return terms


def _variables(term: list[_Factor], line: str, lineno: int) -> tuple[str, ...]:
    """The variables of a product, refusing one that appears twice (``b1*X*X``)."""
    seen: set[str] = set()
    for f in term:
        if f.kind != "var":
            continue
        if f.name in seen:
            v = _name(f.name)
            raise SpecError(
                f"{v} appears twice in one product; squares are not supported yet (a formula "
                f"cannot write them back: `{v}:{v}` means {v} in R). Add a column such as "
                f"{v}_sq = {v}**2 to the data and use it instead",
                text=line,
                line=lineno,
                position=f.pos,
            )
        seen.add(f.name)
    return tuple(f.name for f in term if f.kind == "var")


def _level1(terms, line, lineno):
    coefficients: list[tuple[str, tuple[str, ...]]] = []
    residual_seen = False
    for term in terms:
        kinds = [f.kind for f in term]
        if kinds == ["residual"]:
            if residual_seen:
                raise SpecError("the residual appears twice", text=line, line=lineno,
                                position=term[0].pos)
            residual_seen = True
            continue
        coefs = [f for f in term if f.kind == "coef"]
        bad = [f for f in term if f.kind in ("gamma", "random", "residual")]
        if bad:
            f = bad[0]
            what = {"gamma": "a γ", "random": "a random effect U", "residual": "the residual"}
            raise SpecError(
                f"{what[f.kind]} ({f.name}) belongs in a level-2 equation, not at level 1"
                if f.kind != "residual"
                else "the residual must be a term of its own (`+ e`)",
                text=line,
                line=lineno,
                position=f.pos,
            )
        if len(coefs) != 1:
            pos = term[0].pos if not coefs else coefs[1].pos
            raise SpecError(
                "each level-1 term needs exactly one coefficient (b0, b1, ...), e.g. `b1*X`",
                text=line,
                line=lineno,
                position=pos,
            )
        coefficients.append((coefs[0].name, _variables(term, line, lineno)))
    return coefficients


def _level2(terms, line, lineno):
    gammas: list[Gamma] = []
    random: str | None = None
    for term in terms:
        kinds = [f.kind for f in term]
        if "random" in kinds:
            if kinds != ["random"]:
                raise SpecError(
                    "a random effect U is a term of its own; a U multiplied by a variable is "
                    "written at level 1 (b1*X with b1 = g10 + U1)",
                    text=line,
                    line=lineno,
                    position=term[0].pos,
                )
            if random is not None:
                raise SpecError("a level-2 equation has at most one U term", text=line,
                                line=lineno, position=term[0].pos)
            random = term[0].name
            continue
        bad = [f for f in term if f.kind in ("coef", "residual")]
        if bad:
            f = bad[0]
            raise SpecError(
                f"{f.name} cannot appear in a level-2 equation (only γ's, level-2 variables "
                "and one U)",
                text=line,
                line=lineno,
                position=f.pos,
            )
        gam = [f for f in term if f.kind == "gamma"]
        if len(gam) != 1:
            pos = term[0].pos if not gam else gam[1].pos
            raise SpecError(
                "each level-2 term needs exactly one γ (g00, g01, ...), e.g. `g01*M`",
                text=line,
                line=lineno,
                position=pos,
            )
        gammas.append(Gamma(gam[0].name, _variables(term, line, lineno)))
    return tuple(gammas), random


def parse_equations(text: str) -> tuple[str, tuple[Coefficient, ...]]:
    """Parse L1/L2 equations.

    Parameters
    ----------
    text : str
        The equations, one per line.

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
    if not isinstance(text, str):
        raise SpecError(
            f"the equations are a string (one equation per line), not {type(text).__name__}"
        )
    level1: tuple[int, str, list] | None = None
    level2: dict[str, tuple[int, str, tuple[Gamma, ...], str | None]] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].rstrip()
        stripped = line.strip()
        if not stripped:
            continue
        tokens = _tokenize(line, lineno)
        eq = [i for i, t in enumerate(tokens) if t.kind == "op" and t.text == "="]
        if not eq:
            raise SpecError(
                "expected an equation `LEFT = RIGHT`", text=line, line=lineno,
                position=len(line) - len(line.lstrip()) + 1,
            )
        lhs, rhs = tokens[: eq[0]], tokens[eq[0] + 1 :]
        if len(lhs) != 1 or lhs[0].kind not in ("name", "quoted"):
            pos = lhs[1].pos if len(lhs) > 1 else tokens[eq[0]].pos
            raise SpecError(
                "the left side must be one name: the outcome (level 1) or a coefficient "
                "such as b0 (level 2)",
                text=line,
                line=lineno,
                position=pos,
            )
        if not rhs:
            raise SpecError("the right side is empty", text=line, line=lineno,
                            position=tokens[eq[0]].pos + 1)
        terms = _split_terms(rhs, line, lineno)
        left = _classify(lhs[0])
        if left.kind == "coef":
            if left.name in level2:
                raise SpecError(
                    f"{left.name} has a second level-2 equation (the first is on line "
                    f"{level2[left.name][0]})",
                    text=line,
                    line=lineno,
                    position=left.pos,
                )
            gammas, random = _level2(terms, line, lineno)
            level2[left.name] = (lineno, line, gammas, random)
        elif left.kind in ("var",):
            if level1 is not None:
                raise SpecError(
                    f"a second level-1 equation (the first is on line {level1[0]}); the left "
                    "side of a level-2 equation must be a coefficient such as b0",
                    text=line,
                    line=lineno,
                    position=left.pos,
                )
            level1 = (lineno, left.name, _level1(terms, line, lineno))
        else:
            raise SpecError(
                f"{left.name} cannot be the left side of an equation",
                text=line,
                line=lineno,
                position=left.pos,
            )
    if level1 is None:
        raise SpecError("no level-1 equation (`y = b0 + b1*X + e`) was found")
    l1_line, outcome, l1_terms = level1
    coefficients: list[Coefficient] = []
    for name, variables in l1_terms:
        if name not in level2:
            raise SpecError(
                f"level-1 coefficient {name} has no level-2 equation; add a line such as "
                f"`{name} = g{name[1:]}0` (fixed) or `{name} = g{name[1:]}0 + U{name[1:]}` "
                "(random)",
                line=l1_line,
            )
        _, _, gammas, random = level2[name]
        coefficients.append(Coefficient(name, variables, gammas, random))
    known = {c.name for c in coefficients}
    for name, (lineno, line, _, _) in level2.items():
        if name not in known:
            raise SpecError(
                f"{name} has a level-2 equation but the level-1 equation has no {name}; "
                f"level 1 has {', '.join(sorted(known))}",
                text=line,
                line=lineno,
                position=len(line) - len(line.lstrip()) + 1,
            )
    return outcome, tuple(coefficients)


def _name(var: str) -> str:
    return var if re.fullmatch(r"[^\W\d][\w.]*", var) and _classify(
        _Token("name", var, 1)
    ).kind == "var" else f"`{var}`"


def spec_to_equations(spec: Spec) -> str:
    """Write a Spec as L1/L2 equations that :func:`parse_equations` reads back."""
    l1 = []
    for coef in spec.coefficients:
        l1.append("*".join([coef.name, *(_name(v) for v in coef.variables)]))
    lines = [f"{_name(spec.outcome)} = {' + '.join(l1)} + e"]
    for coef in spec.coefficients:
        parts = ["*".join([g.name, *(_name(v) for v in g.variables)]) for g in coef.gammas]
        if coef.random is not None:
            parts.append(coef.random)
        lines.append(f"{coef.name} = {' + '.join(parts)}")
    return "\n".join(lines)
