"""The intermediate representation of equations: a small tree of frozen dataclasses.

Every output format (LaTeX, Markdown with math, plain text) is a renderer of this tree; no
format is assembled from another's output strings.  The tree has two layers:

* **math nodes** (:class:`Node` subclasses) -- symbols with subscripts, data variables,
  numbers, products, sums, matrices with elision cells, function applications;
* **blocks** -- :class:`Equation` (one relation with an optional label and notes) and
  :class:`Note` (a line of prose mixed with math), collected in a :class:`Form`.

Symbols follow :mod:`bayesmix.notation`: ``Symbol("y", (Ident("ij"),))`` is y_ij,
``Symbol("beta", (Ident("0j"),))`` is β_0j, ``Symbol("gamma", ...)`` γ, ``Symbol("U", ...)``
U_qj, ``Symbol("epsilon", ...)`` ε_ij, ``Symbol("sigma")`` σ and ``Symbol("T")`` T = Cov(U_j).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

#: Greek letter names a :class:`Symbol` may use as its base.
GREEK = (
    "alpha", "beta", "gamma", "delta", "epsilon", "eta", "lambda", "mu", "nu", "sigma", "tau",
    "Sigma", "Omega", "pi", "theta",
)


class Node:
    """Base class of math nodes."""


@dataclass(frozen=True)
class Ident(Node):
    """A short math identifier written as is: subscripts such as ``"0j"``, ``"ij"``, ``"1"``.

    Only ASCII letters and digits; anything else (cluster labels, factor levels) is a
    :class:`Text` node.
    """

    text: str

    def __post_init__(self) -> None:
        if not self.text.isascii() or not self.text.isalnum():
            raise ValueError(f"Ident takes ASCII letters and digits only, not {self.text!r}")


@dataclass(frozen=True)
class Dot(Node):
    """The index averaged over in a mean's subscript: the · of X̄_·j and X̄_··."""


@dataclass(frozen=True)
class Text(Node):
    """Upright prose or a label (a cluster, a factor level); escaped by each renderer."""

    text: str


@dataclass(frozen=True)
class Symbol(Node):
    r"""A mathematical symbol with optional subscript and superscript.

    Attributes
    ----------
    base : str
        A Greek letter name from :data:`GREEK` (``"beta"``) or Latin letters (``"y"``, ``"U"``).
    sub : tuple of Node
        Subscript parts, joined by ``sep`` (``("0", "j")`` -> ``0j``; with ``sep=","`` ->
        ``0,j``).
    sup : Node or None
        Superscript.
    sep : str
        ``""`` or ``","``.
    bold : bool
        Vector or matrix (``\\mathbf{X}``, ``\\boldsymbol{\\beta}``).
    hat : bool
        An estimate (``\\hat{\\beta}``).
    """

    base: str
    sub: tuple[Node, ...] = ()
    sup: Node | None = None
    sep: str = ""
    bold: bool = False
    hat: bool = False


@dataclass(frozen=True)
class Var(Node):
    r"""A data variable (a column name), with the subscript of its level.

    ``Var("X", (Ident("ij"),))`` is X_ij; ``Var("MEANSES", (Ident("j"),))`` is MEANSES_j.  The
    name is escaped by each renderer (LaTeX: a single ASCII letter stays italic, anything else
    goes in ``\\text{}`` with ``_ % & # $ { } ~ ^ \\`` escaped).
    """

    name: str
    sub: tuple[Node, ...] = ()


@dataclass(frozen=True)
class Indicator(Node):
    """A treatment-coded categorical column: ``[Sector_j = Catholic]`` (1 if so, else 0)."""

    var: Var
    level: str


@dataclass(frozen=True)
class Num(Node):
    """A number, printed with ``digits`` significant digits (see :func:`split_number`)."""

    value: float
    digits: int = 7


@dataclass(frozen=True)
class Product(Node):
    """Factors multiplied.

    ``op="cdot"`` (γ_11 · M_j · X_ij, as the seed writes), ``"times"`` (X × M, for naming an
    interaction) or ``"juxt"`` (Xβ).
    """

    factors: tuple[Node, ...]
    op: Literal["cdot", "times", "juxt"] = "cdot"


@dataclass(frozen=True)
class Sum(Node):
    """Terms added; a term whose value is a negative number is printed with a minus."""

    terms: tuple[Node, ...]


@dataclass(frozen=True)
class Paren(Node):
    """Parentheses around a node."""

    inner: Node


@dataclass(frozen=True)
class Power(Node):
    """``base`` to the power ``exp`` (σ²)."""

    base: Node
    exp: Node


@dataclass(frozen=True)
class Transpose(Node):
    """The transpose ``inner``ᵀ."""

    inner: Node


@dataclass(frozen=True)
class Frac(Node):
    """An inline quotient ``num / den``."""

    num: Node
    den: Node


@dataclass(frozen=True)
class Sqrt(Node):
    """A square root."""

    inner: Node


@dataclass(frozen=True)
class Bar(Node):
    """An overline (a sample mean, ȳ)."""

    inner: Node


@dataclass(frozen=True)
class Call(Node):
    """A named function or distribution applied to arguments: ``Normal(0, 1)``, ``sd(U_0)``.

    ``name="N"`` is the normal distribution written as in the seeds' notation (𝒩).
    """

    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Keyword(Node):
    """A named argument ``key = value`` (ν = 3)."""

    key: Node
    value: Node


@dataclass(frozen=True)
class Dots(Node):
    """An elision cell: ``"v"`` ⋮ (rows left out), ``"h"`` ⋯ (columns left out), ``"d"`` ⋱."""

    kind: Literal["v", "h", "d"]


@dataclass(frozen=True)
class Matrix(Node):
    """A matrix or column vector in brackets; rows of equal length, cells may be :class:`Dots`.

    Attributes
    ----------
    rows : tuple of tuple of Node
        ``rows[r][c]``; shape (R, C).
    """

    rows: tuple[tuple[Node, ...], ...]

    def __post_init__(self) -> None:
        widths = {len(r) for r in self.rows}
        if len(widths) > 1:
            raise ValueError(f"matrix rows of unequal length {sorted(widths)}")

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) as displayed, elision rows and columns included."""
        return len(self.rows), (len(self.rows[0]) if self.rows else 0)


# ---------------------------------------------------------------------------- blocks
@dataclass(frozen=True)
class Note:
    """A line of prose mixed with math: :class:`Text` parts are prose, other nodes are math."""

    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Equation:
    """``lhs rel rhs`` with an optional label (``"L1"``) and notes shown with it.

    Attributes
    ----------
    lhs, rhs : Node
    rel : {"=", "~"}
        Equality or "is distributed as".
    label : str or None
        Shown before the equation (``"Level 1"``).
    notes : tuple of Note
        Annotations such as ``γ_11: cross-level interaction X × M``.
    """

    lhs: Node
    rhs: Node
    rel: Literal["=", "~"] = "="
    label: str | None = None
    notes: tuple[Note, ...] = ()


Block = Equation | Note


@dataclass(frozen=True)
class FormIR:
    """One display: a title and its blocks, rendered together."""

    name: str
    title: str
    blocks: tuple[Block, ...]


# ---------------------------------------------------------------------------- numbers
def split_number(value: float, digits: int) -> tuple[bool, str, int | None]:
    """Decide how a number is printed, for every renderer alike.

    Integers print without a decimal point; other numbers get ``digits`` significant digits,
    trailing zeros dropped, in fixed notation when 1e-4 <= |x| < 10**digits and as
    ``m × 10^k`` otherwise (the rule of C's ``%g``).

    Parameters
    ----------
    value : float
    digits : int
        Significant digits, at least 1.

    Returns
    -------
    negative : bool
        Whether a minus sign goes in front.
    mantissa : str
        The digits without sign, e.g. ``"0.1662317"`` or ``"3.466743"``.
    exponent : int or None
        The power of ten, or None in fixed notation.
    """
    value = float(value)
    if math.isnan(value):
        return False, "NaN", None
    if math.isinf(value):
        return value < 0, "inf", None
    negative = value < 0 and value != 0
    mag = abs(value)
    if mag == int(mag) and mag < 1e15:
        return negative, str(int(mag)), None
    text = f"{mag:.{max(int(digits), 1)}g}"
    if "e" in text:
        mant, _, exp = text.partition("e")
        return negative, mant, int(exp)
    return negative, text, None


def negated(node: Node) -> Node | None:
    """Return the node without its leading minus sign, or None when it has none.

    A negative :class:`Num`, or a :class:`Product` whose first factor is one (a factor of
    -1 disappears: ``-1 · X`` gives ``X``).  Renderers print ``a - b`` for such a term of a
    :class:`Sum`.
    """
    if isinstance(node, Num) and node.value < 0:
        return Num(-node.value, node.digits)
    if isinstance(node, Product) and node.factors:
        first = negated(node.factors[0])
        if first is None:
            return None
        rest = node.factors[1:]
        if isinstance(first, Num) and first.value == 1 and rest:
            return rest[0] if len(rest) == 1 else Product(rest, node.op)
        return Product((first, *rest), node.op)
    return None
