"""Transformed and centred variables against lme4 fits of the same columns.

References: tests/reference/transforms/*.json, written by
tests/reference/make_reference_transforms.R (centred columns computed in R by hand with ave()
and tapply(); poly, log, I, scale and ordered factors by R's formula machinery).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix as bm
from bayesmix.design.derive import contr_poly, poly_values
from bayesmix.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "tests" / "reference" / "transforms"

HSB_CONTEXTUAL = """
    MathAch = b0 + b1*group(SES) + e
    b0 = g00 + g01*mean(SES) + g02*Sector + U0
    b1 = g10 + g11*grand(MEANSES) + U1
"""


def _check(fit, ref_path, design=None):
    ref = bm.read_reml(ref_path, design=fit.design if design is None else design)
    np.testing.assert_allclose(fit.beta, ref.beta, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(fit.se, ref.se, rtol=1e-5)
    np.testing.assert_allclose(fit.sd_u, ref.sd_u, rtol=2e-5)
    np.testing.assert_allclose(fit.sigma, ref.sigma, rtol=1e-6)
    np.testing.assert_allclose(fit.criterion, ref.criterion, rtol=0, atol=1e-5)
    scale = ref.sd_u.to_numpy()[None, :]
    assert np.all(np.abs(fit.u.to_numpy() - ref.u.to_numpy()) <= 5e-5 * scale + 1e-12)


@pytest.fixture(scope="module")
def hsb():
    return pd.read_csv(ROOT / "data" / "hsb.csv", dtype={"School": str})


@pytest.fixture(scope="module")
def sleep():
    return pd.read_csv(ROOT / "data" / "sleepstudy.csv", dtype={"Subject": str})


# --------------------------------------------------------------------------- centring
def test_hsb_contextual_model_equals_lme4_with_centred_columns(hsb):
    spec = bm.Spec.from_equations(HSB_CONTEXTUAL, cluster="School")
    fit = bm.fit_reml(spec, hsb)
    _check(fit, REF / "hsb_contextual_lmer.json")
    # The columns themselves: SES minus its school mean, the school mean, MEANSES minus the
    # mean of the 160 schools' values (each school once, not each student).
    d = fit.design
    school_mean = hsb.groupby("School")["SES"].transform("mean").to_numpy()
    np.testing.assert_allclose(d.X[:, d.fixed_terms.index("group(SES)")],
                               hsb["SES"] - school_mean, atol=1e-12)
    meanses = hsb.groupby("School")["MEANSES"].first().mean()
    assert d.fitted["grand(MEANSES)"].grand == pytest.approx(meanses, rel=1e-14)
    assert meanses != pytest.approx(hsb["MEANSES"].mean(), rel=1e-3)  # rows would weight


def test_hsb_grand_centring_gives_the_contextual_effect(hsb):
    spec = bm.Spec.from_equations("""
        MathAch = b0 + b1*grand(SES) + e
        b0 = g00 + g01*mean(SES) + U0
        b1 = g10
    """, cluster="School")
    fit = bm.fit_reml(spec, hsb)
    _check(fit, REF / "hsb_grand_contextual_lmer.json")
    # R&B ch. 5: with group-mean centring γ01 is the between-school effect; with grand-mean
    # centring γ01 is the contextual effect = between − within.
    group = bm.fit_reml(bm.Spec.from_equations("""
        MathAch = b0 + b1*group(SES) + e
        b0 = g00 + g01*mean(SES) + U0
        b1 = g10
    """, cluster="School"), hsb)
    between, within = group.beta["g01 (mean(SES))"], group.beta["g10 (group(SES))"]
    assert fit.beta["g01 (mean(SES))"] == pytest.approx(between - within, rel=1e-6)
    assert fit.beta["g10 (grand(SES))"] == pytest.approx(within, rel=1e-6)


def test_reference_level_in_the_formula_equals_lme4_relevel(hsb):
    spec = bm.Spec.from_formula(
        'MathAch ~ group(SES) + C(Sector, Treatment("Public")) + (1 | School)')
    fit = bm.fit_reml(spec, hsb)
    _check(fit, REF / "hsb_reference_lmer.json")
    assert fit.design.levels['C(Sector, Treatment("Public"))'] == ("Public", "Catholic")


def test_three_level_centring_weights_each_child_once():
    ref = json.loads((REF / "egsingle_centred_reml.json").read_text())
    eg = pd.read_csv(ROOT / ref["data"], dtype={"schoolid": str, "childid": str})
    spec = bm.Spec.from_formula(
        "math ~ year + group(black) + grand(lowinc) + (1 | schoolid/childid)")
    fit = bm.fit_reml(spec, eg)
    assert fit.criterion == pytest.approx(ref["criterion"], rel=1e-9, abs=1e-6)
    terms = list(fit.design.fixed_terms)
    for row in ref["fixed"]:
        k = terms.index(row["term"].replace("`", ""))
        assert fit.beta.iloc[k] == pytest.approx(row["estimate"], rel=1e-6, abs=1e-8)
        assert fit.se.iloc[k] == pytest.approx(row["se"], rel=1e-5)
    cent = fit.design.fitted["group(black)"]
    assert cent.units == "schoolid:childid" and cent.by == "schoolid"
    assert fit.design.fitted["grand(lowinc)"].units == "schoolid"


def test_group_of_a_level_two_variable_within_its_own_units_is_refused(hsb):
    spec = bm.Spec.from_formula("MathAch ~ group(MEANSES) + (1 | School)")
    with pytest.raises(DataError, match=r"constant within each unit of School.*grand\(MEANSES\)"):
        bm.build_design(spec, hsb)


def test_predict_applies_the_fitted_means_and_new_clusters_their_own(hsb):
    spec = bm.Spec.from_formula("MathAch ~ group(SES) + mean(SES) + (1 | School)")
    design = bm.build_design(spec, hsb)
    from bayesmix.design.coding import Coder, model_columns

    school = hsb["School"].iloc[0]
    new = pd.DataFrame({"School": [school, "new", "new"], "SES": [1.0, 0.2, 0.6]})
    cols = model_columns(spec, Coder(spec, new, levels=design.levels, fitted=design.fitted))
    fitted_mean = hsb.loc[hsb["School"] == school, "SES"].mean()
    np.testing.assert_allclose(cols.X[:, 2], [fitted_mean, 0.4, 0.4])
    np.testing.assert_allclose(cols.X[:, 1], [1.0 - fitted_mean, -0.2, 0.2])


# --------------------------------------------------------------------------- transformations
def test_poly_equals_r_and_predicts_with_the_fitted_coefficients(sleep):
    fit = bm.fit_reml(bm.Spec.from_formula("Reaction ~ poly(Days, 2) + (Days | Subject)"), sleep)
    _check(fit, REF / "sleepstudy_poly_lmer.json")
    pred = json.loads((REF / "sleepstudy_poly_predict.json").read_text())
    poly = fit.design.fitted["poly(Days, 2)"]
    np.testing.assert_allclose(poly.alpha, pred["alpha"], rtol=1e-12)
    np.testing.assert_allclose(poly.norm2, pred["norm2"], rtol=1e-12)
    X = np.column_stack([np.ones(4), poly_values(np.asarray(pred["Days"]), poly)])
    np.testing.assert_allclose(X @ fit.beta.to_numpy(), pred["fixed"], rtol=1e-7)
    days = sleep["Days"].to_numpy(dtype=float)[:12]
    from bayesmix.design.derive import _poly_fit
    r3 = np.asarray(pred["poly3_raw_check"])  # R's poly(Days, 3)[1:12, ], rows
    np.testing.assert_allclose(poly_values(days, _poly_fit(sleep["Days"].to_numpy(float), 3)),
                               r3, atol=1e-12)


def test_log_outcome_log_and_square_equal_lme4(sleep):
    spec = bm.Spec.from_formula("log(Reaction) ~ log(Days + 1) + I(Days^2) + (1 | Subject)")
    fit = bm.fit_reml(spec, sleep)
    _check(fit, REF / "sleepstudy_log_lmer.json")
    np.testing.assert_allclose(fit.design.y, np.log(sleep["Reaction"]))


def test_scale_equals_lme4_and_keeps_its_constants(sleep):
    fit = bm.fit_reml(bm.Spec.from_formula("Reaction ~ scale(Days) + (scale(Days) | Subject)"),
                      sleep)
    _check(fit, REF / "sleepstudy_scale_lmer.json")
    c = fit.design.fitted["scale(Days)"]
    assert (c.center, c.scale) == pytest.approx((4.5, sleep["Days"].std(ddof=1)))


def test_ordered_factor_gets_rs_polynomial_contrasts(sleep):
    data = sleep.assign(period=pd.Categorical(np.minimum(sleep["Days"] // 3, 3), ordered=True))
    fit = bm.fit_reml(bm.Spec.from_formula("Reaction ~ period + (1 | Subject)"), data)
    _check(fit, REF / "sleepstudy_ordered_lmer.json")
    assert fit.design.fixed_terms[1:] == ("period.L", "period.Q", "period.C")


def test_contr_poly_is_orthonormal_and_monic_in_sign():
    values, names = contr_poly(5)
    np.testing.assert_allclose(values.T @ values, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(values.sum(axis=0), 0, atol=1e-12)
    assert names == (".L", ".Q", ".C", "^4")
    # R: contr.poly(3) = [[-0.7071068, 0.4082483], [0, -0.8164966], [0.7071068, 0.4082483]]
    np.testing.assert_allclose(contr_poly(3)[0], [[-0.7071068, 0.4082483], [0, -0.8164966],
                                                  [0.7071068, 0.4082483]], atol=1e-7)


def test_a_transform_undefined_on_some_rows_names_them(sleep):
    spec = bm.Spec.from_formula("Reaction ~ log(Days) + (1 | Subject)")
    with pytest.raises(DataError, match=r"log\(Days\) is not a finite number in 18 rows"):
        bm.build_design(spec, sleep)


def test_a_missing_source_column_is_named_with_its_call(sleep):
    spec = bm.Spec.from_formula("Reaction ~ log(Dayz) + (1 | Subject)")
    with pytest.raises(DataError, match=r"column 'Dayz' \(in log\(Dayz\)\).*did you mean 'Days'"):
        bm.build_design(spec, sleep)


# --------------------------------------------------------------------------- Bayesian fit
def test_model_file_fit_saves_loads_and_predicts_with_fitted_means(fitted_model, tmp_path):
    fit = fitted_model("hsb_contextual")  # models/hsb_contextual.toml, shared with test_models
    path = fit.save(tmp_path / "contextual.bmfit")
    loaded = bm.Fit.load(path)
    for key in ("group(SES)", "mean(SES)", "grand(MEANSES)"):
        a, b = fit.design.fitted[key], loaded.design.fitted[key]
        assert (a.units, a.by, a.grand, a.labels) == (b.units, b.by, b.grand, b.labels)
    np.testing.assert_array_equal(fit.design.X, loaded.design.X)
    data = fit.design.data
    school = data["School"].iloc[0]
    rows = data[data["School"] == school]
    new = pd.DataFrame({"School": [school], "SES": [rows["SES"].mean() + 1.0],
                        "MEANSES": rows["MEANSES"].iloc[:1].to_numpy(),
                        "Sector": rows["Sector"].iloc[:1].to_numpy()})
    pred = bm.predict(fit, new, keep_draws=True)
    # by hand: the school's fitted mean, so group(SES) = 1 and mean(SES) is the fitted mean
    post = fit.posterior
    beta = post["beta"].stack(s=("chain", "draw")).to_numpy()
    names = list(fit.design.fixed_terms)
    grand = fit.design.fitted["grand(MEANSES)"].grand
    x = {"(Intercept)": 1.0, "group(SES)": 1.0, "mean(SES)": rows["SES"].mean(),
         "Sector[Public]": float(rows["Sector"].iloc[0] == "Public"),
         "group(SES):grand(MEANSES)": rows["MEANSES"].iloc[0] - grand}
    fixed = np.array([x[t] for t in names]) @ beta
    u = post["u"].sel(cluster=str(school)).stack(s=("chain", "draw")).to_numpy()
    expected = fixed + u[0] + u[1] * 1.0
    assert float(pred.summary()["mean"].iloc[0]) == pytest.approx(expected.mean(), rel=1e-10)


# --------------------------------------------------------------------------- [center]
def test_centring_per_variable_rewrites_every_use(tmp_path):
    base = bm.Spec.from_equations("""
        MathAch = b0 + b1*SES + e
        b0 = g00 + g01*MEANSES + U0
        b1 = g10 + g11*MEANSES + U1
    """, cluster="School")
    centred = base.with_centring({"SES": "group", "MEANSES": "grand"})
    written = bm.Spec.from_equations("""
        MathAch = b0 + b1*group(SES) + e
        b0 = g00 + g01*grand(MEANSES) + U0
        b1 = g10 + g11*grand(MEANSES) + U1
    """, cluster="School")
    assert centred == written
    assert base.with_centring({"SES": "none"}) == base
    path = tmp_path / "c.toml"
    path.write_text('cluster = "School"\nequations = """\nMathAch = b0 + b1*SES + e\n'
                    'b0 = g00 + g01*MEANSES + U0\nb1 = g10 + g11*MEANSES + U1\n"""\n'
                    '[center]\nSES = "group"\nMEANSES = "grand"\n')
    assert bm.Spec.from_file(path) == written.with_options(name="c")
    with pytest.raises(bm.SpecError, match="one of group, grand or none"):
        base.with_centring({"SES": "cluster"})
    with pytest.raises(bm.SpecError, match="does not use it"):
        base.with_centring({"Size": "grand"})
    path.write_text(path.read_text().replace('SES = "group"', 'SES = "within"'))
    with pytest.raises(bm.SpecError, match=r"\[center\]"):
        bm.Spec.from_file(path)
