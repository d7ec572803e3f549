"""Autoscaled default priors (the documented rule) and overrides."""

from __future__ import annotations

import numpy as np
import pytest

from bayesmix import Prior, Priors, SpecError, build_design, resolve_priors


def test_default_rule_on_dung(dung_spec, dung_data):
    d = build_design(dung_spec, dung_data)
    rp = resolve_priors(d)
    s_y = dung_data.pr_dung.std(ddof=0)
    s_x = dung_data.flies.std(ddof=0)
    slope = 2.5 * s_y / s_x
    assert rp.beta_sigma[1] == pytest.approx(slope)
    assert rp.beta_mu[1] == 0
    # The intercept's prior is on α = γ_00 + x̄ γ_10, the mean of y at the mean of flies.
    assert rp.intercept_centred
    assert rp.beta_mu[0] == pytest.approx(dung_data.pr_dung.mean())
    assert rp.beta_sigma[0] == pytest.approx(2.5 * s_y)
    # Implied joint prior of (γ_00, γ_10): γ_00 = α − x̄ γ_10.
    mean, cov = rp.beta_normal()
    x_bar = dung_data.flies.mean()
    assert mean[0] == pytest.approx(dung_data.pr_dung.mean())
    assert cov[0, 0] == pytest.approx((2.5 * s_y) ** 2 + (x_bar * slope) ** 2)
    assert cov[0, 1] == pytest.approx(-x_bar * slope**2)
    assert rp.sigma == Prior("HalfStudentT", nu=3, sigma=s_y)
    assert rp.sd_u == Prior("HalfStudentT", nu=3, sigma=(s_y,))
    assert rp.eta == 2.0
    assert "at the predictors' means" in rp.table()[0][0]


def test_priors_on_the_standardised_scale_are_the_same_priors(dung_spec, dung_data):
    # β̃ = (A_x β − m e₀)/s_y: N(0, 2.5) for every coefficient under the default rule, and a
    # user's prior maps exactly (mean and SD of β̃ by hand).
    d = build_design(dung_spec, dung_data)
    mean, cov = resolve_priors(d).std_beta()
    np.testing.assert_allclose(mean, [0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(cov, np.diag([6.25, 6.25]), atol=1e-12)
    rp = resolve_priors(d, Priors(beta={"g10": Prior("Normal", mu=1e-4, sigma=2e-5)}))
    mean, cov = rp.std_beta()
    s_y, s_x = dung_data.pr_dung.std(ddof=0), dung_data.flies.std(ddof=0)
    assert mean[1] == pytest.approx(1e-4 * s_x / s_y)
    assert np.sqrt(cov[1, 1]) == pytest.approx(2e-5 * s_x / s_y)
    assert rp.std_sigma() == Prior("HalfStudentT", nu=3, sigma=1.0)


def test_scaled_prior_families():
    assert Prior("Normal", mu=1, sigma=2).scaled(3) == Prior("Normal", mu=3, sigma=6)
    assert Prior("Exponential", lam=2.0).scaled(4) == Prior("Exponential", lam=0.5)
    assert Prior("Gamma", alpha=2, beta=1).scaled(2) == Prior("Gamma", alpha=2, beta=0.5)
    assert Prior("LogNormal", mu=0, sigma=1).scaled(np.e) == Prior("LogNormal", mu=1, sigma=1)
    assert Prior("HalfStudentT", nu=3, sigma=(1.0, 2.0)).scaled(np.array([2.0, 0.5])) == Prior(
        "HalfStudentT", nu=3, sigma=(2.0, 1.0))


def test_intercept_prior_at_the_means_or_at_zero(dung_spec, dung_data):
    d = build_design(dung_spec, dung_data)
    rp = resolve_priors(d, Priors(intercept=Prior("Normal", mu=0.2, sigma=0.1)))
    assert rp.intercept_centred and rp.beta_mu[0] == 0.2
    with pytest.raises(SpecError, match="not both"):
        resolve_priors(d, Priors(intercept=Prior("Normal", mu=0.2, sigma=0.1),
                                 beta={"g00": Prior("Normal", mu=0, sigma=1)}))
    with pytest.raises(SpecError, match="must be Normal"):
        Priors(intercept=Prior("StudentT", nu=3, mu=0, sigma=1))


def test_overrides_by_gamma_name_and_label(dung_spec, dung_data):
    d = build_design(dung_spec, dung_data)
    rp = resolve_priors(d, Priors(beta={"g10": {"dist": "Normal", "mu": 0, "sigma": 0.01},
                                        "g00 (Intercept)": Prior("Normal", mu=0.2, sigma=1)},
                                  sigma=Prior("Exponential", lam=50.0),
                                  sd_u={"U0": Prior("HalfNormal", sigma=0.05)}, eta=4))
    assert rp.beta_sigma.tolist() == [1.0, 0.01]
    assert rp.beta_mu.tolist() == [0.2, 0.0]
    assert not rp.intercept_centred  # a prior for γ_00 itself, not for α
    _, cov = rp.beta_normal()
    np.testing.assert_allclose(cov, np.diag([1.0, 1e-4]))
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
