"""build_model(): Design + priors -> an explicit ``pm.Model``, in one of three likelihood forms.

The model is written on the standardised scale of :mod:`bayesmix.scaling` (centred and scaled
columns ``X̃, Z̃, ỹ``), so the sampler never sees the raw magnitudes of the data, and the
posterior is reported on the original scale through the exact affine maps::

    β̃ = beta_std ~ Normal(rp.std_beta())                         (p,)   free
    T̃ = L̃ L̃ᵀ,  L̃ ~ LKJCholeskyCov(eta, sd_dist = rp.std_sd_u())  (q, q) free; chol_u_std
    σ̃ = sigma_std ~ rp.std_sigma()                                        free
    ỹ_j | β̃, ũ_j, σ̃ ~ N(X̃_j β̃ + Z̃_j ũ_j, σ̃² I),   ũ_j ~ N(0, T̃)

    beta = A_x⁻¹ (s_y β̃ + m e₀),  sigma = s_y σ̃,  T = s_y² A_z⁻¹ T̃ A_z⁻ᵀ  (sd_u, corr_u,
    chol_u),  u_j = s_y A_z⁻¹ ũ_j                                        deterministic

The priors are those of :mod:`bayesmix.priors` (declared on the original scale) mapped exactly
onto this one, and the log-likelihood includes the Jacobian ``−n log s_y``, so every form's
log density is that of the original y.

``"rows"`` (the reference)
    Non-centred ``ũ_j = L̃ z_j`` (``u_offset`` = z, (J, q)), and the Gaussian likelihood of every
    original row, ``y_i ~ N(m + s_y (X̃β̃ + Z̃ũ)_i, σ²)``: O(n) per gradient.
``"sufficient"``
    The same joint posterior of (γ, U, T, σ), the likelihood written from the per-cluster
    cross-products of :mod:`bayesmix.stats`::

        ‖ỹ_j − X̃_jβ̃ − Z̃_jũ_j‖² = ỹ'ỹ − 2β̃'X̃'ỹ − 2ũ'Z̃'ỹ + β̃'X̃'X̃β̃ + 2ũ'Z̃'X̃β̃ + ũ'Z̃'Z̃ũ

    O(J) per gradient.
``"collapsed"`` (the default)
    U integrated out: ``ỹ_j ~ N(X̃_jβ̃, V_j)``, ``V_j = σ̃²I + Z̃_j T̃ Z̃_jᵀ``.  With
    ``A_j = I + L̃ᵀZ̃_jᵀZ̃_jL̃ / σ̃²`` (q × q, Cholesky C_j), ``r_j = ỹ_j − X̃_jβ̃`` and
    ``b_j = L̃ᵀZ̃_jᵀr_j / σ̃²`` (Woodbury and the determinant lemma)::

        log|V_j| = 2 n_j log σ̃ + 2 Σ log diag C_j
        r_jᵀV_j⁻¹r_j = r_jᵀr_j / σ̃² − ‖C_j⁻¹ b_j‖²

    Only (γ, T, σ) are sampled; u is drawn afterwards for every draw from its exact
    conditional ``ũ_j | y, β̃, T̃, σ̃ = L̃ v_j``, ``v_j ~ N(A_j⁻¹ b_j, A_j⁻¹)``
    (:func:`bayesmix.collapsed.draw_u_conditional`), so the posterior still holds ``u``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from bayesmix import notation as nt
from bayesmix.build_factors import block_cholesky
from bayesmix.collapsed import collapsed_loglik
from bayesmix.design import Design
from bayesmix.errors import SpecError
from bayesmix.priors import Prior, Priors, ResolvedPriors, resolve_priors
from bayesmix.scaling import Scaling
from bayesmix.stats import ClusterStats, cluster_stats

LIKELIHOOD_FORMS = ("collapsed", "sufficient", "rows")


@dataclass(frozen=True)
class BuiltModel:
    """A built PyMC model with what later stages need to know about it.

    Attributes
    ----------
    model : pm.Model
        The model (used explicitly; never the implicit context).
    design : Design
    priors : ResolvedPriors
        Its ``scaling`` is the standardised scale the model is written on.
    likelihood : str
        ``"collapsed"``, ``"sufficient"`` or ``"rows"``.
    stats : ClusterStats or None
        Per-cluster cross-products on ``priors.scaling`` (collapsed and sufficient forms).
    graph : dict of str to TensorVariable
        The standardised parameters ``beta_std``, ``sigma_std``, ``chol_u_std`` and (rows,
        sufficient) ``u_std`` of the graph, and ``loglik``, the log-likelihood of the original
        y given them: used by :func:`bayesmix.reconstruct` to recompute the graph's likelihood
        at posterior draws and compare it with one computed from the explicit X and Z.
    """

    model: pm.Model
    design: Design
    priors: ResolvedPriors
    likelihood: str
    stats: ClusterStats | None = None
    graph: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def scaling(self) -> Scaling:
        """The standardised scale of the graph (``priors.scaling``)."""
        return self.priors.scaling


def _data(name: str, value: np.ndarray, shared: bool = False):
    """Data enter the graph as constants, or as ``pm.Data`` when ``shared``.

    Shared variables let new data of the same shape reuse a compiled model (``pm.set_data``
    with :func:`stats_data`; with the statistics-based forms the shapes depend on J, p and q
    only, not on n).  They work with PyMC's sampler and nutpie's C back end
    (:func:`bayesmix.sampling.compile_model`); nutpie 0.16's Numba back end marks shared
    arrays read-only and PyTensor 3.3's Numba code then fails to initialise ("cannot set
    WRITEABLE flag"), hence constants by default.
    """
    value = np.ascontiguousarray(value)
    if shared:
        return pm.Data(name, value)
    return pt.as_tensor_variable(value, name=name)


def _rv(prior: Prior, name: str, **kwargs: Any):
    dist = getattr(pm, prior.dist)
    params = {k: (np.asarray(v) if isinstance(v, tuple) else v) for k, v in prior.params}
    return dist(name, **params, **kwargs)


def choose_likelihood(likelihood: str, design: Design | None = None) -> str:
    """Resolve ``"auto"``: collapsed with one factor, nested or (few effects) crossed ones.

    Crossed factors get the collapsed form up to :data:`bayesmix.crossed.AUTO_MAX_EFFECTS`
    random effects in all (measurements in :mod:`bayesmix.crossed`), the sufficient one
    above: it sampled InstEval's posterior in 82 s against 148 s for the row-wise one (same
    run, same draws; ``benchmarks/levels.py``).
    """
    from bayesmix.crossed import AUTO_MAX_EFFECTS, MAX_EFFECTS, total_effects

    if design is not None and not design.family.is_gaussian:
        return _choose_glmm(likelihood, design)
    several = design is not None and not design.single_factor
    crossed = several and not _nested(design)
    if likelihood == "auto":
        if crossed and total_effects(design) > AUTO_MAX_EFFECTS:
            return "sufficient"
        return "collapsed"
    if likelihood not in LIKELIHOOD_FORMS:
        raise SpecError(
            f"unknown likelihood {likelihood!r}; choose one of auto, {', '.join(LIKELIHOOD_FORMS)}"
        )
    if crossed and likelihood == "collapsed" and total_effects(design) > MAX_EFFECTS:
        raise SpecError(
            f"the collapsed likelihood of crossed factors factorises a dense Q x Q matrix; this "
            f"model has Q = {total_effects(design):,} random effects over "
            f"{', '.join(fe.name for fe in design.effects)} (at most {MAX_EFFECTS:,}), so use "
            "likelihood='sufficient' (sparse cross-products; or 'auto')"
        )
    return likelihood


GLMM_FORMS = ("cells", "rows")


def _choose_glmm(likelihood: str, design: Design) -> str:
    """A non-Gaussian family: ``"cells"`` where aggregation halves the rows, else ``"rows"``.

    The Gaussian statistics forms (collapsed, sufficient) have no counterpart: the
    likelihood of a GLMM does not reduce to cross-products (:mod:`bayesmix.build_glmm`).
    """
    from bayesmix.build_glmm import CELLS_MIN_REDUCTION, make_cells
    from bayesmix.glmm_marginal import MARGINAL_FORMS, check_marginal

    if likelihood == "auto":
        cells = make_cells(design)
        return "cells" if cells.c * CELLS_MIN_REDUCTION <= design.n else "rows"
    if likelihood in MARGINAL_FORMS:
        check_marginal(design, likelihood)
        return likelihood
    if likelihood not in GLMM_FORMS:
        raise SpecError(
            f"likelihood={likelihood!r} is a form of the Gaussian family; a "
            f"{design.family.name} model takes {', '.join(GLMM_FORMS + MARGINAL_FORMS)} "
            "(or auto)"
        )
    return likelihood


def _nested(design: Design) -> bool:
    from bayesmix.nested import nesting

    return nesting(design) is not None


def _build_factors(design: Design, rp: ResolvedPriors, form: str,
                   shared: bool = False) -> BuiltModel:
    """Several grouping factors: row-wise (:mod:`bayesmix.build_factors`) or collapsed.

    The nested collapsed form integrates the innermost level out (:mod:`bayesmix.nested`),
    the crossed one every factor's effects jointly (:mod:`bayesmix.crossed`).
    """
    from bayesmix.build_factors import factor_coords, factors_rows, factors_sufficient
    from bayesmix.crossed import crossed_collapsed
    from bayesmix.nested import nested_collapsed

    sc = rp.scaling
    coords = {nt.DIM_FIXED: list(design.fixed_names), **factor_coords(design)}
    if form == "rows":
        coords[nt.DIM_ROW] = list(range(design.n))
    stats = None
    with pm.Model(coords=coords) as model:
        # The sufficient form makes β̃ itself, sheared by its centred effects' means.
        beta_std = _fixed_effects(rp, design.p) if form != "sufficient" else None
        sigma_std = _rv(rp.std_sigma(), nt.SIGMA_STD)
        pm.Deterministic(nt.SIGMA, sc.y_scale * sigma_std)
        if form == "rows":
            X_std = sc.standardize(design.atoms, design.y)[0]
            loglik, graph, initvals = factors_rows(design, rp, beta_std, sigma_std, X_std)
        elif form == "sufficient":
            loglik, graph, initvals, beta_std = factors_sufficient(design, rp, sigma_std)
        else:
            collapse = nested_collapsed if _nested(design) else crossed_collapsed
            loglik, graph, initvals, stats = collapse(design, rp, beta_std, sigma_std,
                                                      shared=shared)
        graph.update({nt.BETA_STD: beta_std, nt.SIGMA_STD: sigma_std, "loglik": loglik,
                      "initvals": initvals, "shared_data": bool(shared)})
    return BuiltModel(model, design, rp, form, stats, graph)  # type: ignore[arg-type]


def build_model(
    design: Design,
    priors: Priors | ResolvedPriors | None = None,
    *,
    likelihood: str = "auto",
    shared_data: bool = False,
    stats: ClusterStats | None = None,
) -> BuiltModel:
    """Build the PyMC model of a design.

    Parameters
    ----------
    design : Design
    priors : Priors, ResolvedPriors or None
        Overrides of the autoscaled defaults (:func:`bayesmix.resolve_priors`), or priors
        already resolved (their ``scaling`` is then the model's standardised scale, e.g. to
        fit new data with the priors of an earlier fit).
    likelihood : {"auto", "collapsed", "sufficient", "rows", "cells", "laplace", "agq"}
        Form of the likelihood (module docstring; the GLMM forms in
        :mod:`bayesmix.build_glmm` and :mod:`bayesmix.glmm_marginal`); same priors, names
        and posterior layout.
    shared_data : bool
        Put the data (the statistics, or X̃, Z̃, y) in ``pm.Data`` containers so that a model
        compiled once can be given new data of the same shape (see :func:`stats_data`).
    stats : ClusterStats, optional
        Per-cluster cross-products already computed (e.g. streamed from a file with
        :func:`bayesmix.stats.stream.stream_cluster_stats`), on any scale (they are mapped onto
        the model's); computed from ``design`` otherwise.

    Returns
    -------
    BuiltModel
    """
    form = choose_likelihood(likelihood, design)
    rp = priors if isinstance(priors, ResolvedPriors) else resolve_priors(design, priors)
    sc = rp.scaling
    if not design.family.is_gaussian:
        from bayesmix.build_glmm import build_glmm
        from bayesmix.glmm_marginal import MARGINAL_FORMS, build_glmm_marginal

        if shared_data or stats is not None:
            raise SpecError(f"shared_data and stats are for the Gaussian family's statistics "
                            f"forms; a {design.family.name} model reads its rows")
        if form in MARGINAL_FORMS:
            return build_glmm_marginal(design, rp, form)
        return build_glmm(design, rp, form)
    if not design.single_factor:
        if shared_data and form == "rows":
            raise SpecError("shared_data=True with several grouping factors needs the nested "
                            "collapsed form (likelihood='collapsed')")
        return _build_factors(design, rp, form, shared_data)
    _weights_form(design, form, likelihood)
    if design.sigma_index is not None:
        form = _sigma_by_form(design, form, likelihood)
    coords = dict(design.coords)
    if form == "rows":
        coords[nt.DIM_ROW] = list(range(design.n))
    sigma_dims = {}
    if design.sigma_index is not None:
        coords[nt.DIM_SIGMA] = list(design.sigma_levels)
        sigma_dims = {"dims": nt.DIM_SIGMA}
    with pm.Model(coords=coords) as model:
        beta_std = _fixed_effects(rp, design.p, shared_data)
        chol_std, initvals = _covariance(rp, design, shared_data)
        sigma_std = _rv(rp.std_sigma(), nt.SIGMA_STD, **sigma_dims)
        y_scale = _scale_data("scale_y", sc.y_scale, shared_data)
        pm.Deterministic(nt.SIGMA, y_scale * sigma_std, **sigma_dims)
        graph: dict[str, Any] = {nt.BETA_STD: beta_std, nt.SIGMA_STD: sigma_std,
                                 nt.CHOL_STD: chol_std, "initvals": initvals}
        if form == "rows":
            stats = None
            graph.update(_rows(design, sc, beta_std, chol_std, sigma_std, shared_data))
        else:
            stats = (stats if stats is not None else cluster_stats(design, scaling=sc))
            stats = stats.to_scaling(sc)
            jacobian = _scale_data("scale_log_jacobian", sc.log_jacobian(stats.n_total),
                                   shared_data)
            if form == "sufficient":
                graph.update(_sufficient(stats, beta_std, chol_std, sigma_std, shared_data))
                graph["loglik"] = graph["loglik"] + jacobian
                pm.Potential("loglik_sufficient", graph["loglik"])
            else:
                graph["loglik"] = jacobian + _collapsed(
                    stats, beta_std, chol_std, sigma_std, shared_data
                )
                pm.Potential("loglik_marginal", graph["loglik"])
    graph["shared_data"] = shared_data
    return BuiltModel(model, design, rp, form, stats, graph)


def can_share_data(design: Design, likelihood: str = "auto") -> bool:
    """Whether ``bm.fit`` builds this design with ``shared_data=True``.

    The Gaussian family with one grouping factor: its compiled kernels then serve every data
    set of the structure (:mod:`bayesmix.kernel_cache`).  With several factors the graph
    holds other data as constants anyway (the map of inner to outer units, the units' row
    counts, the effects' dimensions), and shared statistics cost sampling speed: egsingle's
    three-level model sampled in 38-47 s with them against 14-20 s with constants
    (``python benchmarks/first_fit.py --models egsingle_three_level``).
    """
    del likelihood  # every single-factor Gaussian form takes shared data
    return design.family.is_gaussian and design.single_factor


def _sigma_by_form(design: Design, form: str, likelihood: str) -> str:
    """A residual SD per group (``sigma_by``) is sampled in the row-wise form."""
    if design.weights1 is not None or design.weights2 is not None:
        raise SpecError("sigma_by with sampling weights is fitted by fit_reml only; the Bayesian "
                        "fit takes one of them")
    if likelihood not in ("auto", "rows"):
        raise SpecError(f"sigma_by (a residual SD per {design.spec.sigma_by}) is sampled in the "
                        f"row-wise form: use likelihood='rows' (or 'auto'), not {likelihood!r}")
    return "rows"


def _weights_form(design: Design, form: str, likelihood: str) -> None:
    """Refuse a likelihood form that cannot carry sampling weights.

    The weights live in the statistics: the collapsed form (and, with level-1 weights only,
    the sufficient one) carries them; the row-wise form does not.
    """
    if (design.weights1 is None and design.weights2 is None) or likelihood == "auto":
        return
    if form == "rows" or (form == "sufficient" and design.weights2 is not None):
        raise SpecError(
            f"sampling weights enter through the weighted statistics: use likelihood='collapsed'"
            f" (or 'auto'), not {form!r}")


def stats_data(built: BuiltModel, design: Design) -> dict[str, np.ndarray]:
    """New data for a shared-data model (``pm.set_data(stats_data(built, d), built.model)``).

    The statistics of ``design`` on the model's standardised scale, named as in the graph.
    """
    st = cluster_stats(design, scaling=built.scaling)
    out = {"XX": st.XX, "XZ": st.XZ, "ZZ": st.ZZ, "Xy": st.Xy, "Zy": st.Zy, "yy": st.yy,
           "n_j": st.n.astype(float)}
    if st.weight is not None:
        out["w_j"] = st.weight
    return out


def _scale_data(name: str, value: Any, shared: bool) -> Any:
    """A constant of the standardised scale, as ``pm.Data`` when the data are shared.

    The scale is computed from the data (y's centre and spread, X's and Z's standardising
    maps), so with ``shared_data=True`` it must be an input of the graph like the data
    themselves: the compiled kernels then depend on the model's structure only
    (:mod:`bayesmix.kernel_cache`).
    """
    return pm.Data(name, np.asarray(value, dtype=float)) if shared else value


def _fixed_effects(rp: ResolvedPriors, p: int, shared: bool = False):
    """β̃ with its exact (Normal) prior; ``beta`` = A_x⁻¹ (s_y β̃ + m e₀) is stored."""
    sc = rp.scaling
    if p == 0:
        beta_std = pt.zeros((0,))
    else:
        mean, cov = rp.std_beta()
        if np.allclose(cov, np.diag(np.diag(cov)), rtol=0, atol=1e-14 * np.abs(cov).max()):
            beta_std = pm.Normal(nt.BETA_STD, mu=mean, sigma=np.sqrt(np.diag(cov)),
                                 dims=nt.DIM_FIXED)
        else:
            beta_std = pm.MvNormal(nt.BETA_STD, mu=mean, chol=np.linalg.cholesky(cov),
                                   dims=nt.DIM_FIXED)
    if p == 0:
        pm.Deterministic(nt.BETA, pt.zeros((0,)), dims=nt.DIM_FIXED)
        return beta_std
    shift = _scale_data("scale_beta_shift", sc.beta_from_std(np.zeros(p)), shared)  # A_x⁻¹ m e₀
    y_scale = _scale_data("scale_y_beta", sc.y_scale, shared)
    a_x_inv = _scale_data("scale_A_x_inv", sc.A_x_inv, shared)
    pm.Deterministic(
        nt.BETA, shift + pt.dot(beta_std * y_scale, a_x_inv.T), dims=nt.DIM_FIXED
    )
    return beta_std


def _covariance(rp: ResolvedPriors, design: Design, shared: bool = False):
    """T̃ = L̃ L̃ᵀ, block-diagonal over the factor's blocks (:func:`block_cholesky`).

    Stores ``chol_u_std`` (q, q) and, on the original scale, ``sd_u`` (q,), ``corr_u`` (q, q)
    and ``chol_u`` (q, q) in the trace; returns L̃ and the free variables' start values.
    """
    sc = rp.scaling
    q = design.q
    dims2 = (nt.DIM_RANDOM, nt.DIM_RANDOM2)
    chol, initvals = block_cholesky(design.effects[0].blocks, q, rp.std_sd_u(), rp.eta)
    pm.Deterministic(nt.CHOL_STD, chol, dims=dims2)
    # T = F Fᵀ with F = s_y A_z⁻¹ L̃.
    factor = (_scale_data("scale_y_u", sc.y_scale, shared)
              * pt.dot(_scale_data("scale_A_z_inv", sc.A_z_inv, shared), chol))
    cov = pt.dot(factor, factor.T)
    sd = pt.sqrt(pt.diagonal(cov))
    pm.Deterministic(nt.SD_U, sd, dims=nt.DIM_RANDOM)
    pm.Deterministic(nt.CORR_U, cov / pt.outer(sd, sd), dims=dims2)
    pm.Deterministic(nt.CHOL_U, _unrolled_cholesky(cov, q), dims=dims2)
    return chol, initvals


def _unrolled_cholesky(cov, q: int):
    """Lower Cholesky factor of a small q × q tensor, unrolled into scalar operations.

    Only a stored quantity (``chol_u``), never differentiated; scalar operations compile in a
    fraction of the time of a LAPACK or QR op under Numba.
    """
    c = [[None] * q for _ in range(q)]
    for i in range(q):
        for k in range(i + 1):
            acc = cov[i, k]
            for m in range(k):
                acc = acc - c[i][m] * c[k][m]
            c[i][k] = pt.sqrt(acc) if i == k else acc / c[k][k]
    rows = [pt.stack([c[i][k] if k <= i else pt.zeros(()) for k in range(q)]) for i in range(q)]
    return pt.stack(rows)


def _u_from_offset(chol, sc: Scaling):
    """ũ = z L̃ᵀ (``u_std``), and ``u`` = s_y ũ A_z⁻ᵀ stored."""
    u_offset = pm.Normal(nt.U_OFFSET, 0.0, 1.0, dims=(nt.DIM_CLUSTER, nt.DIM_RANDOM))
    u_std = pm.Deterministic(nt.U_STD, u_offset @ chol.T, dims=(nt.DIM_CLUSTER, nt.DIM_RANDOM))
    pm.Deterministic(nt.U, sc.y_scale * pt.dot(u_std, sc.A_z_inv.T),
                     dims=(nt.DIM_CLUSTER, nt.DIM_RANDOM))
    return u_std


def _rows(design: Design, sc: Scaling, beta, chol, sigma, shared: bool = False) -> dict[str, Any]:
    Xs, Zs, _ = sc.standardize(design.atoms, design.y)
    X = _data("X", Xs, shared)
    Zq = _data("Zq", Zs, shared)
    idx = _data("cluster_index", design.cluster_index, shared)
    y = _data("y_data", design.y, shared)
    u = _u_from_offset(chol, sc)
    # The mean on the original scale: m + s_y (X̃β̃ + Z̃ũ); residuals are formed there.
    xb = pt.dot(X, beta) if design.p else 0.0
    mu = sc.y_center + sc.y_scale * (xb + pt.sum(Zq * u[idx], axis=-1))
    if design.sigma_index is not None:  # σ_s of each row's group (sigma_by)
        sigma = sigma[_data("sigma_index", design.sigma_index, shared)]
    sd = sc.y_scale * sigma
    pm.Normal(nt.Y, mu=mu, sigma=sd, observed=y, dims=nt.DIM_ROW)
    loglik = pt.sum(pm.logp(pm.Normal.dist(mu=mu, sigma=sd), y))
    return {nt.U_STD: u, "loglik": loglik}


def _stats_inputs(stats: ClusterStats, shared: bool) -> tuple:
    """The cross-products as graph inputs: XX, XZ, ZZ, Xy, Zy, yy, n_j."""
    return tuple(
        _data(name, value, shared)
        for name, value in (
            ("XX", stats.XX), ("XZ", stats.XZ), ("ZZ", stats.ZZ), ("Xy", stats.Xy),
            ("Zy", stats.Zy), ("yy", stats.yy), ("n_j", stats.n.astype(float)),
        )
    )


def _sufficient(stats: ClusterStats, beta, chol, sigma, shared: bool = False) -> dict[str, Any]:
    XX, XZ, ZZ, Xy, Zy, yy, n = _stats_inputs(stats, shared)
    u = _u_from_offset(chol, stats.scaling)
    uzzu = pt.sum(u * pt.sum(ZZ * u[:, None, :], axis=-1), axis=-1)
    rss = yy - 2 * pt.sum(u * Zy, axis=-1) + uzzu
    if stats.p:  # the fixed part (absent in a model with no fixed effects)
        rss = rss + (
            -2 * pt.dot(Xy, beta)
            + pt.dot(pt.dot(XX, beta), beta)
            + 2 * pt.sum(u * pt.dot(XZ.transpose(0, 2, 1), beta), axis=-1)
        )
    loglik = pt.sum(-0.5 * n * pt.log(2 * np.pi * sigma**2) - rss / (2 * sigma**2))
    return {nt.U_STD: u, "loglik": loglik}


def _collapsed(stats: ClusterStats, beta, chol, sigma, shared: bool = False):
    XX, XZ, ZZ, Xy, Zy, yy, n = _stats_inputs(stats, shared)
    weight = None if stats.weight is None else _data("w_j", stats.weight, shared)
    return collapsed_loglik(XX, XZ, ZZ, Xy, Zy, yy, n, beta, chol, sigma, q=stats.q, p=stats.p,
                            weight=weight)
