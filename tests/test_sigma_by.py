"""A residual SD per group (sigma_by): REML/ML against nlme's varIdent, and the Bayesian fit.

References: tests/reference/varident/*.json (tests/reference/make_reference_varident.R).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bayesmix as bm
from bayesmix.errors import BayesmixError, DataError, SpecError

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "tests" / "reference" / "varident"
FORMULA = "MathAch ~ SES + (SES | School)"


@pytest.fixture(scope="module")
def hsb():
    return pd.read_csv(ROOT / "data" / "hsb.csv", dtype={"School": str})


@pytest.fixture(scope="module")
def sleep():
    d = pd.read_csv(ROOT / "data" / "sleepstudy.csv", dtype={"Subject": str})
    d["phase"] = np.where(d["Days"] < 3, "early", np.where(d["Days"] < 7, "mid", "late"))
    return d


def _check(fit, ref):
    assert fit.method == ref["method"]
    for row, est, se in zip(ref["fixed"], fit.beta, fit.se, strict=True):
        assert est == pytest.approx(row["estimate"], rel=1e-5, abs=1e-6), row["term"]
        assert se == pytest.approx(row["se"], rel=1e-4), row["term"]
    np.testing.assert_allclose(fit.sd_u, ref["sd_u"], rtol=2e-5)
    np.testing.assert_allclose(fit.corr_u, ref["corr_u"], atol=5e-5)
    for group, sd in ref["sigma"].items():
        assert fit.sigma_by[group] == pytest.approx(sd, rel=1e-5), group
    # nlme stops at its own tolerance; our optimum is at least as good
    assert fit.loglik >= ref["loglik"] - 1e-6
    assert fit.loglik == pytest.approx(ref["loglik"], abs=1e-4)


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_two_groups_equal_nlme_varident(hsb, method):
    spec = bm.Spec.from_formula(FORMULA).with_options(sigma_by="Sector")
    fit = bm.fit_reml(spec, hsb, method=method)
    _check(fit, json.loads((REF / f"hsb_sector_{method.lower()}.json").read_text()))
    assert fit.sigma == fit.sigma_by["Catholic"]  # the first group is the reference
    assert "Residual SD σ by Sector" in str(fit)


def test_three_groups_equal_nlme_varident(sleep):
    spec = bm.Spec.from_formula("Reaction ~ Days + (Days | Subject)").with_options(
        sigma_by="phase")
    _check(bm.fit_reml(spec, sleep), json.loads((REF / "sleepstudy_phase_reml.json").read_text()))


def test_one_group_per_row_class_is_the_homoscedastic_fit(hsb):
    # the same SD in every group must give the usual fit when the data say so: a column that
    # splits the rows at random leaves σ_s equal to the pooled σ within sampling noise, and
    # the criterion can only improve on the one-σ fit (it nests it)
    rng = np.random.default_rng(0)
    data = hsb.assign(half=rng.choice(["a", "b"], size=len(hsb)))
    one = bm.fit_reml(bm.Spec.from_formula(FORMULA), data)
    two = bm.fit_reml(bm.Spec.from_formula(FORMULA).with_options(sigma_by="half"), data)
    assert two.criterion <= one.criterion + 1e-8
    assert two.sigma_by.to_numpy() == pytest.approx([one.sigma] * 2, rel=0.03)


@pytest.fixture(scope="module")
def bayes(hsb):
    spec = bm.Spec.from_formula(FORMULA).with_options(sigma_by="Sector")
    return bm.fit(spec, hsb, draws=300, tune=300, chains=2, random_seed=5, progressbar=False)


def test_bayesian_fit_has_a_sigma_per_group_near_reml(bayes, hsb):
    sigma = bayes.posterior["sigma"]
    assert sigma.dims[-1] == "sigma_group"
    assert list(sigma["sigma_group"].values) == ["Catholic", "Public"]
    reml = bm.fit_reml(bayes.spec, hsb)
    mean, sd = sigma.mean(("chain", "draw")), sigma.std(("chain", "draw"))
    z = (mean.to_numpy() - reml.sigma_by.to_numpy()) / sd.to_numpy()
    assert np.all(np.abs(z) < 1.5), z
    rec = bm.reconstruct(bayes)
    assert rec.max_abs_error < 1e-10 and rec.graph_max_abs_error < 1e-6
    table = bm.compare(bayes, reml).table
    assert {"sigma[Catholic]", "sigma[Public]"} <= set(table.index)


def test_pointwise_and_cluster_loglik_use_each_rows_sigma(bayes):
    from bayesmix.cluster_marginal import cluster_marginal_loglik
    from bayesmix.pointwise import flat_draws, observation_loglik

    design = bayes.design
    draws = flat_draws(bayes)
    ll = observation_loglik(bayes, rows=np.arange(5), draws=draws)
    eta = draws.beta[0] @ design.X[:5].T + (design.Z[:5] @ draws.u[design.effects[0].name][0]
                                             .reshape(-1))
    sd = draws.sigma[0][design.sigma_index[:5]]
    np.testing.assert_allclose(ll[0], stats.norm.logpdf(design.y[:5], eta, sd), rtol=1e-12)
    _, marginal = cluster_marginal_loglik(bayes, draws)
    j = 3
    rows = np.flatnonzero(design.cluster_index == j)
    Zj = design.Zq[rows]
    V = Zj @ draws.cov[design.effects[0].name][0] @ Zj.T + np.diag(
        draws.sigma[0][design.sigma_index[rows]] ** 2)
    dense = stats.multivariate_normal.logpdf(design.y[rows], design.X[rows] @ draws.beta[0], V)
    assert marginal[0, j] == pytest.approx(dense, rel=1e-9)


def test_predict_draws_residuals_with_the_groups_sigma(bayes, hsb):
    new = hsb.iloc[[0, 0]].assign(Sector=["Catholic", "Public"])
    pred = bm.predict(bayes, new, kind="y", keep_draws=True, random_seed=1)
    mean = bm.predict(bayes, new, kind="mean", keep_draws=True)
    resid = (pred.draws - mean.draws).std(("chain", "draw")).to_numpy()
    sigma = bayes.posterior["sigma"].mean(("chain", "draw")).to_numpy()
    np.testing.assert_allclose(resid, sigma, rtol=0.1)
    with pytest.raises(DataError, match=r"'Sector' takes values the fit has no residual SD"):
        bm.predict(bayes, new.assign(Sector="Private"), kind="y")


def test_save_and_load_keep_sigma_by(bayes, tmp_path):
    loaded = bm.Fit.load(bayes.save(tmp_path / "sb.bmfit"))
    assert loaded.spec.sigma_by == "Sector"
    np.testing.assert_array_equal(loaded.design.sigma_index, bayes.design.sigma_index)


def test_refusals(hsb):
    with pytest.raises(SpecError, match="no residual SD"):
        bm.Spec.from_formula("y ~ x + (1 | g)", family="poisson").with_options(sigma_by="s")
    spec = bm.Spec.from_formula(FORMULA).with_options(sigma_by="Sector")
    design = bm.build_design(spec, hsb)
    with pytest.raises(SpecError, match="likelihood='rows'"):
        bm.build_model(design, likelihood="collapsed")
    crossed = bm.Spec.from_formula("MathAch ~ SES + (1 | School) + (1 | Minority)")
    with pytest.raises(DataError, match="one grouping factor"):
        bm.build_design(crossed.with_options(sigma_by="Sector"), hsb)


def test_variance_is_refused(bayes):
    with pytest.raises(BayesmixError, match="no single ICC"):
        bm.variance(bayes)


def test_model_file_key(tmp_path):
    path = tmp_path / "het.toml"
    path.write_text('formula = "MathAch ~ SES + (SES | School)"\nsigma_by = "Sector"\n')
    assert bm.Spec.from_file(path).sigma_by == "Sector"
    path.write_text('formula = "MathAch ~ SES + (SES | School)"\nsigma_by = 3\n')
    with pytest.raises(SpecError, match="sigma_by"):
        bm.Spec.from_file(path)


def test_write_reml_refuses_what_its_format_cannot_hold(hsb, tmp_path):
    spec = bm.Spec.from_formula(FORMULA).with_options(sigma_by="Sector")
    with pytest.raises(bm.REMLFormatError, match="one residual SD"):
        bm.write_reml(bm.fit_reml(spec, hsb), tmp_path / "x.json")
