"""Sampling through the public stages: posterior layout, reproducibility, summary, save/load."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import bayesmix as bm
from bayesmix.checks.summary import ConvergenceWarning

# The seed tutorial's nlme REML estimates.
SEED_BETA = np.array([0.1662317, -3.466743e-05])


@pytest.fixture(scope="module")
def short_fits(dung_spec, dung_data):
    """Two short fits with the same seed, and one with another seed."""
    kw = {"draws": 100, "tune": 200, "chains": 2, "progressbar": False}
    a = bm.fit(dung_spec, dung_data, random_seed=11, **kw)
    b = bm.fit(dung_spec, dung_data, random_seed=11, **kw)
    c = bm.fit(dung_spec, dung_data, random_seed=12, **kw)
    return a, b, c


def test_same_seed_gives_identical_draws(short_fits):
    a, b, c = short_fits
    for var in ("beta", "sigma", "u", "sd_u"):
        np.testing.assert_array_equal(a.posterior[var].to_numpy(), b.posterior[var].to_numpy())
    assert not np.array_equal(a.posterior["beta"].to_numpy(), c.posterior["beta"].to_numpy())


def test_posterior_layout_and_labels(fitted_model):
    fit = fitted_model("sleepstudy")
    post = fit.posterior
    assert post["beta"].dims == ("chain", "draw", "fixed")
    assert list(post["beta"].fixed.values) == ["g00 (Intercept)", "g10 (Days)"]
    assert post["u"].dims == ("chain", "draw", "cluster", "random")
    assert list(post["u"].cluster.values)[:3] == ["308", "309", "310"]
    assert list(post["u"].random.values) == ["U0 (Intercept)", "U1 (Days)"]
    assert post["sd_u"].dims == ("chain", "draw", "random")
    assert post["corr_u"].dims == ("chain", "draw", "random", "random2")
    np.testing.assert_allclose(post["corr_u"].isel(random=0, random2=0), 1.0)
    assert post["coef"].dims == ("chain", "draw", "cluster", "level1")
    # β_qj = γ_q0 + U_qj for this model.
    np.testing.assert_allclose(
        post["coef"].isel(level1=1).to_numpy(),
        post["beta"].isel(fixed=1).to_numpy()[..., None] + post["u"].isel(random=1).to_numpy(),
    )


def test_dung_posterior_centred_on_the_seed_reml_and_reconstruction(fitted_model):
    fit = fitted_model("dung")
    beta = fit.posterior["beta"]
    mean, sd = beta.mean(("chain", "draw")).to_numpy(), beta.std(("chain", "draw")).to_numpy()
    assert np.all(np.abs(mean - SEED_BETA) < 0.5 * sd)
    rec = bm.reconstruct(fit)
    assert rec.max_abs_error < 1e-10
    assert rec.graph_max_abs_error is not None and rec.graph_max_abs_error < 1e-8
    assert list(rec.table.columns) == ["cluster", "y", "Xb", "Zu", "e", "sum"]
    np.testing.assert_allclose(rec.table["y"], fit.design.y)


def test_reconstruction_graph_check_catches_a_builder_that_disagrees(fitted_model):
    fit = fitted_model("dung")
    d = fit.design
    # A design whose X differs from the one the graph was built with.
    wrong = type(d)(**{**d.__dict__, "X": d.X * np.array([1.0, 1.01])})
    bad = type(fit)(**{**fit.__dict__, "design": wrong})
    assert bm.reconstruct(bad).graph_max_abs_error > 1e-3


def test_summary_table_and_warnings(short_fits, fitted_model):
    s = bm.summarize(fitted_model("sleepstudy"), warn=False)
    assert list(s.table.index) == [
        "beta[g00 (Intercept)]", "beta[g10 (Days)]", "sd_u[U0 (Intercept)]",
        "sd_u[U1 (Days)]", "corr_u[U1 (Days), U0 (Intercept)]", "sigma",
    ]
    assert {"mean", "sd", "ess_bulk", "r_hat"} <= set(s.table.columns)
    short = short_fits[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = bm.summarize(short)
    assert s.min_ess_bulk < 400
    assert any("bulk ESS is only" in w for w in s.warnings)
    assert any(issubclass(w.category, ConvergenceWarning) for w in caught)
    assert "WARNING" in str(s)


def test_save_and_load_round_trip(tmp_path, fitted_model):
    fit = fitted_model("hsb")
    path = fit.save(tmp_path / "hsb.nc")
    back = bm.Fit.load(path)
    assert back.spec == fit.spec
    np.testing.assert_array_equal(back.design.X, fit.design.X)
    np.testing.assert_array_equal(back.posterior["u"].to_numpy(), fit.posterior["u"].to_numpy())
    assert back.priors.table() == fit.priors.table()
    assert bm.reconstruct(back).graph_max_abs_error < 1e-6


def test_pymc_sampler_and_rows_form_agree_with_collapsed(dung_spec, dung_data, fitted_model):
    ref = fitted_model("dung").posterior["beta"]
    other = bm.fit(dung_spec, dung_data, draws=500, tune=500, chains=2, random_seed=3,
                   sampler="pymc", likelihood="rows", progressbar=False, target_accept=0.95)
    assert other.likelihood == "rows"
    beta = other.posterior["beta"]
    mcse = np.sqrt(ref.var(("chain", "draw")) / 1000 + beta.var(("chain", "draw")) / 200)
    diff = np.abs(ref.mean(("chain", "draw")) - beta.mean(("chain", "draw")))
    assert np.all(diff.to_numpy() < 4 * mcse.to_numpy())


def test_numpyro_without_jax_says_how_to_install(dung_spec, dung_data):
    import importlib.util

    if importlib.util.find_spec("numpyro") is not None:
        pytest.skip("numpyro is installed")
    with pytest.raises(bm.SpecError, match=r"pip install 'bayesmix\[numpyro\]'"):
        bm.fit(dung_spec, dung_data, sampler="numpyro")


class _InterruptedRun:
    """What ``nutpie.sample(..., blocking=False)`` returns, interrupted while waiting."""

    cancelled = False

    def wait(self):
        raise KeyboardInterrupt

    def cancel(self):
        type(self).cancelled = True


def _built(dung_spec, dung_data):
    return bm.build_model(bm.build_design(dung_spec, dung_data))


def test_ctrl_c_during_nutpie_sampling_stops_with_one_line(dung_spec, dung_data, monkeypatch):
    import nutpie

    from bayesmix.sampling import CompiledModel, SamplingInterrupted

    monkeypatch.setattr(nutpie, "sample", lambda *a, **k: _InterruptedRun())
    settings = bm.SamplerSettings(draws=10, tune=10, chains=2, progressbar=False)
    with pytest.raises(SamplingInterrupted) as info:
        bm.sample(_built(dung_spec, dung_data), settings,
                  compiled=CompiledModel(None, "c", 0.0))
    assert _InterruptedRun.cancelled
    assert isinstance(info.value, KeyboardInterrupt)  # still stops scripts and notebooks
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("sampling interrupted after")
    assert info.value.__suppress_context__


@pytest.mark.parametrize("sampler", ["nutpie", "pymc"])
def test_a_partial_trace_is_refused(dung_spec, dung_data, monkeypatch, sampler):
    """Both samplers can hand back what they had when stopped; that is not a fit."""
    import nutpie
    import xarray as xr

    from bayesmix import sampling
    from bayesmix.sampling import CompiledModel, SamplingInterrupted

    beta = np.zeros((2, 7, 2))
    beta[1, 5:] = np.nan  # the second chain stopped early: nutpie pads with NaN
    partial = xr.DataTree.from_dict({"posterior": xr.Dataset(
        {"beta": (("chain", "draw", "fixed"), beta)})})

    class Done:
        def wait(self):
            return partial

    monkeypatch.setattr(nutpie, "sample", lambda *a, **k: Done())
    monkeypatch.setattr(sampling.pm, "sample", lambda **k: partial)
    built = _built(dung_spec, dung_data)
    with pytest.raises(SamplingInterrupted, match=r"2 chains x 7 draws came back of 2 x 10"):
        bm.sample(built, bm.SamplerSettings(draws=10, tune=5, chains=2, sampler=sampler,
                                            progressbar=False),
                  compiled=CompiledModel(None, "c", 0.0) if sampler == "nutpie" else None)
    with pytest.raises(SamplingInterrupted, match="interrupted"):
        bm.sample(built, bm.SamplerSettings(draws=7, tune=5, chains=2, sampler=sampler,
                                            progressbar=False),
                  compiled=CompiledModel(None, "c", 0.0) if sampler == "nutpie" else None)
