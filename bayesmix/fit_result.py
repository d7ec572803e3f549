"""Fit: the frozen result of sampling, with save and load."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from bayesmix.design import Design, build_design
from bayesmix.errors import BayesmixError
from bayesmix.priors import ResolvedPriors
from bayesmix.settings import SamplerSettings
from bayesmix.spec.model import Spec
from bayesmix.spec.serialize import spec_from_dict, spec_to_dict

if TYPE_CHECKING:
    from bayesmix.build import BuiltModel

FORMAT_VERSION = 3
READABLE_VERSIONS = (2, 3)  # 2 stored the model as equations text; 3 as structured data
"""Version 2 stores each data column's dtype in full (category order, ordered, nullable and
string dtypes), the row index and a checksum; version 1 files cannot be read."""
CHECKSUM = "bayesmix_sha256"


class FitFileError(BayesmixError):
    """A fit file cannot be written (the path is taken or not writable) or read back."""


def check_output_path(path: str | Path, overwrite: bool = False) -> Path:
    """Check that a fit can be written to ``path``, before any time is spent sampling.

    Parameters
    ----------
    path : str or Path
        The file :meth:`Fit.save` will write.
    overwrite : bool
        Allow replacing an existing file.

    Returns
    -------
    Path

    Raises
    ------
    FitFileError
        The path is a folder, its folder does not exist or is not writable, or the file exists
        and ``overwrite`` is False.
    """
    path = Path(path)
    if path.is_dir():
        raise FitFileError(f"{path} is a folder; give a file name such as {path / 'fit.nc'}")
    folder = path.parent
    if not folder.exists():
        raise FitFileError(f"cannot write {path}: the folder {folder} does not exist; create it "
                           "first")
    if not folder.is_dir():
        raise FitFileError(f"cannot write {path}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise FitFileError(f"cannot write {path}: the folder {folder} is not writable")
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise FitFileError(
                f"{path} exists; pass overwrite=True to replace it (--force in the CLI), or "
                "choose another file name"
            )
        if not path.is_file():
            raise FitFileError(f"{path} exists and is not a regular file; it cannot be replaced")
    return path


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
        ArviZ-compatible draws: groups ``posterior``, ``sample_stats``, ``observed_data`` and
        ``log_likelihood`` (:mod:`bayesmix.predictive`; ``posterior_predictive`` on request).
        Pass it to ArviZ functions (``az.summary(fit.idata)``).
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

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        # ArviZ converts what it is given through np.asarray: say which attribute to pass.
        raise TypeError(
            "a bayesmix Fit is not an array: give ArviZ its draws, fit.idata "
            "(az.summary(fit.idata), az.plot_forest(fit.idata)); bm.loo(fit) and "
            "bm.plot_ppc(fit) take the Fit itself"
        )

    def __repr__(self) -> str:
        from bayesmix.reprs import fit_text

        return fit_text(self)

    def _repr_html_(self) -> str:
        from bayesmix.reprs import fit_html

        return fit_html(self)

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the fit to one netCDF4 file (draws, data used, spec, priors, settings).

        The data keep their dtypes (category order, ordered categoricals, nullable and string
        dtypes) and row index, so :meth:`load` rebuilds the same design; a SHA-256 checksum of
        the draws, the data and the metadata is stored in the file's attributes.  The file is
        written next to ``path`` and moved into place at the end, so a failed write leaves an
        existing file as it was.

        Parameters
        ----------
        path : str or Path
        overwrite : bool
            Replace ``path`` if it exists (otherwise that is an error).

        Returns
        -------
        Path

        Raises
        ------
        FitFileError
            See :func:`check_output_path`; also a data column of a type that cannot be stored.
        """
        path = check_output_path(path, overwrite)
        meta = {
            "format_version": FORMAT_VERSION,
            "spec": spec_to_dict(self.spec),
            "priors": self.priors.to_dict(),
            "settings": self.settings.to_dict(),
            "likelihood": self.likelihood,
            "timings": self.timings,
            "levels": {k: list(v) for k, v in self.design.levels.items()},
        }
        groups = {name: _text_as_str(self.idata[name].to_dataset())
                  for name in self.idata.children}
        groups["data"] = encode_table(self.design.data)
        tree = xr.DataTree.from_dict(groups)
        tree.attrs["bayesmix"] = json.dumps(meta)
        tree.attrs[CHECKSUM] = _checksum(tree)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tree.to_netcdf(tmp, engine="h5netcdf")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Fit:
        """Read a fit written by :meth:`save`; the design is rebuilt from the stored data.

        Raises
        ------
        FitFileError
            The file is missing, empty, truncated, not netCDF, not written by
            :meth:`save`, of another format version, or its checksum does not match.
        """
        path = Path(path)
        tree = _read_tree(path)
        meta = _meta(tree, path)
        if tree.attrs.get(CHECKSUM) != _checksum(tree):
            raise FitFileError(
                f"{path} is corrupted: the checksum of its draws and data does not match the "
                "one stored when it was saved; refit, or use another copy"
            )
        try:
            if "spec" in meta:
                spec = spec_from_dict(meta["spec"])
            else:  # format 2
                spec = Spec.from_equations(
                    meta["equations"],
                    meta["cluster"],
                    reference=meta["reference"],
                    categorical=meta["categorical"],
                    name=meta["name"],
                )
            data = decode_table(tree["data"].to_dataset())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # warned about when the fit was made
                settings = SamplerSettings(**meta["settings"])
            priors = ResolvedPriors.from_dict(meta["priors"])
        except (KeyError, TypeError, ValueError) as exc:
            raise FitFileError(f"{path}: its stored model or data cannot be read ({exc})") from exc
        design = build_design(spec, data)
        levels = {k: list(v) for k, v in design.levels.items()}
        if levels != meta["levels"]:
            raise FitFileError(
                f"{path}: the stored data code the categorical predictors as {levels}, not as "
                f"when the fit was made ({meta['levels']}); the file is inconsistent"
            )
        idata = xr.DataTree.from_dict(
            {name: tree[name].to_dataset() for name in tree.children if name != "data"}
        )
        return cls(
            spec=spec,
            design=design,
            priors=priors,
            settings=settings,
            likelihood=meta["likelihood"],
            idata=idata,
            timings=meta.get("timings", {}),
        )


def _read_tree(path: Path) -> xr.DataTree:
    """Open, read fully and close a netCDF file (so the path can be written again)."""
    if not path.exists():
        raise FitFileError(f"{path} does not exist")
    if path.is_dir():
        raise FitFileError(f"{path} is a folder, not a fit file")
    if path.stat().st_size == 0:
        raise FitFileError(f"{path} is empty (0 bytes); it is not a saved fit")
    try:
        with xr.open_datatree(path, engine="h5netcdf") as tree:
            return tree.load()
    except Exception as exc:  # h5py/h5netcdf raise OSError, ValueError, KeyError, ...
        raise FitFileError(
            f"{path} cannot be read as a netCDF4 fit file; it may be truncated, corrupted or "
            f"of another format ({type(exc).__name__}: {exc})"
        ) from None


def _meta(tree: xr.DataTree, path: Path) -> dict[str, Any]:
    raw = tree.attrs.get("bayesmix")
    if raw is None:
        raise FitFileError(f"{path} is a netCDF file but was not written by bayesmix's Fit.save")
    try:
        meta = json.loads(raw)
    except (TypeError, ValueError) as exc:
        raise FitFileError(f"{path}: its bayesmix metadata is corrupted ({exc})") from None
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if version not in READABLE_VERSIONS:
        raise FitFileError(
            f"{path}: bayesmix fit format {version!r}; this bayesmix reads formats "
            f"{READABLE_VERSIONS} only. Fit the model again with this version."
        )
    if "data" not in tree.children:
        raise FitFileError(f"{path} has no data group; the file is incomplete")
    return meta


def _text_as_str(ds: xr.Dataset) -> xr.Dataset:
    """Object variables (nutpie's ``divergence_message``: text or None) as text, "" for None.

    netCDF has no None; stored as is they come back as NaN floats or fail to write.
    """
    for var in list(ds.variables):
        values = ds[var].values
        if values.dtype == object:
            text = ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
                    for v in values.ravel()]
            ds[var] = ds[var].copy(data=np.array(text, dtype=str).reshape(values.shape))
    return ds


def _checksum(tree: xr.DataTree) -> str:
    """SHA-256 of every group's variables and coordinates and of the bayesmix metadata."""
    h = hashlib.sha256(str(tree.attrs.get("bayesmix", "")).encode())
    for name in sorted(tree.children):
        ds = tree[name].to_dataset()
        for var in sorted({*map(str, ds.data_vars), *map(str, ds.coords)}):
            values = np.asarray(ds[var].values)
            h.update(f"\0{name}/{var}{values.shape}".encode())
            if values.dtype.kind in "OUS":
                h.update(b"text")
                h.update("\x1f".join(map(str, values.ravel())).encode("utf-8", "surrogatepass"))
            else:
                h.update(values.dtype.str.encode())
                h.update(np.ascontiguousarray(values).tobytes())
    return h.hexdigest()


def encode_table(data: pd.DataFrame) -> xr.Dataset:
    """The columns and row index of ``data`` as netCDF-safe variables, dtypes in the attrs.

    Variables are named ``c0``, ``c1``, ... (any column name works, ``row`` or ``a/b``
    included); a categorical stores its codes and its categories (with their own dtype).
    """
    variables: dict[str, tuple[str, np.ndarray]] = {}
    columns = [
        {"name": col, **_encode(f"c{i}", data[col], "row", variables, col)}
        for i, col in enumerate(data.columns)
    ]
    index = data.index
    if isinstance(index, pd.RangeIndex):
        idx: dict[str, Any] = {"kind": "range", "start": index.start, "stop": index.stop,
                               "step": index.step, "name": index.name}
    else:
        levels = index.nlevels
        idx = {"kind": "multi" if isinstance(index, pd.MultiIndex) else "index",
               "names": list(index.names),
               "levels": [_encode(f"i{k}", pd.Series(index.get_level_values(k)), "row",
                                  variables, f"index level {k}") for k in range(levels)]}
    ds = xr.Dataset(variables)
    try:
        ds.attrs["table"] = json.dumps({"columns": columns, "index": idx, "rows": len(data)})
    except TypeError as exc:
        raise FitFileError(f"a column or index name cannot be stored ({exc}); use text names") \
            from None
    return ds


def decode_table(ds: xr.Dataset) -> pd.DataFrame:
    """Inverse of :func:`encode_table`: the same columns, dtypes and row index."""
    table = json.loads(ds.attrs["table"])
    idx = table["index"]
    if idx["kind"] == "range":
        index: pd.Index = pd.RangeIndex(idx["start"], idx["stop"], idx["step"], name=idx["name"])
    else:
        arrays = [_decode(f"i{k}", info, ds) for k, info in enumerate(idx["levels"])]
        index = (pd.MultiIndex.from_arrays(arrays, names=idx["names"])
                 if idx["kind"] == "multi" else pd.Index(arrays[0], name=idx["names"][0]))
    cols = {c["name"]: _decode(f"c{i}", c, ds) for i, c in enumerate(table["columns"])}
    return pd.DataFrame(cols, index=index)


def _encode(key: str, series: pd.Series, dim: str, out: dict, what: Any) -> dict[str, Any]:
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        cats = _encode(f"{key}_categories", pd.Series(dtype.categories), f"{key}_level", out,
                       what)
        out[key] = (dim, series.cat.codes.to_numpy(dtype=np.int64))
        return {"kind": "category", "ordered": bool(dtype.ordered), "categories": cats}
    na = series.isna().to_numpy()
    if isinstance(dtype, pd.StringDtype):
        out[key] = (dim, np.array(["" if m else str(v) for v, m in zip(series, na, strict=True)],
                                  dtype=str))
        if na.any():
            out[f"{key}_na"] = (dim, na)
        return {"kind": "string", "storage": dtype.storage,
                "na": "NA" if dtype.na_value is pd.NA else "nan"}
    if isinstance(dtype, np.dtype) and dtype.kind in "biufmM":
        values = series.to_numpy()
        out[key] = (dim, values.view("i8") if dtype.kind in "mM" else values)
        return {"kind": "numpy", "dtype": dtype.str}
    if isinstance(dtype, pd.api.extensions.ExtensionDtype) and not isinstance(
        dtype, pd.ArrowDtype
    ) and getattr(dtype, "numpy_dtype", None) is not None:  # Int64, Float64, boolean, ...
        npd = dtype.numpy_dtype
        out[key] = (dim, series.to_numpy(dtype=npd, na_value=npd.type(0)))
        if na.any():
            out[f"{key}_na"] = (dim, na)
        return {"kind": "masked", "dtype": dtype.name}
    if isinstance(dtype, np.dtype) and dtype.kind == "O":
        values = list(series)
        if all(isinstance(v, str) for v in values):
            out[key] = (dim, np.array(values, dtype=str))
            return {"kind": "object-text"}
        try:
            text = [json.dumps(v.item() if isinstance(v, np.generic) else v) for v in values]
        except TypeError:
            text = None
        if text is not None and all(isinstance(v, (str, int, float, bool, type(None), np.generic))
                                    for v in values):
            out[key] = (dim, np.array(text, dtype=str))
            return {"kind": "object-json"}
    raise FitFileError(
        f"{what!r} has values of dtype {dtype} that a fit file cannot store; convert the column "
        "to numbers, text or a pandas Categorical before fitting"
    )


def _decode(key: str, info: dict[str, Any], ds: xr.Dataset) -> Any:
    kind = info["kind"]
    raw = ds[key].to_numpy()
    na = ds[f"{key}_na"].to_numpy().astype(bool) if f"{key}_na" in ds else None
    if kind == "category":
        cats = pd.Index(_decode(f"{key}_categories", info["categories"], ds))
        return pd.Categorical.from_codes(raw.astype(np.int64), categories=cats,
                                         ordered=info["ordered"])
    if kind == "numpy":
        dtype = np.dtype(info["dtype"])
        return raw.view(dtype) if dtype.kind in "mM" else raw.astype(dtype)
    if kind == "masked":
        arr = pd.array(raw, dtype=info["dtype"])
        if na is not None:
            arr[na] = pd.NA
        return arr
    values = raw.astype(str).astype(object)
    if kind == "string":
        na_value = pd.NA if info["na"] == "NA" else np.nan
        if na is not None:
            values[na] = na_value
        return pd.array(values, dtype=pd.StringDtype(info["storage"], na_value=na_value))
    if kind == "object-text":
        return values
    if kind == "object-json":
        out = np.empty(len(values), dtype=object)
        out[:] = [json.loads(v) for v in values]
        return out
    raise FitFileError(f"unknown column kind {kind!r} in the stored data")
