"""reconstruct(): the seed tutorial's check Y = Xβ̄ + Zū + ē, from the explicit X and Z.

For a Bayesian fit it also recomputes the log-likelihood inside the PyMC graph at a few
posterior draws and compares it with one computed here from the design's explicit X and Z, so a
model builder that disagrees with the design is caught.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from bayesmix import notation as nt
from bayesmix.design import Design
from bayesmix.fit_result import Fit


class PointEstimates(Protocol):
    """What :func:`reconstruct` needs of a non-Bayesian fit (a REML fit)."""

    design: Design
    beta: Any  # (p,)
    u: Any  # (J, q); several grouping factors: ``u_factors``, factor -> (J_g, q_g)
    sigma: float


@dataclass(frozen=True, repr=False)
class Reconstruction:
    """The seed's table: Y, Xβ̄, Zū, ē and their sum, row by row.

    Attributes
    ----------
    table : DataFrame
        Columns ``cluster, y, Xb, Zu, e, sum`` (index: the data's rows); with several
        grouping factors one unit column and one ``Zu[<factor>]`` column per factor
        (``Zu = Σ_g Z_g ū_g``), then ``e`` and ``sum``.
    max_abs_error : float
        ``max |y − (Xβ̄ + Zū + ē)|``; NaN for a non-Gaussian family, whose table has
        ``eta`` and ``mu`` instead of ``e`` (:mod:`bayesmix.checks.reconstruct_glmm`).
    graph_max_abs_error : float or None
        Largest absolute difference between the log-likelihood evaluated by the PyMC graph and
        by NumPy from the explicit X and Z, over the draws checked (None for REML fits).
    draws_checked : int
    source : str
        ``"posterior means"`` or ``"REML"`` (or the fit's method).
    """

    table: pd.DataFrame
    max_abs_error: float
    graph_max_abs_error: float | None
    draws_checked: int
    source: str

    def __str__(self) -> str:
        with pd.option_context("display.width", 120, "display.max_rows", 40):
            text = self.table.to_string(max_rows=40)
        line = (f"max |Y - (Xb + Zu + e)| = {self.max_abs_error:.3g}  ({self.source})"
                if np.isfinite(self.max_abs_error) else
                f"eta = Xb + Zu (+ offset) on the link scale, mu = E(y | eta) beside y  "
                f"({self.source})")
        if self.graph_max_abs_error is not None:
            line += (
                f"\nlog-likelihood, PyMC graph vs explicit X and Z, {self.draws_checked} draws: "
                f"max |difference| = {self.graph_max_abs_error:.3g}"
            )
        return f"{text}\n{line}"

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return self.table.to_html(max_rows=40) + f"<pre>{str(self).splitlines()[-1]}</pre>"


def _table(design: Design, beta: np.ndarray, u: np.ndarray) -> pd.DataFrame:
    xb = design.X @ beta
    zu = design.Z @ u.reshape(-1)
    e = design.y - xb - zu
    return pd.DataFrame(
        {
            "cluster": np.asarray(design.clusters, dtype=object)[design.cluster_index],
            "y": design.y,
            "Xb": xb,
            "Zu": zu,
            "e": e,
            "sum": xb + zu + e,
        },
        index=design.row_labels,
    )


def _factors_table(design: Design, beta: np.ndarray, us: dict[str, np.ndarray]) -> pd.DataFrame:
    """The seed's table with one Z_g ū_g column per grouping factor."""
    xb = design.X @ beta
    cols: dict[str, np.ndarray] = {}
    for fe in design.effects:
        cols[fe.name] = np.asarray(fe.grouping.levels, dtype=object)[fe.grouping.index]
    cols["y"] = design.y
    cols["Xb"] = xb
    total = xb.copy()
    for fe in design.effects:
        zu = fe.Z @ np.asarray(us[fe.name], dtype=float).reshape(-1)
        cols[f"Zu[{fe.name}]"] = zu
        total += zu
    e = design.y - total
    cols["e"] = e
    cols["sum"] = total + e
    return pd.DataFrame(cols, index=design.row_labels)


def factor_means(fit: Fit) -> dict[str, np.ndarray]:
    """Posterior means of every factor's effects, ``{factor: (J_g, q_g)}``."""
    from bayesmix.build_factors import factor_dims

    out = {}
    for fe in fit.design.effects:
        unit, eff, _ = factor_dims(fe)
        da = fit.posterior[f"{nt.U}_{fe.name}"].transpose(..., unit, eff)
        out[fe.name] = da.mean(("chain", "draw")).to_numpy()
    return out


def reconstruct(result: Fit | PointEstimates, *, draws_checked: int = 8) -> Reconstruction:
    """Rebuild Y from the explicit X and Z and the fit's point estimates.

    Parameters
    ----------
    result : Fit or REML fit
        A Bayesian fit (posterior means β̄, ū) or any object with ``design``, ``beta`` (p,),
        ``u`` (J, q) and ``sigma`` (a REML fit: β̂ and the conditional modes û).
    draws_checked : int
        Posterior draws at which the graph's log-likelihood is recomputed (Bayesian fits).

    Returns
    -------
    Reconstruction
    """
    if not result.design.family.is_gaussian:
        from bayesmix.checks.reconstruct_glmm import reconstruct_glmm

        return reconstruct_glmm(result, draws_checked)
    if not result.design.single_factor:
        return _reconstruct_factors(result, draws_checked)
    if isinstance(result, Fit):
        post = result.posterior
        beta = post[nt.BETA].mean(("chain", "draw")).to_numpy()
        u = post[nt.U].transpose(..., nt.DIM_CLUSTER, nt.DIM_RANDOM).mean(
            ("chain", "draw")
        ).to_numpy()
        table = _table(result.design, beta, u)
        graph_err, k = graph_check(result, draws_checked)
        source = "posterior means"
    else:
        design = result.design
        beta = np.asarray(result.beta, dtype=float).reshape(design.p)
        u = np.asarray(result.u, dtype=float).reshape(design.J, design.q)
        table = _table(design, beta, u)
        graph_err, k = None, 0
        source = str(getattr(result, "method", "point estimates"))
    err = float(np.max(np.abs(table["y"].to_numpy() - table["sum"].to_numpy())))
    return Reconstruction(table, err, graph_err, k, source)


def _reconstruct_factors(result: Fit | PointEstimates, draws_checked: int) -> Reconstruction:
    design = result.design
    if isinstance(result, Fit):
        beta = result.posterior[nt.BETA].mean(("chain", "draw")).to_numpy()
        table = _factors_table(design, beta, factor_means(result))
        graph_err, k = factors_graph_check(result, draws_checked)
        source = "posterior means"
    else:
        beta = np.asarray(result.beta, dtype=float).reshape(design.p)
        us = {name: np.asarray(value, dtype=float)
              for name, value in result.u_factors.items()}  # type: ignore[attr-defined]
        table = _factors_table(design, beta, us)
        graph_err, k = None, 0
        source = str(getattr(result, "method", "point estimates"))
    err = float(np.max(np.abs(table["y"].to_numpy() - table["sum"].to_numpy())))
    return Reconstruction(table, err, graph_err, k, source)


def factors_loglik_function(built: Any):
    """Several factors: the graph's log-likelihood as a NumPy function of original values.

    Returns ``f(beta, sigma, u, cov) -> float`` with ``u`` and ``cov`` mappings from factor
    name to its effects (J_g, q_g) and covariance T_g (q_g, q_g).  The values are mapped onto
    the graph's scale (``β̃ = (A_xβ − m e₀)/s_y``, ``σ̃ = σ/s_y``, ``ũ_g = A_g u_g / s_y``,
    ``T̃_g = A_g T_g A_gᵀ / s_y²``: :class:`bayesmix.scaling.FactorScale`) and put in place
    of its variables: the sampled ũ_g of the
    row-wise form, for the nested collapsed form the outer ũ_g and the innermost L̃, for the
    crossed collapsed form every L̃_g.
    """
    import pytensor
    from pytensor.graph.replace import graph_replace

    from bayesmix.crossed import collapsed_factors

    design = built.design
    graph = built.graph
    collapsed = collapsed_factors(design, built.likelihood)
    names = [nt.BETA_STD, nt.SIGMA_STD] + [
        f"{nt.CHOL_STD}_{g}" if any(fe is c for c in collapsed) else f"{nt.U_STD}_{g}"
        for g, fe in enumerate(design.effects)
    ]
    inputs = {name: graph[name].type() for name in names}
    loglik = graph_replace(graph["loglik"], {graph[n]: inputs[n] for n in names}, strict=False)
    fn = pytensor.function([inputs[n] for n in names], loglik, mode="FAST_COMPILE",
                           on_unused_input="ignore")
    sc = built.priors.scaling

    def evaluate(beta: np.ndarray, sigma: float, u: dict[str, np.ndarray],
                 cov: dict[str, np.ndarray]) -> float:
        values = [sc.beta_to_std(np.asarray(beta, dtype=float)),
                  np.asarray(float(sigma) / sc.y_scale)]
        for fe in design.effects:
            fs = fe.scale
            if any(fe is c for c in collapsed):
                values.append(np.linalg.cholesky(fs.cov_to_std(cov[fe.name])))
            else:
                values.append(fs.u_to_std(np.asarray(u[fe.name], dtype=float)))
        return float(fn(*values))

    return evaluate


def explicit_factors_loglik(design: Design, likelihood: str, beta: np.ndarray, sigma: float,
                            u: dict[str, np.ndarray], cov: dict[str, np.ndarray]) -> float:
    """Several factors, from the explicit X and every Z_g (NumPy only).

    ``rows``: Σ_i log N(y_i | (Xβ + Σ_g Z_g u_g)_i, σ²).  ``collapsed`` (nested): the
    innermost factor's u integrated out, Σ_j log N(r_j | 0, σ²I + Z_j T Z_jᵀ) with
    ``r = y − Xβ − Σ_outer Z_g u_g``.  ``collapsed`` (crossed): every factor's u integrated
    out, log N(r | 0, σ²I + Σ_g Z_g (I ⊗ T_g) Z_gᵀ) with ``r = y − Xβ`` (:func:`_marginal_all`).
    """
    from bayesmix.crossed import collapsed_factors

    collapsed = collapsed_factors(design, likelihood)
    r = design.y - design.X @ beta
    for fe in design.effects:
        if not any(fe is c for c in collapsed):
            r = r - fe.Z @ np.asarray(u[fe.name], dtype=float).reshape(-1)
    if not collapsed:
        return float(-0.5 * np.sum(np.log(2 * np.pi * sigma**2) + r**2 / sigma**2))
    if len(collapsed) > 1:
        return _marginal_all(r, design, cov, sigma)
    inner = collapsed[0]
    chol = np.linalg.cholesky(cov[inner.name])
    return _marginal(r, inner.Zq, inner.grouping.index, inner.J, chol, sigma)


def picked_draws(fit: Fit, draws: int) -> list:
    """Up to ``draws`` posterior draws spread evenly over the chains, each a Dataset."""
    from bayesmix.compare import DRAWS_DIM

    flat = fit.posterior.to_dataset().stack({DRAWS_DIM: ("chain", "draw")})
    total = flat.sizes[DRAWS_DIM]
    picks = np.linspace(0, total - 1, num=min(draws, total)).astype(int)
    return [flat.isel({DRAWS_DIM: int(s)}) for s in picks]


def factors_graph_check(fit: Fit, draws: int) -> tuple[float, int]:
    """Max |graph − explicit log-likelihood| over a few draws (several factors)."""
    from bayesmix.build import build_model
    from bayesmix.build_factors import factor_dims

    design = fit.design
    built = fit.built or build_model(design, fit.priors, likelihood=fit.likelihood)
    in_graph = factors_loglik_function(built)
    points = picked_draws(fit, draws)
    worst = 0.0
    for point in points:
        beta = point[nt.BETA].transpose(nt.DIM_FIXED).to_numpy()
        sigma = float(point[nt.SIGMA])
        us, covs = {}, {}
        for fe in design.effects:
            unit, eff, eff2 = factor_dims(fe)
            us[fe.name] = point[f"{nt.U}_{fe.name}"].transpose(unit, eff).to_numpy()
            sd = point[f"{nt.SD_U}_{fe.name}"].transpose(eff).to_numpy()
            corr = (point[f"{nt.CORR_U}_{fe.name}"].transpose(eff, eff2).to_numpy()
                    if fe.q > 1 else np.ones((1, 1)))
            covs[fe.name] = corr * np.outer(sd, sd)
        here = explicit_factors_loglik(design, fit.likelihood, beta, sigma, us, covs)
        worst = max(worst, abs(in_graph(beta, sigma, us, covs) - here))
    return worst, len(points)


def _marginal_all(r: np.ndarray, design: Design, cov: dict[str, np.ndarray],
                  sigma: float) -> float:
    """The log density N(r | 0, σ²I + ZΛΛᵀZᵀ), Λ = blockdiag_g(I ⊗ chol T_g), from every Z_g.

    Woodbury and the determinant lemma on the original scale, with a dense Q × Q Cholesky.
    """
    import scipy.sparse as sp

    lam = sp.block_diag([sp.kron(sp.identity(fe.J), np.linalg.cholesky(cov[fe.name]))
                         for fe in design.effects], format="csr")
    ZL = sp.hstack([fe.Z for fe in design.effects], format="csr") @ lam
    s2 = sigma**2
    C = np.linalg.cholesky(np.eye(ZL.shape[1]) + (ZL.T @ ZL).toarray() / s2)
    w = np.linalg.solve(C, ZL.T @ r / s2)
    n = r.size
    logdet = n * np.log(s2) + 2 * np.log(np.diag(C)).sum()
    return float(-0.5 * (n * np.log(2 * np.pi) + logdet + r @ r / s2 - w @ w))


def _marginal(r: np.ndarray, Zq: np.ndarray, index: np.ndarray, J: int, chol: np.ndarray,
              sigma: float) -> float:
    """Σ_j log N(r_j | 0, σ²I + Z_j L Lᵀ Z_jᵀ) over the units j of ``index`` (NumPy)."""
    s2 = sigma**2
    eye = np.eye(Zq.shape[1])
    order = np.argsort(index, kind="stable")
    bounds = np.searchsorted(index[order], np.arange(J + 1))
    total = 0.0
    for j in range(J):
        rows = order[bounds[j] : bounds[j + 1]]
        ZL = Zq[rows] @ chol
        C = np.linalg.cholesky(eye + ZL.T @ ZL / s2)
        w = np.linalg.solve(C, ZL.T @ r[rows] / s2)
        logdet = len(rows) * np.log(s2) + 2 * np.log(np.diag(C)).sum()
        total += -0.5 * (len(rows) * np.log(2 * np.pi) + logdet + r[rows] @ r[rows] / s2
                         - w @ w)
    return float(total)


def cluster_blocks(design: Design) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each cluster's rows and its dense block Z_j (n_j × q) of the explicit sparse Z."""
    q = design.q
    order = np.argsort(design.cluster_index, kind="stable")
    bounds = np.searchsorted(design.cluster_index[order], np.arange(design.J + 1))
    blocks = []
    for j in range(design.J):
        rows = order[bounds[j] : bounds[j + 1]]
        blocks.append((rows, design.Z[rows][:, j * q : (j + 1) * q].toarray()))
    return blocks


def explicit_loglik(
    design: Design, likelihood: str, beta: np.ndarray, u: np.ndarray, chol: np.ndarray,
    sigma: float | np.ndarray, blocks: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> float:
    """Log-likelihood of y from the explicit X and Z (NumPy only).

    ``rows`` / ``sufficient``: Σ_i log N(y_i | (Xβ + Zu)_i, σ²).  ``collapsed``:
    Σ_j log N(y_j | X_jβ, σ²I + Z_j T Z_jᵀ) with Z_j the cluster's block of the explicit Z
    (``blocks``, from :func:`cluster_blocks`) and T = L Lᵀ, through the determinant lemma and
    Woodbury with a q × q Cholesky per cluster, so it costs O(n q²) rather than O(Σ n_j³)
    (tests/test_build.py checks that form against the dense n × n marginal Gaussian).
    """
    # Sampling weights (bayesmix.weights): row i's density to the power w_i|j, cluster j's
    # marginal to the power w_j; ones when unweighted.
    w1 = design.weights1 if design.weights1 is not None else np.ones(design.n)
    w2 = design.weights2 if design.weights2 is not None else np.ones(design.J)
    if likelihood in ("rows", "sufficient"):
        mu = design.X @ beta + design.Z @ u.reshape(-1)
        r = design.y - mu
        if np.ndim(sigma):  # sigma_by: σ_s of each row's group
            sigma = np.asarray(sigma)[design.sigma_index]
        return float(-0.5 * np.sum(w1 * (np.log(2 * np.pi * sigma**2) + r**2 / sigma**2)))
    s2 = sigma**2
    eye = np.eye(design.q)
    total = 0.0
    for j, (rows, Zj) in enumerate(blocks if blocks is not None else cluster_blocks(design)):
        sw = np.sqrt(w1[rows])  # Π_i N(r_i)^{w_i} = the Gaussian of the rows scaled by √w_i
        r = sw * (design.y[rows] - design.X[rows] @ beta)
        ZL = sw[:, None] * (Zj @ chol)  # (n_j, q)
        C = np.linalg.cholesky(eye + ZL.T @ ZL / s2)
        w = np.linalg.solve(C, ZL.T @ r / s2)
        n_j = w1[rows].sum()
        logdet = n_j * np.log(s2) + 2 * np.log(np.diag(C)).sum()
        total += -0.5 * w2[j] * (n_j * np.log(2 * np.pi) + logdet + r @ r / s2 - w @ w)
    return float(total)


def loglik_function(built: Any):
    """The graph's log-likelihood as a NumPy function of the original-scale parameters.

    Returns a callable ``f(beta=..., sigma=..., chol_u=..., u=...) -> float`` (``u`` only for
    the forms that sample it).  The values are mapped onto the graph's standardised scale
    with the model's :class:`~bayesmix.scaling.Scaling` (``β̃ = (A_xβ − m e₀)/s_y``,
    ``T̃ = A_z T A_zᵀ/s_y²``, ...) and put in place of its random variables in
    ``built.graph["loglik"]``, so a mistake in the scaling, the builder or the design shows.
    """
    import pytensor
    from pytensor.graph.replace import graph_replace

    graph = built.graph
    names = [nt.BETA_STD, nt.SIGMA_STD, nt.CHOL_STD] + ([nt.U_STD] if nt.U_STD in graph else [])
    inputs = {name: graph[name].type() for name in names}
    loglik = graph_replace(graph["loglik"], {graph[n]: inputs[n] for n in names}, strict=False)
    fn = pytensor.function([inputs[n] for n in names], loglik, mode="FAST_COMPILE",
                           on_unused_input="ignore")
    sc = built.priors.scaling

    def evaluate(**values: np.ndarray) -> float:
        chol = np.asarray(values[nt.CHOL_U], dtype=float)
        std = {
            nt.BETA_STD: sc.beta_to_std(values[nt.BETA]),
            nt.SIGMA_STD: np.asarray(values[nt.SIGMA], dtype=float) / sc.y_scale,
            nt.CHOL_STD: np.linalg.cholesky(sc.cov_to_std(chol @ chol.T)),
        }
        if nt.U_STD in graph:
            std[nt.U_STD] = sc.u_to_std(values[nt.U])
        return float(fn(*[std[n] for n in names]))

    return evaluate


def graph_check(fit: Fit, draws: int) -> tuple[float, int]:
    """Max |graph log-likelihood − explicit log-likelihood| over a few posterior draws."""
    from bayesmix.build import build_model

    built = fit.built or build_model(fit.design, fit.priors, likelihood=fit.likelihood)
    in_graph = loglik_function(built)
    post = fit.posterior
    def draws_of(name: str, *dims: str) -> np.ndarray:
        da = post[name].transpose("chain", "draw", *dims)
        return da.to_numpy().reshape(da.shape[0] * da.shape[1], *da.shape[2:])  # size 0 too

    flat = {
        nt.BETA: draws_of(nt.BETA, nt.DIM_FIXED),
        nt.SIGMA: draws_of(nt.SIGMA, *[d for d in post[nt.SIGMA].dims if d == nt.DIM_SIGMA]),
        nt.CHOL_U: draws_of(nt.CHOL_U, nt.DIM_RANDOM, nt.DIM_RANDOM2),
        nt.U: draws_of(nt.U, nt.DIM_CLUSTER, nt.DIM_RANDOM),
    }
    blocks = cluster_blocks(fit.design) if fit.likelihood == "collapsed" else None
    total = flat[nt.SIGMA].shape[0]
    picks = np.linspace(0, total - 1, num=min(draws, total)).astype(int)
    worst = 0.0
    for s in picks:
        point = {name: values[s] for name, values in flat.items()}
        here = explicit_loglik(
            fit.design, fit.likelihood, point[nt.BETA], point[nt.U], point[nt.CHOL_U],
            np.asarray(point[nt.SIGMA], dtype=float), blocks,
        )
        worst = max(worst, abs(in_graph(**point) - here))
    return worst, len(picks)
