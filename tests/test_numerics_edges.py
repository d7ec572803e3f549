"""Numerical edge cases of the robustness issue: near-collinear X, an exact fit, no fixed
effects. Each gives a clear bayesmix error or a correct fit, never a raw NumPy error."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import DATA
from scipy import stats

import bayesmix as bm
from bayesmix.checks.reconstruct import loglik_function


@pytest.fixture(scope="module")
def sleep():
    return pd.read_csv(DATA / "sleepstudy.csv")


def test_near_collinear_columns_are_named(sleep):
    rng = np.random.default_rng(0)
    data = sleep.assign(D2=sleep.Days + 1e-9 * rng.normal(size=len(sleep)))
    spec = bm.Spec.from_formula("Reaction ~ Days + D2 + (1 | Subject)")
    with pytest.raises(bm.DataError, match=r"'g10 \(Days\)', 'g20 \(D2\)' are nearly collinear"):
        bm.build_design(spec, data)


def test_shifted_columns_are_not_taken_for_collinear(sleep):
    # Uncentred, [1, Days + 1e7] is numerically almost rank one; centred it is not.
    data = sleep.assign(Days=sleep.Days + 1e7)
    d = bm.build_design(bm.Spec.from_formula("Reaction ~ Days + (Days | Subject)"), data)
    assert d.p == 2


@pytest.mark.parametrize(("formula", "outcome"), [
    ("R2 ~ Days + (1 | Subject)", lambda s: 3.0 + 2.0 * s.Days),
    ("R2 ~ Days + (1 | Subject)", lambda s: 1e6 + 2.0 * s.Days),  # shifted far from 0
    ("R2 ~ 0 + Days + (1 | Subject)", lambda s: 2.0 * s.Days),  # no intercept: y not centred
])
@pytest.mark.parametrize("how", ["fit_reml", "build_design"])
def test_an_exact_fit_is_refused(sleep, how, formula, outcome):
    data = sleep.assign(R2=outcome(sleep))
    spec = bm.Spec.from_formula(formula)
    with pytest.raises(bm.DataError, match="exact linear function of the fixed-effect columns"):
        if how == "fit_reml":
            bm.fit_reml(spec, data)
        else:
            bm.build_design(spec, data)


def test_a_near_exact_fit_is_not_refused(sleep):
    data = sleep.assign(R2=3.0 + 2.0 * sleep.Days + 1e-6 * np.sin(np.arange(len(sleep))))
    bm.build_design(bm.Spec.from_formula("R2 ~ Days + (1 | Subject)"), data)


def test_no_fixed_effects_reml_equals_the_marginal_likelihood(sleep):
    # y ~ 0 + (1 | g): y_j ~ N(0, σ²I + τ²11ᵀ). With p = 0 REML is ML; check the maximised
    # log-likelihood against scipy's multivariate normal at the estimates, and that it is a
    # maximum (a small move in τ or σ lowers it).
    spec = bm.Spec.from_equations("Reaction = b0 + e\nb0 = U0", cluster="Subject")
    assert spec.to_formula() == "Reaction ~ 0 + (1 | Subject)"
    fit = bm.fit_reml(spec, sleep)
    assert fit.converged and fit.beta.size == 0

    def loglik(tau: float, sigma: float) -> float:
        total = 0.0
        for _, rows in sleep.groupby("Subject"):
            y = rows.Reaction.to_numpy()
            cov = sigma**2 * np.eye(y.size) + tau**2
            total += stats.multivariate_normal(np.zeros(y.size), cov).logpdf(y)
        return total

    tau, sigma = fit.sd_u.iloc[0], fit.sigma
    assert -2 * loglik(tau, sigma) == pytest.approx(fit.criterion, rel=1e-10)
    best = loglik(tau, sigma)
    for dt, ds in [(1.01, 1), (0.99, 1), (1, 1.01), (1, 0.99)]:
        assert loglik(tau * dt, sigma * ds) < best


@pytest.mark.parametrize("form", ["collapsed", "sufficient", "rows"])
def test_no_fixed_effects_builds_in_every_form(sleep, form):
    spec = bm.Spec.from_formula("Reaction ~ 0 + (1 | Subject)")
    design = bm.build_design(spec, sleep)
    f = loglik_function(bm.build_model(design, likelihood=form))
    tau, sigma = 300.0, 44.0
    u = np.zeros((design.J, 1))
    args = {"beta": np.zeros(0), "sigma": sigma, "chol_u": np.array([[tau]]), "u": u}
    got = f(**args)
    if form == "collapsed":
        want = sum(
            stats.multivariate_normal(np.zeros(len(r)), sigma**2 * np.eye(len(r)) + tau**2)
            .logpdf(r.Reaction.to_numpy()) for _, r in sleep.groupby("Subject"))
    else:
        want = stats.norm(0.0, sigma).logpdf(sleep.Reaction.to_numpy()).sum()
    assert got == pytest.approx(want, rel=1e-10)
