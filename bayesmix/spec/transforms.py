"""Transformed and centred variables: ``log(x)``, ``I(x^2)``, ``poly(t, 2)``, ``group(SES)`` ...

A variable of a model is a data column or a *call* written where a column could stand, in the
level equations, a model file or an lme4 formula (R's syntax)::

    log(x)  log2(x)  log10(x)  log1p(x)  exp(x)  expm1(x)  sqrt(x)  abs(x)
    I(x^2)  I(x * z)  I(1/x)   arithmetic + - * / ^ (also **) and numbers, inside any call
    scale(x)  scale(x, scale = FALSE)  scale(x, center = FALSE)       R's scale(): rows
    poly(t, 2)  poly(t, 3, raw = TRUE)     orthogonal polynomials as R's poly(); k columns
    C(x)  C(x, Treatment("b"))  C(x, "b")  a categorical column and its reference level
    group(x)  group(x, g)     x − its mean in each unit of g: (X_ij − X̄_·j), R&B's group-mean
                              centring; g defaults to the level just above x's
    mean(x)  mean(x, g)       the mean of x in each unit of g, X̄_·j (a contextual effect)
    grand(x)                  x − its grand mean: (X_ij − X̄_··), grand-mean centring

Calls nest (``group(log(x))``, ``log(x + 1)``); ``poly`` and ``C`` stand alone.  Means of the
centring calls are taken over *x's units*: the units of the level x belongs to (the coarsest
grouping factor within which x is constant), or the rows when x varies within every factor (a
level-2 variable's grand mean weights every level-2 unit once, as HLM does).  Their values are
computed from the data the fit sees and kept (:mod:`bayesmix.design.derive`), so ``predict``
applies the fitted constants to new data.

The parser turns the text of a call into a tree of typed nodes once, when the Spec is made;
its canonical text (:func:`canonical`) is the variable's name everywhere (``"poly(t, 2)"``),
and :class:`Transform` is what every later stage reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NoReturn

from bayesmix.errors import SpecError

ELEMENTWISE = ("log", "log2", "log10", "log1p", "exp", "expm1", "sqrt", "abs")
CENTRING = ("group", "grand", "mean")
CALLS = (*ELEMENTWISE, *CENTRING, "I", "scale", "poly", "C")
"""Names that start a transformed variable when followed by ``(``."""


@dataclass(frozen=True)
class Column:
    """A data column."""

    name: str


@dataclass(frozen=True)
class Number:
    """A numeric constant."""

    value: float


@dataclass(frozen=True)
class Arith:
    """``op`` applied to ``args``: ``+ - * / ^`` (two arguments) or ``neg`` (one)."""

    op: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Elementwise:
    """``fn(arg)`` value by value (``fn`` in :data:`ELEMENTWISE`), or ``I(arg)`` (identity)."""

    fn: str
    arg: Node


@dataclass(frozen=True)
class Scale:
    """R's ``scale(arg, center, scale)``: (x − mean) / sd over the rows (sd with n − 1)."""

    arg: Node
    center: bool = True
    scale: bool = True


@dataclass(frozen=True)
class Centre:
    """``group(arg, by)``, ``mean(arg, by)`` or ``grand(arg)``; ``by`` None: the default."""

    kind: str  # "group", "mean", "grand"
    arg: Node
    by: str | None = None


@dataclass(frozen=True)
class Poly:
    """``poly(arg, degree, raw)``: R's orthogonal (or raw) polynomials, ``degree`` columns."""

    arg: Node
    degree: int
    raw: bool = False


@dataclass(frozen=True)
class Categorical:
    """``C(column, Treatment(reference))``: the column coded as categorical."""

    column: str
    reference: str | None = None


Node = Column | Number | Arith | Elementwise | Scale | Centre | Poly | Categorical


@dataclass(frozen=True)
class Transform:
    """A transformed variable: its canonical name and the expression tree.

    Attributes
    ----------
    name : str
        Canonical text (``"poly(t, 2)"``): the variable's name in terms, γ labels and X.
    expr : Node
        The parsed expression.
    """

    name: str
    expr: Node

    @property
    def columns(self) -> tuple[str, ...]:
        """The data columns it reads (centring's ``by`` columns included), in order."""
        out: dict[str, None] = {}
        by: list[str] = []
        for node in walk(self.expr):
            if isinstance(node, Column):
                out.setdefault(node.name)
            elif isinstance(node, Categorical):
                out.setdefault(node.column)
            elif isinstance(node, Centre) and node.by is not None:
                by += node.by.split(":")
        return tuple(dict.fromkeys([*out, *by]))

    @property
    def categorical(self) -> bool:
        """Whether it is ``C(...)``: a categorical column."""
        return isinstance(self.expr, Categorical)

    @property
    def width(self) -> int:
        """Numeric columns it gives (``degree`` for poly; 1 otherwise; C: see the coder)."""
        return self.expr.degree if isinstance(self.expr, Poly) else 1


def walk(node: Node):
    """Every node of a tree, parents before children."""
    yield node
    if isinstance(node, Arith):
        for a in node.args:
            yield from walk(a)
    elif isinstance(node, Elementwise | Scale | Centre | Poly):
        yield from walk(node.arg)


def is_call(name: str) -> bool:
    """Whether a variable name is a transformed variable's canonical text."""
    m = re.match(r"([A-Za-z][\w.]*)\(", name)
    return bool(m) and m.group(1) in CALLS and name.endswith(")")


# ---------------------------------------------------------------------- printing
_PREC = {"+": 1, "-": 1, "*": 2, "/": 2, "neg": 3, "^": 4}


def _name(name: str) -> str:
    return name if re.fullmatch(r"[^\W\d][\w.]*", name) else f"`{name}`"


def _num(value: float) -> str:
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _bool(value: bool) -> str:
    return "TRUE" if value else "FALSE"


def to_text(node: Node, parent: int = 0) -> str:
    """The canonical text of a node (R's syntax, one space after commas and around + - * /)."""
    if isinstance(node, Column):
        return _name(node.name)
    if isinstance(node, Number):
        return _num(node.value)
    if isinstance(node, Arith):
        prec = _PREC[node.op]
        if node.op == "neg":
            text = "-" + to_text(node.args[0], prec)
        elif node.op == "^":  # right-associative: the base needs brackets at equal rank
            text = f"{to_text(node.args[0], prec + 1)}^{to_text(node.args[1], prec)}"
        else:
            text = f"{to_text(node.args[0], prec)} {node.op} {to_text(node.args[1], prec + 1)}"
        return f"({text})" if prec < parent else text
    if isinstance(node, Elementwise):
        return f"{node.fn}({to_text(node.arg)})"
    if isinstance(node, Scale):
        opts = "".join(f", {k} = FALSE" for k, v in (("center", node.center),
                                                     ("scale", node.scale)) if not v)
        return f"scale({to_text(node.arg)}{opts})"
    if isinstance(node, Centre):
        by = "" if node.by is None else ", " + (
            _name(node.by) if ":" not in node.by else f'"{node.by}"')
        return f"{node.kind}({to_text(node.arg)}{by})"
    if isinstance(node, Poly):
        raw = ", raw = TRUE" if node.raw else ""
        return f"poly({to_text(node.arg)}, {node.degree}{raw})"
    ref = "" if node.reference is None else f', Treatment("{node.reference}")'
    return f"C({_name(node.column)}{ref})"


# ---------------------------------------------------------------------- parsing
_TOKEN = re.compile(
    r"""(?P<space>\s+)|(?P<quoted>`[^`]+`)|(?P<string>"[^"]*"|'[^']*')
      |(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>[^\W\d][\w.]*)
      |(?P<op>\*\*|[-+*/^(),=])""",
    re.VERBOSE | re.UNICODE,
)


class _Parser:
    """Recursive descent over the text of one call; positions are 1-based in ``line``."""

    def __init__(self, line: str, start: int, end: int, lineno: int | None) -> None:
        self.line, self.lineno = line, lineno
        self.tokens: list[tuple[str, str, int]] = []
        i = start
        while i < end:
            m = _TOKEN.match(line, i, end)
            if m is None:
                self.fail(f"unexpected character {line[i]!r} in a function call", i + 1)
            kind = m.lastgroup or ""
            if kind != "space":
                text = m.group(kind)
                if kind in ("quoted", "string"):
                    text = text[1:-1]
                self.tokens.append((kind, "^" if text == "**" and kind == "op" else text,
                                    i + 1))
            i = m.end()
        self.i = 0
        self.end = end

    def fail(self, message: str, pos: int | None = None) -> NoReturn:
        raise SpecError(message, text=self.line, line=self.lineno, position=pos)

    def peek(self, text: str | None = None) -> tuple[str, str, int] | None:
        tok = self.tokens[self.i] if self.i < len(self.tokens) else None
        if tok is not None and text is not None and (tok[0] != "op" or tok[1] != text):
            return None
        return tok

    def take(self, text: str | None = None) -> tuple[str, str, int]:
        tok = self.peek()
        if tok is None:
            self.fail(f"the call ends where {text or 'a value'!r} was expected", self.end + 1)
        if text is not None and (tok[0] != "op" or tok[1] != text):
            self.fail(f"expected {text!r}, found {tok[1]!r}", tok[2])
        self.i += 1
        return tok

    def expr(self) -> Node:
        left = self.term()
        while (tok := self.peek("+") or self.peek("-")) is not None:
            self.i += 1
            left = Arith(tok[1], (left, self.term()))
        return left

    def term(self) -> Node:
        left = self.unary()
        while (tok := self.peek("*") or self.peek("/")) is not None:
            self.i += 1
            left = Arith(tok[1], (left, self.unary()))
        return left

    def unary(self) -> Node:
        if self.peek("-") is not None:
            self.i += 1
            inner = self.unary()
            if isinstance(inner, Number):
                return Number(-inner.value)
            return Arith("neg", (inner,))
        if self.peek("+") is not None:
            self.i += 1
            return self.unary()
        return self.power()

    def power(self) -> Node:
        base = self.primary()
        if self.peek("^") is not None:
            self.i += 1
            return Arith("^", (base, self.unary()))
        return base

    def primary(self) -> Node:
        kind, text, pos = self.take()
        if kind == "number":
            return Number(float(text))
        if kind == "quoted":
            return Column(text)
        if kind == "name":
            if self.peek("(") is not None:
                return self.call(text, pos)
            return Column(text)
        if kind == "op" and text == "(":
            inner = self.expr()
            self.take(")")
            return inner
        self.fail(f"unexpected {text!r}", pos)

    def args(self) -> list[tuple[str | None, tuple[str, str, int], Node | str, int]]:
        """(keyword, first token, value, position) of each argument; strings stay text."""
        self.take("(")
        out = []
        if self.peek(")") is not None:
            self.i += 1
            return out
        while True:
            tok = self.peek()
            key = None
            if (tok is not None and tok[0] == "name" and self.i + 1 < len(self.tokens)
                    and self.tokens[self.i + 1][:2] == ("op", "=")):
                key = tok[1]
                self.i += 2
            first = self.peek() or self.take()
            if first[0] == "string":
                self.i += 1
                value: Node | str = first[1]
            else:
                value = self.expr()
            out.append((key, first, value, first[2]))
            if self.peek(",") is not None:
                self.i += 1
                continue
            self.take(")")
            return out

    def call(self, fn: str, pos: int) -> Node:
        if fn not in CALLS:
            self.fail(f"unknown function {fn}(); bayesmix knows {', '.join(CALLS)}", pos)
        args = self.args()
        positional = [a for a in args if a[0] is None]
        keywords = {a[0]: a for a in args if a[0] is not None}
        allowed = {"scale": ("center", "scale"), "poly": ("degree", "raw"),
                   "group": ("by",), "mean": ("by",), "C": ("ref", "reference")}.get(fn, ())
        for key, (_, _, _, kpos) in keywords.items():
            if key not in allowed:
                self.fail(f"{fn}() takes no argument {key!r}"
                          + (f" (it takes {', '.join(allowed)})" if allowed else ""), kpos)
        most = {"scale": 1, "poly": 2, "group": 2, "mean": 2, "C": 2}.get(fn, 1)
        if not positional:
            self.fail(f"{fn}() needs a variable, e.g. {fn}(x)", pos)
        if len(positional) > most:
            self.fail(f"{fn}() takes at most {most} positional argument"
                      f"{'s' if most > 1 else ''}", positional[most][3])
        arg = positional[0][2]
        if isinstance(arg, str):
            self.fail(f"{fn}() applies to a variable, not to the text {arg!r}", positional[0][3])
        self._no_nested_columns(fn, arg, pos)
        if fn in ELEMENTWISE or fn == "I":
            return Elementwise(fn, arg)
        if fn == "scale":
            return Scale(arg, self._flag(keywords.get("center"), True),
                         self._flag(keywords.get("scale"), True))
        if fn in CENTRING:
            by_arg = positional[1] if len(positional) > 1 else keywords.get("by")
            if fn == "grand" and by_arg is not None:
                self.fail("grand() centres at the mean of all the data; it takes no grouping "
                          "(use group(x, g) to centre within g)", by_arg[3])
            return Centre(fn, arg, None if by_arg is None else self._by(by_arg))
        if fn == "poly":
            deg_arg = positional[1] if len(positional) > 1 else keywords.get("degree")
            degree = 1 if deg_arg is None else self._int(deg_arg, "the degree of poly()")
            return Poly(arg, degree, self._flag(keywords.get("raw"), False))
        if not isinstance(arg, Column):
            self.fail("C() codes a data column as categorical; write C(x), not C(of an "
                      "expression)", positional[0][3])
        ref_arg = (positional[1] if len(positional) > 1
                   else keywords.get("ref") or keywords.get("reference"))
        return Categorical(arg.name, None if ref_arg is None else self._reference(ref_arg))

    def _no_nested_columns(self, fn: str, arg: Node, pos: int) -> None:
        for node in walk(arg):
            if isinstance(node, Poly | Categorical):
                self.fail(f"{'poly' if isinstance(node, Poly) else 'C'}() gives several "
                          f"columns; it cannot be used inside {fn}()", pos)

    def _flag(self, arg, default: bool) -> bool:
        if arg is None:
            return default
        value = arg[2]
        if isinstance(value, Column) and value.name in ("TRUE", "T", "True"):
            return True
        if isinstance(value, Column) and value.name in ("FALSE", "F", "False"):
            return False
        self.fail(f"{arg[0]} is TRUE or FALSE", arg[3])

    def _int(self, arg, what: str) -> int:
        value = arg[2]
        if isinstance(value, Number) and value.value.is_integer() and 1 <= value.value <= 20:
            return int(value.value)
        self.fail(f"{what} is a whole number from 1 to 20", arg[3])

    def _by(self, arg) -> str:
        value = arg[2]
        if isinstance(value, Column):
            return value.name
        if isinstance(value, str) and value.strip():
            return value.strip()
        self.fail("the grouping of a centring call is a column, e.g. group(x, school)", arg[3])

    def _reference(self, arg) -> str:
        value = arg[2]
        if isinstance(value, str):
            return value
        if isinstance(value, Number):
            return _num(value.value)
        self.fail('the reference level is text: C(x, Treatment("b")) or C(x, "b")', arg[3])


def _treatment(line: str, start: int, end: int) -> str:
    """Rewrite ``Treatment("b")`` / ``Treatment(ref = "b")`` / ``contr.treatment`` to ``"b"``."""
    text = line[start:end]
    pattern = re.compile(r"""(?:Treatment|contr\.treatment)\s*\(\s*(?:(?:ref|reference|base)
                             \s*=\s*)?("[^"]*"|'[^']*'|\d+)\s*\)""", re.VERBOSE)
    return pattern.sub(lambda m: m.group(1) if m.group(1)[0] in "\"'" else f'"{m.group(1)}"',
                       text)


def parse_call(line: str, start: int, lineno: int | None = None) -> tuple[Transform, int]:
    """Parse the call that starts at ``line[start]`` (a name followed by ``(``).

    Returns
    -------
    transform : Transform
    end : int
        Index just after the call's closing ``)``.

    Raises
    ------
    SpecError
        Unbalanced parentheses, an unknown function or a malformed argument, pointing at it.
    """
    end = _closing(line, start, lineno)
    text = _treatment(line, start, end)
    if text == line[start:end]:
        parser = _Parser(line, start, end, lineno)
    else:  # Treatment("b") rewritten to "b": positions refer to the rewritten call
        parser = _Parser(text, 0, len(text), lineno)
    node = parser.expr()
    if parser.peek() is not None:
        tok = parser.peek()
        parser.fail(f"unexpected {tok[1]!r} after the call", tok[2])
    return Transform(to_text(node), node), end


def _closing(line: str, start: int, lineno: int | None) -> int:
    depth, i, quote = 0, start, ""
    while i < len(line):
        ch = line[i]
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'`":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise SpecError("this call's '(' is never closed", text=line, line=lineno,
                    position=start + 1)


def call_at(line: str, start: int, name: str) -> bool:
    """Whether the name at ``line[start]`` starts a call (a known function, then ``(``)."""
    if name not in CALLS:
        return False
    rest = line[start + len(name):]
    return rest.lstrip().startswith("(")


def parse_transform(name: str) -> Transform:
    """The Transform of a variable name that :func:`is_call` accepts (its canonical text)."""
    transform, end = parse_call(name, 0)
    if end != len(name):
        raise SpecError(f"{name!r} is not one call", text=name, position=end + 1)
    return transform
