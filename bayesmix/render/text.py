"""Plain-text (unicode) renderer of the equation IR.

Subscripts are written with an underscore as in the issue's examples (``y_ij``, ``β_0j``,
``γ_00``, ``X_ij``); a subscript of several parts or with a nested subscript is braced
(``y_{n_j j}``).  Matrices are drawn in two dimensions with ``⎡ ⎢ ⎣`` brackets; every node
renders to a :class:`Box` (lines plus a baseline) and boxes are joined side by side on their
baselines.
"""

from __future__ import annotations

from dataclasses import dataclass

from bayesmix.render import ir

_GREEK = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "eta": "η",
    "lambda": "λ", "mu": "μ", "nu": "ν", "sigma": "σ", "tau": "τ", "Sigma": "Σ", "Omega": "Ω",
    "pi": "π", "theta": "θ",
}
_SUPERSCRIPT = str.maketrans("0123456789-+", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺")
_DOTS = {"v": "⋮", "h": "⋯", "d": "⋱"}
_OPS = {"cdot": "·", "times": " × ", "juxt": ""}
_CALLS = {"N": "N"}


@dataclass(frozen=True)
class Box:
    """A block of text lines with the row (``base``) that aligns with neighbours."""

    lines: tuple[str, ...]
    base: int = 0

    @property
    def width(self) -> int:
        """Width of the widest line."""
        return max((len(s) for s in self.lines), default=0)

    @property
    def height(self) -> int:
        """Number of lines."""
        return len(self.lines)


def _line(text: str) -> Box:
    return Box((text,), 0)


def hjoin(*boxes: Box | str) -> Box:
    """Place boxes side by side, their baselines on one row.

    Parameters
    ----------
    *boxes : Box or str
        Strings are one-line boxes.

    Returns
    -------
    Box
    """
    items = [_line(b) if isinstance(b, str) else b for b in boxes]
    above = max((b.base for b in items), default=0)
    below = max((b.height - b.base - 1 for b in items), default=0)
    height = above + below + 1
    rows = [""] * height
    for b in items:
        w = b.width
        top = above - b.base
        for r in range(height):
            k = r - top
            cell = b.lines[k] if 0 <= k < b.height else ""
            rows[r] += cell.ljust(w)
    return Box(tuple(rows), above)


def _is_simple(parts: tuple[ir.Node, ...]) -> bool:
    if len(parts) != 1:
        return False
    p = parts[0]
    return isinstance(p, ir.Ident | ir.Text) or (
        isinstance(p, ir.Symbol) and not p.sub and p.sup is None
    )


def _sub(parts: tuple[ir.Node, ...], sep: str) -> str:
    if not parts:
        return ""
    inner = sep.join(flat(p) for p in parts)
    if _is_simple(parts) or (sep == "" and all(isinstance(p, ir.Ident | ir.Dot)
                                               for p in parts)):
        return "_" + inner
    if sep == "":
        inner = " ".join(flat(p) for p in parts)
    return "_{" + inner + "}"


def _number(n: ir.Num) -> str:
    negative, mant, exp = ir.split_number(n.value, n.digits)
    out = mant if exp is None else f"{mant}×10{str(exp).translate(_SUPERSCRIPT)}"
    if mant == "inf":
        out = "∞"
    return ("-" if negative else "") + out


def _symbol_base(sym: ir.Symbol) -> str:
    base = _GREEK.get(sym.base, sym.base)
    if sym.hat:
        base = "hat(" + base + ")" if len(base) > 1 else base + "\u0302"
    return base


def _factor_box(n: ir.Node) -> Box:
    if isinstance(n, ir.Sum) and len(n.terms) > 1:
        return hjoin("(", box(n), ")")
    return box(n)


def flat(n: ir.Node) -> str:
    """Render a node that is one line (no matrix inside) to a string."""
    b = box(n)
    if b.height != 1:
        raise ValueError("a multi-line node cannot be flattened to one line")
    return b.lines[0]


def box(n: ir.Node) -> Box:
    """Render one math node to a text box.

    Parameters
    ----------
    n : ir.Node

    Returns
    -------
    Box
    """
    if isinstance(n, ir.Ident | ir.Text):
        return _line(n.text)
    if isinstance(n, ir.Dot):
        return _line("·")
    if isinstance(n, ir.Symbol):
        out = _symbol_base(n) + _sub(n.sub, n.sep)
        if n.sup is not None:
            out += "^" + flat(n.sup)
        return _line(out)
    if isinstance(n, ir.Var):
        return _line(n.name + _sub(n.sub, ""))
    if isinstance(n, ir.Indicator):
        return _line("[" + flat(n.var) + " = " + n.level + "]")
    if isinstance(n, ir.Num):
        return _line(_number(n))
    if isinstance(n, ir.Product):
        parts: list[Box | str] = []
        for k, f in enumerate(n.factors):
            if k:
                parts.append(_OPS[n.op])
            parts.append(_factor_box(f))
        return hjoin(*parts)
    if isinstance(n, ir.Sum):
        parts = []
        for k, term in enumerate(n.terms):
            neg = ir.negated(term)
            if k == 0:
                parts.append(box(term))
            elif neg is not None:
                parts.extend((" - ", box(neg)))
            else:
                parts.extend((" + ", box(term)))
        return hjoin(*parts)
    if isinstance(n, ir.Paren):
        return hjoin("(", box(n.inner), ")")
    if isinstance(n, ir.Power):
        exp = flat(n.exp)
        exp = exp.translate(_SUPERSCRIPT) if exp.lstrip("-").isdigit() else "^" + exp
        base = box(n.base)
        if not isinstance(n.base, ir.Symbol | ir.Var | ir.Ident | ir.Num):
            base = hjoin("(", base, ")")
        return hjoin(base, exp)
    if isinstance(n, ir.Transpose):
        return hjoin(_factor_box(n.inner), "ᵀ")
    if isinstance(n, ir.Frac):
        return hjoin(_factor_box(n.num), "/", _factor_box(n.den))
    if isinstance(n, ir.Sqrt):
        return hjoin("√(", box(n.inner), ")")
    if isinstance(n, ir.Bar):
        inner = flat(n.inner)
        return _line(inner + "\u0304" if len(inner) == 1 else "mean(" + inner + ")")
    if isinstance(n, ir.Call):
        parts = [_CALLS.get(n.name, n.name) + "("]
        for k, a in enumerate(n.args):
            if k:
                parts.append(", ")
            parts.append(box(a))
        parts.append(")")
        return hjoin(*parts)
    if isinstance(n, ir.Keyword):
        return hjoin(box(n.key), " = ", box(n.value))
    if isinstance(n, ir.Dots):
        return _line(_DOTS[n.kind])
    if isinstance(n, ir.Matrix):
        return _matrix(n)
    raise TypeError(f"no text rendering for {type(n).__name__}")


def _matrix(m: ir.Matrix) -> Box:
    cells = [[flat(c) for c in row] for row in m.rows]
    n_rows, n_cols = m.shape
    widths = [max(len(cells[r][c]) for r in range(n_rows)) for c in range(n_cols)]
    lines = []
    for r in range(n_rows):
        parts = []
        for c in range(n_cols):
            cell = cells[r][c]
            numeric = isinstance(m.rows[r][c], ir.Num)
            parts.append(cell.rjust(widths[c]) if numeric else cell.center(widths[c]))
        lines.append(" ".join(parts))
    if n_rows == 1:
        return Box(("[" + lines[0] + "]",), 0)
    out = []
    for r, text in enumerate(lines):
        left, right = ("⎡", "⎤") if r == 0 else (("⎣", "⎦") if r == n_rows - 1 else ("⎢", "⎥"))
        out.append(f"{left}{text}{right}")
    return Box(tuple(out), (n_rows - 1) // 2)


def note(nt: ir.Note) -> str:
    """Render a note to one line."""
    return "".join(flat(p) if not isinstance(p, ir.Text) else p.text for p in nt.parts)


def equation_box(eq: ir.Equation) -> tuple[Box, Box]:
    """Render the left side and the relation-plus-right side of an equation as boxes."""
    rel = " = " if eq.rel == "=" else " ~ "
    return box(eq.lhs), hjoin(rel, box(eq.rhs))


def form(f: ir.FormIR) -> str:
    """Render a form: labels in a column, left sides right-aligned, notes under equations.

    Parameters
    ----------
    f : ir.FormIR

    Returns
    -------
    str
        Lines joined by newlines, trailing spaces removed.
    """
    eqs = [b for b in f.blocks if isinstance(b, ir.Equation)]
    label_w = max((len(b.label) + 2 for b in eqs if b.label), default=0)
    sides = {id(b): equation_box(b) for b in eqs}
    lhs_w = max((sides[id(b)][0].width for b in eqs), default=0)
    out: list[str] = []
    for block in f.blocks:
        if isinstance(block, ir.Equation):
            lhs, rhs = sides[id(block)]
            label = (block.label + ": ") if block.label else ""
            lhs = Box(tuple(s.rjust(lhs_w) for s in lhs.lines), lhs.base)
            joined = hjoin(label.ljust(label_w), lhs, rhs)
            out.extend(joined.lines)
            indent = " " * (label_w + lhs_w + 3)
            out.extend(indent + "# " + note(nt) for nt in block.notes)
        else:
            out.append(" " * label_w + note(block))
    return "\n".join(line.rstrip() for line in out)
