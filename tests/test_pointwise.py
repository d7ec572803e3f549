"""Pointwise log-likelihoods: per row given u, per cluster with u integrated out.

Checked against independent computations: the dense multivariate normal density of a
cluster's rows (scipy), numerical integration over a cluster's effect (scipy.integrate),
glmer's Laplace and adaptive-quadrature log-likelihoods at its estimates (pinned JSON), and
the family's densities from scipy.stats row by row.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

import bayesmix as bm
from bayesmix.cluster_marginal import cluster_marginal_loglik
from bayesmix.errors import BayesmixError
from bayesmix.pointwise import FlatDraws, flat_draws, marginal_unit, observation_loglik

ROOT = Path(__file__).resolve().parents[1]
GLMM_REF = ROOT / "tests" / "reference" / "glmm"


def _picked(draws: FlatDraws, idx) -> FlatDraws:
    idx = np.asarray(idx)
    return FlatDraws(draws.beta[idx], None if draws.sigma is None else draws.sigma[idx],
                     {k: v[idx] for k, v in draws.u.items()},
                     {k: v[idx] for k, v in draws.cov.items()}, 1, idx.size)


def _dense_marginal(design, draws: FlatDraws, s: int, unit: str, only=None) -> np.ndarray:
    """log N(y_j | X_jβ, σ²I + Σ_g Σ_units Z_u T_g Z_uᵀ) with scipy, per cluster of ``unit``
    (NaN for clusters not in ``only``)."""
    g = next(g for g in design.groupings if g.name == unit)
    out = np.full(g.J, np.nan)
    for j in range(g.J) if only is None else np.flatnonzero(only):
        rows = np.flatnonzero(g.index == j)
        V = draws.sigma[s] ** 2 * np.eye(rows.size)
        for fe in design.effects:
            codes = fe.grouping.index[rows]
            for code in np.unique(codes):
                Zu = fe.Zq[rows] * (codes == code)[:, None]
                V = V + Zu @ draws.cov[fe.name][s] @ Zu.T
        out[j] = stats.multivariate_normal(design.X[rows] @ draws.beta[s], V).logpdf(
            design.y[rows])
    return out


@pytest.mark.parametrize("model", ["sleepstudy", "pastes_nested"])
def test_gaussian_marginal_is_the_dense_multivariate_normal(fitted_model, model):
    fit = fitted_model(model)
    draws = _picked(flat_draws(fit), [0, 777, 1999])
    unit, ll = cluster_marginal_loglik(fit, draws)
    assert unit == marginal_unit(fit.design)
    for s in range(3):
        np.testing.assert_allclose(ll[s], _dense_marginal(fit.design, draws, s, unit),
                                   rtol=1e-10, atol=1e-9)


def test_gaussian_marginal_survives_a_shifted_outcome(sleepstudy_data):
    """y + 1e6: the statistics path works on the standardised scale, so no digits are lost."""
    data = sleepstudy_data.assign(Reaction=sleepstudy_data["Reaction"] + 1e6)
    spec = bm.Spec.from_formula("Reaction ~ Days + (Days | Subject)")
    design = bm.build_design(spec, data)
    rng = np.random.default_rng(3)
    beta = np.array([[1e6 + 251.0, 10.5]])
    cov = np.array([[[600.0, 10.0], [10.0, 35.0]]])
    draws = FlatDraws(beta, np.array([25.0]), {"Subject": rng.normal(size=(1, 18, 2))},
                      {"Subject": cov}, 1, 1)
    _, ll = cluster_marginal_loglik(SimpleNamespace(design=design, built=None), draws)
    np.testing.assert_allclose(ll[0], _dense_marginal(design, draws, 0, "Subject"),
                               rtol=1e-9)


def test_binomial_quadrature_matches_numerical_integration(fitted_model):
    fit = fitted_model("cbpp")
    design, fam = fit.design, fit.design.family
    draws = _picked(flat_draws(fit), [5, 1500])
    _, agq = cluster_marginal_loglik(fit, draws)
    _, laplace = cluster_marginal_loglik(fit, draws, nodes=1)
    fe = design.effects[0]
    for s in range(2):
        sd = np.sqrt(draws.cov[fe.name][s][0, 0])
        ref = []
        for j in range(fe.J):
            rows = np.flatnonzero(fe.grouping.index == j)
            eta0 = design.X[rows] @ draws.beta[s]

            def f(u, rows=rows, eta0=eta0, sd=sd):
                return np.exp(fam.loglik(design.y[rows], eta0 + u, design.trials[rows]).sum()
                              ) * stats.norm.pdf(u, 0, sd)

            ref.append(np.log(integrate.quad(f, -12 * sd, 12 * sd, limit=200,
                                             epsabs=0, epsrel=1e-11)[0]))
        np.testing.assert_allclose(agq[s], ref, atol=1e-5)
        gap = np.abs(laplace[s] - ref)
        assert gap.max() > 1e-4  # the Laplace approximation is one, and AGQ improves on it


def _glmer_draws(design, name: str, ref: dict) -> FlatDraws:
    """glmer's estimates as one 'draw' (β aligned by read_reml, T_g per factor)."""
    from bayesmix.reml import read_reml

    beta = read_reml(GLMM_REF / f"{name}.json", design=design).beta.to_numpy()
    cov = {}
    for block in ref["random"]:
        fe = design.factor(block["group"])
        assert len(fe.terms) == len(block["terms"])
        sd = np.asarray(block["sd"])
        cov[fe.name] = (np.asarray(block["corr"]) * np.outer(sd, sd))[None]
    return FlatDraws(beta[None], None, {}, cov, 1, 1)


@pytest.mark.parametrize(("name", "kwargs", "nodes"), [
    ("cbpp_laplace", dict(family="binomial", categorical=("period",)), 1),
    ("cbpp_agq9", dict(family="binomial", categorical=("period",)), 9),
    ("sim_bernoulli_agq15", dict(family="bernoulli"), 15),
    ("contraception_laplace", dict(family="bernoulli"), 1),
    ("guimmun_laplace", dict(family="bernoulli"), 1),
])
def test_cluster_marginals_sum_to_glmers_loglik(name, kwargs, nodes):
    """Σ_j ℓ_j at glmer's estimates is glmer's Laplace / AGQ log-likelihood.

    guimmun is nested (mothers within communities): each community's Laplace approximation
    integrates its own and its mothers' effects jointly; contraception has two correlated
    effects per district.
    """
    ref = json.loads((GLMM_REF / f"{name}.json").read_text())
    data = pd.read_csv(ROOT / ref["data"])
    design = bm.build_design(bm.Spec.from_formula(ref["formula"], **kwargs), data)
    draws = _glmer_draws(design, name, ref)
    _, ll = cluster_marginal_loglik(SimpleNamespace(design=design, built=None), draws,
                                    nodes=nodes)
    # glmer with nAGQ > 1 reports its binomial log-likelihood relative to the saturated model's
    # (lme4's devfun drops that constant), hence the correction; its PIRLS stops at tolPwrss
    # 1e-10, so its value sits up to ~5e-5 off the optimum's.
    expected = ref["logLik"] + (ref["loglik_saturated"] if ref["nAGQ"] > 1 else 0.0)
    np.testing.assert_allclose(ll.sum(), expected, rtol=0, atol=1e-4)


def test_conditional_loglik_is_the_family_density_row_by_row(fitted_model):
    for model in ("sleepstudy", "cbpp", "crossed_poisson"):
        fit = fitted_model(model)
        design = fit.design
        draws = _picked(flat_draws(fit), [3, 1234])
        ll = observation_loglik(fit, draws=draws)
        post = fit.posterior.to_dataset().stack(sample=("chain", "draw"))
        for s, flat in enumerate([3, 1234]):
            point = post.isel(sample=flat)
            eta = design.X @ point["beta"].values
            for fe in design.effects:
                name = "u" if design.single_factor else f"u_{fe.name}"
                dims = [d for d in point[name].dims]
                u = point[name].transpose(*dims).values.reshape(fe.J, fe.q)
                eta = eta + (fe.Zq * u[fe.grouping.index]).sum(axis=1)
            if design.offset is not None:
                eta = eta + design.offset
            if design.family.name == "gaussian":
                ref = stats.norm.logpdf(design.y, eta, float(point["sigma"]))
            elif design.family.name == "binomial":
                ref = stats.binom.logpmf(design.y, design.trials, 1 / (1 + np.exp(-eta)))
            else:
                ref = stats.poisson.logpmf(design.y, np.exp(eta))
            np.testing.assert_allclose(ll[s], ref, rtol=1e-10, atol=1e-10)


def test_crossed_factors_have_no_cluster_marginal(fitted_model):
    fit = fitted_model("penicillin_crossed")
    with pytest.raises(BayesmixError, match=r"crossed.*unit='observation'"):
        marginal_unit(fit.design)
    ll = fit.idata["log_likelihood"]
    assert "y_marginal" not in ll and "y_conditional" in ll


def test_fit_carries_the_groups_and_keeps_them_through_save(fitted_model, tmp_path):
    fit = fitted_model("pastes_nested")
    assert {"observed_data", "log_likelihood"} <= set(fit.idata.children)
    obs = fit.idata["observed_data"]
    np.testing.assert_array_equal(obs["y"].values, fit.design.y)
    ll = fit.idata["log_likelihood"]
    assert ll["y_marginal"].dims == ("chain", "draw", "batch")
    assert ll["y_marginal"].sizes["batch"] == 10
    assert ll["y_conditional"].sizes["obs"] == fit.design.n
    back = bm.Fit.load(fit.save(tmp_path / "f.nc"))
    np.testing.assert_array_equal(back.idata["log_likelihood"]["y_marginal"].values,
                                  ll["y_marginal"].values)
    assert bm.loo(back).elpd == pytest.approx(bm.loo(fit).elpd, rel=1e-12)


@pytest.fixture(scope="module")
def sleepstudy_data() -> pd.DataFrame:
    return pd.read_csv(ROOT / "data" / "sleepstudy.csv")


def test_a_deferred_marginal_is_computed_by_loo(fitted_model):
    """Models whose y_marginal is costly get it when bm.loo asks; the value is the same."""
    from bayesmix.cluster_marginal import marginal_cost
    from bayesmix.predictive import MARGINAL_BUDGET, log_likelihood, with_groups

    fit = fitted_model("pastes_nested")
    stored = bm.loo(fit)
    slim = with_groups(fit, {"log_likelihood": log_likelihood(fit, marginal=False)})
    assert "y_marginal" not in slim.idata["log_likelihood"]
    assert bm.loo(slim).elpd == pytest.approx(stored.elpd, rel=1e-12)
    spec = bm.Spec.from_file(ROOT / "models" / "guimmun_three_level.toml")
    design = bm.build_design(spec, bm.load_data(spec))
    assert marginal_cost(design, 4000) > MARGINAL_BUDGET  # deferred when fitted


def test_three_level_gaussian_with_slopes_is_the_dense_normal():
    """egsingle: years within children within schools, two correlated effects at each level;
    the unit-by-unit elimination (bayesmix.nested_marginal) against scipy's dense density."""
    spec = bm.Spec.from_file(ROOT / "models" / "egsingle_three_level.toml")
    design = bm.build_design(spec, bm.load_data(spec))
    rng = np.random.default_rng(0)
    S = 3
    beta = (np.linalg.lstsq(design.X, design.y, rcond=None)[0]
            + 0.01 * rng.normal(size=(S, design.p)))
    cov = {}
    for fe in design.effects:
        B = rng.normal(size=(S, fe.q, fe.q)) * 0.3
        cov[fe.name] = B @ np.swapaxes(B, 1, 2) + 0.2 * np.eye(fe.q)
    draws = FlatDraws(beta, np.array([0.55, 0.6, 0.7]), {}, cov, 1, S)
    picked = np.zeros(60, dtype=bool)
    picked[[0, 7, 33]] = True
    unit, ll = cluster_marginal_loglik(SimpleNamespace(design=design, built=None), draws,
                                       clusters=picked)
    assert np.isnan(ll[:, ~picked]).all()
    dense = np.array([_dense_marginal(design, draws, s, unit, picked) for s in range(S)])
    np.testing.assert_allclose(ll[:, picked], dense[:, picked], rtol=1e-11)
