"""fit_reml(): REML / ML estimates of a two-level model, and the REMLFit result.

The numbers are those of lme4's ``lmer`` (and of ``nlme::lme``, which maximises the same
criterion): see :mod:`bayesmix.reml.profiled` for the equations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from bayesmix.design import Design, build_design
from bayesmix.errors import BayesmixError
from bayesmix.reml.profiled import (
    lambda_from_theta,
    optimize_theta,
    theta_from_covariance,
)
from bayesmix.spec.model import Spec
from bayesmix.stats import cluster_stats
from bayesmix.weights import Weights

SINGULAR_TOL = 1e-4
"""θ diagonal elements below this count as 0, as in lme4's ``isSingular(tol = 1e-4)``."""


class REMLConvergenceError(BayesmixError):
    """A REML fit that did not converge was used where converged estimates are required."""


@dataclass(frozen=True, repr=False)
class REMLFit:
    """REML (or ML) estimates of a two-level model, made here or imported from R.

    Attributes
    ----------
    design : Design or None
        The design the estimates refer to; None for an imported fit not yet matched to a model
        (see :func:`bayesmix.reml.io.align_reml`).
    method : {"REML", "ML"}
    beta : Series, length p
        Fixed effects γ, indexed by ``design.fixed_names`` (``"g10 (Days)"``), in X's order.
    se : Series, length p
        Standard errors ``sqrt(diag(vcov))``.
    vcov : DataFrame, p × p
        ``Cov(β̂) = σ̂² (R_XᵀR_X)⁻¹`` (lme4's ``vcov``).
    u : DataFrame, J × q
        Conditional modes (BLUPs) ``b̂_j = Λ û_j`` on the original scale (lme4's ``ranef``);
        index: cluster labels in ``design.clusters`` order, columns: ``design.random_names``.
    sd_u : Series, length q
        SDs of the random terms, ``sqrt(diag(T))`` with ``T = σ̂² ΛΛᵀ``.
    corr_u : DataFrame, q × q
        Their correlations (NaN where an SD is 0).
    sigma : float
        Residual SD σ̂.
    theta : ndarray or None, shape (q (q + 1) / 2,)
        Relative covariance factor θ (lme4's ``getME(fit, "theta")``).
    criterion : float
        −2 × the restricted log-likelihood (REML criterion, lme4's ``REMLcrit``) or the ML
        deviance −2 log L.
    loglik : float
        ``−criterion / 2``, lme4's ``logLik``.
    converged : bool
        False when the optimiser did not reach a minimum; then the numbers must not be used as
        estimates (printing and :func:`bayesmix.compare` say so).
    singular : bool
        True when the estimated covariance of U is singular (an SD at 0, or a correlation of
        ±1): a boundary fit, as lme4's ``isSingular``.
    messages : tuple of str
        Plain-language notes (singular fit, convergence problems).
    source : str
        ``"bayesmix"`` or ``"imported"``.
    formula : str
        The model's lme4 formula.
    nobs : int
        Number of observations n.
    origin : str
        Where an imported fit came from (e.g. ``"lme4::lmer (lme4 1.1.31)"``); ``"bayesmix"``.
    u_factors : dict of str to DataFrame, or None
        Conditional modes per grouping factor (units × effects), for designs with several
        factors or covariance blocks (:mod:`bayesmix.reml.factors`); ``u`` is then empty when
        there are several factors, and ``sd_u`` / ``corr_u`` run over every effect of every
        factor.
    sigma_by : Series or None
        With ``spec.sigma_by``: the residual SD σ_s of each group (``sigma`` is the first
        group's, nlme's reference).
    """

    design: Design | None
    method: Literal["REML", "ML"]
    beta: pd.Series
    se: pd.Series
    vcov: pd.DataFrame
    u: pd.DataFrame
    sd_u: pd.Series
    corr_u: pd.DataFrame
    sigma: float | None
    theta: np.ndarray | None
    criterion: float
    loglik: float
    converged: bool
    singular: bool
    messages: tuple[str, ...] = ()
    source: str = "bayesmix"
    formula: str = ""
    nobs: int = 0
    origin: str = "bayesmix"
    u_factors: dict[str, pd.DataFrame] | None = None
    sigma_by: pd.Series | None = None

    # ------------------------------------------------------------------ derived
    @property
    def cov_u(self) -> pd.DataFrame:
        """T = Cov(U_j), q × q, from ``sd_u`` and ``corr_u`` (NaN correlations read as 0)."""
        corr = np.array(self.corr_u.fillna(0.0).to_numpy(), dtype=float)
        np.fill_diagonal(corr, 1.0)
        sd = self.sd_u.to_numpy()
        return pd.DataFrame(corr * np.outer(sd, sd), index=self.sd_u.index,
                            columns=self.sd_u.index)

    def _need_design(self) -> Design:
        if self.design is None:
            raise BayesmixError(
                "this REML fit is not attached to a design; read it with "
                "read_reml(path, design=build_design(spec, data)) or align_reml(reml, design)"
            )
        return self.design

    @property
    def fitted(self) -> np.ndarray:
        """``Xβ̂ + Zû``, shape (n,), from the explicit X and Z of the design."""
        d = self._need_design()
        if self.u_factors is not None and not d.single_factor:
            out = d.X @ self.beta.to_numpy()
            for fe in d.effects:
                out = out + fe.Z @ self.u_factors[fe.name].to_numpy().reshape(-1)
            return out
        return d.linear_predictor(self.beta.to_numpy(), self.u.to_numpy())

    @property
    def residuals(self) -> np.ndarray:
        """``ê = y − Xβ̂ − Zû``, shape (n,) (nlme's ``residuals(fit)`` at the cluster level)."""
        return self._need_design().y - self.fitted

    def require_converged(self) -> None:
        """Raise :class:`REMLConvergenceError` unless the fit converged."""
        if not self.converged:
            raise REMLConvergenceError(
                "the REML fit did not converge, so its numbers are not estimates: "
                + "; ".join(self.messages)
            )

    def equals(self, other: REMLFit) -> bool:
        """Whether two fits hold the same numbers, names and flags (design not compared)."""
        if not isinstance(other, REMLFit):
            return False
        frames = ("beta", "se", "vcov", "u", "sd_u", "corr_u")
        for name in frames:
            a, b = getattr(self, name), getattr(other, name)
            if not a.equals(b):
                return False
        ta = None if self.theta is None else list(self.theta)
        tb = None if other.theta is None else list(other.theta)
        scalars = ("method", "sigma", "criterion", "loglik", "converged", "singular",
                   "messages", "formula", "nobs", "origin")
        return ta == tb and all(getattr(self, s) == getattr(other, s) for s in scalars)

    # ------------------------------------------------------------------ printing
    def __repr__(self) -> str:
        return self.__str__()

    def _repr_html_(self) -> str:
        import html

        return f"<pre>{html.escape(self.__str__())}</pre>"

    def _random_lines(self) -> list[str]:
        """The SDs and correlations, per grouping factor when there are several."""
        fmt_sd, fmt_r = (lambda v: f"{v:.6g}"), (lambda v: f"{v:.4f}")
        groups = ({name: list(frame.columns) for name, frame in self.u_factors.items()}
                  if self.u_factors and len(self.u_factors) > 1 else {"": list(self.sd_u.index)})
        lines = ["", "Random effects (U):"]
        for name, labels in groups.items():
            if name:
                lines.append(f"over {name}:")
            lines.append(pd.DataFrame({"SD": self.sd_u[labels]}).to_string(float_format=fmt_sd))
            if len(labels) > 1:
                lines += ["Correlations:" if name else "Correlations of U:",
                          self.corr_u.loc[labels, labels].to_string(float_format=fmt_r)]
        return lines

    def __str__(self) -> str:
        lines = []
        if not self.converged:
            lines += [
                "!" * 78,
                "!! THIS REML FIT DID NOT CONVERGE. The numbers below are where the optimiser",
                "!! stopped, NOT estimates. Do not report or compare them.",
                "!" * 78,
            ]
        crit = "REML criterion" if self.method == "REML" else "deviance (ML)"
        lines.append(f"{self.method} fit ({self.origin}): {self.formula}")
        units = (", ".join(f"{k}: {len(v)}" for k, v in self.u_factors.items())
                 if self.u_factors else f"clusters = {len(self.u)}")
        lines.append(f"  {crit} {self.criterion:.3f}   log-likelihood {self.loglik:.3f}   "
                     f"n = {self.nobs}, {units}")
        fixed = pd.DataFrame({"estimate": self.beta, "SE": self.se,
                              "t": self.beta / self.se})
        lines += ["", "Fixed effects (γ):", fixed.to_string(float_format=lambda v: f"{v:.6g}")]
        lines += self._random_lines()
        if self.sigma_by is not None:
            lines += [f"Residual SD σ by {self.sigma_by.index.name}:",
                      self.sigma_by.to_string(float_format=lambda v: f"{v:.6g}")]
        elif self.sigma is not None and np.isfinite(self.sigma):  # none in a GLMM's family
            lines += [f"Residual SD σ: {self.sigma:.6g}"]
        if self.singular:
            lines += ["", "Note: singular (boundary) fit."]
        if self.messages:
            lines += ["", *(f"- {m}" for m in self.messages)]
        return "\n".join(lines)


def _singular_messages(sd: np.ndarray, corr: np.ndarray, names: tuple[str, ...],
                       cluster: str, theta_zero: np.ndarray) -> list[str]:
    msgs = []
    zero_sd = [names[r] for r in range(len(names)) if sd[r] <= 1e-8 * max(1.0, sd.max())]
    for name in zero_sd:
        msgs.append(
            f"Singular fit: the SD of {name} is estimated as 0. The data show no variation in "
            f"this effect between {cluster}s beyond what the residual noise already explains, "
            "so REML puts it on the boundary (an SD cannot be negative), and every cluster's "
            "BLUP of this term is 0. This is an estimate, not an error; a Bayesian posterior "
            "will keep this SD small but above 0. Consider dropping the term, or report the "
            "posterior."
        )
    if not zero_sd and theta_zero.any():
        msgs.append(
            f"Singular fit: the random effects of {', '.join(names)} are perfectly correlated "
            "(a correlation of ±1), so the estimated covariance of U has rank below "
            f"{len(names)}. The data cannot separate these effects between {cluster}s; "
            "consider a simpler random part."
        )
    return msgs


def fit_reml(
    spec_or_design: Spec | Design,
    data: pd.DataFrame | None = None,
    *,
    method: Literal["REML", "ML"] = "REML",
    start: np.ndarray | None = None,
    nAGQ: int = 1,
    weights: Weights | None = None,
) -> REMLFit:
    """Fit a multilevel model by REML or ML (the numbers of lme4's ``lmer``).

    A non-Gaussian family (Bernoulli, binomial, Poisson) is fitted by maximum likelihood
    with the Laplace approximation (``nAGQ=1``) or adaptive Gauss–Hermite quadrature
    (``nAGQ > 1``, one scalar random effect only), the numbers of lme4's ``glmer``
    (:mod:`bayesmix.reml.laplace`); ``method`` is then ignored (REML is not defined for
    a GLMM, and glmer has none).

    One grouping factor with one unstructured block: the per-cluster path below.  Several
    factors (nested or crossed) or covariance blocks (``||``): the blocked penalised least
    squares of :mod:`bayesmix.reml.blocked` through :mod:`bayesmix.reml.factors`.

    Minimises the profiled criterion of Bates et al. (2015) over the relative covariance
    factor θ (lower bound 0 on Λ's diagonal), computed from the per-cluster cross-products
    (:func:`bayesmix.stats.cluster_stats`), so its cost per evaluation does not grow with n.
    Then ``β̂``, the conditional modes ``b̂_j = Λ û_j``, ``σ̂`` and
    ``Cov(β̂) = σ̂² (R_XᵀR_X)⁻¹`` come from the penalised least squares solution at θ̂.

    Parameters
    ----------
    spec_or_design : Spec or Design
        The model; a Spec needs ``data``.
    data : DataFrame, str, Path, list or dask.dataframe.DataFrame, optional
        The data, when a Spec is given.  Files (CSV, Parquet, globs) and Dask DataFrames are
        not read into memory: the per-cluster statistics are computed where the rows are
        (:mod:`bayesmix.reml.from_stats`; one-factor Gaussian models), or a GLMM's binomial
        / Poisson cells (:mod:`bayesmix.stats.glmm_cells`; discrete predictors).
    method : {"REML", "ML"}
        Restricted (default) or full maximum likelihood.
    start : ndarray, optional
        Starting θ (lme4's Λ = I by default).
    nAGQ : int
        Non-Gaussian families: 1 (Laplace) or the number of quadrature points.
    weights : Weights, optional
        Sampling weights (with a Spec): the pseudo-likelihood of :mod:`bayesmix.weights`,
        maximised (ML) or restricted like repeated rows (REML).

    Returns
    -------
    REMLFit
        ``converged=False`` (with messages) when the optimiser did not reach a minimum;
        ``singular=True`` with a plain-language message for a boundary fit.
    """
    if method not in ("REML", "ML"):
        raise BayesmixError(f"method must be 'REML' or 'ML', not {method!r}")
    if isinstance(spec_or_design, Design):
        if weights is not None:
            raise BayesmixError("weights= goes with a Spec; a Design has its weights already "
                                "(build_design(spec.with_options(weights=...), data))")
        design = spec_or_design
    elif isinstance(spec_or_design, Spec):
        if data is None:
            raise BayesmixError("fit_reml(spec, data): give the data with a Spec")
        from bayesmix.stats.sources import is_rows_elsewhere

        if is_rows_elsewhere(data):  # files or a Dask DataFrame: statistics where they are
            from bayesmix.reml.from_stats import reml_from_source

            if start is not None or weights is not None:
                raise BayesmixError("start= and weights= are for rows in memory")
            return reml_from_source(spec_or_design, data, method, nAGQ=nAGQ)
        spec = spec_or_design if weights is None else spec_or_design.with_options(
            weights=weights)
        design = build_design(spec, data)
    else:
        raise BayesmixError(
            f"fit_reml takes a Spec (with data) or a Design, not {type(spec_or_design).__name__}"
        )
    if not design.family.is_gaussian:
        from bayesmix.reml.laplace import fit_laplace

        return fit_laplace(design, nAGQ=nAGQ)
    if nAGQ != 1:
        raise BayesmixError("nAGQ is for the Laplace / quadrature fit of a non-Gaussian family")
    if not (design.single_factor and design.effects[0].single_unstructured):
        if design.sigma_index is not None:
            raise BayesmixError("sigma_by is built for one unstructured block of random "
                                "effects on one grouping factor; fit this model without it")
        if design.weights1 is not None or design.weights2 is not None:
            raise BayesmixError("sampling weights are built for one unstructured block of "
                                "random effects (no ||); fit this model without weights")
        if start is not None:
            raise BayesmixError("start= is only taken for one unstructured block")
        from bayesmix.reml.factors import fit_reml_factors

        return fit_reml_factors(design, method)
    stats = cluster_stats(design)
    sc = stats.scaling
    start_std = None
    if start is not None:
        # θ of the original scale -> θ̃ of the standardised one: T̃/σ̃² = A_z (T/σ²) A_zᵀ.
        lam0 = lambda_from_theta(np.asarray(start, dtype=float), design.q)
        start_std = theta_from_covariance(sc.A_z @ lam0 @ lam0.T @ sc.A_z.T, 1.0)
    delta, jacobian = None, 0.0
    if design.sigma_index is not None:  # a residual SD per group (nlme's varIdent)
        from bayesmix.reml.varident import optimize_varident

        vi = optimize_varident(design, method, start=start_std)
        opt, stats, delta, jacobian = vi.opt, vi.stats, vi.delta, vi.jacobian
    else:
        opt = optimize_theta(stats, method, start=start_std)
    from bayesmix.reml.from_stats import FitLabels, assemble

    return assemble(stats, opt, method, FitLabels.of_design(design), design=design,
                    delta=delta, jacobian=jacobian)
