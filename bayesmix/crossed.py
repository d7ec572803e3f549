"""Crossed grouping factors: every factor's effects integrated out, from sparse cross-products.

With crossed factors (plates × samples, subjects × items) no factor is nested in another, so
the effects cannot be integrated out unit by unit as in :mod:`bayesmix.nested`; they are
integrated out jointly.  On the standardised scale (X̃, ỹ of :mod:`bayesmix.scaling`, Z̃ =
[Z̃_1 | Z̃_2 | ...] with Z̃_g unit-major, n × J_g q_g, :class:`bayesmix.scaling.FactorScale`),
Q = Σ_g J_g q_g random effects in all and::

    Λ    = blockdiag_g (I_Jg ⊗ L̃_g)                       (Q, Q)   ũ = Λ v, v ~ N(0, I)
    V    = σ̃²I + Z̃ΛΛᵀZ̃ᵀ                                  (n, n)   never formed
    M    = ΛᵀZ̃ᵀZ̃Λ / σ̃² + I = C Cᵀ                         (Q, Q)   dense, Cholesky C
    r    = ỹ − X̃β̃,   b = ΛᵀZ̃ᵀr / σ̃²                       (n,), (Q,)
    log|V|    = 2n log σ̃ + 2 Σ log diag C                 (determinant lemma)
    rᵀV⁻¹r    = rᵀr / σ̃² − ‖C⁻¹b‖²                        (Woodbury)

    rᵀr = ỹ'ỹ − 2β̃'X̃'ỹ + β̃'X̃'X̃β̃,    Z̃ᵀr = Z̃'ỹ − Z̃'X̃β̃

so the likelihood needs only the cross-products of ``[X̃ Z̃ ỹ]`` (:class:`CrossedStats`,
Z̃'Z̃ stored dense), and a gradient costs O(Q³) (PyTensor's differentiable ``cholesky`` and
``solve_triangular``) whatever n.  Only (γ, T, σ) are sampled; the effects of every draw are
drawn afterwards from their exact joint conditional ``v | y, β̃, L̃, σ̃ ~ N(M⁻¹b, M⁻¹)``
(:func:`draw_crossed_posterior`), so the posterior holds ``u_<factor>`` as in the other forms.

Measured with ``OPENBLAS_NUM_THREADS=1 nice -n 10 python benchmarks/crossed_collapsed.py``
(and ``... --scaling``) on a shared 2-core machine, PyTensor's C back end, nutpie, 2 chains ×
1,000 draws after 1,000 warm-up, chains one after the other; time per log density and
gradient, sampling time, min bulk ESS of (γ, SDs, σ)::

    data (Q)              form        grad      sampling   min ESS   ESS/s
    penicillin (30)       collapsed   0.050 ms    6.8 s     1,571    232
                          sufficient  0.035 ms   16.5 s       103      6.2
    crossed_slope (95)    collapsed   1.14 ms    39.3 s     2,166     55
                          sufficient  0.030 ms   20.8 s       160      7.7
    simulated (1 | a) + (1 | b), gradient only: Q = 100, 200, 400, 800:
                          collapsed   0.41, 2.3, 13.8, 98 ms; sufficient 0.015–0.04 ms

So the collapsed form mixes far better (7–37× the ESS per second) but its O(Q³) gradient
makes the whole run slower from Q ≈ 100: ``likelihood="auto"`` picks it for crossed factors
only where it was measured faster in sampling time, Q ≤ :data:`AUTO_MAX_EFFECTS`, and
``"collapsed"`` is refused above :data:`MAX_EFFECTS` (≈ 0.1 s per gradient).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import scipy.linalg as sla
from pytensor.tensor.linalg import cholesky, solve_triangular

from bayesmix import notation as nt
from bayesmix.design import Design
from bayesmix.design.terms import FactorEffects, unit_major
from bayesmix.priors import ResolvedPriors
from bayesmix.scaling import Scaling

MAX_EFFECTS = 800
"""Most random effects (Q) the crossed collapsed form takes (98 ms per gradient at 800)."""
AUTO_MAX_EFFECTS = 50
"""Most random effects for which ``likelihood="auto"`` picks it over ``"sufficient"``:
measured faster at Q = 30 (Penicillin), slower at Q = 95 (crossed_slope)."""


@dataclass(frozen=True)
class CrossedStats:
    """Cross-products of ``[X̃, Z̃, ỹ]`` on a standardised scale (module docstring).

    Attributes
    ----------
    ZZ : ndarray, shape (Q, Q)
        Z̃'Z̃, dense.
    ZX : ndarray, shape (Q, p)
    Zy : ndarray, shape (Q,)
    XX : ndarray, shape (p, p)
    Xy : ndarray, shape (p,)
    yy : float
    n : int
    sizes : tuple of (int, int)
        (J_g, q_g) of every factor, in the order of the columns of Z̃.
    """

    ZZ: np.ndarray
    ZX: np.ndarray
    Zy: np.ndarray
    XX: np.ndarray
    Xy: np.ndarray
    yy: float
    n: int
    sizes: tuple[tuple[int, int], ...]

    @property
    def Q(self) -> int:
        """Random effects in all."""
        return self.ZZ.shape[0]

    @property
    def p(self) -> int:
        """Fixed effects."""
        return self.XX.shape[0]

    def arrays(self) -> dict[str, np.ndarray]:
        """The statistics by their names in a shared-data graph."""
        return {"ZZ_crossed": self.ZZ, "ZX_crossed": self.ZX, "Zy_crossed": self.Zy,
                "XX_crossed": self.XX, "Xy_crossed": self.Xy,
                "yy_crossed": np.asarray(self.yy)}


def total_effects(design: Design) -> int:
    """Q = Σ_g J_g q_g."""
    return sum(fe.J * fe.q for fe in design.effects)


def collapsed_factors(design: Design, likelihood: str) -> list[FactorEffects]:
    """The factors whose effects the graph integrates out (none, the innermost, or all)."""
    from bayesmix.nested import nesting

    if likelihood != "collapsed" or design.single_factor:
        return []
    nest = nesting(design)
    return list(design.effects) if nest is None else [nest[0]]


def crossed_stats(design: Design, scaling: Scaling) -> CrossedStats:
    """The cross-products of ``[X̃, Z̃, ỹ]`` (one sparse product over the rows)."""
    import scipy.sparse as sp

    X, _, y = scaling.standardize(design.atoms, design.y)
    Z = sp.hstack([unit_major(fe.scale.standardize(design.atoms, fe.q), fe.grouping.index, fe.J)
                   for fe in design.effects], format="csr")
    Zt = Z.T.tocsr()
    return CrossedStats(ZZ=(Zt @ Z).toarray(), ZX=np.asarray(Zt @ X).reshape(-1, X.shape[1]),
                        Zy=np.asarray(Zt @ y), XX=X.T @ X, Xy=X.T @ y, yy=float(y @ y),
                        n=design.n, sizes=tuple((fe.J, fe.q) for fe in design.effects))


def _times_lambda(A: Any, chols: list[Any], sizes: tuple[tuple[int, int], ...]) -> Any:
    """``A Λ`` for A (m, Q): each factor's columns, viewed as (m, J_g, q_g), times L̃_g."""
    parts, start = [], 0
    for L, (J, q) in zip(chols, sizes, strict=True):
        block = A[:, start:start + J * q]
        start += J * q
        if q == 1:
            parts.append(block * L[0, 0])
        else:
            parts.append(pt.tensordot(block.reshape((block.shape[0], J, q)), L,
                                      axes=[[2], [0]]).reshape((block.shape[0], J * q)))
    return pt.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]


def crossed_loglik(stats: dict[str, Any], beta: Any, chols: list[Any], sigma: Any, *,
                   sizes: tuple[tuple[int, int], ...], n: int, p: int) -> Any:
    """The log density N(ỹ | X̃β̃, σ̃²I + Z̃ΛΛᵀZ̃ᵀ) from the cross-products (module docstring).

    Parameters
    ----------
    stats : dict of str to tensor
        ``ZZ_crossed`` (Q, Q), ``ZX_crossed`` (Q, p), ``Zy_crossed`` (Q,), ``XX_crossed``
        (p, p), ``Xy_crossed`` (p,), ``yy_crossed`` ().
    beta : tensor (p,)
    chols : list of tensors (q_g, q_g)
        L̃_g of every factor.
    sigma : scalar tensor
    sizes : tuple of (J_g, q_g)
    n, p : int

    Returns
    -------
    scalar tensor (the standardised ỹ's log density; add the scaling's Jacobian)
    """
    s2 = sigma**2
    rr, zr = stats["yy_crossed"], stats["Zy_crossed"]
    if p:
        rr = (rr - 2 * pt.dot(stats["Xy_crossed"], beta)
              + pt.dot(beta, pt.dot(stats["XX_crossed"], beta)))
        zr = zr - pt.dot(stats["ZX_crossed"], beta)
    ZZ = stats["ZZ_crossed"]
    Q = sum(J * q for J, q in sizes)
    zzl = _times_lambda(ZZ, chols, sizes)                  # Z̃'Z̃Λ (symmetric Z̃'Z̃)
    M = _times_lambda(zzl.T, chols, sizes) / s2 + pt.eye(Q)  # ΛᵀZ̃'Z̃Λ/σ̃² + I
    b = _times_lambda(zr[None, :], chols, sizes)[0] / s2     # ΛᵀZ̃ᵀr/σ̃²
    C = cholesky(M, lower=True)
    w = solve_triangular(C, b, lower=True)
    logdet = 2 * pt.sum(pt.log(pt.diagonal(C)))
    return -0.5 * (n * pt.log(2 * np.pi * s2) + logdet + rr / s2 - pt.sum(w**2))


def factor_covariances(
    design: Design, rp: ResolvedPriors,
) -> tuple[list[Any], dict[str, Any], dict[str, np.ndarray]]:
    """Every factor's L̃_g (stored as ``chol_u_std_<g>``), ``sd_u_<g>`` and ``corr_u_<g>``.

    As :func:`bayesmix.build_factors.factor_effects` for a factor it collapses: the same
    priors and names, no z_g.
    """
    from bayesmix.build_factors import block_cholesky, factor_dims, store_covariance

    graph: dict[str, Any] = {}
    init: dict[str, np.ndarray] = {}
    chols, offset = [], 0
    for g, fe in enumerate(design.effects):
        cols = np.arange(offset, offset + fe.q)
        offset += fe.q
        sd_prior = rp.sd_u.take(cols).scaled(fe.scale.column_scale / rp.scaling.y_scale)
        chol, start = block_cholesky(fe.blocks, fe.q, sd_prior, rp.eta, suffix=f"_{g}")
        init.update(start)
        store_covariance(fe, chol, fe.scale)
        pm.Deterministic(f"{nt.CHOL_STD}_{g}", chol, dims=factor_dims(fe)[1:])
        graph[f"{nt.CHOL_STD}_{g}"] = chol
        chols.append(chol)
    return chols, graph, init


def crossed_collapsed(
    design: Design, rp: ResolvedPriors, beta_std: Any, sigma_std: Any, *, shared: bool = False,
) -> tuple[Any, dict[str, Any], dict[str, np.ndarray], CrossedStats]:
    """Every factor's L̃_g, ``sd_u_<g>``, ... and the marginal log-likelihood of y.

    ``shared``: the statistics enter as ``pm.Data`` (names of :meth:`CrossedStats.arrays`),
    so a compiled model takes new data of the same structure (:func:`crossed_data`).

    Returns
    -------
    loglik, graph, initvals, stats
    """
    sc = rp.scaling
    st = crossed_stats(design, sc)
    chols, graph, init = factor_covariances(design, rp)
    data = {k: (pm.Data(k, v) if shared else pt.as_tensor_variable(v))
            for k, v in st.arrays().items()}
    loglik = crossed_loglik(data, beta_std, chols, sigma_std, sizes=st.sizes, n=st.n, p=st.p)
    loglik = loglik + sc.log_jacobian(st.n)
    pm.Potential("loglik_crossed", loglik)
    graph["loglik"] = loglik
    return loglik, graph, init, st


def crossed_data(built: Any, design: Design) -> dict[str, np.ndarray]:
    """New statistics for a shared-data crossed model (``pm.set_data``), on its scale."""
    return crossed_stats(design, built.scaling).arrays()


def draw_crossed_effects(
    st: CrossedStats, beta_std: np.ndarray, chols: list[np.ndarray], sigma_std: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """ũ = Λ v, v ~ N(M⁻¹b, M⁻¹), for every draw (standardised scale).

    Parameters
    ----------
    beta_std : ndarray, shape (D, p)
    chols : list of ndarray, shapes (D, q_g, q_g)
    sigma_std : ndarray, shape (D,)

    Returns
    -------
    ndarray, shape (D, Q)
        Every factor's ũ_g (J_g, q_g) raveled unit-major, in the order of ``st.sizes``.
    """
    D, Q = sigma_std.shape[0], st.Q
    out = np.empty((D, Q))
    eye = np.eye(Q)
    for d in range(D):
        lam = sla.block_diag(*[np.kron(np.eye(J), L[d])
                               for L, (J, _) in zip(chols, st.sizes, strict=True)])
        s2 = sigma_std[d] ** 2
        zr = st.Zy - st.ZX @ beta_std[d] if st.p else st.Zy
        ZL = st.ZZ @ lam
        C = sla.cholesky(lam.T @ ZL / s2 + eye, lower=True)
        w = sla.solve_triangular(C, lam.T @ zr / s2, lower=True)
        v = sla.solve_triangular(C, w + rng.standard_normal(Q), lower=True, trans="T")
        out[d] = lam @ v
    return out


def draw_crossed_posterior(built: Any, random_seed: int | None, post: Any) -> Any:
    """Add ``u_<factor>`` of every factor to a posterior of the crossed collapsed form.

    The effects of every draw come from their exact joint conditional
    (:func:`draw_crossed_effects`), with the random stream ``[random_seed, 1]``.
    """
    from bayesmix.build_factors import factor_dims

    design = built.design
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    flat = chains * draws

    def values(name: str, *dims: str) -> np.ndarray:
        da = post[name].transpose("chain", "draw", *dims)
        return da.to_numpy().reshape(flat, *da.shape[2:])

    beta_std = (values(nt.BETA_STD, nt.DIM_FIXED) if nt.BETA_STD in post
                else np.zeros((flat, 0)))
    chols = [values(f"{nt.CHOL_STD}_{g}", *factor_dims(fe)[1:])
             for g, fe in enumerate(design.effects)]
    rng = np.random.default_rng(None if random_seed is None else [random_seed, 1])
    u_std = draw_crossed_effects(built.stats, beta_std, chols, values(nt.SIGMA_STD), rng)
    start = 0
    for fe in design.effects:
        part = u_std[:, start:start + fe.J * fe.q].reshape(flat, fe.J, fe.q)
        start += fe.J * fe.q
        unit, eff, _ = factor_dims(fe)
        post[f"{nt.U}_{fe.name}"] = (("chain", "draw", unit, eff),
                                     fe.scale.u_from_std(part).reshape(chains, draws, fe.J,
                                                                       fe.q))
    return post
