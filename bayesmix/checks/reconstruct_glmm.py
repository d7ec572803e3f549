"""reconstruct() for a non-Gaussian family: η = Xβ̄ + Zū (+ log t) on the link scale, μ beside y.

A GLMM has no residual e, so the seed's identity Y = Xβ + Zu + e becomes, row by row::

    η_i = (Xβ̄)_i + Σ_g (Z_g ū_g)_i + o_i         (o_i = log t_i, a Poisson exposure)
    μ_i = E(y_i | η_i) = g⁻¹(η_i)  (× n_i for the binomial: the expected count)

The table shows y beside μ; ``max_abs_error`` is left NaN (there is no e to add back).  The
check of the builder is the log-likelihood: at a few posterior draws the PyMC graph's value
(rows or cells form) is compared with ``Σ_i log p(y_i | η_i)`` computed here from the
explicit X, every Z_g and :meth:`bayesmix.families.Family.loglik`.  The cluster-marginal
forms (``"laplace"``, ``"agq"``) have no U in their graph: their Σ_j ℓ_j is compared with the
NumPy quadrature of :mod:`bayesmix.cluster_marginal` at the same posterior draws of (β, T).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bayesmix import notation as nt
from bayesmix.design import Design


def _effects_of(design: Design, u: Any) -> dict[str, np.ndarray]:
    if isinstance(u, dict):
        return {k: np.asarray(v, dtype=float) for k, v in u.items()}
    return {design.effects[0].name: np.asarray(u, dtype=float)}


def glmm_table(design: Design, beta: np.ndarray, u: Any) -> pd.DataFrame:
    """Columns: units per factor, y (and trials), Xb, Zu (per factor), offset, eta, mu."""
    us = _effects_of(design, u)
    cols: dict[str, Any] = {}
    for fe in design.effects:
        key = "cluster" if design.single_factor else fe.name
        cols[key] = np.asarray(fe.grouping.levels, dtype=object)[fe.grouping.index]
    cols["y"] = design.y
    if design.trials is not None:
        cols["trials"] = design.trials
    xb = design.X @ beta
    cols["Xb"] = xb
    eta = xb.copy()
    for fe in design.effects:
        zu = fe.Z @ us[fe.name].reshape(-1)
        cols["Zu" if design.single_factor else f"Zu[{fe.name}]"] = zu
        eta += zu
    if design.offset is not None:
        cols["offset"] = design.offset
        eta += design.offset
    cols["eta"] = eta
    cols["mu"] = design.family.expected(eta, design.trials)
    return pd.DataFrame(cols, index=design.row_labels)


def explicit_glmm_loglik(design: Design, beta: np.ndarray, u: Any) -> float:
    """Σ_i log p(y_i | η_i) from the explicit X and Z_g (module docstring)."""
    us = _effects_of(design, u)
    eta = design.X @ beta
    for fe in design.effects:
        eta = eta + fe.Z @ us[fe.name].reshape(-1)
    if design.offset is not None:
        eta = eta + design.offset
    return float(design.family.loglik(design.y, eta, design.trials).sum())


def glmm_loglik_function(built: Any):
    """The graph's log-likelihood as a function ``f(beta, u) -> float`` of original values.

    ``u`` is (J, q) for one factor or ``{factor: (J_g, q_g)}``; the values are mapped onto the
    graph's scale (``β̃ = A_xβ − m e₀``, ``ũ = u A_zᵀ``) and put in place of its variables.
    """
    import pytensor
    from pytensor.graph.replace import graph_replace

    design, graph = built.design, built.graph
    sc = built.priors.scaling
    single = design.single_factor
    names = [nt.BETA_STD] + ([nt.U_STD] if single else
                             [f"{nt.U_STD}_{g}" for g in range(len(design.effects))])
    inputs = {name: graph[name].type() for name in names}
    loglik = graph_replace(graph["loglik"], {graph[n]: inputs[n] for n in names}, strict=False)
    fn = pytensor.function([inputs[n] for n in names], loglik, mode="FAST_COMPILE",
                           on_unused_input="ignore")

    def evaluate(beta: np.ndarray, u: Any) -> float:
        us = _effects_of(design, u)
        values = [sc.beta_to_std(np.asarray(beta, dtype=float))]
        if single:
            values.append(sc.u_to_std(us[design.effects[0].name]))
        else:
            values += [fe.scale.u_to_std(us[fe.name]) for fe in design.effects]
        return float(fn(*values))

    return evaluate


def posterior_effects(fit: Any, point: Any) -> Any:
    """One draw's (or the means') effects: (J, q) for one factor, else per factor."""
    from bayesmix.build_factors import factor_dims

    design = fit.design
    if design.single_factor:
        return point[nt.U].transpose(nt.DIM_CLUSTER, nt.DIM_RANDOM).to_numpy()
    out = {}
    for fe in design.effects:
        unit, eff, _ = factor_dims(fe)
        out[fe.name] = point[f"{nt.U}_{fe.name}"].transpose(unit, eff).to_numpy()
    return out


def marginal_graph_check(fit: Any, built: Any, draws: int) -> tuple[float, int]:
    """The marginal forms: the graph's Σ_j ℓ_j against :mod:`bayesmix.cluster_marginal`.

    The graph integrates each cluster's effects with a fixed number of Newton steps and
    PyTensor; the reference is the NumPy quadrature with step-halving Newton, at the same
    number of nodes, from the explicit X and Z, at a few posterior draws of (β, T).
    """
    import pytensor
    from pytensor.graph.replace import graph_replace

    from bayesmix.cluster_marginal import cluster_marginal_loglik
    from bayesmix.pointwise import FlatDraws, flat_draws

    graph = built.graph
    names = [nt.BETA_STD, nt.CHOL_STD]
    inputs = {n: graph[n].type() for n in names}
    loglik = graph_replace(graph["loglik"], {graph[n]: inputs[n] for n in names}, strict=False)
    fn = pytensor.function([inputs[n] for n in names], loglik, mode="FAST_COMPILE",
                           on_unused_input="ignore")
    sc = built.priors.scaling
    every = flat_draws(fit)
    picks = np.linspace(0, every.S - 1, num=min(draws, every.S)).astype(int)
    name = fit.design.effects[0].name
    some = FlatDraws(every.beta[picks], None, {name: every.u[name][picks]},
                     {name: every.cov[name][picks]}, 1, picks.size)
    reference = cluster_marginal_loglik(fit, some, nodes=graph["nodes"])[1].sum(axis=1)
    worst = 0.0
    for k, s in enumerate(picks):
        chol = np.linalg.cholesky(sc.cov_to_std(every.cov[name][s]))
        value = float(fn(sc.beta_to_std(every.beta[s]), chol))
        worst = max(worst, abs(value - reference[k]))
    return worst, len(picks)


def glmm_graph_check(fit: Any, draws: int) -> tuple[float, int]:
    """Max |graph − explicit log-likelihood| over a few posterior draws (any structure)."""
    from bayesmix.build import build_model
    from bayesmix.checks.reconstruct import picked_draws
    from bayesmix.glmm_marginal import MARGINAL_FORMS

    built = fit.built or build_model(fit.design, fit.priors, likelihood=fit.likelihood)
    if fit.likelihood in MARGINAL_FORMS:
        return marginal_graph_check(fit, built, draws)
    in_graph = glmm_loglik_function(built)
    points = picked_draws(fit, draws)
    worst = 0.0
    for point in points:
        beta = point[nt.BETA].transpose(nt.DIM_FIXED).to_numpy()
        u = posterior_effects(fit, point)
        here = explicit_glmm_loglik(fit.design, beta, u)
        worst = max(worst, abs(in_graph(beta, u) - here))
    return worst, len(points)


def reconstruct_glmm(result: Any, draws_checked: int):
    """:func:`bayesmix.reconstruct` for a non-Gaussian family (module docstring)."""
    from bayesmix.checks.reconstruct import Reconstruction
    from bayesmix.fit_result import Fit

    design = result.design
    if isinstance(result, Fit):
        means = result.posterior.mean(("chain", "draw"))
        beta = means[nt.BETA].to_numpy()
        table = glmm_table(design, beta, posterior_effects(result, means))
        graph_err, k = glmm_graph_check(result, draws_checked)
        source = "posterior means"
    else:
        beta = np.asarray(result.beta, dtype=float).reshape(design.p)
        u = (result.u_factors if not design.single_factor  # type: ignore[attr-defined]
             else np.asarray(result.u, dtype=float).reshape(design.J, design.q))
        table = glmm_table(design, beta, u)
        graph_err, k = None, 0
        source = str(getattr(result, "method", "point estimates"))
    return Reconstruction(table, float("nan"), graph_err, k, source)
