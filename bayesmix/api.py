"""fit(): the one-call convenience; it only chains the stages."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

import pandas as pd

from bayesmix.build import build_model, can_share_data
from bayesmix.design import build_design
from bayesmix.errors import DataError, SpecError
from bayesmix.fit_result import Fit
from bayesmix.priors import Priors
from bayesmix.sampling import sample
from bayesmix.settings import SamplerSettings
from bayesmix.spec.model import Spec
from bayesmix.weights import Weights


def load_data(spec: Spec) -> pd.DataFrame:
    """Read the data file a model file names (CSV or Parquet)."""
    if spec.data_path is None:
        raise SpecError(
            "no data given: pass a DataFrame, or name a data file in the model file (`data = ...`)"
        )
    path = Path(spec.data_path)
    if not path.exists():
        raise FileNotFoundError(f"the model's data file {path} does not exist")
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except (UnicodeDecodeError, IsADirectoryError) as exc:
        raise DataError(
            f"the model's data file {path} cannot be read: "
            + ("it is a folder" if isinstance(exc, IsADirectoryError) else
               f"not UTF-8 text (byte {exc.start})")  # type: ignore[union-attr]
            + "; save it as UTF-8 CSV, or read it yourself (pd.read_csv(path, encoding=...)) "
            "and pass the DataFrame"
        ) from None


def _refuse_rows_elsewhere(data) -> None:
    """A Dask DataFrame or files: the posterior needs a design in memory (say what to do)."""
    from bayesmix.stats.sources import is_rows_elsewhere

    if is_rows_elsewhere(data):
        raise DataError(
            "the posterior is fitted from a design in memory; it cannot be computed from a "
            f"{type(data).__name__} without collecting its rows. Use bm.fit_reml(spec, ddf) "
            "(REML / ML from statistics computed where the rows are), or collect the rows "
            "when they fit in memory (ddf.compute(), pd.read_parquet(path)) and pass the "
            "DataFrame")


def _rows_or_cells(spec: Spec, data) -> tuple[pd.DataFrame, Spec]:
    """The data in memory; a GLMM's cells from files or Dask; else a refusal that says why.

    A Bernoulli, binomial or Poisson model whose predictors are discrete is fitted from its
    cells summed where the rows are (:mod:`bayesmix.stats.glmm_cells`), as the same model of
    the cells (binomial with trials, or Poisson with exposure).
    """
    from bayesmix.stats.sources import is_rows_elsewhere

    if spec.family.is_gaussian or not is_rows_elsewhere(data):
        _refuse_rows_elsewhere(data)
        return data, spec
    from bayesmix.stats.glmm_cells import glmm_cells

    cells = glmm_cells(spec, data)
    return cells.frame, cells.spec


def _import_sampler(sampler: str) -> None:
    """Import PyMC, PyTensor and the sampler now, so that ``timings["import"]`` holds them.

    ``import bayesmix`` imports none of them (they load on first use, ~1-2 s together).
    """
    import pymc  # noqa: F401
    import pytensor  # noqa: F401

    if sampler == "nutpie":
        from bayesmix.nutpie_import import import_nutpie

        import_nutpie()


def fit(
    spec: Spec | str | Path,
    data: pd.DataFrame | None = None,
    *,
    priors: Priors | None = None,
    settings: SamplerSettings | None = None,
    draws: int | None = None,
    tune: int | None = None,
    chains: int | None = None,
    target_accept: float | None = None,
    random_seed: int | None = None,
    sampler: str | None = None,
    likelihood: str | None = None,
    progressbar: bool | None = None,
    missing: Literal["error", "drop"] = "error",
    weights: Weights | None = None,
) -> Fit:
    """Specify → design → build → sample, in one call.

    Parameters
    ----------
    spec : Spec or path of a model file
    data : DataFrame, optional
        Defaults to the data file the model file names.
    priors : Priors, optional
        Overrides; defaults to the model file's ``[priors]``.
    settings : SamplerSettings, optional
        Defaults to the model file's ``[sampler]``; the keyword arguments below override it.
    draws, tune, chains, target_accept, random_seed, sampler, likelihood, progressbar
        See :class:`SamplerSettings`.
    missing : {"error", "drop"}
        See :func:`build_design`.
    weights : Weights, optional
        Sampling weights (:mod:`bayesmix.weights`); defaults to the model file's
        ``[weights]``.

    Returns
    -------
    Fit
    """
    if not isinstance(spec, Spec):
        spec = Spec.from_file(spec)
    if weights is not None:
        spec = spec.with_options(weights=weights)
    if data is None:
        data = load_data(spec)
    start, original = time.perf_counter(), spec
    data, spec = _rows_or_cells(spec, data)
    t_cells = time.perf_counter() - start
    base = settings or spec.sampler or SamplerSettings()
    settings = base.updated(
        draws=draws,
        tune=tune,
        chains=chains,
        target_accept=target_accept,
        random_seed=random_seed,
        sampler=sampler,
        likelihood=likelihood,
        progressbar=progressbar,
    )
    start = time.perf_counter()
    _import_sampler(settings.sampler)
    t_import = time.perf_counter() - start
    start = time.perf_counter()
    design = build_design(spec, data, missing=missing)
    t_design = time.perf_counter() - start
    start = time.perf_counter()
    # Data in pm.Data containers: nutpie's Numba kernels then depend on the model's structure
    # only, and are compiled once per structure (bayesmix.kernel_cache).
    shared = (settings.sampler == "nutpie" and settings.backend != "c"
              and can_share_data(design, settings.likelihood))
    built = build_model(design, priors or spec.priors, likelihood=settings.likelihood,
                        shared_data=shared)
    t_build = time.perf_counter() - start
    result = sample(built, settings)
    result.timings.update({"import": t_import, "design": t_design, "build": t_build})
    if spec is not original:  # fitted from cells made where the rows are
        result.timings["cells"] = t_cells
    return result
