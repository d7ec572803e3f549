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


@pytest.fixture(scope="session")
def fitted_model():
    """``fitted_model("dung")`` fits ``models/dung.toml`` once per session and returns the Fit."""
    import bayesmix as bm

    cache: dict[str, bm.Fit] = {}

    def get(name: str) -> bm.Fit:
        if name not in cache:
            cache[name] = bm.fit(MODELS / f"{name}.toml", **FIT_SETTINGS)
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
