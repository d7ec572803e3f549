"""LOO, K-fold and model comparison: against ArviZ's own PSIS-LOO and exact refits."""

from __future__ import annotations

import warnings

import arviz_stats
import numpy as np
import pandas as pd
import pytest
from conftest import DATA, FIT_SETTINGS, MODELS

import bayesmix as bm
from bayesmix import loo_cv as loo_module
from bayesmix.errors import BayesmixError
from bayesmix.kfold import assign_folds


def _quiet_loo(fit, unit=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bm.loo(fit, unit)


def test_chunked_observation_loo_is_arviz_loo(fitted_model, monkeypatch):
    """Not storing y_conditional (a big fit) gives ArviZ's PSIS-LOO exactly, chunk by chunk."""
    fit = fitted_model("sleepstudy")
    stored = arviz_stats.loo(fit.idata, var_name="y_conditional", pointwise=True,
                             reff=loo_module.relative_efficiency(fit))
    original = loo_module.row_chunks
    monkeypatch.setattr(loo_module, "row_chunks",
                        lambda n, S, budget=0: original(n, S, budget=7 * S))  # 7 rows a chunk
    chunked = loo_module._chunked_loo(fit)
    assert chunked.elpd == pytest.approx(stored.elpd, rel=1e-12)
    assert chunked.se == pytest.approx(stored.se, rel=1e-10)
    assert chunked.p == pytest.approx(stored.p, rel=1e-9)
    np.testing.assert_allclose(chunked.pareto_k.values, stored.pareto_k.values, atol=1e-12)
    # and bm.loo takes that path when the group is absent
    groups = {k: fit.idata[k].to_dataset() for k in fit.idata.children}
    groups["log_likelihood"] = groups["log_likelihood"].drop_vars("y_conditional")
    import dataclasses

    import xarray as xr
    slim = dataclasses.replace(fit, idata=xr.DataTree.from_dict(groups))
    assert _quiet_loo(slim, "observation").elpd == pytest.approx(stored.elpd, rel=1e-12)


def test_default_units(fitted_model):
    assert _quiet_loo(fitted_model("sleepstudy")).unit == "cluster"
    crossed = fitted_model("penicillin_crossed")
    result = _quiet_loo(crossed)
    assert result.unit == "observation"
    assert result.n_data_points == crossed.design.n
    with pytest.raises(BayesmixError, match="crossed"):
        bm.loo(crossed, "cluster")
    with pytest.raises(BayesmixError, match="unit must be one of"):
        bm.loo(crossed, "school")


def test_glmm_cluster_loo_runs_on_the_marginal(fitted_model):
    fit = fitted_model("cbpp")
    result = _quiet_loo(fit)
    assert result.n_data_points == 15 and result.unit == "cluster"
    # p_loo is between 0 and the number of parameters (4 γ's + 1 SD, plus the shrunk herds)
    assert 0 < result.p < 20


def test_loo_names_the_units_with_high_pareto_k(fitted_model):
    fit = fitted_model("sleepstudy")
    result = _quiet_loo(fit)
    high = result.pareto_k.values > result.good_k
    if not high.any():
        pytest.skip("no unit with a high Pareto k in this run")
    with pytest.warns(UserWarning, match="Pareto k > .*bm.kfold"):
        bm.loo(fit)


def test_az_and_compare_say_what_to_pass(fitted_model):
    import arviz as az

    fit = fitted_model("sleepstudy")
    with pytest.raises(TypeError, match=r"fit\.idata"):
        az.summary(fit)
    assert "beta" in az.summary(fit.idata, var_names=["beta"]).index[0]
    with pytest.raises(BayesmixError, match="compare_models"):
        bm.compare(fit, fit)


def test_kfold_arguments_are_checked(fitted_model):
    fit = fitted_model("sleepstudy")
    with pytest.raises(BayesmixError, match="between 2 and the number of clusters"):
        bm.kfold(fit, k=19)
    with pytest.raises(BayesmixError, match="one per Subject unit"):
        bm.kfold(fit, folds=[0, 1, 2])
    with pytest.raises(BayesmixError, match="no fold for the Subject units 308"):
        bm.kfold(fit, folds={"309": 0})
    folds = assign_folds(18, 4, 1)
    assert sorted(np.bincount(folds)) == [4, 4, 5, 5]


def test_compare_models_refuses_different_data(fitted_model):
    a = fitted_model("sleepstudy")
    other = pd.read_csv(DATA / "sleepstudy.csv").iloc[:-10]
    b = bm.fit(bm.Spec.from_file(MODELS / "sleepstudy.toml"), other, **FIT_SETTINGS)
    with pytest.raises(BayesmixError, match="different data"):
        bm.compare_models({"all": a, "fewer": b})


@pytest.mark.slow
def test_random_slopes_win_on_sleepstudy_by_loo(fitted_model):
    slope = fitted_model("sleepstudy")
    spec = bm.Spec.from_formula("Reaction ~ Days + (1 | Subject)")
    intercept = bm.fit(spec, pd.read_csv(DATA / "sleepstudy.csv"), **FIT_SETTINGS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cmp = bm.compare_models({"intercept": intercept, "slope": slope},
                                unit="observation")
    table = cmp.table
    assert table.index[0] == "slope"
    # the slope model is better by more than one SE of the difference (about 20 ± 12)
    assert -table.loc["intercept", "elpd_diff"] > table.loc["intercept", "dse"]
    assert table.loc["intercept", "elpd_diff"] == pytest.approx(
        cmp.elpd["intercept"].elpd - cmp.elpd["slope"].elpd, rel=1e-12)
    assert table.loc["slope", "weight"] > 0.8
    assert "leave-one-observation-out" in repr(cmp)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["sleepstudy", "pastes_nested"])
def test_psis_loo_by_cluster_agrees_with_exact_leave_one_cluster_out(fitted_model, model):
    """The target: PSIS-LOO by cluster against K = J refits (each cluster left out once).

    sleepstudy (18 subjects; the refits reuse one compiled model) and a three-level model
    (pastes: casks within 10 batches; each refit rebuilt without a batch).
    """
    fit = fitted_model(model)
    approx = _quiet_loo(fit, "cluster")
    J = approx.n_data_points
    exact = bm.kfold(fit, k=J, draws=250)
    assert exact.n_folds == J
    assert abs(approx.elpd - exact.elpd) < 2 * exact.se
    r = np.corrcoef(approx.elpd_i.values, exact.elpd_i.values)[0, 1]
    assert r >= 0.95, r
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cmp = bm.compare_models({"psis": fit, "exact": exact}, unit="cluster")
    assert set(cmp.table.index) == {"psis", "exact"}


@pytest.mark.slow
def test_kfold_refits_a_glmm_by_herds(fitted_model):
    """The rebuilt path: binomial cbpp, 3 folds of herds; scored by the herd marginals."""
    fit = fitted_model("cbpp")
    result = bm.kfold(fit, k=3, draws=200, tune=300)
    assert result.n_folds == 3 and result.elpd_i.sizes["cluster"] == 15
    approx = _quiet_loo(fit)
    assert abs(result.elpd - approx.elpd) < 2 * result.se
    assert np.isfinite(result.elpd_i.values).all()


def test_compare_models_names_the_model_a_warning_is_about(fitted_model):
    fit = fitted_model("sleepstudy")
    result = _quiet_loo(fit)
    if not (result.pareto_k.values > result.good_k).any():
        pytest.skip("no unit with a high Pareto k in this run")
    with pytest.warns(UserWarning, match="model 'slope': PSIS-LOO by cluster"):
        bm.compare_models({"slope": fit, "again": fit})
