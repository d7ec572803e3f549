"""The one notation table of bayesmix: every symbol, its meaning and its name in code.

=========  =============================================  ================================
symbol     meaning                                        name in code / in the posterior
=========  =============================================  ================================
y_ij       outcome of observation i in cluster j          ``y``
β_qj       level-1 coefficient q of cluster j             ``coef`` (dims cluster × level1),
                                                          like lme4's ``coef()``
γ_qs       fixed effect: level-2 coefficient s of β_q     ``beta`` (dim ``fixed``), labelled
                                                          ``"g01 (M)"``: γ name and term
U_qj       random effect of β_q in cluster j              ``u`` (dims cluster × random)
T          Cov(U_j), LKJ prior on its correlations        ``sd_u`` (dim random), ``corr_u``
                                                          (dims random × random2), ``chol_u``
ε_ij / e   residual, N(0, σ²)                             ``sigma``; residuals ``e``
σ_s        residual SD of group s (``sigma_by``: σ² per   ``sigma`` (dim ``sigma_group``)
           level of a column, HLM's heterogeneous σ²)
=========  =============================================  ================================

The mixed form stacks the equations as ``Y = Xβ + Zu + e`` with ``β = (γ_00, γ_10, ...)``.
Non-centred offsets are ``u_offset`` (``u_j = L z_j`` with ``T = L Lᵀ``), never ``u``.

The model is sampled on the standardised scale of :mod:`bayesmix.scaling`; its parameters there
carry the suffix ``_std`` (``beta_std`` = β̃, ``sigma_std`` = σ̃, ``chol_u_std`` = L̃ with
T̃ = L̃L̃ᵀ, ``u_std`` = ũ) and are not kept in a fit's posterior, which is on the original scale.
"""

from __future__ import annotations

Y = "y"
BETA = "beta"
U = "u"
U_OFFSET = "u_offset"
SIGMA = "sigma"
SD_U = "sd_u"
CORR_U = "corr_u"
CHOL_U = "chol_u"
COEF = "coef"
BETA_STD = "beta_std"
SIGMA_STD = "sigma_std"
CHOL_STD = "chol_u_std"
U_STD = "u_std"
RESIDUAL = "e"

DIM_FIXED = "fixed"
DIM_CLUSTER = "cluster"
DIM_RANDOM = "random"
DIM_RANDOM2 = "random2"
DIM_LEVEL1 = "level1"
DIM_ROW = "row"
DIM_SIGMA = "sigma_group"

INTERCEPT = "(Intercept)"


def _wrap(term: str) -> str:
    return term if term == INTERCEPT else f"({term})"


def fixed_label(gamma: str, term: str) -> str:
    """Label of one column of X: ``"g01 (M)"``, ``"g00 (Intercept)"``."""
    return f"{gamma} {_wrap(term)}"


def random_label(u_name: str, term: str) -> str:
    """Label of one random term: ``"U1 (X)"``, ``"U0 (Intercept)"``."""
    return f"{u_name} {_wrap(term)}"


def level1_label(coef: str, term: str) -> str:
    """Label of one level-1 coefficient column: ``"b1 (X)"``, ``"b0 (Intercept)"``."""
    return f"{coef} {_wrap(term)}"


def split_label(label: str) -> tuple[str, str]:
    """Inverse of the label functions: ``"g01 (M)" -> ("g01", "M")``."""
    name, _, rest = label.partition(" ")
    return name, (rest if rest == INTERCEPT else rest[1:-1])
