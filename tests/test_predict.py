"""predict(): new rows coded like the fit; seen clusters use their U, new ones draw from N(0, T)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayesmix as bm


def test_predict_reproduces_the_fitted_linear_predictor(fitted_model):
    fit = fitted_model("hsb")
    data = fit.design.data
    pred = bm.predict(fit, data.drop(columns="MathAch").iloc[:50])
    expected = fit.design.linear_predictor(
        fit.posterior["beta"].transpose("chain", "draw", "fixed").to_numpy(),
        fit.posterior["u"].transpose("chain", "draw", "cluster", "random").to_numpy(),
    )[..., :50]
    np.testing.assert_allclose(pred.draws.to_numpy(), expected, rtol=1e-12)
    assert pred.new_clusters == ()


def test_new_cluster_draws_u_from_its_distribution(fitted_model):
    fit = fitted_model("sleepstudy")
    new = pd.DataFrame({"Days": [0.0] * 3, "Subject": ["999", "999", "308"]})
    pred = bm.predict(fit, new, random_seed=1)
    assert pred.new_clusters == ("999",)
    beta0 = fit.posterior["beta"].isel(fixed=0)
    sd0 = fit.posterior["sd_u"].isel(random=0)
    draws = pred.draws.isel(row=0)
    # Var(μ) for a new subject at Days = 0 is Var(γ00) + E[SD(U0)²].
    expected = float(beta0.var() + (sd0**2).mean())
    assert float(draws.var()) == pytest.approx(expected, rel=0.15)
    seen = pred.draws.isel(row=2)
    assert float(seen.var()) < float(draws.var()) / 4
    assert list(pred.summary().columns) == ["mean", "sd", "lower 95%", "upper 95%"]


def test_unseen_category_and_missing_column_are_explained(fitted_model):
    fit = fitted_model("hsb")
    row = fit.design.data.drop(columns="MathAch").iloc[:1].copy()
    row["Sector"] = "Private"
    with pytest.raises(bm.DataError, match="'Sector' takes values outside its known levels"):
        bm.predict(fit, row)
    with pytest.raises(bm.DataError, match="lacks the column 'cses'"):
        bm.predict(fit, row.drop(columns="cses"))


def _many_rows(fit, n: int) -> pd.DataFrame:
    """n rows of the fit's data, cycling, with every 5th row in one of 40 new subjects."""
    base = fit.design.data.drop(columns=fit.spec.outcome)
    rows = base.iloc[np.arange(n) % len(base)].reset_index(drop=True)
    new = np.arange(n) % 5 == 0
    rows.loc[new, "Subject"] = [100_000 + k % 40 for k in range(int(new.sum()))]
    return rows.set_axis(pd.Index(np.arange(n) * 2 + 7, name="id"))


@pytest.mark.parametrize("kind", ["mean", "y"])
def test_chunked_prediction_equals_unchunked(fitted_model, kind):
    fit = fitted_model("sleepstudy")
    rows = _many_rows(fit, 700)
    whole = bm.predict(fit, rows, kind=kind, random_seed=4, chunk_rows=10_000)
    for chunk in (1, 37, 256, 300):
        part = bm.predict(fit, rows, kind=kind, random_seed=4, chunk_rows=chunk)
        np.testing.assert_array_equal(part.draws.to_numpy(), whole.draws.to_numpy())
        assert part.new_clusters == whole.new_clusters
    assert len(whole.new_clusters) == 40
    only = bm.predict(fit, rows, kind=kind, random_seed=4, keep_draws=False, chunk_rows=37)
    assert not only.has_draws
    pd.testing.assert_frame_equal(only.summary(), whole.summary())
    assert list(only.summary().index) == list(rows.index)


def test_seen_rows_do_not_depend_on_the_new_rows_beside_them(fitted_model):
    fit = fitted_model("sleepstudy")
    rows = _many_rows(fit, 50)
    a = bm.predict(fit, rows, random_seed=1).draws
    b = bm.predict(fit, rows.iloc[1:5], random_seed=2).draws  # rows 1-4 are seen subjects
    np.testing.assert_array_equal(a.isel(row=slice(1, 5)).to_numpy(), b.to_numpy())


def test_large_prediction_keeps_only_the_summary_and_says_how_to_get_draws(
    fitted_model, monkeypatch
):
    import importlib

    bp = importlib.import_module("bayesmix.predict")  # bm.predict is the function
    fit = fitted_model("sleepstudy")
    rows = _many_rows(fit, 200)
    monkeypatch.setattr(bp, "MAX_DRAWS_BYTES", 1000)
    with pytest.warns(UserWarning, match="kept only the summary"):
        pred = bm.predict(fit, rows)
    with pytest.raises(bm.DataError, match=r"keep_draws=True"):
        _ = pred.draws
    assert list(pred.summary().columns) == ["mean", "sd", "lower 95%", "upper 95%"]
    with pytest.raises(bm.DataError, match=r"ci_prob=0.5"):
        pred.summary(0.5)
    assert bm.predict(fit, rows, keep_draws=True).has_draws
    assert "summary only" in repr(pred)


def test_summary_only_prediction_memory_does_not_grow_with_the_draws(fitted_model):
    import tracemalloc

    fit = fitted_model("sleepstudy")  # 2,000 draws
    rows = _many_rows(fit, 20_000)  # all draws: 320 MB, and several such arrays before
    tracemalloc.start()
    try:
        pred = bm.predict(fit, rows, kind="y", keep_draws=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 250 * 2**20, peak
    assert pred.summary().shape == (20_000, 4)


def test_bad_predict_options_are_explained(fitted_model):
    fit = fitted_model("sleepstudy")
    rows = _many_rows(fit, 3)
    with pytest.raises(bm.DataError, match="keep_draws must be True, False or None"):
        bm.predict(fit, rows, keep_draws="yes")
    with pytest.raises(bm.DataError, match="chunk_rows must be a whole number"):
        bm.predict(fit, rows, chunk_rows=0)
    with pytest.raises(bm.DataError, match="ci_prob must be a number in"):
        bm.predict(fit, rows, ci_prob=95)
