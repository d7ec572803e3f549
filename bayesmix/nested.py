"""Nested models of any depth: the innermost level integrated out, from per-unit statistics.

When every grouping factor is an ancestor of the innermost one (children in schools, pupils
in classes in schools), each innermost unit j lies in one unit k_g(j) of every outer factor
g, so given the outer effects its rows follow a two-level model with a known offset.  With
``W̃_j = [X̃_j, Õ_j, Z̃_j, ỹ_j]`` (the fixed columns, the outer factors' random columns, the
innermost factor's and y, standardised as in :mod:`bayesmix.build_factors`) and
``c_j = (β̃, ũ_o,k(j))`` the coefficients of ``[X̃_j, Õ_j]``::

    r_j   = ỹ_j − X̃_jβ̃ − Õ_j ũ_o,k(j)
    r_jᵀr_j = ỹ'ỹ − 2 c_jᵀ[X̃ Õ]'ỹ + c_jᵀ [X̃ Õ]'[X̃ Õ] c_j
    Z̃_jᵀr_j = Z̃'ỹ − Z̃'[X̃ Õ] c_j
    log p(ỹ | β̃, ũ_o, T̃, σ̃) = Σ_j log N(r_j | 0, σ̃²I + Z̃_j T̃ Z̃_jᵀ)   (Woodbury, q × q per j)

So the innermost effects (the most numerous: 1,721 children × 2 in egsingle) are integrated
out exactly, the outer effects are sampled non-centred (60 schools × 2), and every gradient
costs O(J) in the number of innermost units, whatever the number of rows.  The innermost
effects are drawn afterwards from their exact conditional given each draw
(:func:`bayesmix.build.draw_u_conditional` with the outer offset), so the posterior still holds
every factor's ``u``.  Checked against the row-wise joint form (log density and posterior).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from bayesmix import notation as nt
from bayesmix.design import Design
from bayesmix.design.terms import FactorEffects
from bayesmix.priors import ResolvedPriors
from bayesmix.scaling import Scaling
from bayesmix.stats import ClusterStats, grouped_gram


@dataclass(frozen=True)
class NestedStats:
    """Per-innermost-unit cross-products of ``W̃ = [X̃, Õ, Z̃, ỹ]`` (module docstring).

    Attributes
    ----------
    M : ndarray, shape (J, d, d)
        ``W̃_jᵀW̃_j``, d = p + q_o + q + 1.
    n : ndarray of int, shape (J,)
    p, q_outer, q : int
    outer_index : ndarray of int, shape (J, G)
        The unit of each outer factor that inner unit j lies in.
    """

    M: np.ndarray
    n: np.ndarray
    p: int
    q_outer: int
    q: int
    outer_index: np.ndarray

    def block(self, a: slice, b: slice) -> np.ndarray:
        """``M[:, a, b]``."""
        return self.M[:, a, b]

    @property
    def parts(self) -> tuple[slice, slice, slice]:
        """Slices of X̃, Õ and Z̃ among the columns of W̃."""
        p, qo, q = self.p, self.q_outer, self.q
        return slice(0, p), slice(p, p + qo), slice(p + qo, p + qo + q)

    def inner_stats(self, scaling: Scaling) -> ClusterStats:
        """The ``[X̃, Z̃, ỹ]`` part as a ClusterStats (for the conditional draws of u)."""
        keep = np.r_[np.arange(self.p), np.arange(self.p + self.q_outer, self.M.shape[1])]
        return ClusterStats(n=self.n, M=self.M[:, keep][:, :, keep], p=self.p, q=self.q,
                            scaling=scaling)


def nesting(design: Design) -> tuple[FactorEffects, list[FactorEffects], np.ndarray] | None:
    """(innermost factor, outer factors, unit map (J, G)) when every factor nests the first.

    None when some factor is not an ancestor of the innermost one (crossed factors).
    """
    if design.single_factor:
        return None
    inner = design.factor(design.spec.cluster)
    outer = [fe for fe in design.effects if fe is not inner]
    idx = inner.grouping.index
    maps = []
    for fe in outer:
        k = np.full(inner.J, -1)
        k[idx] = fe.grouping.index
        if not np.array_equal(k[idx], fe.grouping.index):
            return None
        maps.append(k)
    return inner, outer, np.column_stack(maps)


def nested_stats(design: Design, scaling: Scaling) -> NestedStats:
    """Cross-products of ``[X̃, Õ, Z̃, ỹ]`` per innermost unit (one pass over the rows)."""
    inner, outer, maps = nesting(design)  # type: ignore[misc]
    X, _, y = scaling.standardize(design.atoms, design.y)
    O_ = [fe.scale.standardize(design.atoms, fe.q) for fe in outer]
    Zi = inner.scale.standardize(design.atoms, inner.q)
    W = np.column_stack([X, *O_, Zi, y])
    M = grouped_gram(W, inner.grouping.index, inner.J)
    return NestedStats(M=M, n=inner.grouping.sizes(), p=X.shape[1],
                       q_outer=sum(fe.q for fe in outer), q=inner.q, outer_index=maps)


def nested_collapsed(
    design: Design, rp: ResolvedPriors, beta_std, sigma_std, *, shared: bool = False,
) -> tuple[Any, dict[str, Any], dict[str, np.ndarray], NestedStats]:
    """The log-likelihood of y with the innermost effects integrated out (module docstring).

    ``shared``: the statistics enter as ``pm.Data("M_nested")``, so that a compiled model
    takes new data of the same structure (``pm.set_data(nested_data(built, design))``).

    Returns
    -------
    loglik, graph, initvals, stats
    """
    from bayesmix.build_factors import factor_effects
    from bayesmix.collapsed import woodbury_loglik

    sc = rp.scaling
    inner, outer, maps = nesting(design)  # type: ignore[misc]
    st = nested_stats(design, sc)
    px, po, pz = st.parts
    effects, graph, init = factor_effects(design, rp, collapse=inner)
    gathered = [u_std[maps[:, outer.index(fe)]] for fe, u_std, _ in effects if fe is not inner]
    uo = pt.concatenate(gathered, axis=1)  # (J, q_o)
    M = pm.Data("M_nested", st.M) if shared else pt.as_tensor_variable(st.M)
    n = pt.as_tensor_variable(st.n.astype(float))
    yy = M[:, -1, -1]
    Oy = M[:, po, -1]
    OO = M[:, po, po]
    rr = yy - 2 * pt.sum(Oy * uo, axis=1) + pt.sum(uo[:, :, None] * OO * uo[:, None, :],
                                                  axis=(1, 2))
    zr_mat = M[:, pz, -1] - pt.sum(M[:, po, pz] * uo[:, :, None], axis=1)  # (J, q)
    if st.p:
        XX, Xy, XO, XZ = M[:, px, px], M[:, px, -1], M[:, px, po], M[:, px, pz]
        xo = pt.sum(XO * beta_std[None, :, None], axis=1)  # β̃ᵀX'Õ, (J, q_o)
        rr = (rr - 2 * pt.dot(Xy, beta_std) + 2 * pt.sum(xo * uo, axis=1)
              + pt.dot(XX.reshape((XX.shape[0], -1)), pt.outer(beta_std, beta_std).ravel()))
        zr_mat = zr_mat - pt.sum(XZ * beta_std[None, :, None], axis=1)
    g_inner = design.effects.index(inner)
    loglik = woodbury_loglik(rr, [zr_mat[:, c] for c in range(st.q)], M[:, pz, pz], n,
                             graph[f"{nt.CHOL_STD}_{g_inner}"], sigma_std, q=st.q)
    loglik = loglik + sc.log_jacobian(int(st.n.sum()))
    pm.Potential("loglik_nested", loglik)
    graph["loglik"] = loglik
    return loglik, graph, init, st


def nested_data(built: Any, design: Design) -> dict[str, np.ndarray]:
    """New statistics for a shared-data nested model, on the model's standardised scale.

    ``design`` must have the model's structure (units, their nesting and p, q); the
    statistics are those of its rows.  Returns ``{"M_nested": ...}`` for ``pm.set_data``.
    """
    return {"M_nested": nested_stats(design, built.scaling).M}


def draw_inner_effects(
    design: Design, st: NestedStats, scaling: Scaling, beta_std: np.ndarray,
    chol_std: np.ndarray, sigma_std: np.ndarray, outer_u: dict[str, np.ndarray],
    rng: np.random.Generator,
) -> np.ndarray:
    """The innermost effects for every draw, from their exact conditional (original scale).

    Parameters
    ----------
    beta_std : ndarray, shape (D, p)
    chol_std : ndarray, shape (D, q, q)
        The innermost factor's L̃ per draw.
    sigma_std : ndarray, shape (D,)
    outer_u : dict of str to ndarray (D, J_g, q_g)
        The outer factors' effects per draw, original scale.

    Returns
    -------
    ndarray, shape (D, J, q)
    """
    from bayesmix.collapsed import draw_u_conditional

    inner, outer, maps = nesting(design)  # type: ignore[misc]
    uo = np.concatenate(
        [fe.scale.u_to_std(outer_u[fe.name])[:, maps[:, g]]
         for g, fe in enumerate(outer)], axis=2)  # (D, J, q_o)
    _, po, pz = st.parts
    OZ = st.M[:, po, pz]  # (J, q_o, q)

    def offset(sl: slice) -> np.ndarray:
        return np.einsum("dja,jac->djc", uo[sl], OZ)

    u_std = draw_u_conditional(st.inner_stats(scaling), beta_std, chol_std, sigma_std, rng,
                               offset=offset)
    return inner.scale.u_from_std(u_std)


def draw_inner_posterior(built: Any, random_seed: int | None, post: Any) -> Any:
    """Add ``u_<innermost factor>`` to a posterior of the nested collapsed form.

    The innermost effects of every draw come from their exact conditional
    (:func:`draw_inner_effects`), with the random stream ``[random_seed, 1]``.
    """
    from bayesmix.build_factors import factor_dims

    design = built.design
    inner, outer, _ = nesting(design)  # type: ignore[misc]
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    flat = chains * draws

    def values(name: str, *dims: str) -> np.ndarray:
        da = post[name].transpose("chain", "draw", *dims)
        return da.to_numpy().reshape(flat, *da.shape[2:])

    g = design.effects.index(inner)
    outer_u = {fe.name: values(f"{nt.U}_{fe.name}", *factor_dims(fe)[:2]) for fe in outer}
    beta_std = (values(nt.BETA_STD, nt.DIM_FIXED) if nt.BETA_STD in post
                else np.zeros((flat, 0)))
    chol = values(f"{nt.CHOL_STD}_{g}", *factor_dims(inner)[1:])
    rng = np.random.default_rng(None if random_seed is None else [random_seed, 1])
    u = draw_inner_effects(design, built.stats, built.scaling, beta_std, chol,  # type: ignore
                           values(nt.SIGMA_STD), outer_u, rng)
    unit, eff, _ = factor_dims(inner)
    post[f"{nt.U}_{inner.name}"] = (("chain", "draw", unit, eff),
                                    u.reshape(chains, draws, inner.J, inner.q))
    return post
