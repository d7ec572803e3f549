"""REML / ML estimates from the per-cluster statistics alone, wherever the rows are.

The profiled criterion of a one-factor Gaussian model depends on the data only through the
per-cluster cross-products (:mod:`bayesmix.reml.profiled`), so
``bm.fit_reml(spec, ddf)`` (a Dask DataFrame), ``bm.fit_reml(spec, "events/*.parquet")``
(DuckDB) and ``bm.fit_reml(spec, "big.csv")`` (chunks) compute the statistics where the rows
are (:mod:`bayesmix.stats.sources`) and optimise here: the client never holds a row.  The
result is the in-memory fit's (β̂, SEs, θ̂, σ̂, criterion and conditional modes), without a
design attached (``fit.design`` is None: fitted values and residuals need the rows).

:func:`assemble` maps an optimum on the standardised scale back to the original one; the
in-memory :func:`bayesmix.reml.fit_reml` uses it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bayesmix.errors import BayesmixError, DataError
from bayesmix.reml.profiled import (
    optimize_theta,
    solve_pls,
    theta_from_covariance,
    theta_index,
)
from bayesmix.reml.result import SINGULAR_TOL, REMLFit, _singular_messages
from bayesmix.spec.model import Spec
from bayesmix.stats import ClusterStats


@dataclass(frozen=True)
class FitLabels:
    """The names a fit's tables carry: fixed and random columns, clusters, n, formula."""

    fixed: tuple[str, ...]
    random: tuple[str, ...]
    clusters: tuple[str, ...]
    cluster: str
    formula: str
    nobs: int
    sigma_levels: tuple[str, ...] = ()
    sigma_by: str | None = None

    @classmethod
    def of_design(cls, design) -> FitLabels:
        """The labels of an in-memory design."""
        return cls(tuple(design.fixed_names), tuple(design.random_names),
                   tuple(design.clusters), design.spec.cluster, design.spec.to_formula(),
                   design.n, tuple(design.sigma_levels), design.spec.sigma_by)


def assemble(stats: ClusterStats, opt, method: str, labels: FitLabels, *, design=None,
             delta: np.ndarray | None = None, jacobian: float = 0.0) -> REMLFit:
    """The REMLFit at the optimum θ̂ of the standardised problem, on the original scale."""
    sc = stats.scaling
    q = stats.q
    sol = solve_pls(opt.theta, stats)
    if sol is None or not np.isfinite(opt.criterion):
        raise BayesmixError(
            "the REML criterion cannot be evaluated for this model and data: y is fitted "
            "exactly (no residual variation is left), or X and Z are numerically dependent; "
            "check for a predictor that duplicates the outcome or another predictor"
        )
    sigma = sc.y_scale * sol.sigma(method)
    cov_u = sc.cov_from_std(sol.sigma(method) ** 2 * sol.lam @ sol.lam.T)
    sd = np.sqrt(np.clip(np.diag(cov_u), 0.0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov_u / np.outer(sd, sd)
    corr[np.outer(sd, sd) == 0] = np.nan
    np.fill_diagonal(corr, 1.0)
    corr = np.clip(corr, -1.0, 1.0)
    rows, cols = theta_index(q)
    # Singularity is a property of T̃ (rank is unchanged by the invertible A_z).
    theta_zero = opt.theta[rows == cols] < SINGULAR_TOL
    singular = bool(theta_zero.any())
    messages = list(opt.messages)
    if singular:
        messages += _singular_messages(sd, corr, labels.random, labels.cluster, theta_zero)
    if not opt.converged:
        messages.insert(0, "The REML optimiser did not converge; the numbers are not estimates.")
    vcov = sc.vcov_from_std(sol.vcov_beta(method))
    fixed, rnames = list(labels.fixed), list(labels.random)
    sigma_by = (None if delta is None else
                pd.Series(sigma * delta, index=pd.Index(labels.sigma_levels,
                                                        name=labels.sigma_by), name="sigma"))
    criterion = sol.criterion(method) + jacobian + sc.criterion_offset(stats.n_total, method)
    return REMLFit(
        design=design,
        method=method,
        beta=pd.Series(sc.beta_from_std(sol.beta), index=fixed, name="estimate"),
        se=pd.Series(np.sqrt(np.diag(vcov)), index=fixed, name="se"),
        vcov=pd.DataFrame(vcov, index=fixed, columns=fixed),
        u=pd.DataFrame(sc.u_from_std(sol.b), index=pd.Index(labels.clusters,
                                                            name=labels.cluster),
                       columns=rnames),
        sd_u=pd.Series(sd, index=rnames, name="sd"),
        corr_u=pd.DataFrame(corr, index=rnames, columns=rnames),
        sigma=float(sigma),
        theta=theta_from_covariance(cov_u, sigma),
        criterion=criterion,
        loglik=-0.5 * criterion,
        converged=bool(opt.converged),
        singular=singular,
        messages=tuple(messages),
        source="bayesmix",
        formula=labels.formula,
        nobs=labels.nobs,
        origin="bayesmix",
        sigma_by=sigma_by,
    )


def laplace_from_cells(spec: Spec, source: Any, *, engine: str | None = None,
                       nAGQ: int = 1) -> REMLFit:
    """The Laplace (or AGQ) fit of a GLMM from its cells summed where the rows are.

    The fit of the cells (:mod:`bayesmix.stats.glmm_cells`) has the rows' estimates; its
    log-likelihood gains the rows' constant (and, for AGQ, the saturated model's difference),
    so it is what glmer reports for the rows.
    """
    from dataclasses import replace

    from bayesmix.reml.result import fit_reml
    from bayesmix.stats.glmm_cells import glmm_cells

    cells = glmm_cells(spec, source, engine=engine)
    fit = fit_reml(cells.spec, cells.frame, nAGQ=nAGQ)
    # AGQ's log-likelihood is reported relative to the saturated model's, as glmer does.
    shift = cells.constant - (cells.saturated if nAGQ > 1 else 0.0)
    return replace(fit, loglik=fit.loglik + shift, criterion=fit.criterion - 2.0 * shift,
                   nobs=cells.rows, formula=spec.to_formula())


def reml_from_source(spec: Spec, source: Any, method: str = "REML", *,
                     engine: str | None = None, nAGQ: int = 1) -> REMLFit:
    """REML / ML of rows that stay where they are.

    A one-factor Gaussian model from its statistics, or a GLMM from its cells
    (:func:`laplace_from_cells`).
    """
    from bayesmix.stats.pieces import piece_labels
    from bayesmix.stats.sources import first_rows, stats_of_source

    if not spec.family.is_gaussian:
        return laplace_from_cells(spec, source, engine=engine, nAGQ=nAGQ)
    if nAGQ != 1:
        raise DataError("nAGQ is for the Laplace / quadrature fit of a non-Gaussian family")
    if not (spec.single_factor and len(spec.random) == 1 and spec.random[0].correlated):
        raise DataError(
            "REML from distributed or streamed statistics is built for one grouping factor "
            "with one unstructured block of effects; collect the rows for this model")
    stats, levels = stats_of_source(spec, source, engine=engine)
    fixed, random = piece_labels(spec, first_rows(spec, source, engine), levels)
    labels = FitLabels(fixed, random, tuple(levels.clusters), spec.cluster,
                       spec.to_formula(), int(stats.n.sum()))
    return assemble(stats, optimize_theta(stats, method), method, labels)
