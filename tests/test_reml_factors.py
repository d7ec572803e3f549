"""fit_reml on several grouping factors and covariance blocks equals lme4's lmer.

The references are lme4 fits pinned in tests/reference/multi (tests/reference/
make_reference_multi.R regenerates them); matched by term and unit label, never by position.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix as bm

ROOT = Path(__file__).resolve().parents[1]
MULTI = ROOT / "tests" / "reference" / "multi"
EGSINGLE = ("math ~ 1 + year + black + lowinc + year:black + year:lowinc"
            " + (1 + year | schoolid) + (1 + year | schoolid:childid)")
CASES = {
    "pastes_reml": "strength ~ 1 + (1 | batch/cask)",
    "pastes_ml": "strength ~ 1 + (1 | batch/cask)",
    "penicillin_reml": "diameter ~ 1 + (1 | plate) + (1 | sample)",
    "penicillin_ml": "diameter ~ 1 + (1 | plate) + (1 | sample)",
    "sleepstudy_uncorr_reml": "Reaction ~ Days + (Days || Subject)",
    "sleepstudy_uncorr_ml": "Reaction ~ Days + (Days || Subject)",
    "crossed_slope_reml": "y ~ x + (1 + x | subject) + (1 | item)",
    "crossed_slope_ml": "y ~ x + (1 + x | subject) + (1 | item)",
    "egsingle_nested_reml": "math ~ year + (1 | schoolid/childid)",
    "egsingle_3level_reml": EGSINGLE,
}
SLOW = {"egsingle_3level_ml": EGSINGLE,
        "four_level_reml": "y ~ x + (1 | region/district/school/student)"}


def _fit(name: str, formula: str):
    ref = json.loads((MULTI / f"{name}.json").read_text())
    data = pd.read_csv(ROOT / ref["data"])
    fit = bm.fit_reml(bm.Spec.from_formula(formula), data, method=ref["method"])
    return fit, ref


def _check(fit, ref, sd_rtol=1e-5):
    assert fit.converged
    assert fit.criterion == pytest.approx(ref["criterion"], rel=1e-9, abs=1e-6)
    assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-6)
    terms = list(fit.design.fixed_terms)
    for row in ref["fixed"]:
        k = terms.index(row["term"])
        assert fit.beta.iloc[k] == pytest.approx(row["estimate"], rel=1e-6, abs=1e-8)
        assert fit.se.iloc[k] == pytest.approx(row["se"], rel=1e-5)
    design = fit.design
    for block in ref["random"]:
        fe = design.factor(block["group"])
        term_of = dict(zip(fe.labels, fe.terms, strict=True))
        labels = [next(lab for lab, t in term_of.items() if t == term) for term in block["terms"]]
        sd = fit.sd_u[labels].to_numpy()
        np.testing.assert_allclose(sd, block["sd"], rtol=sd_rtol)
        corr = fit.corr_u.loc[labels, labels].to_numpy()
        np.testing.assert_allclose(corr, block["corr"], atol=1e-5)
    for modes in ref["modes"]:
        fe = design.factor(modes["group"])
        term_of = dict(zip(fe.terms, fe.labels, strict=True))
        ours = fit.u_factors[fe.name].loc[modes["levels"], [term_of[t] for t in modes["terms"]]]
        scale = np.abs(np.asarray(modes["values"])).max()
        np.testing.assert_allclose(ours.to_numpy(), modes["values"], atol=1e-5 * scale)


@pytest.mark.parametrize("name", sorted(CASES))
def test_reml_equals_lme4(name):
    fit, ref = _fit(name, CASES[name])
    _check(fit, ref)
    assert bm.reconstruct(fit).max_abs_error < 1e-8


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SLOW))
def test_reml_equals_lme4_slow(name):
    fit, ref = _fit(name, SLOW[name])
    # the four-level region SD is flat to ~2e-4 in lme4's own fit (6 regions)
    _check(fit, ref, sd_rtol=2e-4 if name.startswith("four") else 1e-5)


def test_uncorrelated_fit_reports_no_correlation_and_its_theta():
    fit, ref = _fit("sleepstudy_uncorr_reml", CASES["sleepstudy_uncorr_reml"])
    assert fit.corr_u.iloc[0, 1] == 0.0
    np.testing.assert_allclose(fit.theta, ref["theta"], rtol=1e-5)
    assert "Subject: 18" in str(fit)


def test_fits_made_in_r_are_read_and_compared():
    fit, _ = _fit("penicillin_reml", CASES["penicillin_reml"])
    path = MULTI / "penicillin_reml.json"
    imported = bm.read_reml(path, design=fit.design)
    assert imported.source == "imported"
    np.testing.assert_allclose(imported.sd_u.to_numpy(), fit.sd_u.to_numpy(), rtol=1e-5)
    for name, frame in fit.u_factors.items():
        np.testing.assert_allclose(imported.u_factors[name].to_numpy(), frame.to_numpy(),
                                   atol=1e-5)
    assert bm.reconstruct(imported).max_abs_error < 1e-8
    with pytest.raises(bm.REMLFormatError, match="several grouping factors"):
        bm.read_reml(path)
    other = bm.build_design(bm.Spec.from_formula("diameter ~ 1 + (1 | plate)"),
                            pd.read_csv(ROOT / "data" / "penicillin.csv"))
    with pytest.raises(bm.REMLFormatError, match="'sample' is not one of the model's"):
        bm.read_reml(path, design=other)


def test_shifting_and_rescaling_transform_the_estimates_exactly():
    # y ~ x + (1 + x | subject) + (1 | item): with x' = x + c, u0' = u0 - c u1 (so
    # T' = M T Mᵀ, M = [[1, -c], [0, 1]]), β0' = β0 - c β1; with y' = k y every SD, σ and β
    # scale by k and the REML criterion gains 2 (n - p) log k.
    data = pd.read_csv(ROOT / "data" / "crossed_slope.csv")
    spec = bm.Spec.from_formula(CASES["crossed_slope_reml"])
    base = bm.fit_reml(spec, data)
    c, k = 1e4, 1e3  # a slope variable shifted 10,000 SDs away (blocks centred: no digits lost)
    shifted = bm.fit_reml(spec, data.assign(x=data.x + c, y=data.y * k))
    n, p = len(data), 2
    assert shifted.criterion == pytest.approx(base.criterion + 2 * (n - p) * np.log(k),
                                              rel=1e-9)
    assert shifted.converged
    assert shifted.sigma == pytest.approx(k * base.sigma, rel=1e-6)
    b0, b1 = base.beta.to_numpy()
    np.testing.assert_allclose(shifted.beta.to_numpy(), k * np.array([b0 - c * b1, b1]),
                               rtol=1e-6)
    labels = ["U0 (Intercept)", "U1 (x)"]
    T = base.corr_u.loc[labels, labels].to_numpy() * np.outer(base.sd_u[labels],
                                                              base.sd_u[labels])
    M = np.array([[1.0, -c], [0.0, 1.0]])
    T_expected = k**2 * M @ T @ M.T
    sd_shift = shifted.sd_u[labels].to_numpy()
    np.testing.assert_allclose(sd_shift, np.sqrt(np.diag(T_expected)), rtol=1e-5)
    corr = shifted.corr_u.loc[labels[0], labels[1]]
    assert corr == pytest.approx(T_expected[0, 1] / np.prod(np.sqrt(np.diag(T_expected))),
                                 abs=1e-5)
    assert shifted.sd_u["V0 (Intercept)"] == pytest.approx(k * base.sd_u["V0 (Intercept)"],
                                                           rel=1e-5)
