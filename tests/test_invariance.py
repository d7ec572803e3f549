"""Shift and scale invariance: affine changes of y or of a predictor change the estimates exactly
as the algebra says (REML, ML and every likelihood form of the Bayesian model).

The expected values are computed here by hand from the unshifted fit: for ``x → c·x + a`` every
column of X (and of Zq) that contains x as a factor becomes ``c·col + a·col(without x)``, so
``X' = X M`` with a known M, ``β' = M⁻¹β``, ``Cov(β̂') = M⁻¹ Cov(β̂) M⁻ᵀ`` and, for the random
part, ``Zq' = Zq N``, ``b' = N⁻¹b``, ``T' = N⁻¹ T N⁻ᵀ``; σ does not change; the REML criterion
moves by ``2 log|det M|``.  For ``y → c·y + a``: the intercept moves by a, everything else on the
y scale is multiplied by c, the REML criterion moves by ``2 (n − p) log c`` and the ML deviance
by ``2 n log c``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import DATA
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import bayesmix as bm
from bayesmix.notation import INTERCEPT

CASES = {
    "sleepstudy": ("sleepstudy.csv", "Reaction ~ Days + (Days | Subject)", "Days"),
    "dung": ("dung.csv", "pr_dung ~ flies + (1 | oven_block)", "flies"),
    "hsb": ("hsb.csv", "MathAch ~ cses * (MEANSES + Sector) + (cses | School)", "cses"),
}
_DATA: dict[str, pd.DataFrame] = {}
_BASE: dict[tuple[str, str], bm.REMLFit] = {}


def _data(name: str) -> pd.DataFrame:
    if name not in _DATA:
        _DATA[name] = pd.read_csv(DATA / CASES[name][0])
    return _DATA[name]


def _spec(name: str, data: pd.DataFrame) -> bm.Spec:
    return bm.Spec.from_formula(CASES[name][1], data,
                                reference={"Sector": "Public"} if name == "hsb" else None)


def _base(name: str, method: str) -> bm.REMLFit:
    if (name, method) not in _BASE:
        data = _data(name)
        _BASE[(name, method)] = bm.fit_reml(_spec(name, data), data, method=method)
    return _BASE[(name, method)]


def _column_map(terms: tuple[str, ...], var: str, c: float, a: float) -> np.ndarray:
    """M with ``cols' = cols M`` when ``var → c·var + a`` (terms as products 'x:w')."""
    k = len(terms)
    m = np.eye(k)
    sets = [frozenset() if t == INTERCEPT else frozenset(t.split(":")) for t in terms]
    for j, factors in enumerate(sets):
        if var in factors:
            m[j, j] = c
            m[sets.index(factors - {var}), j] = a
    return m


def _shifted_x(name: str, c: float, a: float):
    data = _data(name)
    var = CASES[name][2]
    new = data.assign(**{var: data[var] * c + a})
    return new, var


def _assert_equal(got, want, rtol=1e-6, atol=0.0, what=""):
    got, want = np.asarray(got, float), np.asarray(want, float)
    bad = ~(np.abs(got - want) <= atol + rtol * np.abs(want))
    assert not bad.any(), f"{what}: got {got[bad]}, want {want[bad]}"


# Scales over twelve orders of magnitude; shifts up to 1e5 SDs of the variable (years ≈ 2000
# with an SD of 10 are 200 SDs from 0).  Beyond ~1e8 SDs float64 itself no longer holds the
# variation of the data, whatever the algorithm.
scales = st.sampled_from([1e-6, 1e-3, 0.1, 1.0, 7.0, 1e3, 1e6])
shifts = st.sampled_from([0.0, 0.5, -3.0, 100.0, -1e4, 1e5])
# No shrinking: each example is a REML fit; the failing example is reported as drawn.
FAST = settings(max_examples=20, deadline=None, phases=[Phase.explicit, Phase.generate],
                suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(name=st.sampled_from(["sleepstudy", "dung", "hsb"]), method=st.sampled_from(["REML", "ML"]),
       c=scales, k=shifts)
def test_reml_is_equivariant_in_a_predictor(name, method, c, k):
    a = k * c * float(_data(name)[CASES[name][2]].std())
    base = _base(name, method)
    d0 = base.design
    data, var = _shifted_x(name, c, a)
    fit = bm.fit_reml(_spec(name, data), data, method=method)
    assert fit.converged, fit.messages
    m = _column_map(d0.fixed_terms, var, c, a)
    n_ = _column_map(d0.random_terms, var, c, a)
    mi, ni = np.linalg.inv(m), np.linalg.inv(n_)
    beta = mi @ base.beta.to_numpy()
    scale = np.abs(beta) + base.se.to_numpy() / np.diag(m) * 1e-3
    _assert_equal(fit.beta, beta, rtol=1e-6, atol=1e-6 * scale, what="beta")
    _assert_equal(fit.vcov, mi @ base.vcov.to_numpy() @ mi.T, rtol=2e-5, what="vcov")
    cov = ni @ base.cov_u.to_numpy() @ ni.T
    sd = np.sqrt(np.diag(cov))
    _assert_equal(fit.sd_u, sd, rtol=1e-6, atol=1e-9 * sd.max(), what="sd_u")
    if d0.q > 1:
        _assert_equal(fit.corr_u.to_numpy()[0, 1], (cov / np.outer(sd, sd))[0, 1], rtol=0,
                      atol=2e-6, what="corr_u")
    _assert_equal(fit.sigma, base.sigma, rtol=1e-6, what="sigma")
    shift_crit = 2 * np.log(abs(np.linalg.det(m))) if method == "REML" else 0.0
    _assert_equal(fit.criterion, base.criterion + shift_crit, rtol=1e-10, atol=1e-6,
                  what="criterion")
    u = base.u.to_numpy() @ ni.T
    _assert_equal(fit.u, u, rtol=1e-5, atol=1e-5 * np.abs(u).max(), what="BLUPs")


@FAST
@given(name=st.sampled_from(["sleepstudy", "dung", "hsb"]), method=st.sampled_from(["REML", "ML"]),
       c=scales, k=shifts)
def test_reml_is_equivariant_in_the_outcome(name, method, c, k):
    base = _base(name, method)
    d0 = base.design
    data = _data(name)
    y = d0.spec.outcome
    a = k * c * float(data[y].std())
    sign = 1.0
    new = data.assign(**{y: data[y] * c + a})
    fit = bm.fit_reml(_spec(name, new), new, method=method)
    assert fit.converged, fit.messages
    beta = base.beta.to_numpy() * c
    beta[0] += sign * a
    _assert_equal(fit.beta, beta, rtol=1e-6, atol=1e-6 * (abs(a) + c * np.abs(beta).max()),
                  what="beta")
    _assert_equal(fit.se, base.se * c, rtol=2e-5, what="se")
    _assert_equal(fit.sd_u, base.sd_u * c, rtol=1e-6, what="sd_u")
    _assert_equal(fit.sigma, base.sigma * c, rtol=1e-6, what="sigma")
    dof = d0.n - d0.p if method == "REML" else d0.n
    _assert_equal(fit.criterion, base.criterion + 2 * dof * np.log(c), rtol=1e-10, atol=1e-6,
                  what="criterion")
    _assert_equal(fit.u, base.u * c, rtol=1e-5, atol=1e-5 * c * np.abs(base.u).max().max(),
                  what="BLUPs")


def test_the_issue_cases_converge_to_the_right_answer():
    # The four calls of the issue: every one was wrong or flagged before.
    s = _data("sleepstudy")
    base = _base("sleepstudy", "REML")
    for kind, c, a in [("x", 1e5, 0.0), ("x", 1.0, 100.0), ("x", 1e3, 0.0)]:
        data, _ = _shifted_x("sleepstudy", c, a)
        fit = bm.fit_reml(_spec("sleepstudy", data), data)
        assert fit.converged and not fit.singular, (kind, c, a, fit.messages)
        assert fit.sigma == pytest.approx(base.sigma, rel=1e-7)
        assert fit.sd_u.iloc[1] * c == pytest.approx(base.sd_u.iloc[1], rel=1e-6)
    y_shift = s.assign(Reaction=s.Reaction + 1e7)
    fit = bm.fit_reml(_spec("sleepstudy", y_shift), y_shift)
    assert fit.converged
    _assert_equal(fit.sd_u, base.sd_u, rtol=1e-6)
    assert fit.beta.iloc[0] - 1e7 == pytest.approx(base.beta.iloc[0], rel=1e-8)


# ------------------------------------------------------------------------ the Bayesian model
def _logp_function(design: bm.Design, form: str):
    built = bm.build_model(design, likelihood=form)
    return built.model.compile_logp(), built.model.initial_point()


@pytest.mark.parametrize("form", ["collapsed", "sufficient", "rows"])
@pytest.mark.parametrize(("cy", "ay", "cx", "ax"), [
    (1.0, 1e7, 1.0, 0.0), (1e-4, 0.0, 1.0, 0.0), (1.0, 0.0, 1.0, 2000.0),
    (1.0, 0.0, 1e5, 0.0), (3e3, -5e4, 1e-3, 1e3),
])
def test_log_density_on_the_sampler_scale_does_not_change(form, cy, ay, cx, ax):
    """The sampler sees the same log density (up to the Jacobian −n log c_y) at every point.

    With the default priors, the standardised coordinates of the data are the same, so every
    form's model log density differs only by the constant Jacobian of y: the posterior is
    exactly equivariant, and the sampler's geometry does not depend on the units.
    """
    s = _data("sleepstudy")
    f = CASES["sleepstudy"][1]
    new = s.assign(Reaction=s.Reaction * cy + ay, Days=s.Days * cx + ax)
    d0 = bm.build_design(bm.Spec.from_formula(f), s)
    d1 = bm.build_design(bm.Spec.from_formula(f), new)
    f0, point = _logp_function(d0, form)
    f1, _ = _logp_function(d1, form)
    rng = np.random.default_rng(0)
    offset = d0.n * np.log(cy)
    for _ in range(4):
        p = {k: v + rng.normal(size=np.shape(v)) * 0.3 for k, v in point.items()}
        a, b = f0(p), f1(p)
        assert b + offset == pytest.approx(a, rel=1e-9, abs=1e-7), (a, b, offset)


SETTINGS = {"settings": bm.SamplerSettings(draws=400, tune=400, chains=2, random_seed=11,
                                           progressbar=False, backend="c")}


@pytest.fixture(scope="module")
def sleep_base_fit():
    s = _data("sleepstudy")
    return bm.fit(bm.Spec.from_formula(CASES["sleepstudy"][1]), s, **SETTINGS)


def _mcse(draws: np.ndarray) -> np.ndarray:
    """Monte-Carlo SE of the mean of (chain, draw, ...) draws, from ArviZ's bulk ESS."""
    import xarray as xr
    from arviz_stats import ess

    da = xr.DataArray(draws, dims=("chain", "draw", *[f"d{i}" for i in range(draws.ndim - 2)]))
    return (da.std(("chain", "draw")) / np.sqrt(np.asarray(ess(da, method="mean")))).to_numpy()


def _agree(base_draws: np.ndarray, draws: np.ndarray, what: str) -> None:
    """Posterior means within 4.5 combined Monte-Carlo SEs."""
    se = np.hypot(_mcse(base_draws), _mcse(draws))
    z = np.abs(draws.mean((0, 1)) - base_draws.mean((0, 1))) / se
    assert np.all(z < 4.5), (what, z)


@pytest.mark.slow
@pytest.mark.parametrize(("cy", "ay", "cx", "ax"), [
    (1.0, 1e7, 1.0, 0.0), (1.0, 0.0, 1.0, 100.0), (1e5, 0.0, 1e-5, 0.0),
])
def test_posterior_is_equivariant(sleep_base_fit, cy, ay, cx, ax):
    s = _data("sleepstudy")
    new = s.assign(Reaction=s.Reaction * cy + ay, Days=s.Days * cx + ax)
    fit = bm.fit(bm.Spec.from_formula(CASES["sleepstudy"][1]), new, **SETTINGS)
    summary = bm.summarize(fit, warn=False)
    assert summary.table["r_hat"].max() <= 1.02
    assert bm.reconstruct(fit).graph_max_abs_error < 1e-6
    base, post = sleep_base_fit.posterior, fit.posterior
    design = sleep_base_fit.design
    # The base draws transformed by hand: β' = c_y M⁻¹β (+ a_y on the intercept),
    # T' = c_y² N⁻¹ T N⁻ᵀ, σ' = c_y σ, u' = c_y N⁻¹ u.
    mi = np.linalg.inv(_column_map(design.fixed_terms, "Days", cx, ax))
    ni = np.linalg.inv(_column_map(design.random_terms, "Days", cx, ax))
    beta = cy * base["beta"].to_numpy() @ mi.T
    beta[..., 0] += ay
    _agree(beta, post["beta"].to_numpy(), "beta")
    _agree(cy * base["sigma"].to_numpy(), post["sigma"].to_numpy(), "sigma")
    chol = base["chol_u"].to_numpy()
    cov = cy**2 * (ni @ (chol @ np.swapaxes(chol, -1, -2)) @ ni.T)
    _agree(np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1)), post["sd_u"].to_numpy(), "sd_u")
    u = cy * base["u"].transpose("chain", "draw", "cluster", "random").to_numpy() @ ni.T
    _agree(u[:, :, :3], post["u"].transpose("chain", "draw", "cluster", "random")
           .to_numpy()[:, :, :3], "u")
