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
