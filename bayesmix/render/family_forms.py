"""The equations of a non-Gaussian family: the distribution of y, its link, no residual.

Every form of :mod:`bayesmix.render.forms` (one factor) and :mod:`bayesmix.render.factors`
(several) is written for the Gaussian family, where the level-1 equation ends in a residual.
For a GLMM the forms are rewritten, as Raudenbush & Bryk write an HGLM (the level-1 sampling
model, the link, and the structural model on the link scale)::

    Level 1:  y_ij ~ Bernoulli(p_ij)              y_ij ~ Binomial(n_ij, p_ij)
              logit(p_ij) = β_0j + β_1j x_ij      y_ij ~ Poisson(t_ij λ_ij),  log(λ_ij) = ...
    Matrix:   η_j = X_jβ + Z_jU_j,   η_ij = logit(p_ij)
    Priors:   no ε ~ N(0, σ²), no σ

An equation of y whose right side is a sum ends in its residual (ε_ij, ε_j, e, or a column
of residuals): that term is dropped and y is replaced by the link of the mean (scalar forms)
or by η (matrix forms).
"""

from __future__ import annotations

from dataclasses import replace

from bayesmix.families import Family
from bayesmix.render import ir
from bayesmix.render.ir import Call, Equation, Note, Sum, Symbol, Text

_FAMILY_NAMES = {"bernoulli": "Bernoulli", "binomial": "Binomial", "poisson": "Poisson"}
_MEAN_BASE = {"bernoulli": "p", "binomial": "p", "poisson": "lambda"}


def _y_like(node: ir.Node) -> bool:
    return isinstance(node, ir.Matrix) or (isinstance(node, Symbol) and node.base in ("y", "Y"))


def _mean(family: Family, sub: tuple[ir.Node, ...], sep: str = "") -> Symbol:
    return Symbol(_MEAN_BASE[family.name], sub, sep=sep)


def sampling_model(family: Family, y: Symbol, exposure: bool = False) -> ir.Node:
    """``Bernoulli(p_ij)``, ``Binomial(n_ij, p_ij)`` or ``Poisson(λ_ij)`` (``t_ij λ_ij``)."""
    mean = _mean(family, y.sub, y.sep)
    if family.name == "binomial":
        return Call("Binomial", (Symbol("n", y.sub, sep=y.sep), mean))
    if family.name == "poisson" and exposure:
        return Call("Poisson", (ir.Product((Symbol("t", y.sub, sep=y.sep), mean), op="juxt"),))
    return Call(_FAMILY_NAMES[family.name], (mean,))


def _rewrite(eq: Equation, family: Family, exposure: bool,
             sub: tuple[ir.Node, ...] = ()) -> list[ir.Block]:
    terms = eq.rhs.terms[:-1]  # type: ignore[attr-defined]
    rhs = terms[0] if len(terms) == 1 else Sum(tuple(terms))
    lhs = eq.lhs
    if isinstance(lhs, Symbol) and lhs.base == "y":  # scalar: y ~ F(mean), link(mean) = ...
        mean = _mean(family, lhs.sub, lhs.sep)
        dist = sampling_model(family, lhs, exposure)
        return [Equation(lhs, dist, rel="~", label=eq.label, notes=()),
                Equation(Call(family.link, (mean,)), rhs, notes=eq.notes)]
    # matrix forms: η (bold, with the subscript of Y or of the form's Y) on the link scale,
    # the exposure's offset log t included
    sub = lhs.sub if isinstance(lhs, Symbol) else sub
    eta = Symbol("eta", sub, bold=True)
    if family.name == "poisson" and exposure:
        offset = Call("log", (Symbol("t", sub, bold=True),))
        rhs = Sum((*terms, offset))
    return [replace(eq, lhs=eta, rhs=rhs)]


def _no_residual_note(note: Note) -> Note:
    parts = tuple(Text(p.text.replace(" and of the residuals", "")) if isinstance(p, Text)
                  else p for p in note.parts)
    return Note(parts)


def glmm_form(form: ir.FormIR, family: Family, exposure: bool = False) -> ir.FormIR:
    """Rewrite one Gaussian form for ``family`` (module docstring)."""
    if family.is_gaussian:
        return form
    blocks: list[ir.Block] = []
    matrix_note = False
    sub: tuple[ir.Node, ...] = ()
    for block in form.blocks:
        if isinstance(block, Note):
            blocks.append(_no_residual_note(block))
            continue
        if (block.rel == "=" and _y_like(block.lhs) and isinstance(block.rhs, Sum)
                and len(block.rhs.terms) > 1):
            if isinstance(block.lhs, Symbol):
                sub = block.lhs.sub
            new = _rewrite(block, family, exposure, sub)
            blocks.extend(new)
            matrix_note = matrix_note or not isinstance(new[0].lhs, Symbol) or new[0].lhs.bold
            continue
        if block.rel == "~" and isinstance(block.lhs, Symbol) and block.lhs.base == "epsilon":
            y = Symbol("y", block.lhs.sub, sep=block.lhs.sep)
            mean = _mean(family, y.sub, y.sep)
            blocks.append(Equation(y, sampling_model(family, y, exposure), rel="~",
                                   label="Outcome"))
            # η includes the offset log t (as glmer's link-scale predictions do)
            inner = (ir.Product((Symbol("t", y.sub, sep=y.sep), mean), op="juxt")
                     if family.name == "poisson" and exposure else mean)
            blocks.append(Equation(Call(family.link, (inner,)),
                                   Symbol("eta", y.sub, sep=y.sep)))
            continue
        if block.rel == "~" and isinstance(block.lhs, Symbol) and block.lhs.base == "sigma":
            continue  # no residual SD
        blocks.append(block)
    if matrix_note:
        mean = _mean(family, (ir.Ident("i"),))
        if family.name == "poisson" and exposure:
            mean = ir.Product((Symbol("t", (ir.Ident("i"),)), mean), op="juxt")
        blocks.append(Note((Text("on the link scale: η_i = "), Call(family.link, (mean,)),
                            Text(f"; y_i ~ {_FAMILY_NAMES[family.name]} given η_i, no "
                                 "residual e"))))
    return replace(form, blocks=tuple(blocks))
