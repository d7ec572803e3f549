"""The collapsed likelihood of crossed factors (bayesmix.crossed): log density, draws, posterior.

References are independent of the module: scipy's multivariate normal with the dense
V = σ²I + Σ_g Z_g (I ⊗ T_g) Z_gᵀ from the explicit Z_g, and the dense Gaussian conditional of
u given y.  The SBC test (slow) draws data sets from the prior and checks rank uniformity.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pymc as pm
import pytest
import scipy.stats as sps

import bayesmix as bm
from bayesmix.build import choose_likelihood
from bayesmix.checks.reconstruct import explicit_factors_loglik, factors_loglik_function
from bayesmix.crossed import MAX_EFFECTS, CrossedStats, crossed_data, draw_crossed_effects
from bayesmix.errors import SpecError
from bayesmix.sampling import compile_model

DATA = Path(__file__).resolve().parents[1] / "data"
CASES = {
    "penicillin": ("penicillin.csv", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
    "crossed_slope": ("crossed_slope.csv", "y ~ x + (1 + x | subject) + (1 | item)"),
}


def _design(name: str) -> bm.Design:
    path, formula = CASES[name]
    return bm.build_design(bm.Spec.from_formula(formula), pd.read_csv(DATA / path))


def _point(d, rng):
    beta = d.y.mean() + rng.normal(size=d.p)
    cov = {}
    for fe in d.effects:
        L = np.tril(rng.normal(size=(fe.q, fe.q))) * fe.covariance_pattern()
        L[np.diag_indices(fe.q)] = np.abs(L[np.diag_indices(fe.q)]) + 0.5
        cov[fe.name] = L @ L.T
    return beta, float(rng.uniform(0.5, 2)), cov


def _dense(d, beta, sigma, cov):
    V = sigma**2 * np.eye(d.n)
    for fe in d.effects:
        Z = fe.Z.toarray()
        V += Z @ np.kron(np.eye(fe.J), cov[fe.name]) @ Z.T
    return d.X @ beta, V


@pytest.mark.parametrize("name", list(CASES))
def test_log_density_equals_the_dense_marginal_gaussian(name):
    d = _design(name)
    built = bm.build_model(d, likelihood="collapsed")
    assert isinstance(built.stats, CrossedStats)
    assert not any(v.name.startswith("u_offset") for v in built.model.free_RVs)
    fn = factors_loglik_function(built)
    rng = np.random.default_rng(7)
    for _ in range(4):
        beta, sigma, cov = _point(d, rng)
        mean, V = _dense(d, beta, sigma, cov)
        ref = sps.multivariate_normal(mean, V).logpdf(d.y)
        assert fn(beta, sigma, {}, cov) == pytest.approx(ref, rel=0, abs=1e-8)
        assert explicit_factors_loglik(d, "collapsed", beta, sigma, {}, cov) == pytest.approx(
            ref, rel=0, abs=1e-8)


def test_conditional_draws_have_the_dense_conditional_mean_and_covariance():
    d = _design("penicillin")
    built = bm.build_model(d, likelihood="collapsed")
    st, sc = built.stats, built.scaling
    rng = np.random.default_rng(3)
    beta, sigma, cov = _point(d, rng)
    D = 4000
    chols = [np.broadcast_to(np.linalg.cholesky(fe.scale.cov_to_std(cov[fe.name])),
                             (D, fe.q, fe.q)) for fe in d.effects]
    u_std = draw_crossed_effects(st, np.tile(sc.beta_to_std(beta), (D, 1)), chols,
                                 np.full(D, sigma / sc.y_scale), rng)
    starts = np.cumsum([0] + [fe.J for fe in d.effects])
    u = np.concatenate([fe.scale.u_from_std(u_std[:, s:s + fe.J].reshape(D, fe.J, 1))
                        .reshape(D, -1) for fe, s in zip(d.effects, starts, strict=False)],
                       axis=1)
    # u | y ~ N(T Zᵀ V⁻¹ (y − Xβ), T − T Zᵀ V⁻¹ Z T) with T = blockdiag(I ⊗ T_g)
    mean, V = _dense(d, beta, sigma, cov)
    Z = np.hstack([fe.Z.toarray() for fe in d.effects])
    T = np.diag(np.concatenate([np.full(fe.J, cov[fe.name][0, 0]) for fe in d.effects]))
    K = T @ Z.T @ np.linalg.inv(V)
    mu, S = K @ (d.y - mean), T - K @ Z @ T
    se = np.sqrt(np.diag(S) / D)
    assert np.all(np.abs(u.mean(0) - mu) < 4.5 * se)
    assert np.allclose(np.cov(u.T), S, atol=6 * np.sqrt(2 / D) * np.diag(S).max())


def test_auto_and_limits():
    d = _design("crossed_slope")
    assert choose_likelihood("auto", d) == "sufficient"  # Q = 95: measured slower
    assert choose_likelihood("auto", _design("penicillin")) == "collapsed"  # Q = 30
    rng = np.random.default_rng(0)
    n = 2 * MAX_EFFECTS
    data = pd.DataFrame({"y": rng.normal(size=n), "a": np.arange(n) % (MAX_EFFECTS - 5),
                         "b": np.arange(n) % 7})
    big = bm.build_design(bm.Spec.from_formula("y ~ 1 + (1 | a) + (1 | b)"), data)
    assert choose_likelihood("auto", big) == "sufficient"
    with pytest.raises(SpecError, match="likelihood='sufficient'"):
        bm.build_model(big, likelihood="collapsed")


def _summary(fit):
    from arviz_stats import ess

    out = {}
    for name in [v for v in fit.posterior.data_vars
                 if v in ("beta", "sigma") or str(v).startswith("sd_u_")]:
        da = fit.posterior[name]
        out[name] = (da.mean(("chain", "draw")).to_numpy(),
                     (da.std(("chain", "draw")) / np.sqrt(ess(da, method="mean"))).to_numpy())
    return out


@pytest.fixture(scope="module")
def slope_fits():
    d = _design("crossed_slope")
    settings = bm.SamplerSettings(draws=600, tune=600, chains=2, random_seed=5,
                                  progressbar=False, target_accept=0.9)
    return {form: bm.sample(bm.build_model(d, likelihood=form), settings)
            for form in ("collapsed", "sufficient")}


def test_posterior_means_agree_with_the_sufficient_form(slope_fits):
    a, b = _summary(slope_fits["collapsed"]), _summary(slope_fits["sufficient"])
    assert set(a) == set(b)
    for key, (m0, se0) in a.items():
        m1, se1 = b[key]
        z = np.abs(m1 - m0) / np.sqrt(se0**2 + se1**2)
        assert np.all(z < 4), (key, m0, m1, z)
    pa, pb = slope_fits["collapsed"].posterior, slope_fits["sufficient"].posterior
    for name in ("u_subject", "u_item"):  # the effects drawn afterwards
        assert pa[name].dims == pb[name].dims
        diff = np.abs(pa[name].mean(("chain", "draw")) - pb[name].mean(("chain", "draw")))
        sd = pa[name].std(("chain", "draw"))
        assert float((diff / sd).max()) < 0.5


def test_fit_reconstructs_y_and_the_graph(slope_fits):
    rec = bm.reconstruct(slope_fits["collapsed"])
    assert rec.max_abs_error < 1e-9
    assert rec.graph_max_abs_error < 1e-8


# ---------------------------------------------------------------------------------------------
# Simulation-based calibration: one compiled model, data sets from the prior via pm.set_data.
# ---------------------------------------------------------------------------------------------

DATASETS = 60
KEEP = 99
A, B, REPS = 6, 5, 2  # 6 x 5 fully crossed cells, 2 rows each
PRIORS = bm.Priors(
    beta={"g00": bm.Prior("Normal", mu=0, sigma=1), "g10": bm.Prior("Normal", mu=0, sigma=1)},
    sd_u=bm.Prior("HalfNormal", sigma=1),
    sigma=bm.Prior("HalfNormal", sigma=1),
)


def _draw(rng, frame):
    beta = rng.normal(0, 1, size=2)
    sd = np.abs(rng.normal(0, 1, size=2))
    sigma = abs(rng.normal(0, 1))
    ua, ub = rng.normal(0, sd[0], size=A), rng.normal(0, sd[1], size=B)
    a, b = frame["a"].to_numpy(), frame["b"].to_numpy()
    y = (beta[0] + beta[1] * frame["x"].to_numpy() + ua[a] + ub[b]
         + rng.normal(0, sigma, size=len(frame)))
    truth = {"g00": beta[0], "g10": beta[1], "sd_a": sd[0], "sd_b": sd[1], "sigma": sigma}
    return frame.assign(y=y), truth


@pytest.mark.slow
def test_crossed_collapsed_form_is_calibrated_sbc():
    rng = np.random.default_rng(20260211)
    a, b = np.meshgrid(np.arange(A), np.arange(B), indexing="ij")
    frame = pd.DataFrame({"a": np.repeat(a.ravel(), REPS), "b": np.repeat(b.ravel(), REPS)})
    frame["x"] = rng.normal(size=len(frame))
    spec = bm.Spec.from_formula("y ~ x + (1 | a) + (1 | b)")
    built = bm.build_model(bm.build_design(spec, _draw(rng, frame)[0]), PRIORS,
                           likelihood="collapsed", shared_data=True)
    settings = bm.SamplerSettings(draws=200, tune=300, chains=2, progressbar=False,
                                  backend="c", target_accept=0.9)
    compiled = compile_model(built, settings)
    ranks = []
    start = time.perf_counter()
    for i in range(DATASETS):
        data, truth = _draw(rng, frame)
        design = bm.build_design(spec, data)
        pm.set_data(crossed_data(built, design), model=built.model)
        stats = bm.build_model(design, built.priors, likelihood="collapsed").stats
        one = bm.BuiltModel(built.model, design, built.priors, built.likelihood, stats,
                            built.graph)
        post = bm.sample(one, settings.updated(random_seed=1000 + i), compiled=compiled).posterior
        draws = {"g00": post["beta"].isel(fixed=0), "g10": post["beta"].isel(fixed=1),
                 "sd_a": post["sd_u_a"], "sd_b": post["sd_u_b"], "sigma": post["sigma"]}
        row = []
        for key, da in draws.items():
            flat = da.to_numpy().reshape(-1)
            thin = flat[np.linspace(0, flat.size - 1, KEEP).astype(int)]
            row.append(int(np.sum(thin < truth[key])))
        ranks.append(row)
    ranks = np.array(ranks)
    for k, name in enumerate(["g00", "g10", "sd_a", "sd_b", "sigma"]):
        counts = np.bincount(ranks[:, k] * 5 // (KEEP + 1), minlength=5)
        p_chi2 = sps.chisquare(counts).pvalue
        p_ks = sps.kstest((ranks[:, k] + 0.5) / (KEEP + 1), "uniform").pvalue
        assert p_chi2 > 1e-3 and p_ks > 1e-3, (name, counts, p_chi2, p_ks)
    print(f"crossed SBC: {DATASETS} data sets in {time.perf_counter() - start:.1f} s")
