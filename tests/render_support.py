"""Shared stand-ins for the render tests: the seeds' models, the dung data with the seed
tutorial's REML numbers, and a fake Bayesian fit with a posterior DataTree."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bayesmix import Spec, build_design
from bayesmix.design import Design

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "golden" / "render"

# The seed question's two models (its L1/L2 equations).
SEED_RANDOM_SLOPE = """
y = b0 + b1*X + e
b0 = g00 + U0
b1 = g10 + U1
"""
SEED_CROSS_LEVEL = """
y = b0 + b1*X + e
b0 = g00 + g01*M + U0
b1 = g10 + g11*M + U1
"""
DUNG = """
pr_dung = b0 + b1*flies + e
b0 = g00 + U0
b1 = g10
"""

# The seed tutorial's nlme::lme REML output for the dung model, as printed there.
SEED_DUNG_BETA = (0.1662317, -3.466743e-05)
SEED_DUNG_U = (-0.016207919, 0.007158668, 0.009049251)
SEED_DUNG_E = (
    0.0010817597, 0.0051679006, -0.0052216740, -0.0085623576, 0.0032845742, 0.0001577298,
    -0.0007925669, -0.0002044497, -0.0140025103, -0.0064868708, 0.0030161277, 0.0198351347,
    0.0069518305, -0.0018725961, -0.0040461441, 0.0058748860, -0.0024033180, -0.0017774556,
)


def seed_spec(text: str) -> Spec:
    return Spec.from_equations(text, cluster="cluster")


def dung_spec() -> Spec:
    return Spec.from_equations(DUNG, cluster="oven_block", name="dung")


def dung_data() -> pd.DataFrame:
    return pd.read_csv(ROOT / "data" / "dung.csv")


@dataclass(frozen=True)
class FakeREML:
    """The attributes of a REMLFit that equations() reads."""

    design: Design
    beta: pd.Series
    u: pd.DataFrame
    sd_u: pd.Series
    corr_u: pd.DataFrame | None
    sigma: float
    residuals: np.ndarray | None = None


def seed_dung_reml() -> FakeREML:
    """A REML stand-in with the seed tutorial's printed numbers."""
    design = build_design(dung_spec(), dung_data())
    return FakeREML(
        design=design,
        beta=pd.Series(SEED_DUNG_BETA, index=list(design.fixed_names)),
        u=pd.DataFrame({design.random_names[0]: SEED_DUNG_U},
                       index=pd.Index(design.clusters, name="oven_block")),
        sd_u=pd.Series([0.01448387], index=list(design.random_names)),
        corr_u=None,
        sigma=0.007951288,
        residuals=np.array(SEED_DUNG_E),
    )


@dataclass(frozen=True)
class FakeFit:
    """The attributes of a Fit that equations() reads: spec, design and posterior."""

    spec: Spec
    design: Design
    posterior: Any


def fake_fit(design: Design, *, seed: int = 1, chains: int = 2, draws: int = 50) -> FakeFit:
    """A fit whose posterior holds random draws of beta, u, sd_u, corr_u and sigma."""
    rng = np.random.default_rng(seed)
    if not design.single_factor:
        return _fake_factor_fit(design, rng, chains, draws)
    p, J, q = design.p, design.J, design.q
    scale = np.std(design.y)
    corr = np.broadcast_to(np.eye(q), (chains, draws, q, q)).copy()
    if q > 1:
        r = rng.uniform(-0.5, 0.5, size=(chains, draws))
        corr[..., 0, 1] = corr[..., 1, 0] = r
    ds = xr.Dataset(
        {
            "beta": (("chain", "draw", "fixed"), rng.normal(0, scale, (chains, draws, p))),
            "u": (("chain", "draw", "cluster", "random"),
                  rng.normal(0, scale / 3, (chains, draws, J, q))),
            "sd_u": (("chain", "draw", "random"),
                     np.abs(rng.normal(scale, 0.1, (chains, draws, q)))),
            "corr_u": (("chain", "draw", "random", "random2"), corr),
            "sigma": (("chain", "draw"), np.abs(rng.normal(scale, 0.1, (chains, draws)))),
        },
        coords={
            "chain": np.arange(chains), "draw": np.arange(draws),
            "fixed": list(design.fixed_names), "cluster": list(design.clusters),
            "random": list(design.random_names), "random2": list(design.random_names),
        },
    )
    return FakeFit(spec=design.spec, design=design, posterior=xr.DataTree(dataset=ds))


def _fake_factor_fit(design: Design, rng, chains: int, draws: int) -> FakeFit:
    """The posterior layout of several grouping factors: u_<g>, sd_u_<g>, corr_u_<g>."""
    scale = np.std(design.y)
    data: dict[str, Any] = {
        "beta": (("chain", "draw", "fixed"), rng.normal(0, scale, (chains, draws, design.p))),
        "sigma": (("chain", "draw"), np.abs(rng.normal(scale, 0.1, (chains, draws)))),
    }
    coords: dict[str, Any] = {"chain": np.arange(chains), "draw": np.arange(draws),
                              "fixed": list(design.fixed_names)}
    for fe in design.effects:
        eff, eff2 = f"random_{fe.name}", f"random2_{fe.name}"
        coords.update({fe.name: list(fe.grouping.levels), eff: list(fe.labels),
                       eff2: list(fe.labels)})
        data[f"u_{fe.name}"] = (("chain", "draw", fe.name, eff),
                                rng.normal(0, scale / 3, (chains, draws, fe.J, fe.q)))
        data[f"sd_u_{fe.name}"] = (("chain", "draw", eff),
                                   np.abs(rng.normal(scale, 0.1, (chains, draws, fe.q))))
        if fe.q > 1:
            corr = np.broadcast_to(np.eye(fe.q), (chains, draws, fe.q, fe.q)).copy()
            data[f"corr_u_{fe.name}"] = (("chain", "draw", eff, eff2), corr)
    ds = xr.Dataset(data, coords=coords)
    return FakeFit(spec=design.spec, design=design, posterior=xr.DataTree(dataset=ds))


def model_files() -> list[Path]:
    return sorted((ROOT / "models").glob("*.toml"))


def model_data(spec: Spec) -> pd.DataFrame | None:
    if spec.data_path is None or not Path(spec.data_path).exists():
        return None
    return pd.read_csv(spec.data_path)
