"""The PyMC model of a non-Gaussian family (Bernoulli, binomial, Poisson): a GLMM.

On the link scale, with the standardised X̃ and Z̃ of :mod:`bayesmix.scaling` (m = g(ȳ) the
centre of :func:`bayesmix.families.link_centre`, and no rescaling: s = 1)::

    β̃ ~ Normal(rp.std_beta())                           (p,)   free; beta = A_x⁻¹(β̃ + m e₀)
    ũ_g = z_g L̃_gᵀ,  z_g ~ N(0, I)                      (J_g, q_g) per grouping factor
    η_i = m + X̃_i β̃ + Σ_g Z̃_{g,i} ũ_{g, j_g(i)} + o_i   o_i = log t_i (Poisson exposure)
    y_i ~ Bernoulli(logit⁻¹ η_i) | Binomial(n_i, logit⁻¹ η_i) | Poisson(exp η_i)

the joint posterior of (γ, U, T) that NUTS samples directly, as brms and bambi do, with two
exact reparametrisations that they lack (:mod:`bayesmix.glmm_params`): factors whose units
carry much data are sampled centred, as their mean and zero-sum deviations, the others
non-centred (ũ_g = z_g L̃_gᵀ); and the fixed effects are sampled sheared by the effects' means
(α̃ = β̃ + Σ_g A_g ū_g, which the data identify).

Its forms:

``"rows"`` (the reference)
    One likelihood term per row.
``"cells"`` (exact aggregation; the default when it at least halves the rows)
    Rows that share every grouping unit and the same row of X̃ and Z̃ have the same η up to
    their offsets, so a binomial cell sums its k and n (a Bernoulli row is one trial), and a
    Poisson cell sums its y and its exposure t (o_c = log Σ t_i).  The log-likelihood equals
    the row-wise one exactly: the cells' binomial coefficients and log y! and the exposures'
    Σ y_i log t_i differ from the rows' by a constant, which is added back.  One cell per
    combination of a cluster and categorical predictors, as in lme4's cbpp.

``u``, ``sd_u``, ``corr_u`` (one factor) or ``u_<g>``, ``sd_u_<g>``, ``corr_u_<g>`` (several)
are stored on the original scale as for the Gaussian family; there is no σ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from scipy import special

from bayesmix import notation as nt
from bayesmix.design import Design
from bayesmix.glmm_params import centred_factors, shear_matrix, sheared_fixed_effects
from bayesmix.priors import ResolvedPriors

CELLS_MIN_REDUCTION = 2.0
"""``"auto"`` aggregates rows into cells when that divides the number of rows by this much."""


@dataclass(frozen=True)
class Cells:
    """Rows aggregated into cells of equal linear predictor (module docstring).

    Attributes
    ----------
    rows : ndarray of int, shape (c,)
        A representative row of each cell (its X̃, Z̃ and units are the cell's).
    cell_of_row : ndarray of int, shape (n,)
        The cell of each row.
    y : ndarray, shape (c,)
        Summed outcome.
    trials : ndarray, shape (c,) or None
        Summed trials (binomial, and Bernoulli rows as one trial each).
    offset : ndarray, shape (c,) or None
        log of the summed exposure (Poisson with an exposure).
    constant : float
        log-likelihood of the rows minus that of the cells, at any parameters.
    """

    rows: np.ndarray
    cell_of_row: np.ndarray
    y: np.ndarray
    trials: np.ndarray | None
    offset: np.ndarray | None
    constant: float

    @property
    def c(self) -> int:
        """Number of cells."""
        return len(self.rows)


def make_cells(design: Design) -> Cells:
    """Group the rows of ``design`` into cells of equal linear predictor (exact)."""
    fam = design.family
    parts = [design.X, *(fe.Zq for fe in design.effects),
             *(fe.grouping.index[:, None].astype(float) for fe in design.effects)]
    key = np.column_stack(parts) if parts else np.zeros((design.n, 0))
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    c = len(first)
    y = np.bincount(inverse, weights=design.y, minlength=c)
    trials = offset = None
    if fam.name in ("bernoulli", "binomial"):
        n_i = design.trials if design.trials is not None else np.ones(design.n)
        trials = np.bincount(inverse, weights=n_i, minlength=c)
    constant = (family_constant(fam.name, design.y, design.trials)
                - family_constant(fam.name, y, trials))
    if fam.name == "poisson" and design.offset is not None:
        t = np.bincount(inverse, weights=np.exp(design.offset), minlength=c)
        offset = np.log(t)
        # Σ_i y_i o_i (rows) against Σ_c y_c log t_c (cells).
        constant += float(design.y @ design.offset - y @ offset)
    return Cells(first, inverse, y, trials, offset, float(constant))


def _log_choose(n: np.ndarray, k: np.ndarray) -> np.ndarray:
    return special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)


def family_constant(name: str, y: np.ndarray, n: np.ndarray | None) -> float:
    """The normalising constant the kernel leaves out: Σ log C(n, y), or −Σ log y! (Poisson)."""
    if name == "poisson":
        return float(-special.gammaln(np.asarray(y, dtype=float) + 1).sum())
    n = np.ones(len(y)) if n is None else n
    return float(_log_choose(np.asarray(n, dtype=float), np.asarray(y, dtype=float)).sum())


def family_loglik(design: Design, eta, rows: Cells | None = None):
    """Σ log p(y | η) of the rows (or of the cells) as a tensor, added as a Potential.

    Written in the canonical form of the family, one pass over the rows with no parameter
    checks (y, n and t are data, checked by :func:`bayesmix.build_design`)::

        Bernoulli / binomial   Σ k_i η_i − n_i log(1 + e^η_i)  + Σ log C(n_i, k_i)
        Poisson                Σ y_i η_i − e^η_i               − Σ log y_i!

    (η includes the offset log t_i; the constant is :func:`family_constant`).  It equals the
    row-wise log-likelihood of :meth:`bayesmix.families.Family.loglik` (checked against
    scipy.stats) at random parameters (tests/test_families.py); its gradient is
    Σ (k_i − n_i p_i) ∂η_i.  Measured on the 100k-row Bernoulli benchmark (log density and
    gradient, Numba): 4.9 ms against 7.4 ms through ``pm.Bernoulli(logit_p=η)``, whose logp
    switches on y and checks p (bambi's model: 4.2 ms).  Potential ``loglik_rows`` or
    ``loglik_cells``.
    """
    fam = design.family
    if rows is None:
        y, trials, offset = design.y, design.trials, design.offset
    else:
        y, trials, offset = rows.y, rows.trials, rows.offset
    if offset is not None:
        eta = eta + pt.as_tensor_variable(offset)
    y = np.asarray(y, dtype=float)
    if fam.name in ("bernoulli", "binomial"):
        n = np.ones_like(y) if trials is None else np.asarray(trials, dtype=float)
        loglik = pt.dot(y, eta) - pt.sum(pt.as_tensor_variable(n) * pt.softplus(eta))
    else:
        loglik = pt.dot(y, eta) - pt.sum(pt.exp(eta))
    constant = family_constant(fam.name, y, trials)
    loglik = loglik + (constant if rows is None else constant + rows.constant)
    pm.Potential("loglik_rows" if rows is None else "loglik_cells", loglik)
    return loglik


def glmm_linear_predictor(design: Design, rp: ResolvedPriors, rows: np.ndarray | None,
                          centred: frozenset[str] = frozenset(),
                          ) -> tuple[Any, Any, dict[str, Any], dict[str, np.ndarray]]:
    """β̃, and η (without offset) at the given rows, with every factor's effects.

    Factors in ``centred`` are sampled centred (:func:`bayesmix.build_factors.centred_effects`),
    the others non-centred; β̃ is sampled sheared by the effects' means
    (:func:`bayesmix.glmm_params.sheared_fixed_effects`).

    Returns
    -------
    beta_std : tensor, shape (p,)
    eta : tensor, shape (len(rows),)
    graph : dict
        ``u_std`` / ``chol_u_std`` (one factor) or ``u_std_<g>`` / ``chol_u_std_<g>``.
    initvals : dict
    """
    from bayesmix.build import _covariance, _u_from_offset
    from bayesmix.build_factors import centred_effects, factor_effects

    sc = rp.scaling
    take = slice(None) if rows is None else rows
    X_all = sc.standardize(design.atoms, design.y)[0]
    graph: dict[str, Any] = {}
    parts = []  # (ũ_g (J_g, q_g), Z̃_g of every row, unit index of every row)
    if design.single_factor:
        chol, init = _covariance(rp, design)
        if design.effects[0].name in centred:
            u_std = centred_effects("", chol, design.J, design.q)
            pm.Deterministic(nt.U, sc.y_scale * pt.dot(u_std, sc.A_z_inv.T),
                             dims=(nt.DIM_CLUSTER, nt.DIM_RANDOM))
        else:
            u_std = _u_from_offset(chol, sc)
        Zs = sc.standardize(design.atoms, design.y)[1]
        parts.append((u_std, Zs, design.cluster_index))
        graph.update({nt.CHOL_STD: chol, nt.U_STD: u_std})
    else:
        effects, graph, init = factor_effects(design, rp, centred=centred)
        for fe, u_std, fs in effects:
            Zs = np.ascontiguousarray(fs.standardize(design.atoms, fe.q))
            parts.append((u_std, Zs, fe.grouping.index))
    shift = None
    for u_std, Zs, _ in parts:
        A = shear_matrix(X_all, Zs)
        if np.any(A):
            term = pt.dot(pt.as_tensor_variable(A), pt.mean(u_std, axis=0))
            shift = term if shift is None else shift + term
    beta_std = sheared_fixed_effects(rp, design.p, shift)
    X = X_all[take]
    eta = pt.dot(pt.as_tensor_variable(X), beta_std) if design.p else pt.zeros(X.shape[0])
    for u_std, Zs, idx in parts:
        Z = np.ascontiguousarray(Zs[take])
        eta = eta + pt.sum(pt.as_tensor_variable(Z) * u_std[idx[take]], axis=-1)
    return beta_std, sc.y_center + eta, graph, init


def build_glmm(design: Design, rp: ResolvedPriors, form: str,
               parametrization: str = "auto") -> Any:
    """The PyMC model of a non-Gaussian design in the ``"rows"`` or ``"cells"`` form.

    Returns
    -------
    BuiltModel
        ``graph`` holds ``beta_std``, the effects' standardised tensors, ``loglik`` (the
        row-wise log-likelihood of y, equal in both forms) and ``eta`` (rows form only).
    """
    from bayesmix.build import BuiltModel
    from bayesmix.build_factors import factor_coords

    coords = dict(design.coords) if design.single_factor else {
        nt.DIM_FIXED: list(design.fixed_names), **factor_coords(design)}
    cells = make_cells(design) if form == "cells" else None
    with pm.Model(coords=coords) as model:
        centred = centred_factors(design, parametrization)
        beta_std, eta, graph, init = glmm_linear_predictor(
            design, rp, None if cells is None else cells.rows, centred)
        loglik = family_loglik(design, eta, cells)
        graph.update({nt.BETA_STD: beta_std, "loglik": loglik, "initvals": init,
                      "cells": cells})
    return BuiltModel(model, design, rp, form, None, graph)
