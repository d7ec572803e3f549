"""Families: the Family seam, how specs state it, outcome checks, the GLMM forms.

The formulas are checked against scipy.stats (an independent implementation), the forms
against each other and against the explicit X and Z, and the posterior against simulated data
with a known truth.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

import bayesmix as bm
from bayesmix.build import build_model
from bayesmix.build_glmm import make_cells
from bayesmix.checks.reconstruct_glmm import explicit_glmm_loglik, glmm_loglik_function
from bayesmix.errors import DataError, SpecError
from bayesmix.families import get_family, link_centre

RNG = np.random.default_rng(20261202)


# ------------------------------------------------------------------ the formulas
@pytest.mark.parametrize("name", ["bernoulli", "binomial", "poisson", "gaussian"])
def test_loglik_equals_scipy(name):
    fam = get_family(name)
    eta = RNG.normal(size=50)
    if name == "poisson":
        y = RNG.poisson(np.exp(eta)).astype(float)
        ref = stats.poisson.logpmf(y, np.exp(eta))
        got = fam.loglik(y, eta)
    elif name == "gaussian":
        y = eta + RNG.normal(size=50)
        ref = stats.norm.logpdf(y, eta, 1.3)
        got = fam.loglik(y, eta, sigma=1.3)
    else:
        n = np.ones(50) if name == "bernoulli" else RNG.integers(1, 12, 50).astype(float)
        y = RNG.binomial(n.astype(int), special.expit(eta)).astype(float)
        ref = stats.binom.logpmf(y, n, special.expit(eta))
        got = fam.loglik(y, eta, trials=None if name == "bernoulli" else n)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


def test_link_round_trip_and_unknown_family():
    for name in ("bernoulli", "poisson"):
        fam = get_family(name)
        eta = RNG.normal(size=10)
        np.testing.assert_allclose(fam.linkfun(fam.linkinv(eta)), eta, rtol=1e-12)
    with pytest.raises(SpecError, match=r"unknown family 'gamma'.*bernoulli"):
        get_family("gamma")
    assert link_centre(get_family("bernoulli"), np.array([0, 0, 0, 1.0])) == pytest.approx(
        np.log(0.25 / 0.75))


# ------------------------------------------------------------------ how specs state it
EQ = """
    logit(use) = b0 + b1*age
    b0 = g00 + g01*urban + U0
    b1 = g10
"""


def test_equations_state_the_link_and_round_trip():
    spec = bm.Spec.from_equations(EQ, cluster="district")
    assert spec.family.name == "bernoulli" and spec.outcome == "use"
    assert spec.to_formula() == "use ~ 1 + age + urban + (1 | district)"
    assert spec.to_equations().splitlines()[0] == "logit(use) = b0 + b1*age"
    assert bm.Spec.from_equations(spec.to_equations(), cluster="district") == spec
    binom = bm.Spec.from_equations(EQ, cluster="district", trials="n")
    assert binom.family.name == "binomial"
    from bayesmix.spec.levels_print import equation_arguments

    assert bm.Spec.from_equations(binom.to_equations(), **equation_arguments(binom)) == binom
    pois = bm.Spec.from_equations("log(y) = b0 + e0*0\nb0 = g00 + U0".replace(" + e0*0", ""),
                                  cluster="g", exposure="t")
    assert pois.family.name == "poisson" and pois.exposure == "t"


@pytest.mark.parametrize("text, message", [
    ("logit(use) = b0 + e\nb0 = g00 + U0", "no level-1 residual e"),
    ("probit(use) = b0\nb0 = g00 + U0", "probit link is not supported"),
])
def test_equation_errors(text, message):
    with pytest.raises(SpecError, match=message):
        bm.Spec.from_equations(text, cluster="g")


def test_family_and_link_must_agree():
    with pytest.raises(SpecError, match="logit link but family='poisson'"):
        bm.Spec.from_equations(EQ, cluster="district", family="poisson")
    with pytest.raises(SpecError, match="not a Gaussian model"):
        bm.Spec.from_equations(EQ, cluster="district", family="gaussian")


def test_formulas_state_trials_and_exposure():
    a = bm.Spec.from_formula("cbind(incidence, size - incidence) ~ period + (1 | herd)")
    b = bm.Spec.from_formula("incidence | trials(size) ~ period + (1 | herd)")
    assert a == b and a.family.name == "binomial" and a.trials == "size"
    assert a.to_formula() == "cbind(incidence, size - incidence) ~ 1 + period + (1 | herd)"
    assert bm.Spec.from_formula(a.to_formula()) == a
    p = bm.Spec.from_formula("y ~ x + offset(log(t)) + (1 | a) + (1 | b)")
    assert p.family.name == "poisson" and p.exposure == "t"
    assert bm.Spec.from_formula(p.to_formula()) == p
    with pytest.raises(SpecError, match="n - k"):
        bm.Spec.from_formula("cbind(k, f) ~ x + (1 | g)")
    with pytest.raises(SpecError, match="needs the column of trials"):
        bm.Spec.from_formula("k ~ x + (1 | g)", family="binomial")
    with pytest.raises(SpecError, match="exposure='t' is for the Poisson family"):
        bm.Spec.from_formula("k ~ x + (1 | g)", family="bernoulli", exposure="t")


def test_model_file_keys(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text('family = "binomial"\ntrials = "size"\n'
                    'formula = "incidence ~ period + (1 | herd)"\n')
    spec = bm.Spec.from_file(path)
    assert spec.family.name == "binomial" and spec.trials == "size"


# ------------------------------------------------------------------ outcome checks
def _frame(y, **extra):
    g = np.repeat(np.arange(10), len(y) // 10)
    return pd.DataFrame({"y": y, "x": np.arange(len(y)) % 7 * 1.0, "g": g, **extra})


@pytest.mark.parametrize("family, y, extra, message", [
    ("bernoulli", np.tile([0.0, 2.0], 20), {}, "must be 0 or 1; 20 rows"),
    ("poisson", np.tile([0.0, 1.5], 20), {}, "whole numbers"),
    ("poisson", np.tile([0.0, -1.0], 20), {}, "non-negative count; 20 rows"),
    ("binomial", np.tile([0.0, 4.0], 20), {"n": 3}, "between 0 and 'n'"),
    ("binomial", np.tile([0.0, 1.0], 20), {"n": 0}, "at least 1"),
    ("poisson", np.tile([0.0, 1.0], 20), {"t": 0.0}, "exposure 't' must be positive"),
    ("bernoulli", np.zeros(40), {}, "0 in every row"),
])
def test_bad_outcomes_raise(family, y, extra, message):
    trials = "n" if "n" in extra else None
    exposure = "t" if "t" in extra else None
    spec = bm.Spec.from_formula("y ~ x + (1 | g)", family=family, trials=trials,
                                exposure=exposure)
    with pytest.raises(DataError, match=message):
        bm.build_design(spec, _frame(y, **extra))


def test_categorical_bernoulli_outcome_is_coded_with_a_warning():
    y = np.tile(["no", "yes"], 20)
    spec = bm.Spec.from_formula("y ~ x + (1 | g)", family="bernoulli")
    with pytest.warns(UserWarning, match="'yes' is coded 1"):
        d = bm.build_design(spec, _frame(y))
    np.testing.assert_array_equal(d.y, np.tile([0.0, 1.0], 20))
    with pytest.raises(DataError, match="must have two values; it has 3"):
        bm.build_design(spec, _frame(np.tile(["a", "b", "c", "a"], 10)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bm.build_design(spec, _frame(np.tile([False, True], 20)))


# ------------------------------------------------------------------ the likelihood forms
def _simulated(n_per=12, J=25, family="bernoulli", seed=3):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(J), n_per)
    h = rng.integers(0, 6, len(g))
    x = rng.integers(0, 3, len(g)).astype(float)  # few values: rows share cells
    u = rng.normal(size=J) * 0.7
    v = rng.normal(size=6) * 0.4
    eta = -0.3 + 0.5 * x + u[g] + v[h]
    t = rng.uniform(0.5, 2.0, len(g))
    trials = rng.integers(1, 7, len(g))
    if family == "poisson":
        y = rng.poisson(t * np.exp(eta))
    elif family == "binomial":
        y = rng.binomial(trials, special.expit(eta))
    else:
        y = rng.binomial(1, special.expit(eta))
    return pd.DataFrame({"y": y, "x": x, "g": g, "h": h, "t": t, "n": trials})


@pytest.mark.parametrize("family, formula", [
    ("bernoulli", "y ~ x + (1 + x | g)"),
    ("bernoulli", "y ~ x + (1 | g) + (1 | h)"),
    ("binomial", "cbind(y, n - y) ~ x + (1 + x | g)"),
    ("poisson", "y ~ x + offset(log(t)) + (1 | g)"),
    ("poisson", "y ~ x + offset(log(t)) + (1 | g) + (1 | h)"),
])
def test_rows_and_cells_forms_equal_the_explicit_loglik(family, formula):
    data = _simulated(family=family)
    design = bm.build_design(bm.Spec.from_formula(formula, family=family), data)
    assert make_cells(design).c < design.n
    rng = np.random.default_rng(1)
    for form in ("rows", "cells"):
        f = glmm_loglik_function(build_model(design, likelihood=form))
        for _ in range(3):
            beta = rng.normal(size=design.p) * 0.5
            if design.single_factor:
                u = rng.normal(size=(design.J, design.q)) * 0.5
            else:
                u = {fe.name: rng.normal(size=(fe.J, fe.q)) * 0.5 for fe in design.effects}
            want = explicit_glmm_loglik(design, beta, u)
            assert f(beta, u) == pytest.approx(want, rel=1e-10, abs=1e-8)


def test_statistics_forms_refused_for_a_glmm():
    design = bm.build_design(bm.Spec.from_formula("y ~ x + (1 | g)", family="bernoulli"),
                             _simulated())
    with pytest.raises(SpecError, match="takes cells, rows, laplace, agq"):
        build_model(design, likelihood="collapsed")


# ------------------------------------------------------------------ a fit, end to end
@pytest.fixture(scope="module")
def bernoulli_fit():
    rng = np.random.default_rng(11)
    J, m = 60, 25
    g = np.repeat(np.arange(J), m)
    x = rng.normal(size=J * m)
    w = rng.normal(size=J)[g]
    u = rng.normal(size=J) * 0.9
    eta = -0.4 + 0.8 * x + 0.5 * w + u[g]
    data = pd.DataFrame({"y": rng.binomial(1, special.expit(eta)), "x": x, "w": w, "g": g})
    spec = bm.Spec.from_formula("y ~ x + w + (1 | g)", family="bernoulli")
    return bm.fit(spec, data, draws=400, tune=400, chains=2, random_seed=5,
                  progressbar=False), data


@pytest.mark.slow
def test_bernoulli_fit_recovers_the_truth_and_checks(bernoulli_fit):
    fit, data = bernoulli_fit
    post = fit.posterior
    beta = post["beta"].mean(("chain", "draw")).to_numpy()
    sd = post["beta"].std(("chain", "draw")).to_numpy()
    assert np.all(np.abs(beta - np.array([-0.4, 0.8, 0.5])) < 3.5 * sd)
    sd_u = float(post["sd_u"].mean())
    assert 0.5 < sd_u < 1.4
    assert "sigma" not in post
    summary = bm.summarize(fit, warn=False)
    assert "icc" in summary.table.index
    rec = bm.reconstruct(fit)
    assert rec.graph_max_abs_error < 1e-8
    table = rec.table
    np.testing.assert_allclose(table["eta"], table["Xb"] + table["Zu"], rtol=1e-12)
    assert np.all((table["mu"] > 0) & (table["mu"] < 1))
    new = pd.DataFrame({"x": [0.0, 0.0], "w": [0.0, 0.0], "g": [0, 12345]})
    p = bm.predict(fit, new).summary()["mean"].to_numpy()
    eta = bm.predict(fit, new, scale="link").summary()["mean"].to_numpy()
    assert np.all((p > 0) & (p < 1))
    assert eta[0] == pytest.approx(float(np.mean(special.logit(
        bm.predict(fit, new).draws.isel(row=0).to_numpy()))), abs=1e-9)
    text = bm.equations(fit.spec, data).levels.text
    assert "Bernoulli(p_ij)" in text and "ε" not in text
