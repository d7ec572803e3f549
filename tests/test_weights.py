"""Sampling weights: the survey pseudo-likelihood against lme4 and against repeated rows.

References: tests/reference/weights/*.json (tests/reference/make_reference_weights.R): lmer with
precision weights equal to size-scaled level-1 weights has the same estimates as the
pseudo-likelihood (the module docstring of bayesmix.weights says why).  Integer weights with
scale="none" are exactly repeated rows (level 1) and repeated clusters (level 2).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix as bm
from bayesmix.errors import DataError, SpecError
from bayesmix.spec.serialize import spec_from_dict, spec_to_dict

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "tests" / "reference" / "weights"
FORMULA = "MathAch ~ SES + (SES | School)"


@pytest.fixture(scope="module")
def hsb():
    d = pd.read_csv(ROOT / "data" / "hsb.csv", dtype={"School": str})
    d["w"] = 1 + (d["Minority"] == "Yes") + 0.5 * (d["Sex"] == "Female")
    d["k"] = 1 + (d["Minority"] == "Yes").astype(int) + (d["Sex"] == "Female").astype(int)
    schools = sorted(d["School"].unique())
    d["k2"] = d["School"].map({s: 1 + i % 3 for i, s in enumerate(schools)})
    return d


def _repeat_rows(d):
    return d.loc[d.index.repeat(d["k"])].reset_index(drop=True)


def _repeat_clusters(d):
    parts = []
    for school, rows in d.groupby("School"):
        for r in range(int(rows["k2"].iloc[0])):
            parts.append(rows.assign(School=f"{school}_{r}"))
    return pd.concat(parts, ignore_index=True)


def _same(a, b, rtol=1e-8):
    np.testing.assert_allclose(a.beta.to_numpy(), b.beta.to_numpy(), rtol=rtol)
    np.testing.assert_allclose(a.se.to_numpy(), b.se.to_numpy(), rtol=rtol)
    np.testing.assert_allclose(a.sd_u.to_numpy(), b.sd_u.to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(a.corr_u.to_numpy(), b.corr_u.to_numpy(), atol=1e-6)
    assert a.sigma == pytest.approx(b.sigma, rel=1e-8)
    assert a.criterion == pytest.approx(b.criterion, rel=1e-10, abs=1e-6)


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_size_scaled_level1_weights_equal_lmer_precision_weights(hsb, method):
    fit = bm.fit_reml(bm.Spec.from_formula(FORMULA), hsb, method=method,
                      weights=bm.Weights(level1="w"))
    ref = bm.read_reml(REF / f"hsb_level1_{method.lower()}.json", design=fit.design)
    np.testing.assert_allclose(fit.beta, ref.beta, rtol=1e-6)
    np.testing.assert_allclose(fit.se, ref.se, rtol=1e-5)
    np.testing.assert_allclose(fit.sd_u, ref.sd_u, rtol=2e-5)
    np.testing.assert_allclose(fit.corr_u, ref.corr_u, atol=1e-5)
    assert fit.sigma == pytest.approx(ref.sigma, rel=1e-6)
    # lmer's criterion carries the weights' Jacobian, Σ log w_i; the pseudo-likelihood not.
    sum_log_w = json.loads((REF / "hsb_level1_weights.json").read_text())["sum_log_w"]
    assert fit.criterion - ref.criterion == pytest.approx(sum_log_w, abs=1e-5)


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_integer_level1_weights_are_repeated_rows(hsb, method):
    weighted = bm.fit_reml(bm.Spec.from_formula(FORMULA), hsb, method=method,
                           weights=bm.Weights(level1="k", scale="none"))
    repeated = bm.fit_reml(bm.Spec.from_formula(FORMULA), _repeat_rows(hsb), method=method)
    _same(weighted, repeated)


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_integer_level2_weights_are_repeated_clusters(hsb, method):
    weighted = bm.fit_reml(bm.Spec.from_formula(FORMULA), hsb, method=method,
                           weights=bm.Weights(level2="k2", scale="none"))
    repeated = bm.fit_reml(bm.Spec.from_formula(FORMULA), _repeat_clusters(hsb), method=method)
    _same(weighted, repeated)


def test_bayesian_collapsed_density_equals_repeated_rows_and_clusters(hsb):
    spec = bm.Spec.from_formula(FORMULA).with_options(
        weights=bm.Weights(level1="k", level2="k2", scale="none"))
    weighted = bm.build_design(spec, hsb)
    repeated = bm.build_design(bm.Spec.from_formula(FORMULA),
                               _repeat_rows(_repeat_clusters(hsb)))
    rp = bm.resolve_priors(weighted)  # one standardised scale and prior for both
    a = bm.build_model(weighted, rp, likelihood="collapsed")
    b = bm.build_model(repeated, rp, likelihood="collapsed")
    logp_a, logp_b = a.model.compile_logp(), b.model.compile_logp()
    rng = np.random.default_rng(3)
    start = a.model.initial_point()
    for _ in range(3):
        point = {k: v + 0.2 * rng.standard_normal(np.shape(v)) for k, v in start.items()}
        assert logp_a(point) == pytest.approx(logp_b(point), rel=1e-12, abs=1e-6)


def test_scalings(hsb):
    spec = bm.Spec.from_formula(FORMULA)
    codes = pd.factorize(hsb["School"], sort=True)[0]
    size = bm.build_design(spec.with_options(weights=bm.Weights(level1="w", level2="k2")), hsb)
    np.testing.assert_allclose(np.bincount(codes, size.weights1),
                               np.bincount(codes), rtol=1e-12)
    assert size.weights2.sum() == pytest.approx(size.J)
    eff = bm.build_design(spec.with_options(
        weights=bm.Weights(level1="w", scale="effective")), hsb)
    w = hsb["w"].to_numpy()
    expected = np.bincount(codes, w) ** 2 / np.bincount(codes, w**2)  # Kish's effective n_j
    np.testing.assert_allclose(np.bincount(codes, eff.weights1), expected, rtol=1e-12)
    assert eff.weights2 is None


def test_bad_weights_are_named(hsb):
    spec = bm.Spec.from_formula(FORMULA)
    bad = hsb.assign(w=hsb["w"].where(hsb.index != 7, 0.0))
    with pytest.raises(DataError, match=r"'w' has 1 values that are not positive.*rows 7"):
        bm.build_design(spec.with_options(weights=bm.Weights(level1="w")), bad)
    with pytest.raises(DataError, match=r"level-2 weight 'w' varies inside School '1224'"):
        bm.build_design(spec.with_options(weights=bm.Weights(level2="w")), hsb)
    with pytest.raises(SpecError, match="needs level1= and/or level2="):
        bm.Weights()
    with pytest.raises(SpecError, match="scale"):
        bm.Weights(level1="w", scale="pfeffermann")
    design = bm.build_design(spec.with_options(weights=bm.Weights(level1="w")), hsb)
    with pytest.raises(SpecError, match="likelihood='collapsed'"):
        bm.build_model(design, likelihood="rows")
    crossed = bm.Spec.from_formula("MathAch ~ SES + (1 | School) + (1 | Sector)")
    with pytest.raises(DataError, match="one grouping factor"):
        bm.build_design(crossed.with_options(weights=bm.Weights(level1="w")), hsb)


def test_weights_travel_with_the_spec(hsb, tmp_path):
    spec = bm.Spec.from_formula(FORMULA).with_options(
        weights=bm.Weights(level1="w", level2="k2", scale="effective"))
    assert spec_from_dict(spec_to_dict(spec)) == spec
    assert {"w", "k2"} <= set(spec.columns)
    path = tmp_path / "weighted.toml"
    path.write_text('formula = "MathAch ~ SES + (SES | School)"\n'
                    '[weights]\nlevel1 = "w"\nscale = "none"\n')
    assert bm.Spec.from_file(path).weights == bm.Weights(level1="w", scale="none")
    path.write_text('formula = "MathAch ~ SES + (SES | School)"\n[weights]\nlevel3 = "w"\n')
    with pytest.raises(SpecError, match=r"\[weights\].*level3"):
        bm.Spec.from_file(path)


def test_weighted_bayesian_fit_samples_near_the_pseudo_ml_fit(hsb):
    weights = bm.Weights(level1="w", level2="k2")
    fit = bm.fit(bm.Spec.from_formula(FORMULA), hsb, weights=weights, draws=300, tune=300,
                 chains=2, random_seed=4, progressbar=False)
    ml = bm.fit_reml(bm.Spec.from_formula(FORMULA), hsb, method="ML", weights=weights)
    beta = fit.posterior["beta"]
    z = (beta.mean(("chain", "draw")).to_numpy() - ml.beta.to_numpy()) / beta.std(
        ("chain", "draw")).to_numpy()
    assert np.all(np.abs(z) < 0.5), z
    assert fit.design.weights2 is not None
    rec = bm.reconstruct(fit)
    assert rec.max_abs_error < 1e-10
    # the graph's weighted log-likelihood equals the explicit one from X, Z and the weights
    assert rec.graph_max_abs_error < 1e-6


def test_weights_with_a_residual_sd_per_group_are_repeated_rows(hsb):
    spec = bm.Spec.from_formula(FORMULA).with_options(sigma_by="Sector")
    weighted = bm.fit_reml(spec, hsb, weights=bm.Weights(level1="k", level2="k2",
                                                         scale="none"))
    repeated = bm.fit_reml(spec, _repeat_rows(_repeat_clusters(hsb)))
    _same(weighted, repeated, rtol=1e-6)
    np.testing.assert_allclose(weighted.sigma_by, repeated.sigma_by, rtol=1e-7)
