"""REML / ML of a design with several grouping factors or covariance blocks, as a REMLFit.

Every random-effect block of the design (:class:`bayesmix.design.terms.RandomBlock`: one
factor's effects with one structure) becomes one block of :mod:`bayesmix.reml.blocked`
(unstructured Λ_b, or diagonal for ``||``).  The arrays are standardised: ``X̃, ỹ`` from
``design.scaling``, and every block's columns by its own :class:`~bayesmix.scaling.Scaling`
(an unstructured block's slope variables centred where the block has the columns that needs,
as for one factor; a diagonal block only scaled, which keeps T diagonal).  The solution maps
back exactly::

    β = A_x⁻¹ (s_y β̃ + m e₀)        Cov(β̂) = s_y² A_x⁻¹ Cov(β̃) A_x⁻ᵀ      σ = s_y σ̃
    T_b = s_y² A_b⁻¹ T̃_b A_b⁻ᵀ       b_bj = s_y A_b⁻¹ b̃_bj

and the criterion gains the constant ``2(n − p) log s_y + 2 log|det A_x|`` (REML; ``2n log s_y``
for ML), as for one factor (:meth:`bayesmix.scaling.Scaling.criterion_offset`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from bayesmix.design import Design
from bayesmix.design.terms import unit_major
from bayesmix.errors import BayesmixError
from bayesmix.reml.blocked import BlockArrays, fit_blocked
from bayesmix.reml.profiled import theta_from_covariance


def fit_reml_factors(design: Design, method: Literal["REML", "ML"] = "REML"):
    """REML / ML of any random-effects structure of ``design`` (module docstring).

    Returns
    -------
    REMLFit
        With ``u_factors`` (per factor: units × effects), ``sd_u`` and ``corr_u`` over every
        effect of every factor (correlations across factors, or fixed at 0 by ``||``, are 0),
        and ``theta`` in the order of the design's blocks (lme4's θ when lme4 orders its terms
        the same way).
    """
    from bayesmix.reml.result import REMLFit

    sc = design.scaling
    X, _, y = sc.standardize(design.atoms, design.y)
    blocks, where = [], []
    for fe in design.effects:
        # Centred and scaled within each block (an unstructured block keeps its T under
        # A_b; a diagonal one is only scaled), so a shifted slope variable costs no digits.
        for (cols, sb), block in zip(fe.scale.blocks, fe.blocks, strict=True):
            Zs = sb.standardize(design.atoms, design.y)[1]
            blocks.append(BlockArrays(unit_major(Zs, fe.grouping.index, fe.J), fe.J, block.q,
                                      diagonal=block.structure == "diagonal", name=fe.name))
            where.append((fe, list(cols), sb))
    res = fit_blocked(X, y, blocks, method)
    s_y = sc.y_scale
    sigma = s_y * res.sigma
    labels = [label for fe in design.effects for label in fe.labels]
    pos = {label: i for i, label in enumerate(labels)}
    cov = np.zeros((len(labels), len(labels)))
    u_factors = {fe.name: np.zeros((fe.J, fe.q)) for fe in design.effects}
    thetas = []
    parts = zip(blocks, where, res.sd, res.corr, res.modes, strict=True)
    for blk, (fe, cols, sb), sd, corr, modes in parts:
        cov_b = sb.cov_from_std(np.nan_to_num(corr) * np.outer(sd, sd))
        idx = [pos[fe.labels[c]] for c in cols]
        cov[np.ix_(idx, idx)] = cov_b
        u_factors[fe.name][:, cols] = sb.u_from_std(modes)
        thetas.append(np.sqrt(np.diag(cov_b)) / sigma if blk.diagonal
                      else theta_from_covariance(cov_b, sigma))
    sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.clip(cov / np.outer(sd, sd), -1.0, 1.0)
    corr[np.outer(sd, sd) == 0] = np.nan
    np.fill_diagonal(corr, 1.0)
    if not np.isfinite(res.criterion):
        raise BayesmixError("the REML criterion cannot be evaluated for this model and data")
    vcov = sc.vcov_from_std(res.vcov)
    beta = sc.beta_from_std(res.beta)
    criterion = res.criterion + sc.criterion_offset(design.n, method)
    fixed = list(design.fixed_names)
    u_frames = {
        fe.name: pd.DataFrame(u_factors[fe.name],
                              index=pd.Index(fe.grouping.levels, name=fe.name),
                              columns=list(fe.labels))
        for fe in design.effects
    }
    single = design.single_factor
    return REMLFit(
        design=design,
        method=method,
        beta=pd.Series(beta, index=fixed, name="estimate"),
        se=pd.Series(np.sqrt(np.diag(vcov)), index=fixed, name="se"),
        vcov=pd.DataFrame(vcov, index=fixed, columns=fixed),
        u=(u_frames[design.effects[0].name].rename_axis(design.spec.cluster) if single
           else pd.DataFrame()),
        sd_u=pd.Series(sd, index=labels, name="sd"),
        corr_u=pd.DataFrame(corr, index=labels, columns=labels),
        sigma=float(sigma),
        theta=np.concatenate(thetas),
        criterion=float(criterion),
        loglik=-0.5 * float(criterion),
        converged=bool(res.converged),
        singular=bool(res.is_singular),
        messages=tuple(res.messages),
        source="bayesmix",
        formula=design.spec.to_formula(),
        nobs=design.n,
        origin="bayesmix",
        u_factors=u_frames,
    )
