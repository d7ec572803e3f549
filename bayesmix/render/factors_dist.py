"""Distributions and priors of models with several grouping factors.

Each factor g has its own covariance: ``u_gj ~ N(0, T_(g))`` independently over its units j,
T_(g) diagonal for ``||`` and block-diagonal for several blocks over one factor; the factors'
effects are independent of each other and of the residuals.  The priors are those of
:func:`bayesmix.resolve_priors` (one SD prior per effect of every factor, an LKJ prior per
correlated block of two or more effects).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bayesmix.render import forms, ir
from bayesmix.render.factors import resid_sym
from bayesmix.render.factors_layout import FactorView, Layout, term_name
from bayesmix.render.factors_tree import layout
from bayesmix.render.ir import (
    Equation,
    FormIR,
    Ident,
    Keyword,
    Matrix,
    Note,
    Num,
    Product,
    Symbol,
    Text,
)

if TYPE_CHECKING:
    from bayesmix.priors import Prior, ResolvedPriors
    from bayesmix.render.forms import Context


def t_sym(f: FactorView, hat: bool = False) -> Symbol:
    """T_(childid), the covariance of one unit's effects."""
    return Symbol("T", (Text(f"({f.label})"),), hat=hat)


def _corr_args(f: FactorView, cols: tuple[int, ...]) -> tuple[ir.Node, ...]:
    if len(cols) == len(f.effects):
        return (Symbol(f.letter, (Ident(f.tail),), bold=True),)
    return tuple(f.sym(f.effects[c]) for c in cols)


def _t_note(f: FactorView) -> Note:
    unit = [Text(", independent across units "), Symbol(f.index), Text(f" of {f.name}")]
    if len(f.effects) == 1:
        return Note((t_sym(f), Text(" = "), ir.Call("Var", (f.sym(f.effects[0]),)), *unit))
    q = len(f.effects)
    cov = ir.Call("Cov", (Symbol(f.letter, (Ident(f.tail),), bold=True),))
    shape = f", {q} by {q}"
    if not f.correlated:
        shape += (", diagonal (||: the effects are independent)"
                  if all(len(c) == 1 for c in f.groups) else
                  ", block-diagonal (independent blocks)")
    return Note((t_sym(f), Text(" = "), cov, Text(shape), *unit))


def distributions(ctx: Context) -> FormIR:
    """Random effects factor by factor, residuals, estimates and priors.

    Returns
    -------
    FormIR
    """
    lay = layout(ctx)
    blocks: list[ir.Block] = []
    for k, f in enumerate(lay.factors):
        zero = Num(0.0) if len(f.effects) == 1 else Symbol("0", bold=True)
        blocks.append(Equation(f.vector(), ir.Call("N", (zero, t_sym(f))), rel="~",
                               label="Random effects" if k == 0 else None,
                               notes=(_t_note(f),)))
    blocks.append(Note((Text("the effects of different factors are independent of each other "
                             "and of the residuals"),)))
    blocks.append(Equation(resid_sym(lay),
                           ir.Call("N", (Num(0.0), ir.Power(Symbol("sigma"), Num(2.0)))),
                           rel="~", label="Residuals"))
    est = ctx.estimates
    if est is not None:
        by_name = {fe.name: fe for fe in est.factors}
        for k, f in enumerate(lay.factors):
            t_hat = by_name[f.name].T
            value: ir.Node = (Num(float(t_hat[0, 0]), ctx.digits) if t_hat.shape == (1, 1) else
                              Matrix(tuple(tuple(Num(float(x), ctx.digits) for x in row)
                                           for row in t_hat)))
            notes = (Note((Text(f"{est.source}; each "), Symbol("T", hat=True),
                           Text(" from the estimated SDs and correlations")),),) if k == 0 else ()
            blocks.append(Equation(t_sym(f, hat=True), value,
                                   label="Estimates" if k == 0 else None, notes=notes))
        blocks.append(Equation(Symbol("sigma", hat=True), Num(est.sigma, ctx.digits)))
    blocks.extend(_priors(ctx, lay))
    return FormIR("distributions", "Distributions and priors", tuple(blocks))


def _offsets(ctx: Context, lay: Layout) -> dict[str, int]:
    """Position of each factor's first effect in the SD prior vector (the design's order)."""
    order = ([fe.name for fe in ctx.design.effects] if ctx.design is not None
             else list(ctx.spec.groupings))
    sizes = {f.name: len(f.effects) for f in lay.factors}
    out, k = {}, 0
    for name in order:
        out[name] = k
        k += sizes[name]
    return out


def _corr_priors(lay: Layout, eta: float) -> list[ir.Block]:
    out: list[ir.Block] = []
    for f in lay.factors:
        for cols, correlated in f.blocks:
            if correlated and len(cols) > 1:
                out.append(Equation(ir.Call("corr", _corr_args(f, cols)),
                                    ir.Call("LKJ", (Keyword(Symbol("eta"), Num(eta, 4)),)),
                                    rel="~"))
    return out


def _priors(ctx: Context, lay: Layout) -> list[ir.Block]:
    resolved: ResolvedPriors | None = None
    if ctx.estimates is not None and ctx.estimates.priors is not None:
        resolved = ctx.estimates.priors
    elif ctx.design is not None:
        from bayesmix.priors import resolve_priors

        resolved = resolve_priors(ctx.design, ctx.spec.priors)
    leaves = lay.leaves
    offsets = _offsets(ctx, lay)
    user = ctx.spec.priors
    s_y = Symbol("s", (Ident("y"),))
    out: list[ir.Block] = []
    alpha: ir.Node | None = None
    n_fixed = len(leaves)
    for k, col in enumerate(sorted(leaves)):
        node = leaves[col]
        lhs: ir.Node = lay.coef_sym(node)
        if resolved is not None:
            from bayesmix.priors import Prior

            rhs = forms._prior_node(Prior("Normal", mu=float(resolved.beta_mu[col]),
                                          sigma=float(resolved.beta_sigma[col])))
            if (resolved.intercept_centred and col == resolved.scaling.x_intercept
                    and n_fixed > 1):
                lhs, alpha = Symbol("alpha"), lhs
        else:
            rhs, is_alpha = _gamma_symbolic(ctx, lay, col, s_y)
            if is_alpha and n_fixed > 1:
                lhs, alpha = Symbol("alpha"), lhs
        out.append(Equation(lhs, rhs, rel="~", label="Priors" if k == 0 else None))
    owner = lay.owner()
    for f in lay.factors:
        for e in f.effects:
            index = offsets[f.name] + e.column
            if resolved is not None:
                rhs = forms._prior_node(resolved.sd_u, index)
            else:
                rhs = _sd_symbolic(user, f, e.name, index, (*e.extra, *owner[id(e)].path),
                                   s_y)
            out.append(Equation(ir.Call("sd", (f.sym_plain(e),)), rhs, rel="~"))
    eta = resolved.eta if resolved is not None else (user.eta if user is not None else 2.0)
    out += _corr_priors(lay, eta)
    if resolved is not None:
        sig_rhs = forms._prior_node(resolved.sigma)
    elif user is not None and user.sigma is not None:
        sig_rhs = forms._prior_node(user.sigma)
    else:
        sig_rhs = ir.Call("HalfStudentT", (Keyword(Symbol("nu"), Num(3.0)),
                                           Keyword(Symbol("sigma"), s_y)))
    out.append(Equation(Symbol("sigma"), sig_rhs, rel="~"))
    if alpha is not None:
        out.append(Note((
            Symbol("alpha"), Text(": the intercept at the means of the predictors ("), alpha,
            Text(" plus each predictor's mean times its coefficient), so the posterior does not "
                 "depend on where the predictors' 0 lies"))))
    if resolved is not None:
        out.append(Note((Text("priors autoscaled from the data (bayesmix.priors), with the "
                              "model's overrides"),)))
    else:
        out.append(Note((s_y, Text(": SD of y; "), Symbol("s", (Ident("k"),)),
                         Text(": SD of a column of X, or root mean square of an effect's "
                              "column of Z; the numbers come from the data (pass data= to see "
                              "them)"))))
    return out


def _gamma_symbolic(ctx: Context, lay: Layout, col: int, s_y: Symbol) -> tuple[ir.Node, bool]:
    node = lay.leaves[col]
    user = ctx.spec.priors
    override = user.beta.get(node.gamma.name) if user is not None else None  # type: ignore[union-attr]
    if override is not None:
        return forms._prior_node(override), False
    atoms = node.path
    two5 = Num(2.5)
    if not atoms:
        if user is not None and user.intercept is not None:
            return forms._prior_node(user.intercept), True
        return ir.Call("Normal", (Keyword(Symbol("mu"), ir.Bar(Symbol("y"))),
                                  Keyword(Symbol("sigma"), Product((two5, s_y), op="juxt")))), True
    s_k = Symbol("s", (forms.label_node(term_name(tuple(atoms))),))
    return ir.Call("Normal", (
        Keyword(Symbol("mu"), Num(0.0)),
        Keyword(Symbol("sigma"), ir.Frac(Product((two5, s_y), op="juxt"), s_k)),
    )), False


def _sd_symbolic(user, f: FactorView, name: str, index: int, atoms, s_y: Symbol) -> ir.Node:
    sd_user = user.sd_u if user is not None else None
    prior: Prior | None = None
    if isinstance(sd_user, dict):
        prior = sd_user.get(name) or sd_user.get(f.name)
    elif sd_user is not None:
        prior = sd_user
    if prior is not None:
        return forms._prior_node(prior, index if prior.params and isinstance(
            prior.params[0][1], tuple) else None)
    scale: ir.Node = s_y
    if atoms:
        scale = ir.Frac(s_y, Symbol("s", (forms.label_node(term_name(tuple(atoms))),)))
    return ir.Call("HalfStudentT", (Keyword(Symbol("nu"), Num(3.0)),
                                    Keyword(Symbol("sigma"), scale)))

