r"""LaTeX renderer of the equation IR (amsmath; also valid KaTeX / MathJax input).

A form renders to one ``aligned`` environment (math mode, without delimiters) so it can be
pasted into ``\\[ ... \\]``, ``equation*`` or ``$$ ... $$``.  Variable names are escaped:
a single ASCII letter stays an italic math letter (X_{ij}, as the seeds write); any other name
goes into ``\\text{}`` with ``\\ { } $ & # ^ _ ~ %`` escaped; unicode is kept in text mode.
"""

from __future__ import annotations

from bayesmix.render import ir

_GREEK_CMD = {name: "\\" + name for name in ir.GREEK}
_TEXT_ESCAPES = {
    "\\": r"\textbackslash{}",
    "{": r"\{",
    "}": r"\}",
    "$": r"\$",
    "&": r"\&",
    "#": r"\#",
    "^": r"\textasciicircum{}",
    "_": r"\_",
    "~": r"\textasciitilde{}",
    "%": r"\%",
}
_DOTS = {"v": r"\vdots", "h": r"\cdots", "d": r"\ddots"}
_OPS = {"cdot": r" \cdot ", "times": r" \times ", "juxt": ""}
_CALLS = {"N": r"\mathcal{N}"}


def escape_text(text: str) -> str:
    r"""Escape a string for LaTeX text mode (inside ``\\text{}``).

    Parameters
    ----------
    text : str

    Returns
    -------
    str
    """
    return "".join(_TEXT_ESCAPES.get(ch, ch) for ch in text)


def _is_plain_letter(name: str) -> bool:
    return len(name) == 1 and name.isascii() and name.isalpha()


def _sub(parts: tuple[ir.Node, ...], sep: str) -> str:
    if not parts:
        return ""
    return "_{" + sep.join(node(p) for p in parts) + "}"


def _base(sym: ir.Symbol) -> str:
    if sym.base in _GREEK_CMD:
        out = _GREEK_CMD[sym.base]
        if sym.bold:
            out = r"\boldsymbol{" + out + "}"
    elif sym.base.isascii() and sym.base.isalnum():
        out = r"\mathbf{" + sym.base + "}" if sym.bold else sym.base
    else:
        out = r"\text{" + escape_text(sym.base) + "}"
    if sym.hat:
        out = r"\hat{" + out + "}"
    return out


def _number(n: ir.Num) -> str:
    negative, mant, exp = ir.split_number(n.value, n.digits)
    out = mant if exp is None else f"{mant} \\times 10^{{{exp}}}"
    if mant == "inf":
        out = r"\infty"
    return ("-" if negative else "") + out


def _factor(n: ir.Node) -> str:
    """Render a factor of a product: sums get parentheses."""
    if isinstance(n, ir.Sum) and len(n.terms) > 1:
        return r"\left(" + node(n) + r"\right)"
    return node(n)


def node(n: ir.Node) -> str:
    """Render one math node to LaTeX.

    Parameters
    ----------
    n : ir.Node

    Returns
    -------
    str
        Math-mode LaTeX.
    """
    if isinstance(n, ir.Ident):
        return n.text
    if isinstance(n, ir.Dot):
        return r"{\cdot}"
    if isinstance(n, ir.Text):
        return r"\text{" + escape_text(n.text) + "}"
    if isinstance(n, ir.Symbol):
        out = _base(n) + _sub(n.sub, n.sep)
        if n.sup is not None:
            out += "^{" + node(n.sup) + "}"
        return out
    if isinstance(n, ir.Var):
        base = n.name if _is_plain_letter(n.name) else r"\text{" + escape_text(n.name) + "}"
        return base + _sub(n.sub, "")
    if isinstance(n, ir.Indicator):
        return r"\left[" + node(n.var) + " = " + node(ir.Text(n.level)) + r"\right]"
    if isinstance(n, ir.Num):
        return _number(n)
    if isinstance(n, ir.Product):
        return _OPS[n.op].join(_factor(f) for f in n.factors)
    if isinstance(n, ir.Sum):
        out = ""
        for k, term in enumerate(n.terms):
            neg = ir.negated(term)
            if k == 0:
                out = node(term)
            elif neg is not None:
                out += " - " + node(neg)
            else:
                out += " + " + node(term)
        return out
    if isinstance(n, ir.Paren):
        return r"\left(" + node(n.inner) + r"\right)"
    if isinstance(n, ir.Power):
        base = node(n.base)
        if not isinstance(n.base, ir.Symbol | ir.Var | ir.Ident | ir.Num):
            base = r"\left(" + base + r"\right)"
        return "{" + base + "}^{" + node(n.exp) + "}"
    if isinstance(n, ir.Transpose):
        return "{" + node(n.inner) + r"}^{\top}"
    if isinstance(n, ir.Frac):
        return _factor(n.num) + " / " + _factor(n.den)
    if isinstance(n, ir.Sqrt):
        return r"\sqrt{" + node(n.inner) + "}"
    if isinstance(n, ir.Bar):
        if isinstance(n.inner, ir.Var):  # a variable's mean: \overline{X}_{\cdot j}
            inner = n.inner
            base = (inner.name if _is_plain_letter(inner.name)
                    else r"\text{" + escape_text(inner.name) + "}")
            return r"\overline{" + base + "}" + _sub(inner.sub, "")
        return r"\bar{" + node(n.inner) + "}"
    if isinstance(n, ir.Call):
        name = _CALLS.get(n.name) or r"\operatorname{" + escape_text(n.name) + "}"
        return name + r"\left(" + ",\\ ".join(node(a) for a in n.args) + r"\right)"
    if isinstance(n, ir.Keyword):
        return node(n.key) + " = " + node(n.value)
    if isinstance(n, ir.Dots):
        return _DOTS[n.kind]
    if isinstance(n, ir.Matrix):
        body = r" \\ ".join(" & ".join(node(c) for c in row) for row in n.rows)
        return r"\begin{bmatrix} " + body + r" \end{bmatrix}"
    raise TypeError(f"no LaTeX rendering for {type(n).__name__}")


def note(nt: ir.Note) -> str:
    r"""Render a note as math with its prose in ``\\text{}``."""
    return " ".join(node(p) for p in nt.parts)


def equation(eq: ir.Equation) -> str:
    r"""Render an equation alone (no alignment), e.g. ``y_{ij} = \\gamma_{00} + ...``."""
    rel = "=" if eq.rel == "=" else r"\sim"
    return f"{node(eq.lhs)} {rel} {node(eq.rhs)}"


def form(f: ir.FormIR) -> str:
    """Render a form as one ``aligned`` environment.

    Columns: label (right) | empty | left side (right) | relation and right side (left).
    Notes of an equation follow on their own rows, under the right side.

    Parameters
    ----------
    f : ir.FormIR

    Returns
    -------
    str
        Math-mode LaTeX (no ``$$`` delimiters).
    """
    rows: list[str] = []
    for block in f.blocks:
        if isinstance(block, ir.Equation):
            label = r"\text{" + escape_text(block.label) + r":}\quad" if block.label else ""
            rel = "=" if block.rel == "=" else r"\sim"
            rows.append(f"{label} && {node(block.lhs)} &{rel} {node(block.rhs)}")
            for nt in block.notes:
                rows.append(r"&& &\quad " + note(nt))
        else:
            rows.append(r"&& &" + note(block))
    return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"
