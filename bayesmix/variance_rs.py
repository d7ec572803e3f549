"""Rights & Sterba (2019) decomposition of the outcome variance of a two-level Gaussian model.

For a model with one grouping factor j, Rights & Sterba ("Quantifying explained variance in
multilevel models", *Psychological Methods* 24, 2019, Table 1) write the model-implied total
variance of y as a sum of five sources::

    Var(y) = f1 + f2 + v + m + σ²

    f1 = γ_wᵀ Φ_w γ_w      fixed effects of the within (level-1, cluster-mean-centred) columns
    f2 = γ_bᵀ Φ_b γ_b      fixed effects of the between (level-2, constant in a cluster) columns
    v  = tr(T Σ_w)          random slope variation (Σ_w: covariance of Z's columns, q × q)
    m  = m̄ᵀ T m̄             random intercept ("mean") variation (m̄: column means of Z, (q,))
    σ²                      level-1 residual

where Φ_w, Φ_b and Σ_w are the sample covariances (denominator n − 1, as the authors' r2mlm)
of the columns of X and of Zq over the n rows, and T = Cov(U_j) (q × q).  Each source divided
by the total is the share of the outcome variance it accounts for; f1 + f2 is the marginal and
f1 + f2 + v + m the conditional R² of this framework.

Covered: the Gaussian family, exactly one grouping factor (any number of random effects, any
covariance structure).  When every column of X is an intercept, a within column (its cluster
means are 0: level-1 predictors centred at their cluster means, and their cross-level
interactions) or a between column (constant within each cluster), and every column of Zq is an
intercept or a within column, the five sources above are given.  Otherwise (a level-1 predictor
centred at a grand mean or not at all, as hsb's ``cses``, which is centred at the population
``MEANSES`` rather than the sample school mean) f1 and f2 cannot be separated, and the
non-centred form of the same paper is given instead: ``f = γᵀ Φ γ`` (all of X), v and m as
above (m̄ now has non-zero slope entries), σ².  Not covered: several grouping factors (nested
or crossed), and GLMMs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bayesmix.design import Design
from bayesmix.errors import BayesmixError

CENTRED_SOURCES = ("f1", "f2", "v", "m", "residual")
UNCENTRED_SOURCES = ("f", "v", "m", "residual")
_TOL = 1e-8


class RightsSterbaError(BayesmixError):
    """The model is outside what the Rights & Sterba decomposition here covers."""


@dataclass(frozen=True)
class ColumnRoles:
    """Which columns of X and Zq are within, between or intercept columns.

    Attributes
    ----------
    within, between, intercept : ndarray of int
        Column indices of X.
    random_ok : bool
        Every column of Zq is an intercept or a within column.
    centred : bool
        Every column of X has a role and ``random_ok``: the five-source decomposition applies.
    offenders : tuple of str
        Names of the columns (of X or Zq) that are neither, with their largest |cluster mean|.
    """

    within: np.ndarray
    between: np.ndarray
    intercept: np.ndarray
    random_ok: bool
    centred: bool
    offenders: tuple[str, ...]


def _cluster_stats(col: np.ndarray, index: np.ndarray, J: int) -> tuple[float, float]:
    """Largest |cluster mean| and largest |x − cluster mean| of one column, shape (n,)."""
    sizes = np.bincount(index, minlength=J)
    means = np.bincount(index, weights=col, minlength=J) / np.maximum(sizes, 1)
    return float(np.abs(means).max()), float(np.abs(col - means[index]).max())


def column_roles(design: Design) -> ColumnRoles:
    """Classify the columns of X and Zq of a one-factor design (see the module docstring).

    A column counts as within when its largest |cluster mean| is at most 1e-8 × its largest
    |value|, as between when its largest deviation from the cluster mean is that small, and as
    an intercept when it is constant 1.
    """
    fe = design.effects[0]
    index, J = fe.grouping.index, fe.J
    within, between, intercept, offenders = [], [], [], []
    for k, name in enumerate(design.fixed_names):
        col = design.X[:, k]
        scale = max(float(np.abs(col).max()), 1e-300)
        if np.all(col == 1.0):
            intercept.append(k)
            continue
        mean_max, dev_max = _cluster_stats(col, index, J)
        if mean_max <= _TOL * scale:
            within.append(k)
        elif dev_max <= _TOL * scale:
            between.append(k)
        else:
            offenders.append(f"{name} (cluster means up to {mean_max:.3g})")
    random_ok = True
    for r, label in enumerate(fe.labels):
        col = fe.Zq[:, r]
        if np.all(col == 1.0):
            continue
        mean_max, _ = _cluster_stats(col, index, J)
        if mean_max > _TOL * max(float(np.abs(col).max()), 1e-300):
            random_ok = False
            offenders.append(f"random {label} (cluster means up to {mean_max:.3g})")
    return ColumnRoles(np.array(within, int), np.array(between, int), np.array(intercept, int),
                       random_ok, random_ok and not offenders, tuple(dict.fromkeys(offenders)))


def check_covered(design: Design) -> None:
    """Raise :class:`RightsSterbaError` naming what is not covered (GLMM, several factors)."""
    if not design.family.is_gaussian:
        raise RightsSterbaError(
            f"the Rights & Sterba (2019) decomposition here covers Gaussian models; this one is "
            f"{design.family.name} (use the latent-scale ICC and Nakagawa R² instead)")
    if len(design.effects) != 1:
        raise RightsSterbaError(
            "the Rights & Sterba (2019) decomposition here covers two-level models with one "
            f"grouping factor; this model has {len(design.effects)} "
            f"({', '.join(fe.name for fe in design.effects)}). Use the Nakagawa R² and the "
            "ICCs per factor instead")


def rights_sterba_parts(design: Design, beta: np.ndarray, cov_u: np.ndarray,
                        sigma2: np.ndarray) -> tuple[tuple[str, ...], np.ndarray, ColumnRoles]:
    """The variance of each source, per draw.

    Parameters
    ----------
    design : Design
        Gaussian, one grouping factor (:func:`check_covered`).
    beta : ndarray, shape (S, p)
        γ per draw (S = 1 for a point estimate).
    cov_u : ndarray, shape (S, q, q)
        T per draw.
    sigma2 : ndarray, shape (S,)
        σ² per draw.

    Returns
    -------
    sources : tuple of str
        ``("f1", "f2", "v", "m", "residual")`` when centred, else ``("f", "v", "m",
        "residual")``.
    variances : ndarray, shape (S, len(sources))
    roles : ColumnRoles
    """
    check_covered(design)
    roles = column_roles(design)
    Zq = design.effects[0].Zq
    sigma_w = np.atleast_2d(np.cov(Zq, rowvar=False))          # Σ_w, (q, q)
    mbar = Zq.mean(axis=0)                                       # m̄, (q,)
    v = np.einsum("sab,ab->s", cov_u, sigma_w)                   # tr(T Σ_w)
    m = np.einsum("a,sab,b->s", mbar, cov_u, mbar)               # m̄ᵀ T m̄

    def quad(cols: np.ndarray) -> np.ndarray:
        if cols.size == 0:
            return np.zeros(beta.shape[0])
        phi = np.atleast_2d(np.cov(design.X[:, cols], rowvar=False))
        b = beta[:, cols]
        return np.einsum("sa,ab,sb->s", b, phi, b)

    if roles.centred:
        parts = [quad(roles.within), quad(roles.between), v, m, sigma2]
        return CENTRED_SOURCES, np.stack(parts, axis=-1), roles
    every = np.arange(design.p)
    return UNCENTRED_SOURCES, np.stack([quad(every), v, m, sigma2], axis=-1), roles


def uncentred_note(roles: ColumnRoles) -> str:
    """Why f1 and f2 are not given, and how to get them."""
    return (
        "Rights & Sterba: f1 (fixed, within) and f2 (fixed, between) are not separated because "
        f"these columns are neither cluster-mean-centred nor constant within clusters: "
        f"{'; '.join(roles.offenders)}. Their non-centred total f is given instead. To get f1 "
        "and f2, centre level-1 predictors at their sample cluster means (x − mean of x in the "
        "cluster) and add the cluster means as level-2 predictors")
