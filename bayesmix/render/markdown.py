r"""Markdown-with-math renderer of the equation IR (Jupyter, GitHub, MkDocs with MathJax/KaTeX).

The structure is Markdown's own: a bold title, runs of consecutive equations in one
``$$\\begin{aligned} ... \\end{aligned}$$`` block, and notes as Markdown bullet lines whose
prose is Markdown-escaped and whose math parts are inline ``$...$``.  The math inside the
dollars is LaTeX by definition; it comes from :mod:`bayesmix.render.latex`'s node renderer
applied to the IR, never from another format's output string.
"""

from __future__ import annotations

from bayesmix.render import ir, latex

_MD_SPECIAL = set("\\`*_[]<>#|$")


def escape(text: str) -> str:
    """Escape Markdown's inline specials (and ``$``, which starts math) in prose.

    Parameters
    ----------
    text : str

    Returns
    -------
    str
    """
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in text)


def note(nt: ir.Note) -> str:
    """Render a note as one Markdown line: prose escaped, math parts as ``$...$``."""
    out = []
    for part in nt.parts:
        if isinstance(part, ir.Text):
            out.append(escape(part.text))
        else:
            out.append("$" + latex.node(part) + "$")
    return "".join(out)


def _math_block(eqs: list[ir.Equation]) -> str:
    rows = []
    for eq in eqs:
        label = (
            r"\text{" + latex.escape_text(eq.label) + r":}\quad" if eq.label else ""
        )
        rel = "=" if eq.rel == "=" else r"\sim"
        rows.append(f"{label} && {latex.node(eq.lhs)} &{rel} {latex.node(eq.rhs)}")
    return "$$\n\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}\n$$"


def form(f: ir.FormIR) -> str:
    """Render a form to Markdown with math.

    Parameters
    ----------
    f : ir.FormIR

    Returns
    -------
    str
    """
    chunks = [f"**{escape(f.title)}**"]
    run: list[ir.Equation] = []

    def flush() -> None:
        if not run:
            return
        chunks.append(_math_block(run))
        notes = [note(nt) for eq in run for nt in eq.notes]
        if notes:
            chunks.append("\n".join(f"- {line}" for line in notes))
        run.clear()

    for block in f.blocks:
        if isinstance(block, ir.Equation):
            run.append(block)
        else:
            flush()
            chunks.append(note(block))
    flush()
    return "\n\n".join(chunks)
