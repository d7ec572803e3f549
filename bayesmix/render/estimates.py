"""Point estimates to substitute into equations: posterior means of a Fit, or a REML fit.

Both are reduced to one :class:`Estimates` in the design's order (fixed columns of X,
clusters, random terms), so the equation builders never look at where they came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from bayesmix.errors import BayesmixError
from bayesmix.notation import (
    BETA,
    CORR_U,
    DIM_CLUSTER,
    DIM_FIXED,
    DIM_RANDOM,
    DIM_RANDOM2,
    SD_U,
    SIGMA,
    U,
)

if TYPE_CHECKING:
    from bayesmix.design import Design
    from bayesmix.priors import ResolvedPriors


@dataclass(frozen=True)
class FactorEstimates:
    """Estimates of the random effects over one grouping factor of several.

    Attributes
    ----------
    name : str
        The factor (``"schoolid:childid"``).
    u : ndarray, shape (J_g, q_g)
        Unit by effect, in the order of ``design.factor(name)``.
    sd_u : ndarray, shape (q_g,)
    corr_u : ndarray, shape (q_g, q_g)
    """

    name: str
    u: np.ndarray
    sd_u: np.ndarray
    corr_u: np.ndarray

    @property
    def T(self) -> np.ndarray:
        """T_g = diag(sd_u) · corr_u · diag(sd_u)."""
        return self.corr_u * np.outer(self.sd_u, self.sd_u)


@dataclass(frozen=True)
class Estimates:
    """Point estimates of every parameter of the mixed form, in the design's order.

    Attributes
    ----------
    source : str
        How they were obtained, for the notes (``"posterior means"``, ``"REML estimates"``).
    design : Design
    beta : ndarray, shape (p,)
        γ's, one per column of X.
    u : ndarray, shape (J, q)
        U_qj, cluster by random term.
    sd_u : ndarray, shape (q,)
        SDs of the random effects.
    corr_u : ndarray, shape (q, q)
        Correlations of the random effects.
    sigma : float or ndarray
        σ̂, or σ̂_s per group of ``spec.sigma_by`` (in ``design.sigma_levels`` order).
        Residual SD σ.
    priors : ResolvedPriors or None
        The priors of the fitted model, when known.
    e : ndarray or None, shape (n,)
        Residuals supplied by the fit (rows in the design's order); None to compute them.
    factors : tuple of FactorEstimates
        With several grouping factors, each factor's estimates (``u``, ``sd_u``, ``corr_u``
        above are then those of ``spec.cluster``); empty with one.
    """

    source: str
    design: Design
    beta: np.ndarray
    u: np.ndarray
    sd_u: np.ndarray
    corr_u: np.ndarray
    sigma: float | np.ndarray
    priors: ResolvedPriors | None = None
    e: np.ndarray | None = None
    factors: tuple[FactorEstimates, ...] = ()

    def factor_u(self) -> dict[str, np.ndarray]:
        """Each factor's effects, shape (J_g, q_g), by factor name (the one factor's too)."""
        if self.factors:
            return {f.name: f.u for f in self.factors}
        return {self.design.spec.cluster: self.u}

    @property
    def T(self) -> np.ndarray:
        """T = Cov(U_j) = diag(sd_u) · corr_u · diag(sd_u), shape (q, q)."""
        return self.corr_u * np.outer(self.sd_u, self.sd_u)

    @property
    def residuals(self) -> np.ndarray:
        """E = y - Xβ - Zu, shape (n,): the fit's own when given, else from X and Z."""
        if self.e is not None:
            return self.e
        d = self.design
        if not self.factors:
            return d.y - d.linear_predictor(self.beta, self.u)
        zu = sum(d.factor(f.name).Z @ f.u.ravel() for f in self.factors)
        return d.y - d.X @ self.beta - zu


def _mean(da: Any) -> Any:
    dims = [d for d in ("chain", "draw") if d in da.dims]
    return da.mean(dim=dims)


def _sigma(values: np.ndarray) -> float | np.ndarray:
    """σ̂ as a float, or one per group (``sigma_by``) as an array."""
    return float(values) if values.ndim == 0 else values


def _select(da: Any, **coords: list[str]) -> np.ndarray:
    sel = {k: v for k, v in coords.items() if k in da.dims and k in da.coords}
    return np.asarray((da.sel(sel) if sel else da).to_numpy(), dtype=float)


def from_fit(fit: Any) -> Estimates:
    """Posterior means of a Bayesian fit.

    Parameters
    ----------
    fit : Fit
        With ``design`` and ``posterior`` (a DataTree node or Dataset) holding ``beta``
        (chain, draw, fixed), ``u`` (chain, draw, cluster, random), ``sd_u`` (chain, draw,
        random), ``corr_u`` (chain, draw, random, random2; optional when q = 1) and ``sigma``
        (chain, draw).

    Returns
    -------
    Estimates
        T is formed from the posterior means of ``sd_u`` and ``corr_u``.
    """
    design = fit.design
    post = fit.posterior
    if not design.single_factor:
        return _from_fit_factors(fit)
    q = design.q
    try:
        beta = _select(_mean(post[BETA]), **{DIM_FIXED: list(design.fixed_names)})
        u = _select(
            _mean(post[U]),
            **{DIM_CLUSTER: list(design.clusters), DIM_RANDOM: list(design.random_names)},
        ).reshape(design.J, q)
        sd_u = _select(_mean(post[SD_U]), **{DIM_RANDOM: list(design.random_names)}).reshape(q)
        sigma = _sigma(_select(_mean(post[SIGMA])))
    except KeyError as exc:
        raise BayesmixError(f"the fit's posterior has no variable {exc}") from None
    try:
        corr = _select(
            _mean(post[CORR_U]),
            **{DIM_RANDOM: list(design.random_names), DIM_RANDOM2: list(design.random_names)},
        ).reshape(q, q)
    except KeyError:
        corr = np.eye(q)
    priors = getattr(fit, "priors", None)
    if priors is not None and not hasattr(priors, "beta_mu"):
        priors = None
    return Estimates("posterior means", design, beta, u, sd_u, corr, sigma, priors)


def _from_fit_factors(fit: Any) -> Estimates:
    """Posterior means of a fit with several grouping factors (``u_<factor>``, ...)."""
    design = fit.design
    post = fit.posterior
    out = []
    try:
        beta = _select(_mean(post[BETA]), **{DIM_FIXED: list(design.fixed_names)})
        sigma = float(_select(_mean(post[SIGMA])))
        for fe in design.effects:
            unit, eff, eff2 = fe.name, f"{DIM_RANDOM}_{fe.name}", f"{DIM_RANDOM2}_{fe.name}"
            labels = list(fe.labels)
            u = _select(_mean(post[f"{U}_{fe.name}"]),
                        **{unit: list(fe.grouping.levels), eff: labels}).reshape(fe.J, fe.q)
            sd = _select(_mean(post[f"{SD_U}_{fe.name}"]), **{eff: labels}).reshape(fe.q)
            try:
                corr = _select(_mean(post[f"{CORR_U}_{fe.name}"]),
                               **{eff: labels, eff2: labels}).reshape(fe.q, fe.q)
            except KeyError:
                corr = np.eye(fe.q)
            out.append(FactorEstimates(fe.name, u, sd, corr))
    except KeyError as exc:
        raise BayesmixError(f"the fit's posterior has no variable {exc}") from None
    return _with_factors("posterior means", design, beta, sigma, out, _priors_of(fit))


def _with_factors(source: str, design: Design, beta: np.ndarray, sigma: float,
                  factors: list[FactorEstimates], priors: Any = None,
                  e: np.ndarray | None = None) -> Estimates:
    main = next(f for f in factors if f.name == design.spec.cluster)
    return Estimates(source, design, beta, main.u, main.sd_u, main.corr_u, sigma, priors,
                     e, tuple(factors))


def _priors_of(fit: Any) -> Any:
    priors = getattr(fit, "priors", None)
    return priors if priors is not None and hasattr(priors, "beta_mu") else None


def _by_label(values: Any, labels: tuple[str, ...]) -> np.ndarray:
    if hasattr(values, "reindex"):
        values = values.reindex([str(x) for x in labels]) if hasattr(values, "index") else values
    return np.asarray(values, dtype=float).reshape(len(labels))


def from_reml(reml: Any) -> Estimates:
    """REML estimates.

    Parameters
    ----------
    reml : REMLFit
        With ``design``, ``beta`` (Series by fixed_names), ``u`` (DataFrame clusters ×
        random_names), ``sd_u`` (by random_names), ``corr_u`` (q × q, optional when q = 1)
        and ``sigma`` (float).

    Returns
    -------
    Estimates
    """
    design = reml.design
    if design is None:
        raise BayesmixError(
            "this REML fit is not attached to a design; align it first "
            "(bayesmix.reml.io.align_reml(reml, design))"
        )
    if not design.single_factor:
        return _from_reml_factors(reml)
    q = design.q
    beta = _by_label(reml.beta, design.fixed_names)
    u = reml.u
    if hasattr(u, "loc"):
        u = u.copy()
        u.index = [str(x) for x in u.index]
        u = u.reindex(index=list(design.clusters), columns=list(design.random_names))
    u = np.asarray(u, dtype=float).reshape(design.J, q)
    sd_u = _by_label(reml.sd_u, design.random_names)
    corr = getattr(reml, "corr_u", None)
    if corr is None:
        corr = np.eye(q)
    elif hasattr(corr, "loc"):
        corr = corr.reindex(index=list(design.random_names), columns=list(design.random_names))
    corr = np.nan_to_num(np.asarray(corr, dtype=float).reshape(q, q))
    np.fill_diagonal(corr, 1.0)
    e = getattr(reml, "residuals", None)
    if e is not None:
        e = np.asarray(e, dtype=float).reshape(design.n)
    by = getattr(reml, "sigma_by", None)
    sigma = (float(reml.sigma) if by is None
             else by.loc[list(design.sigma_levels)].to_numpy(dtype=float))
    return Estimates("REML estimates", design, beta, u, sd_u, corr, sigma, e=e)


def _frame(values: Any, index: list[str], columns: list[str]) -> np.ndarray:
    if hasattr(values, "loc"):
        values = values.copy()
        values.index = [str(x) for x in values.index]
        values = values.reindex(index=index, columns=columns)
    return np.asarray(values, dtype=float).reshape(len(index), len(columns))


def _from_reml_factors(reml: Any) -> Estimates:
    """REML estimates of several grouping factors.

    ``reml.u_factors`` maps each factor's name to its conditional modes (DataFrame: units ×
    effect labels); ``reml.sd_u`` (Series) and ``reml.corr_u`` (DataFrame, optional) run over
    the effect labels of every factor.
    """
    design = reml.design
    given = getattr(reml, "u_factors", None) or {}
    missing = [fe.name for fe in design.effects if fe.name not in given]
    if missing:
        raise BayesmixError(
            "equations(reml=...) of a model with several grouping factors needs the REML "
            "fit's conditional modes of each factor (reml.u_factors, as bayesmix.fit_reml "
            f"gives); this one has none for {', '.join(missing)}. Substitute posterior means "
            "(fit=...), or show the equations without estimates"
        )
    corr_all = getattr(reml, "corr_u", None)
    out = []
    for fe in design.effects:
        labels = list(fe.labels)
        u = _frame(given[fe.name], list(fe.grouping.levels), labels)
        sd = _by_label(reml.sd_u, fe.labels)
        corr = (np.eye(fe.q) if corr_all is None or not hasattr(corr_all, "loc")
                else np.nan_to_num(_frame(corr_all, labels, labels)))
        np.fill_diagonal(corr, 1.0)
        out.append(FactorEstimates(fe.name, u, sd, corr))
    e = getattr(reml, "residuals", None)
    if e is not None:
        e = np.asarray(e, dtype=float).reshape(design.n)
    beta = _by_label(reml.beta, design.fixed_names)
    return _with_factors("REML estimates", design, beta, float(reml.sigma), out, None, e)
