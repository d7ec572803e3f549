"""Fit: the frozen result of sampling, with save and load."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import xarray as xr

from bayesmix.design import Design, build_design
from bayesmix.priors import ResolvedPriors
from bayesmix.settings import SamplerSettings
from bayesmix.spec.model import Spec

if TYPE_CHECKING:
    from bayesmix.build import BuiltModel

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Fit:
    """A fitted model: what was fitted, how, and the posterior draws.

    Attributes
    ----------
    spec : Spec
    design : Design
    priors : ResolvedPriors
        The priors the model used (after autoscaling and overrides).
    settings : SamplerSettings
    likelihood : str
        Likelihood form that was sampled.
    idata : xarray.DataTree
        ArviZ-compatible draws: groups ``posterior`` and ``sample_stats``.
    timings : dict of str to float
        Seconds spent per stage (build, sample, u_draws, ...).
    built : BuiltModel or None
        The PyMC model, when this fit was sampled in this session (None after :meth:`load`).
    """

    spec: Spec
    design: Design
    priors: ResolvedPriors
    settings: SamplerSettings
    likelihood: str
    idata: xr.DataTree
    timings: dict[str, float] = field(default_factory=dict)
    built: BuiltModel | None = field(default=None, repr=False, compare=False)

    @property
    def posterior(self) -> xr.DataTree:
        """The posterior group: ``beta``, ``u``, ``sd_u``, ``corr_u``, ``sigma``, ``coef``."""
        return self.idata["posterior"]

    @property
    def sample_stats(self) -> xr.DataTree:
        """Sampler statistics (``diverging``, ``step_size``, ...)."""
        return self.idata["sample_stats"]

    def __repr__(self) -> str:
        post = self.posterior
        return (
            f"Fit({self.spec.to_formula()!r}, likelihood={self.likelihood!r}, "
            f"sampler={self.settings.sampler!r}, chains={post.sizes['chain']}, "
            f"draws={post.sizes['draw']})"
        )

    def save(self, path: str | Path) -> Path:
        """Write the fit to one netCDF4 file (draws, data used, spec, priors, settings)."""
        path = Path(path)
        meta = {
            "format_version": FORMAT_VERSION,
            "equations": self.spec.to_equations(),
            "cluster": self.spec.cluster,
            "reference": dict(self.spec.reference),
            "categorical": list(self.spec.categorical),
            "name": self.spec.name,
            "priors": self.priors.to_dict(),
            "settings": self.settings.to_dict(),
            "likelihood": self.likelihood,
            "timings": self.timings,
        }
        data = self.design.data.reset_index(drop=True)
        data_ds = xr.Dataset(
            {
                col: ("row", data[col].astype(str).to_numpy() if data[col].dtype == object
                      else data[col].to_numpy())
                for col in data.columns
            }
        )
        data_ds.attrs["dtypes"] = json.dumps({c: str(t) for c, t in data.dtypes.items()})
        tree = self.idata.copy()
        tree["data"] = xr.DataTree(data_ds)
        tree.attrs["bayesmix"] = json.dumps(meta)
        tree.to_netcdf(path, engine="h5netcdf")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Fit:
        """Read a fit written by :meth:`save`; the design is rebuilt from the stored data."""
        tree = xr.open_datatree(path, engine="h5netcdf").load()
        meta: dict[str, Any] = json.loads(tree.attrs["bayesmix"])
        if meta.get("format_version") != FORMAT_VERSION:
            version = meta.get("format_version")
            raise ValueError(f"{path}: unsupported bayesmix fit format {version}")
        spec = Spec.from_equations(
            meta["equations"],
            meta["cluster"],
            reference=meta["reference"],
            categorical=meta["categorical"],
            name=meta["name"],
        )
        data_ds = tree["data"].to_dataset()
        dtypes = json.loads(data_ds.attrs.get("dtypes", "{}"))
        data = pd.DataFrame({c: data_ds[c].to_numpy() for c in data_ds.data_vars})
        for col, dtype in dtypes.items():
            if dtype in ("object", "str", "string"):
                data[col] = data[col].astype(str)
        design = build_design(spec, data)
        idata = xr.DataTree.from_dict(
            {name: tree[name].to_dataset() for name in tree.children if name != "data"}
        )
        return cls(
            spec=spec,
            design=design,
            priors=ResolvedPriors.from_dict(meta["priors"]),
            settings=SamplerSettings(**meta["settings"]),
            likelihood=meta["likelihood"],
            idata=idata,
            timings=meta.get("timings", {}),
        )
