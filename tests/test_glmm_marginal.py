"""The cluster-marginal GLMM forms (bayesmix.glmm_marginal, bayesmix.glmm_draws).

The graph's marginal log-likelihood is checked against glmer's Laplace and adaptive-quadrature
log-likelihoods at glmer's estimates (pinned JSON from tests/reference/make_reference_glmm.R),
against scipy's quadrature, and its gradient against finite differences; the draws of U
afterwards against the exact conditional by importance weights; the posterior against the
joint form (slow); calibration by SBC is in tests/test_families_sbc.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytensor
import pytest
from pytensor.graph.replace import graph_replace
from scipy import integrate

import bayesmix as bm
from bayesmix import notation as nt
from bayesmix.errors import SpecError
from bayesmix.glmm_marginal import build_glmm_marginal

ROOT = Path(__file__).resolve().parents[1]
GLMM_REF = ROOT / "tests" / "reference" / "glmm"


def _loglik_fn(built, grad: bool = False):
    """The graph's log-likelihood (and gradient) as a function of (β̃, L̃)."""
    graph = built.graph
    names = [nt.BETA_STD, nt.CHOL_STD]
    inputs = {n: graph[n].type() for n in names}
    loglik = graph_replace(graph["loglik"], {graph[n]: inputs[n] for n in names}, strict=False)
    outputs = [loglik]
    if grad:
        outputs += pytensor.grad(loglik, [inputs[n] for n in names])
    return pytensor.function([inputs[n] for n in names], outputs, on_unused_input="ignore")


def _std_point(built, beta: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sc = built.priors.scaling
    return sc.beta_to_std(beta), np.linalg.cholesky(sc.cov_to_std(cov))


def _glmer_point(design, name: str) -> tuple[dict, np.ndarray, np.ndarray]:
    from bayesmix.reml import read_reml

    ref = json.loads((GLMM_REF / f"{name}.json").read_text())
    beta = read_reml(GLMM_REF / f"{name}.json", design=design).beta.to_numpy()
    (block,) = ref["random"]
    sd = np.asarray(block["sd"])
    return ref, beta, np.asarray(block["corr"]) * np.outer(sd, sd)


@pytest.mark.parametrize(("name", "kwargs", "form", "nodes"), [
    ("cbpp_laplace", dict(family="binomial", categorical=("period",)), "laplace", None),
    ("cbpp_agq9", dict(family="binomial", categorical=("period",)), "agq", 9),
    ("sim_bernoulli_laplace", dict(family="bernoulli"), "laplace", None),
    ("sim_bernoulli_agq15", dict(family="bernoulli"), "agq", 15),
    ("contraception_laplace", dict(family="bernoulli"), "laplace", None),
])
def test_graph_marginal_equals_glmers_loglik(name, kwargs, form, nodes):
    """At glmer's estimates, the graph's Σ_j ℓ_j is glmer's log-likelihood (nAGQ = nodes).

    contraception has two correlated effects per district (the q = 2 path).
    """
    ref = json.loads((GLMM_REF / f"{name}.json").read_text())
    data = pd.read_csv(ROOT / ref["data"])
    design = bm.build_design(bm.Spec.from_formula(ref["formula"], **kwargs), data)
    built = build_glmm_marginal(design, bm.resolve_priors(design), form, nodes=nodes)
    ref, beta, cov = _glmer_point(design, name)
    (value,) = _loglik_fn(built)(*_std_point(built, beta, cov))
    # glmer with nAGQ > 1 reports its binomial log-likelihood relative to the saturated
    # model's (see tests/test_pointwise.py); its PIRLS stops at tolPwrss 1e-10.
    expected = ref["logLik"] + (ref["loglik_saturated"] if ref["nAGQ"] > 1 else 0.0)
    np.testing.assert_allclose(value, expected, rtol=0, atol=1e-4)


def _poisson_design():
    rng = np.random.default_rng(7)
    g = np.repeat(np.arange(6), 5)
    x = rng.normal(size=g.size)
    t = rng.uniform(0.5, 2.0, g.size)
    u = rng.normal(0, 0.7, 6)
    y = rng.poisson(t * np.exp(0.3 + 0.5 * x + u[g]))
    frame = pd.DataFrame({"y": y, "x": x, "t": t, "g": g})
    spec = bm.Spec.from_formula("y ~ x + offset(log(t)) + (1 | g)", family="poisson")
    return bm.build_design(spec, frame), frame


def test_agq_equals_scipy_quadrature_poisson_with_exposure():
    """AGQ (25 nodes) against scipy.integrate.quad of each cluster's integral.

    The default 9 nodes are within 3e-5 of it here (the rule's own error, which 25 removes).
    """
    from scipy import stats

    design, frame = _poisson_design()
    built = build_glmm_marginal(design, bm.resolve_priors(design), "agq", nodes=25)
    beta, tau = np.array([0.2, 0.4]), 0.9
    (value,) = _loglik_fn(built)(*_std_point(built, beta, np.array([[tau**2]])))
    total = 0.0
    for j in range(6):
        rows = frame["g"].to_numpy() == j
        eta0 = beta[0] + beta[1] * frame["x"].to_numpy()[rows] + np.log(frame["t"][rows])

        def f(u, eta0=eta0, rows=rows):
            lam = np.exp(eta0 + u)
            return np.exp(stats.poisson.logpmf(frame["y"][rows], lam).sum()
                          + stats.norm.logpdf(u, 0, tau))

        total += np.log(integrate.quad(f, -12, 12, epsabs=0, epsrel=1e-12, limit=200)[0])
    np.testing.assert_allclose(value, total, rtol=0, atol=1e-6)


@pytest.mark.parametrize("form", ["laplace", "agq"])
def test_gradient_equals_finite_differences(form):
    """The implicit-derivative step gives the gradient of the approximation itself (q = 2)."""
    ref = json.loads((GLMM_REF / "contraception_laplace.json").read_text())
    data = pd.read_csv(ROOT / ref["data"])
    design = bm.build_design(bm.Spec.from_formula(ref["formula"], family="bernoulli"), data)
    built = build_glmm_marginal(design, bm.resolve_priors(design), form)
    fn = _loglik_fn(built, grad=True)
    _, beta, cov = _glmer_point(design, "contraception_laplace")
    b, L = _std_point(built, beta * 0.9, cov * 1.3)
    _, gb, gL = fn(b, L)
    h = 1e-5
    for k in range(b.size):
        e = np.zeros_like(b)
        e[k] = h
        fd = (fn(b + e, L)[0] - fn(b - e, L)[0]) / (2 * h)
        np.testing.assert_allclose(gb[k], fd, rtol=1e-5, atol=1e-5)
    for i, j in [(0, 0), (1, 0), (1, 1)]:
        e = np.zeros_like(L)
        e[i, j] = h
        fd = (fn(b, L + e)[0] - fn(b, L - e)[0]) / (2 * h)
        np.testing.assert_allclose(gL[i, j], fd, rtol=1e-5, atol=1e-5)


def test_effects_drawn_from_their_exact_conditional():
    """Draws of u for one (β, τ) match the conditional's mean and SD by quadrature."""
    from scipy import stats

    from bayesmix.glmm_draws import draw_effects

    design, frame = _poisson_design()
    built = build_glmm_marginal(design, bm.resolve_priors(design), "laplace")
    beta, tau = np.array([0.2, 0.4]), 0.9
    b, L = _std_point(built, beta, np.array([[tau**2]]))
    S = 4000
    u_std, rate = draw_effects(built, np.tile(b, (S, 1)), np.tile(L, (S, 1, 1)),
                               np.random.default_rng(3))
    u = built.scaling.u_from_std(u_std)[..., 0]  # (S, J)
    assert rate > 0.8
    for j in range(6):
        rows = frame["g"].to_numpy() == j
        eta0 = beta[0] + beta[1] * frame["x"].to_numpy()[rows] + np.log(frame["t"][rows])

        def dens(v, eta0=eta0, rows=rows):
            return np.exp(stats.poisson.logpmf(frame["y"][rows], np.exp(eta0 + v)).sum()
                          + stats.norm.logpdf(v, 0, tau))

        z = integrate.quad(dens, -12, 12, epsrel=1e-12)[0]
        mean = integrate.quad(lambda v, d=dens: v * d(v), -12, 12, epsrel=1e-12)[0] / z
        var = integrate.quad(lambda v, d=dens, m=mean: (v - m) ** 2 * d(v), -12, 12)[0] / z
        se = np.sqrt(var / S)
        assert abs(u[:, j].mean() - mean) < 4.5 * se, (j, u[:, j].mean(), mean)
        np.testing.assert_allclose(u[:, j].std(), np.sqrt(var), rtol=0.06)


def test_marginal_forms_refuse_what_they_do_not_cover(dung_data):
    with pytest.raises(SpecError, match="collapsed"):
        bm.build_model(bm.build_design(bm.Spec.from_formula("pr_dung ~ flies + (1 | oven_block)"),
                                       dung_data), likelihood="laplace")
    pastes = pd.read_csv(ROOT / "data" / "pastes.csv")
    pastes = pastes.assign(hi=(pastes["strength"] > pastes["strength"].median()).astype(int))
    nested = bm.build_design(bm.Spec.from_formula("hi ~ 1 + (1 | batch/cask)",
                                                  family="bernoulli"), pastes)
    with pytest.raises(SpecError, match=r"one grouping factor.*'rows' or 'cells'"):
        bm.build_model(nested, likelihood="agq")
    frame = pd.DataFrame({"y": [0, 1, 1, 0] * 6, "a": np.arange(24) % 3,
                          "b": np.arange(24) % 5, "g": np.repeat(np.arange(6), 4)})
    three = bm.build_design(bm.Spec.from_formula("y ~ a + b + (1 + a + b | g)",
                                                 family="bernoulli"), frame)
    with pytest.raises(SpecError, match=r"q = 3.*laplace"):
        bm.build_model(three, likelihood="agq")
    assert bm.build_model(three, likelihood="laplace").likelihood == "laplace"


@pytest.mark.slow
def test_agq_posterior_agrees_with_the_joint_form(fitted_model, tmp_path):
    """cbpp: the AGQ form's posterior of γ, the SD and every herd's u against the joint form."""
    joint = fitted_model("cbpp")
    fit = bm.fit(ROOT / "models" / "cbpp.toml", likelihood="agq", draws=1000, tune=500,
                 chains=4, progressbar=False)
    assert fit.likelihood == "agq"
    assert fit.posterior.attrs["u_acceptance"] > 0.8
    s = bm.summarize(fit, warn=False)
    assert s.max_rhat < 1.01 and s.divergences <= 2
    for name in ("beta", "sd_u", "u"):
        a, b = fit.posterior[name], joint.posterior[name]
        sd = b.std(("chain", "draw"))
        z = (a.mean(("chain", "draw")) - b.mean(("chain", "draw"))) / sd
        assert float(abs(z).max()) < 0.2, (name, z.values)
        ratio = a.std(("chain", "draw")) / sd
        assert 0.85 < float(ratio.min()) and float(ratio.max()) < 1.15, (name, ratio.values)
    r = bm.reconstruct(fit)
    assert r.graph_max_abs_error < 1e-6
    ll = fit.idata["log_likelihood"]
    assert "y_marginal" not in ll  # non-Gaussian: computed when bm.loo asks for it
    assert np.isfinite(bm.loo(fit).elpd)
    fit.save(tmp_path / "cbpp_agq.nc")
    back = bm.Fit.load(tmp_path / "cbpp_agq.nc")
    assert back.likelihood == "agq"
    assert bm.reconstruct(back).graph_max_abs_error < 1e-6  # the graph rebuilt from the file
