"""Parameter recovery on the simulated cross-level data (known truth, 60 clusters)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import bayesmix as bm

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_cross_level_truth_inside_95_percent_intervals():
    truth = json.loads((ROOT / "data" / "cross_level_truth.json").read_text())
    fit = bm.fit(ROOT / "models" / "cross_level.toml", draws=1000, tune=1000, chains=4,
                 random_seed=7, progressbar=False)
    post = fit.posterior
    s = bm.summarize(fit, warn=False)
    assert s.max_rhat <= 1.01
    assert s.divergences == 0

    def interval(da):
        return np.quantile(da.to_numpy().reshape(-1), [0.025, 0.975])

    for gamma in ("g00", "g01", "g10", "g11"):
        label = next(n for n in fit.design.fixed_names if n.startswith(gamma + " "))
        lo, hi = interval(post["beta"].sel(fixed=label))
        assert lo < truth[gamma] < hi, (gamma, lo, hi, truth[gamma])
    for k, key in enumerate(("sd_U0", "sd_U1")):
        lo, hi = interval(post["sd_u"].isel(random=k))
        assert lo < truth[key] < hi, (key, lo, hi)
    lo, hi = interval(post["corr_u"].isel(random=1, random2=0))
    assert lo < truth["corr_U0_U1"] < hi
    lo, hi = interval(post["sigma"])
    assert lo < truth["sigma"] < hi
