"""Autoscaled default priors (the documented rule) and overrides."""

from __future__ import annotations

import numpy as np
import pytest

from bayesmix import Prior, Priors, SpecError, build_design, resolve_priors


def test_default_rule_on_dung(dung_spec, dung_data):
    d = build_design(dung_spec, dung_data)
    rp = resolve_priors(d)
    s_y = dung_data.pr_dung.std(ddof=1)
    s_x = dung_data.flies.std(ddof=1)
    slope = 2.5 * s_y / s_x
    assert rp.beta_sigma[1] == pytest.approx(slope)
    assert rp.beta_mu[1] == 0
    assert rp.beta_mu[0] == pytest.approx(dung_data.pr_dung.mean())
    assert rp.beta_sigma[0] == pytest.approx(np.hypot(2.5 * s_y, slope * dung_data.flies.mean()))
    assert rp.sigma == Prior("HalfStudentT", nu=3, sigma=s_y)
    assert rp.sd_u == Prior("HalfStudentT", nu=3, sigma=(s_y,))
    assert rp.eta == 2.0


def test_overrides_by_gamma_name_and_label(dung_spec, dung_data):
    d = build_design(dung_spec, dung_data)
    rp = resolve_priors(d, Priors(beta={"g10": {"dist": "Normal", "mu": 0, "sigma": 0.01},
                                        "g00 (Intercept)": Prior("Normal", mu=0.2, sigma=1)},
                                  sigma=Prior("Exponential", lam=50.0),
                                  sd_u={"U0": Prior("HalfNormal", sigma=0.05)}, eta=4))
    assert rp.beta_sigma.tolist() == [1.0, 0.01]
    assert rp.beta_mu.tolist() == [0.2, 0.0]
    assert rp.sigma.dist == "Exponential"
    assert rp.sd_u == Prior("HalfNormal", sigma=(0.05,))
    assert rp.eta == 4.0


def test_bad_overrides_are_explained(dung_spec, dung_data):
    d = build_design(dung_spec, dung_data)
    with pytest.raises(SpecError, match="'g99', which is not a γ of this model"):
        resolve_priors(d, Priors(beta={"g99": Prior("Normal", mu=0, sigma=1)}))
    with pytest.raises(SpecError, match="must be Normal"):
        Priors(beta={"g10": Prior("StudentT", nu=3, mu=0, sigma=1)})
    with pytest.raises(SpecError, match="must be positive"):
        Priors(sigma=Prior("Normal", mu=0, sigma=1))
    with pytest.raises(SpecError, match=r"HalfNormal takes parameters \(sigma\); missing sigma"):
        Prior("HalfNormal", scale=1)
    with pytest.raises(SpecError, match="unknown prior distribution 'Cauchy'"):
        Prior("Cauchy", beta=1)
