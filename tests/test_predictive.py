"""Posterior and prior predictive draws, against the model's own definition computed here.

The posterior predictive is checked moment by moment against η = Xβ + Σ_g Z_g u_g computed
from the explicit design and the posterior draws; the prior predictive's parameter draws
against the declared prior distributions (scipy, Kolmogorov–Smirnov).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import MODELS
from scipy import special, stats

import bayesmix as bm
from bayesmix.pointwise import flat_draws


def _eta(fit) -> np.ndarray:
    """η for every draw (S, n), from design.X, each factor's Zq and the posterior draws."""
    d = fit.design
    draws = flat_draws(fit)
    eta = draws.beta @ d.X.T
    for fe in d.effects:
        u = draws.u[fe.name]                                     # (S, J_g, q_g)
        eta += (u[:, fe.grouping.index, :] * fe.Zq[None]).sum(axis=2)
    if d.offset is not None:
        eta += d.offset
    return eta


@pytest.mark.parametrize("model", ["sleepstudy", "cbpp", "crossed_poisson"])
def test_posterior_predictive_has_the_models_moments(fitted_model, model):
    fit = fitted_model(model)
    out = bm.posterior_predictive(fit, random_seed=5)
    assert out is not fit and "posterior_predictive" not in fit.idata.children
    yrep = out.idata["posterior_predictive"]["y"]
    assert yrep.dims == ("chain", "draw", "obs")
    y = yrep.values.reshape(-1, fit.design.n)
    eta = _eta(fit)
    fam = fit.design.family
    if fam.name == "gaussian":
        sigma = flat_draws(fit).sigma
        mean, var = eta.mean(axis=0), eta.var(axis=0) + (sigma**2).mean()
    else:
        mu = fam.expected(eta, fit.design.trials)
        assert np.array_equal(y, np.round(y)) and (y >= 0).all()
        if fit.design.trials is not None:
            assert (y <= fit.design.trials).all()
            p = special.expit(eta)
            var = (fit.design.trials * p * (1 - p)).mean(axis=0) + mu.var(axis=0)
        else:
            var = mu.mean(axis=0) + mu.var(axis=0)
        mean = mu.mean(axis=0)
    S = y.shape[0]
    z = (y.mean(axis=0) - mean) / np.sqrt(var / S)
    assert np.abs(z).max() < 5, np.abs(z).max()
    assert np.mean(np.abs(z) < 1.96) > 0.85
    ratio = y.var(axis=0).mean() / var.mean()
    assert 0.9 < ratio < 1.1


def test_posterior_predictive_thins_draws(fitted_model):
    fit = fitted_model("sleepstudy")
    out = bm.posterior_predictive(fit, max_draws=200)
    sizes = out.idata["posterior_predictive"].sizes
    assert sizes["chain"] == 4 and sizes["chain"] * sizes["draw"] <= 200


def _cdf(prior, k: int):
    kw = prior.kwargs
    scale = np.atleast_1d(kw["sigma"])[k] if np.ndim(kw["sigma"]) else kw["sigma"]
    if prior.dist == "HalfStudentT":
        return lambda x: 2 * stats.t.cdf(x / scale, kw["nu"]) - 1
    if prior.dist == "HalfNormal":
        return lambda x: stats.halfnorm.cdf(x, scale=scale)
    raise AssertionError(prior.dist)


def test_prior_predictive_draws_the_declared_priors():
    """pastes: intercepts only, so each SD's prior is the declared one exactly."""
    spec = bm.Spec.from_file(MODELS / "pastes_nested.toml")
    tree = bm.prior_predictive(spec, draws=3000, random_seed=2)
    prior = tree["prior"]
    design = bm.build_design(spec, bm.load_data(spec))
    rp = bm.resolve_priors(design, spec.priors)
    for k, fe in enumerate(design.effects):
        sd = prior[f"sd_u_{fe.name}"].values.ravel()
        assert stats.kstest(sd, _cdf(rp.sd_u, k)).pvalue > 1e-3
    sigma = prior["sigma"].values.ravel()
    assert stats.kstest(sigma, _cdf(rp.sigma, 0)).pvalue > 1e-3
    beta = prior["beta"].values.reshape(-1)
    mu, cov = rp.beta_normal()
    assert stats.kstest(beta, stats.norm(mu[0], np.sqrt(cov[0, 0])).cdf).pvalue > 1e-3
    # u_g | T_g ~ N(0, T_g): standardised by their draw's SD they are N(0, 1)
    u = prior["u_batch"].values[..., 0] / prior["sd_u_batch"].values[..., :1]
    assert stats.kstest(u.ravel(), stats.norm.cdf).pvalue > 1e-3
    y = tree["prior_predictive"]["y"]
    assert y.shape == (1, 3000, design.n)
    # y | parameters: its spread around β is √(Σ T_g + σ²) draw by draw
    resid = (y.values[0] - beta[:, None]) / np.sqrt(
        sigma**2 + sum(prior[f"sd_u_{fe.name}"].values.reshape(-1) ** 2
                       for fe in design.effects))[:, None]
    assert abs(resid.std() - 1) < 0.05


def test_prior_predictive_of_a_glmm_and_of_a_fit(fitted_model):
    """cbpp's sampler shears β by the herd means; the prior drawn here is still N(μ, Σ)."""
    fit = fitted_model("cbpp")
    tree = bm.prior_predictive(fit, draws=3000, random_seed=4)
    beta = tree["prior"]["beta"].values.reshape(-1, fit.design.p)
    mu, cov = fit.priors.beta_normal()
    for k in range(fit.design.p):
        assert stats.kstest(beta[:, k], stats.norm(mu[k], np.sqrt(cov[k, k])).cdf).pvalue > 1e-3
    assert "sigma" not in tree["prior"]
    y = tree["prior_predictive"]["y"].values
    assert (y >= 0).all() and (y <= fit.design.trials).all()
    single = tree["prior"]
    assert {"u", "sd_u"} <= set(single.data_vars) and "cluster" in single.dims


def test_prior_predictive_refuses_no_draws():
    with pytest.raises(bm.BayesmixError, match="draws must be at least 1"):
        bm.prior_predictive(MODELS / "dung.toml", draws=0)


@pytest.mark.parametrize("model", ["sleepstudy", "cbpp"])
def test_plot_ppc_shows_y_and_cluster_statistics(fitted_model, model, tmp_path):
    import pandas as pd

    from bayesmix.ppc_plot import ppc_statistics

    fit = fitted_model(model)
    data = ppc_statistics(fit)
    obs = data["observed_data"]
    d = fit.design
    frame = pd.DataFrame({"y": d.y, "unit": d.effects[0].grouping.index,
                          "n": 1.0 if d.trials is None else d.trials})
    sums = frame.groupby("unit")[["y", "n"]].sum()
    name = next(v for v in obs.data_vars if " by " in v)
    np.testing.assert_allclose(obs[name].values, (sums["y"] / sums["n"]).values, rtol=1e-12)
    if d.family.is_gaussian:
        sd = frame.groupby("unit")["y"].std().values
        np.testing.assert_allclose(obs[f"SD by {d.effects[0].name}"].values, sd, rtol=1e-12)
    assert set(data["posterior_predictive"].data_vars) == set(obs.data_vars)
    pc = bm.plot_ppc(fit)
    path = tmp_path / "ppc.png"
    pc.savefig(path)
    assert path.stat().st_size > 10_000
