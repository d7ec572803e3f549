"""Session-wide fixtures: every model file is fitted at most once per test session."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
MODELS = ROOT / "models"

# Few draws: enough for the checks the tests make, with compile time the main cost.
FIT_SETTINGS = {"draws": 500, "tune": 500, "chains": 4, "progressbar": False}
# Models whose posterior mixes slowly get the draws their file's comment asks for (grouseticks:
# weakly identified brood and location SDs; see models/grouseticks.toml).
SLOW_MIXING = {"grouseticks": {"draws": 1000}}


@pytest.fixture(scope="session")
def fitted_model():
    """``fitted_model("dung")`` fits ``models/dung.toml`` once per session and returns the Fit."""
    import bayesmix as bm

    cache: dict[str, bm.Fit] = {}

    def get(name: str) -> bm.Fit:
        if name not in cache:
            path = MODELS / f"{name}.toml"
            own = bm.Spec.from_file(path).sampler
            settings = dict(FIT_SETTINGS)
            if own is not None and own.tune > settings["tune"]:  # a model that needs a longer
                settings["tune"] = own.tune                      # warm-up keeps its own
            settings.update(SLOW_MIXING.get(name, {}))
            cache[name] = bm.fit(path, **settings)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def dung_data() -> pd.DataFrame:
    return pd.read_csv(DATA / "dung.csv")


@pytest.fixture(scope="session")
def dung_spec():
    import bayesmix as bm

    return bm.Spec.from_equations(
        """
        pr_dung = b0 + b1*flies + e
        b0 = g00 + U0
        b1 = g10
        """,
        cluster="oven_block",
    )
