"""bm.variance(): ICCs, Nakagawa R² and Rights & Sterba shares against R and against the truth.

The references are R's numbers (``performance::icc``, ``performance::r2_nakagawa``,
``insight::get_variance`` of lme4 fits, and Rights & Sterba's formulas evaluated in R on lme4's
estimates), pinned in tests/reference/variance/ by make_reference_variance.R. The estimates
here come from bayesmix's own ``fit_reml``, so agreement checks the fit and the partition
together.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
from conftest import DATA, MODELS, ROOT

import bayesmix as bm
from bayesmix.variance_rs import RightsSterbaError

REF = ROOT / "tests" / "reference" / "variance"
GAUSSIAN_RTOL = 1e-5
GLMM_RTOL = 1e-4   # the Laplace fits here and glmer agree to ~1e-5 relative


def _ref(stem: str) -> dict:
    return json.loads((REF / f"{stem}.json").read_text())


def _hsb_centred() -> tuple[bm.Spec, pd.DataFrame]:
    data = pd.read_csv(DATA / "hsb.csv")
    data["ses_w"] = data["SES"] - data["SES_schoolmean"]
    return bm.Spec.from_formula("MathAch ~ ses_w + SES_schoolmean + (ses_w | School)"), data


def _model(stem: str) -> tuple[bm.Spec, pd.DataFrame]:
    files = {"sleepstudy_rs": "sleepstudy", "hsb_crosslevel": "hsb",
             "penicillin": "penicillin_crossed", "cbpp": "cbpp", "contraception": "contraception",
             "grouseticks": "grouseticks", "crossed_poisson": "crossed_poisson"}
    if stem in files:
        spec = bm.Spec.from_file(MODELS / f"{files[stem]}.toml")
        return spec, bm.load_data(spec)
    if stem == "sleepstudy_ri":
        return (bm.Spec.from_formula("Reaction ~ Days + (1 | Subject)"),
                pd.read_csv(DATA / "sleepstudy.csv"))
    return _hsb_centred()


_CACHE: dict[str, bm.REMLFit] = {}


def _reml(stem: str) -> bm.REMLFit:
    if stem not in _CACHE:
        _CACHE[stem] = bm.fit_reml(*_model(stem))
    return _CACHE[stem]


STEMS = ["sleepstudy_ri", "sleepstudy_rs", "hsb_crosslevel", "hsb_centred", "penicillin",
         "cbpp", "contraception", "grouseticks", "crossed_poisson"]


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


@pytest.mark.parametrize("stem", STEMS)
def test_icc_and_r2_agree_with_performance(stem):
    ref = _ref(stem)
    vp = bm.variance(_reml(stem))
    assert vp.kind == "point"
    rtol = GAUSSIAN_RTOL if ref["family"] == "gaussian" else GLMM_RTOL
    gv = ref["get_variance"]
    pairs = {
        "icc_adjusted": ref["icc"]["adjusted"], "icc_conditional": ref["icc"]["unadjusted"],
        "r2_marginal": ref["r2_nakagawa"]["marginal"],
        "r2_conditional": ref["r2_nakagawa"]["conditional"],
        "var_fixed": gv["var_fixed"], "var_random": gv["var_random"],
        "var_residual": gv["var_residual"], "var_distribution": gv["var_distribution"],
        "var_dispersion": gv["var_dispersion"],
    }
    for name, want in pairs.items():
        got = float(vp.values[name])
        if want == 0:
            assert abs(got) < 1e-10, name
        else:
            assert _rel(got, want) < rtol, (name, got, want)
    for group, want in gv["var_intercept"].items():
        assert _rel(float(vp.var_intercept.sel(factor=group)), want) < rtol, group
    for key, want in (gv["var_slope"] or {}).items():
        group, term = key.split(".", 1)
        label = next(e for e in vp.values["effect"].to_numpy()
                     if e.startswith(f"{group}: ") and e.endswith(f"({term})"))
        assert _rel(float(vp.var_effect.sel(effect=label)), want) < rtol, key


@pytest.mark.parametrize("stem", ["sleepstudy_ri", "penicillin", "cbpp", "grouseticks",
                                  "crossed_poisson"])
def test_icc_per_factor_agrees_with_performance_by_group(stem):
    # performance's by-group ICC is the intercept variance over σ²_r + σ²_ε: the same as the
    # per-factor ICC here when every factor has only a random intercept.
    ref = _ref(stem)
    vp = bm.variance(_reml(stem))
    rtol = GAUSSIAN_RTOL if ref["family"] == "gaussian" else GLMM_RTOL
    for group, want in ref["icc_by_group"].items():
        got = float(vp.icc_adjusted_factor.sel(factor=group))
        assert _rel(got, want) < rtol, (group, got, want)


def test_observation_level_factor_is_dispersion():
    vp = bm.variance(_reml("grouseticks"))
    assert vp.observation_level == ("INDEX",)
    index_var = _ref("grouseticks")["varcorr"][0]["cov"][0][0]
    assert _rel(float(vp.var_dispersion), index_var) < GLMM_RTOL


def test_poisson_null_adjusted_lambda_uses_the_null_models_variances():
    ref = _ref("grouseticks")
    null = ref["null_model"]
    b0 = null["fixef"]["(Intercept)"]
    total = sum(block["cov"][0][0] for block in null["varcorr"])
    want = math.log1p(math.exp(-(b0 + total / 2)))
    vp = bm.variance(_reml("grouseticks"), poisson_lambda="null_adjusted")
    assert _rel(float(vp.var_distribution), want) < GLMM_RTOL
    given = bm.variance(_reml("grouseticks"), poisson_lambda=4.0)
    assert float(given.var_distribution) == pytest.approx(math.log1p(0.25), rel=1e-12)


def test_rights_sterba_centred_agrees_with_the_formulas_in_r():
    ref = _ref("hsb_centred")["rights_sterba"]
    rsd = bm.variance(_reml("hsb_centred")).rights_sterba
    assert list(rsd["source"].to_numpy()) == ["f1", "f2", "v", "m", "residual"]
    for source in ("f1", "f2", "v", "m", "residual"):
        got = float(rsd["rs_variance"].sel(source=source))
        assert _rel(got, ref["components"][source]) < GAUSSIAN_RTOL, source
        share = float(rsd["rs_share"].sel(source=source))
        assert _rel(share, ref["proportions"][source]) < GAUSSIAN_RTOL, source


def test_rights_sterba_uncentred_agrees_with_the_formulas_in_r():
    ref = _ref("sleepstudy_rs")["rights_sterba_uncentred"]
    vp = bm.variance(_reml("sleepstudy_rs"))
    rsd = vp.rights_sterba
    assert list(rsd["source"].to_numpy()) == ["f", "v", "m", "residual"]
    for source in ("f", "v", "m", "residual"):
        assert _rel(float(rsd["rs_share"].sel(source=source)),
                    ref["proportions"][source]) < GAUSSIAN_RTOL, source
    assert any("g10 (Days)" in note and "centre" in note for note in vp.notes)


def test_rights_sterba_recovers_the_population_shares_of_a_simulation():
    # y_ij = 1 + 1·w_ij + 0.5·z_j + U0_j + U1_j·w_ij + e_ij, w centred in its cluster exactly
    # (population Var(w) = 1 − 1/n_j), z_j ~ N(0, 1), T = [[1, .3], [.3, .5]], σ² = 2, so
    # f1 = 0.98, f2 = 0.25, v = 0.5 · 0.98 = 0.49, m = 1, residual 2 (total 4.72).
    rng = np.random.default_rng(2019)
    J, nj = 600, 50
    g = np.repeat(np.arange(J), nj)
    w = rng.normal(size=J * nj)
    w -= (np.bincount(g, w) / nj)[g]
    z = rng.normal(size=J)
    T = np.array([[1.0, 0.3], [0.3, 0.5]])
    u = rng.multivariate_normal(np.zeros(2), T, size=J)
    y = 1 + w + 0.5 * z[g] + u[g, 0] + u[g, 1] * w + rng.normal(scale=math.sqrt(2), size=J * nj)
    data = pd.DataFrame({"y": y, "w": w, "z": z[g], "g": g})
    reml = bm.fit_reml(bm.Spec.from_formula("y ~ w + z + (w | g)", data), data)
    truth = {"f1": 0.98, "f2": 0.25, "v": 0.49, "m": 1.0, "residual": 2.0}
    shares = bm.variance(reml).rights_sterba["rs_share"]
    for source, value in truth.items():
        assert float(shares.sel(source=source)) == pytest.approx(value / 4.72, rel=0.15), source


def test_rights_sterba_not_covered_says_why():
    for stem, words in (("penicillin", "one grouping factor"), ("cbpp", "Gaussian")):
        vp = bm.variance(_reml(stem))
        assert "rs_share" not in vp.values
        with pytest.raises(RightsSterbaError, match=words):
            _ = vp.rights_sterba


def test_bad_inputs_are_named():
    with pytest.raises(bm.BayesmixError, match="takes a Fit"):
        bm.variance("sleepstudy")
    reml = _reml("sleepstudy_ri")
    with pytest.raises(bm.BayesmixError, match="ci_prob"):
        bm.variance(reml, ci_prob=95)
    with pytest.raises(bm.BayesmixError, match="poisson_lambda"):
        bm.variance(_reml("grouseticks"), poisson_lambda=-1.0)
    with pytest.raises(bm.REMLConvergenceError):
        bm.variance(dataclasses.replace(reml, converged=False))
    with pytest.raises(bm.BayesmixError, match="not attached"):
        bm.variance(dataclasses.replace(reml, design=None))


def test_frame_and_repr():
    vp = bm.variance(_reml("sleepstudy_rs"))
    frame = vp.to_frame()
    assert list(frame.columns) == ["estimate"]
    assert frame.loc["icc_adjusted_factor[Subject]", "estimate"] == pytest.approx(
        _ref("sleepstudy_rs")["icc"]["adjusted"], rel=GAUSSIAN_RTOL)
    text = repr(vp)
    assert text.startswith("Variance partition (REML point estimates), gaussian")
    assert "r2_marginal" in text


@pytest.mark.slow
def test_posterior_partition_of_sleepstudy(fitted_model):
    fit = fitted_model("sleepstudy")
    vp = bm.variance(fit, ci_prob=0.9)
    post = fit.posterior
    assert vp.kind == "posterior"
    icc = vp.icc_adjusted
    assert icc.dims == ("chain", "draw")
    assert icc.shape == post["beta"].shape[:2]
    # σ²_f per draw as the sample variance of the fixed-part predictions (insight's definition).
    X = fit.design.X
    beta = post["beta"].transpose("chain", "draw", "fixed").to_numpy()
    for c, d in ((0, 0), (1, 7), (3, 123)):
        want = np.var(X @ beta[c, d], ddof=1)
        assert float(vp.var_fixed[c, d]) == pytest.approx(want, rel=1e-10)
    # The posterior mean of the ICC lies near performance's REML value.
    ref = _ref("sleepstudy_rs")["icc"]["adjusted"]
    draws = icc.to_numpy().ravel()
    assert abs(draws.mean() - ref) < max(2 * draws.std(), 0.05)
    frame = vp.to_frame()
    assert list(frame.columns) == ["mean", "sd", "5%", "95%"]
    assert frame.loc["r2_conditional", "5%"] < frame.loc["r2_conditional", "95%"]
    assert set(vp.rights_sterba["rs_share"].dims) == {"chain", "draw", "source"}


def _synthetic_fit(spec: bm.Spec, data: pd.DataFrame, sds: dict[str, np.ndarray],
                   sigma: np.ndarray | None) -> bm.Fit:
    """A Fit whose posterior holds given draws (2 chains × 50), to test without sampling."""
    import xarray as xr

    design = bm.build_design(spec, data)
    rng = np.random.default_rng(1)
    post = {"beta": (("chain", "draw", "fixed"), rng.normal(size=(2, 50, design.p)))}
    coords = {"fixed": list(design.fixed_names)}
    for fe in design.effects:
        name, dim = ("sd_u", "random") if design.single_factor else (f"sd_u_{fe.name}",
                                                                      f"random_{fe.name}")
        post[name] = (("chain", "draw", dim), sds[fe.name][..., None])
        coords[dim] = list(fe.labels)
    if sigma is not None:
        post["sigma"] = (("chain", "draw"), sigma)
    tree = xr.DataTree.from_dict({"posterior": xr.Dataset(post, coords=coords)})
    return bm.Fit(spec, design, None, None, "rows", tree)


def test_summary_latent_icc_is_the_random_intercept_logit_icc():
    from bayesmix.checks.summary import latent_icc

    spec = bm.Spec.from_file(MODELS / "cbpp.toml")
    sd = np.random.default_rng(3).uniform(0.2, 1.5, size=(2, 50))
    fit = _synthetic_fit(spec, bm.load_data(spec), {"herd": sd}, None)
    icc = latent_icc(fit)["icc"]
    assert icc.dims == ("chain", "draw")
    np.testing.assert_allclose(icc.to_numpy(), sd**2 / (sd**2 + np.pi**2 / 3), rtol=1e-12)


def test_posterior_path_of_several_factors():
    spec = bm.Spec.from_file(MODELS / "penicillin_crossed.toml")
    rng = np.random.default_rng(4)
    sp, ss, sig = (rng.uniform(0.3, 3, size=(2, 50)) for _ in range(3))
    fit = _synthetic_fit(spec, bm.load_data(spec), {"plate": sp, "sample": ss}, sig)
    vp = bm.variance(fit)
    total = sp**2 + ss**2 + sig**2   # intercept-only model: σ²_f = 0
    np.testing.assert_allclose(vp.icc_adjusted.to_numpy(), (sp**2 + ss**2) / total, rtol=1e-12)
    np.testing.assert_allclose(vp.icc_adjusted_factor.sel(factor="plate").to_numpy(),
                               sp**2 / total, rtol=1e-12)
    np.testing.assert_allclose(vp.r2_marginal.to_numpy(), 0.0, atol=1e-12)
