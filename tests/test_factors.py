"""Several grouping factors: design, likelihood forms against dense references, fits.

References are independent of bayesmix's own output: the level equations evaluated unit by
unit from the raw data columns, and scipy's multivariate normal with the dense
V = σ²I + Σ_g Z_g (I ⊗ T_g) Z_gᵀ.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bayesmix as bm
from bayesmix.checks.reconstruct import explicit_factors_loglik, factors_loglik_function
from bayesmix.errors import DataError, SpecError

DATA = __import__("pathlib").Path(__file__).resolve().parents[1] / "data"

SETTINGS = bm.SamplerSettings(draws=300, tune=400, chains=2, random_seed=3, progressbar=False)


@pytest.fixture(scope="module")
def pastes():
    return pd.read_csv(DATA / "pastes.csv")


@pytest.fixture(scope="module")
def penicillin():
    return pd.read_csv(DATA / "penicillin.csv")


@pytest.fixture(scope="module")
def nested_design(pastes):
    return bm.build_design(bm.Spec.from_formula("strength ~ 1 + (1 | batch/cask)"), pastes)


@pytest.fixture(scope="module")
def crossed_slope():
    data = pd.read_csv(DATA / "crossed_slope.csv")
    spec = bm.Spec.from_formula("y ~ x + (1 + x | subject) + (1 | item)")
    return bm.build_design(spec, data)


def test_nested_ids_are_made_unique_and_the_design_says_so(nested_design):
    d = nested_design
    names = [g.name for g in d.groupings]
    assert names == ["batch", "batch:cask"]
    inner = d.groupings[1]
    assert inner.J == 30 and inner.parent == "batch"
    assert "cask ids repeat across batch" in inner.note
    assert "A:a" in inner.levels and "J:c" in inner.levels
    assert d.Z.shape == (60, 10 + 30)


def test_level_equations_unit_by_unit_equal_x_gamma_plus_z_u():
    # The seed's check for a three-level model with a random slope at both levels and a
    # crossed-in factor: evaluate the level equations from the raw columns, row by row.
    rng = np.random.default_rng(0)
    n = 200
    data = pd.DataFrame({
        "school": rng.choice(["s1", "s2", "s3", "s4"], n),
        "child": rng.choice(["a", "b", "c"], n),  # child ids repeat across schools
        "rater": rng.choice(["r1", "r2", "r3", "r4", "r5"], n),
        "x": rng.normal(size=n), "w": rng.normal(size=n),
    })
    data["y"] = rng.normal(size=n)
    spec = bm.Spec.from_formula(
        "y ~ x*w + (1 + x | school) + (1 + x || school:child) + (1 | rater)")
    d = bm.build_design(spec, data)
    gamma = rng.normal(size=d.p)
    u = {fe.name: rng.normal(size=(fe.J, fe.q)) for fe in d.effects}
    explicit = d.X @ gamma + sum(fe.Z @ u[fe.name].reshape(-1) for fe in d.effects)
    g = dict(zip(d.fixed_terms, gamma, strict=True))
    for i, row in enumerate(data.itertuples()):
        level = {fe.name: fe for fe in d.effects}
        s = level["school"].grouping.levels.index(row.school)
        c = level["school:child"].grouping.levels.index(f"{row.school}:{row.child}")
        r = level["rater"].grouping.levels.index(row.rater)
        us, uc, ur = u["school"][s], u["school:child"][c], u["rater"][r]
        value = (g["(Intercept)"] + g["x"] * row.x + g["w"] * row.w + g["x:w"] * row.x * row.w
                 + us[0] + us[1] * row.x + uc[0] + uc[1] * row.x + ur[0])
        assert explicit[i] == pytest.approx(value, rel=1e-12, abs=1e-12)


def _dense_loglik(d, beta, sigma, u, cov, integrate):
    """log N(y | Xβ + Σ_{g∉I} Z_g u_g, σ²I + Σ_{g∈I} Z_g (I ⊗ T_g) Z_gᵀ) with dense matrices."""
    mean = d.X @ beta
    V = sigma**2 * np.eye(d.n)
    for fe in d.effects:
        Z = fe.Z.toarray()
        if fe.name in integrate:
            V += Z @ np.kron(np.eye(fe.J), cov[fe.name]) @ Z.T
        else:
            mean = mean + Z @ u[fe.name].reshape(-1)
    return stats.multivariate_normal(mean, V).logpdf(d.y)


def _point(d, rng):
    beta = d.y.mean() + rng.normal(size=d.p)
    u, cov = {}, {}
    for fe in d.effects:
        L = np.tril(rng.normal(size=(fe.q, fe.q))) * fe.covariance_pattern()
        L[np.diag_indices(fe.q)] = np.abs(L[np.diag_indices(fe.q)]) + 0.5
        cov[fe.name] = L @ L.T
        u[fe.name] = rng.normal(size=(fe.J, fe.q))
    return beta, float(rng.uniform(0.5, 2)), u, cov


@pytest.mark.parametrize("likelihood", ["rows", "collapsed"])
def test_nested_forms_equal_the_dense_gaussian(nested_design, likelihood):
    d = nested_design
    built = bm.build_model(d, likelihood=likelihood)
    assert built.likelihood == likelihood
    fn = factors_loglik_function(built)
    rng = np.random.default_rng(1)
    integrate = {"batch:cask"} if likelihood == "collapsed" else set()
    for _ in range(3):
        beta, sigma, u, cov = _point(d, rng)
        ref = _dense_loglik(d, beta, sigma, u, cov, integrate)
        assert fn(beta, sigma, u, cov) == pytest.approx(ref, rel=1e-10)
        assert explicit_factors_loglik(d, likelihood, beta, sigma, u, cov) == pytest.approx(
            ref, rel=1e-10)


@pytest.mark.parametrize("likelihood", ["sufficient", "rows"])
def test_crossed_joint_forms_equal_the_dense_gaussian(crossed_slope, likelihood):
    d = crossed_slope
    built = bm.build_model(d, likelihood=likelihood)
    assert built.likelihood == likelihood
    fn = factors_loglik_function(built)
    rng = np.random.default_rng(2)
    for _ in range(3):
        beta, sigma, u, cov = _point(d, rng)
        assert fn(beta, sigma, u, cov) == pytest.approx(
            _dense_loglik(d, beta, sigma, u, cov, set()), rel=1e-10)


def test_sufficient_form_on_nested_factors_equals_rows(nested_design):
    rows = bm.build_model(nested_design, likelihood="rows")
    suff = bm.build_model(nested_design, likelihood="sufficient")
    f_rows, f_suff = factors_loglik_function(rows), factors_loglik_function(suff)
    rng = np.random.default_rng(4)
    beta, sigma, u, cov = _point(nested_design, rng)
    assert f_suff(beta, sigma, u, cov) == pytest.approx(f_rows(beta, sigma, u, cov), rel=1e-10)


def test_forms_that_need_one_or_nested_factors_say_so(nested_design):
    # (the collapsed form of crossed factors: tests/test_crossed_collapsed.py)
    with pytest.raises(DataError, match="per-cluster statistics needs one grouping factor"):
        bm.cluster_stats(nested_design)


def test_uncorrelated_block_keeps_t_diagonal_and_unscaled_centres():
    sleep = pd.read_csv(DATA / "sleepstudy.csv")
    d = bm.build_design(bm.Spec.from_formula("Reaction ~ Days + (Days || Subject)"), sleep)
    assert d.single_factor and d.effects[0].blocks[0].structure == "diagonal"
    assert not d.effects[0].covariance_pattern()[0, 1]
    # A centred Days would mix the slope into the intercept: T̃ = A_z T A_zᵀ not diagonal.
    assert np.all(d.scaling.z_center == 0)
    names = [v.name for v in bm.build_model(d).model.free_RVs]
    assert not any(name.startswith("chol_cov_u") for name in names)  # no LKJ


def test_sd_priors_per_factor(nested_design):
    rp = bm.resolve_priors(nested_design, bm.Priors(sd_u={
        "batch": {"dist": "HalfNormal", "sigma": 1.0},
        "r0": {"dist": "HalfNormal", "sigma": 2.0}}))
    assert rp.random_names == ("u00 (Intercept)", "r0 (Intercept)")
    assert rp.sd_u.kwargs["sigma"] == (1.0, 2.0)
    with pytest.raises(SpecError, match="not a random effect or a grouping factor"):
        bm.resolve_priors(nested_design, bm.Priors(sd_u={"school": {"dist": "HalfNormal",
                                                                       "sigma": 1.0}}))


@pytest.fixture(scope="module")
def nested_fits(pastes):
    spec = bm.Spec.from_formula("strength ~ 1 + (1 | batch/cask)")
    return {lik: bm.fit(spec, pastes, settings=SETTINGS, likelihood=lik)
            for lik in ("collapsed", "rows")}


def test_nested_fit_reconstructs_y_and_the_graph(nested_fits):
    for fit in nested_fits.values():
        rec = bm.reconstruct(fit)
        assert rec.max_abs_error < 1e-9
        assert rec.graph_max_abs_error < 1e-8
        assert {"Zu[batch]", "Zu[batch:cask]"} <= set(rec.table.columns)
        summary = bm.summarize(fit, warn=False)
        assert "sd_u_batch:cask[r0 (Intercept)]" in summary.table.index


def test_nested_forms_agree(nested_fits):
    a, b = (nested_fits[k].posterior for k in ("collapsed", "rows"))
    for name in ("sigma", "sd_u_batch:cask"):
        x, y = a[name].to_numpy().ravel(), b[name].to_numpy().ravel()
        se = np.sqrt(x.var() / 100 + y.var() / 100)  # ESS ≥ 100 per form at these settings
        assert abs(x.mean() - y.mean()) < 4 * se


def test_predict_new_inner_unit_in_known_outer_unit(nested_fits):
    fit = nested_fits["collapsed"]
    new = pd.DataFrame({"batch": ["A", "A", "Z"], "cask": ["a", "zz", "a"]})
    pred = bm.predict(fit, new, random_seed=1).summary()
    sd = pred["sd"].to_numpy()
    # a new cask in batch A draws only its own effect; a new batch draws both
    assert sd[0] < sd[1] < sd[2]


def test_save_and_load_keep_the_factors(nested_fits, tmp_path):
    fit = nested_fits["collapsed"]
    path = fit.save(tmp_path / "nested.nc")
    back = bm.Fit.load(path)
    assert back.spec == fit.spec
    assert [g.name for g in back.design.groupings] == ["batch", "batch:cask"]
    assert bm.reconstruct(back).max_abs_error < 1e-9


def test_compare_with_reml_per_factor(nested_fits, pastes):
    fit = nested_fits["collapsed"]
    reml = bm.fit_reml(bm.Spec.from_formula("strength ~ 1 + (1 | batch/cask)"), pastes)
    cmp = bm.compare(fit, reml)
    assert "sd r0 (Intercept) [batch:cask]" in cmp.table.index
    assert set(cmp.u_table["factor"]) == {"batch", "batch:cask"}
    assert len(cmp.u_table) == 10 + 30
    row = cmp.table.loc["sd r0 (Intercept) [batch:cask]"]
    assert row["REML"] == pytest.approx(2.90408, rel=1e-4)  # lme4 (tests/reference/multi)
    assert row["2.5%"] < row["REML"] < row["97.5%"]
    str(cmp)


def test_model_file_sd_priors_per_factor(tmp_path, pastes):
    path = tmp_path / "nested.toml"
    path.write_text(
        'formula = "strength ~ 1 + (1 | batch/cask)"\n'
        "[priors]\n"
        'sd_u = { batch = { dist = "HalfNormal", sigma = 0.5 },'
        ' "batch:cask" = { dist = "HalfNormal", sigma = 4.0 } }\n'
    )
    spec = bm.Spec.from_file(path)
    rp = bm.resolve_priors(bm.build_design(spec, pastes), spec.priors)
    assert rp.sd_u.kwargs["sigma"] == (0.5, 4.0)
