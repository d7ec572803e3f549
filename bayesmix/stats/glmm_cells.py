"""Binomial and Poisson cells summed where the rows are: a GLMM from files or a Dask DataFrame.

Rows with the same value in every column the model reads besides the outcome (its grouping
columns and predictors, raw or through element-wise transforms) have the same linear
predictor.  So a Bernoulli, binomial or Poisson model's likelihood depends on them only
through per-cell sums, exactly (:func:`bayesmix.build_glmm.make_cells` does the same in
memory):

=============  ====================================================================
rows           one cell
=============  ====================================================================
Bernoulli y_i  binomial: k = Σ y_i successes of n = (number of rows) trials
binomial k, n  binomial: Σ k_i of Σ n_i
Poisson y, t   Poisson: Σ y_i with exposure Σ t_i (t_i = 1 without an exposure column)
=============  ====================================================================

Each piece (a Dask partition, a file chunk, a DuckDB batch) is checked by the in-memory
outcome checks (:func:`bayesmix.design.outcome.family_arrays`) and summed by ``groupby`` on
the key columns; Dask adds the pieces' sums with its own ``groupby(...).sum()``.  Only the
cells reach the client.  The model is then fitted, by ``bm.fit`` or ``bm.fit_reml``, as the
same model of the cells (:attr:`GLMMCells.spec`: binomial with trials, or Poisson with
exposure).  The cells' log-likelihood differs from the rows' by a constant
(:attr:`GLMMCells.constant`: Σ log C(n_c, k_c) against the rows' Σ log C(n_i, k_i), and
Σ y_i log t_i − Σ_c y_c log t_c, and the log y! terms), which ``fit_reml`` adds back so its
log-likelihood is the rows'.

Refused, with the reason: a transform whose constants come from the whole data (centring,
``scale()``, orthogonal ``poly()``: a mean over cells is not the mean over rows), a
categorical Bernoulli outcome (code it 0/1 where the data are), weights, and more than
:data:`MAX_CELLS` cells that do not at least halve the rows (continuous level-1 predictors:
the rows are needed; on Dask this is checked before the cells leave the workers).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from bayesmix.errors import DataError
from bayesmix.families import get_family
from bayesmix.spec import Spec

Y, N, T, ROWS, CONST, SAT = ("__cell_y", "__cell_n", "__cell_t", "__cell_rows", "__cell_const",
                             "__cell_saturated")
"""Columns of the summed outcome, trials, exposure, rows, the rows' constant and the rows'
saturated log-likelihood."""
MIN_REDUCTION = 2.0
MAX_CELLS = 1_000_000
"""More cells than this that do not divide the rows by :data:`MIN_REDUCTION` are refused: the
model has continuous level-1 predictors and needs its rows (fewer are fitted as they are,
e.g. data already aggregated)."""


@dataclass(frozen=True)
class GLMMCells:
    """The cells of a GLMM's rows (module docstring).

    Attributes
    ----------
    frame : DataFrame, shape (c, len(keys) + 2)
        One row per cell: the key columns, the summed outcome and trials (binomial) or
        exposure (Poisson), named as in :attr:`spec`.
    spec : Spec
        The same model written for the cells.
    rows : int
        Rows read.
    constant : float
        Log-likelihood of the rows minus that of the cells, at any parameters.
    saturated : float
        The saturated model's log-likelihood of the rows minus that of the cells (glmer
        reports an AGQ fit's log-likelihood relative to it).
    """

    frame: pd.DataFrame
    spec: Spec
    rows: int
    constant: float
    saturated: float


def cell_keys(spec: Spec) -> list[str]:
    """The columns that define a cell; refuses what cells cannot carry (module docstring)."""
    from bayesmix.stats.transform_sums import stateful_nodes

    if spec.family.is_gaussian:
        raise DataError("cells are for a Bernoulli, binomial or Poisson model; a Gaussian "
                        "model uses the per-cluster statistics (bm.cluster_stats)")
    if spec.weights is not None:
        raise DataError("sampling weights are not built for GLMMs; fit without weights")
    stateful = [n for n in stateful_nodes(spec) if not getattr(n, "raw", False)]
    if stateful:
        from bayesmix.spec.transforms import to_text

        raise DataError(
            f"{to_text(stateful[0])} takes its constants (a mean, a scale, poly's recurrence) "
            "from the whole data, which cells summed piece by piece do not give; compute the "
            "column where the data are (e.g. ddf['x_c'] = ddf.x - ddf.x.mean()) and use it")
    skip = {spec.outcome, spec.trials, spec.exposure}
    return [c for c in spec.columns if c not in skip]


def _row_constant(family: str, y: np.ndarray, n: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Each row's log-likelihood constant (what the kernel Σ k η − n softplus η leaves out)."""
    from bayesmix.build_glmm import _log_choose

    if family == "poisson":
        return y * np.log(t) - special.gammaln(y + 1)
    return _log_choose(n, y)


def _row_saturated(family: str, y: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Each row's log p(y | μ = y)."""
    from bayesmix.reml.laplace_fit import saturated_terms

    return saturated_terms(get_family(family), y, n)


def piece_cells(frame: pd.DataFrame, spec: Spec, keys: list[str]) -> pd.DataFrame:
    """The cells of one piece of rows: key columns and the sums (module docstring).

    Raises
    ------
    DataError
        A missing value (named column), or an outcome the family's checks refuse.
    """
    from bayesmix.design.outcome import family_arrays

    used = [*keys, *(c for c in (spec.outcome, spec.trials, spec.exposure) if c is not None)]
    missing = [c for c in used if c not in frame.columns]
    if missing:
        raise DataError(f"column {missing[0]!r} is not in the data")
    for c in used:
        if frame[c].isna().any():
            raise DataError(f"column {c!r} has {int(frame[c].isna().sum())} missing values in "
                            "this piece; drop or fill them where the data are "
                            "(ddf.dropna(subset=[...])) so that nothing is dropped silently")
    col = frame[spec.outcome]
    if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
        raise DataError(f"the outcome {spec.outcome!r} has type {col.dtype}; code it as "
                        "numbers where the data are (0/1 for a Bernoulli outcome)")
    y = col.to_numpy(dtype=float)
    trials, offset = family_arrays(spec, frame, y, whole=False)
    n = np.ones(len(y)) if trials is None else trials
    t = np.ones(len(y)) if offset is None else np.exp(offset)
    out = frame[keys].copy()
    out[Y], out[N], out[T], out[ROWS] = y, n, t, 1
    out[CONST] = _row_constant(spec.family.name, y, n, t)
    out[SAT] = _row_saturated(spec.family.name, y, n)
    return out.groupby(keys, observed=True, sort=False).sum().reset_index()


def _sum_cells(parts: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return parts.groupby(keys, observed=True, sort=True).sum().reset_index()


def _dask_cells(ddf: Any, spec: Spec, keys: list[str]) -> pd.DataFrame:
    """Per-partition cells on the workers, added by Dask's groupby sum; computed.

    The partitions' cells are kept on the workers (``persist``) and counted first, so that
    rows that do not aggregate are refused before anything reaches the client.
    """
    import dask

    empty = pd.DataFrame({c: pd.Series([], dtype=ddf.dtypes[c]) for c in ddf.columns})
    meta = piece_cells(empty, spec, keys)
    parts = ddf.map_partitions(piece_cells, spec, keys, meta=meta).persist()
    rows, most = dask.compute(parts[ROWS].sum(), parts.map_partitions(len).sum())
    _check_reduction(spec, int(rows), int(most))
    summed = parts.groupby(keys, observed=True).sum(split_out=1)
    return summed.compute().reset_index()


def _check_reduction(spec: Spec, rows: int, cells: int) -> None:
    if cells > MAX_CELLS and cells * MIN_REDUCTION > rows:
        raise DataError(
            f"the {rows:,} rows make {cells:,} cells (rows with equal predictors): a "
            f"{spec.family.name} model with continuous level-1 predictors needs its rows. "
            "Collect them if they fit in memory (ddf.compute(), pd.read_parquet) and pass the "
            "DataFrame")


def glmm_cells(spec: Spec, source: Any, *, engine: str | None = None,
               chunk_rows: int = 262_144) -> GLMMCells:
    """The cells of a GLMM's rows in files or a Dask DataFrame, and the model of the cells.

    Parameters
    ----------
    spec : Spec
        A Bernoulli, binomial or Poisson model.
    source : str, Path, list or dask.dataframe.DataFrame
        As for :func:`bayesmix.cluster_stats` (files by pandas or DuckDB, or Dask).
    engine : {"pandas", "duckdb", "dask"}, optional
        Default from the source (:func:`bayesmix.stats.sources.default_engine`).

    Returns
    -------
    GLMMCells
    """
    from bayesmix.stats.sources import default_engine

    keys = cell_keys(spec)
    engine = engine or default_engine(source)
    if engine == "dask":
        cells = _dask_cells(source, spec, keys)
    else:
        from bayesmix.stats.stream import _chunks

        columns = list(dict.fromkeys(
            [*keys, *(c for c in (spec.outcome, spec.trials, spec.exposure) if c)]))
        pieces = [piece_cells(chunk, spec, keys)
                  for chunk in _chunks(source, columns, chunk_rows, engine)]
        if not pieces:
            raise DataError("the data has no rows")
        cells = _sum_cells(pd.concat(pieces, ignore_index=True), keys)
    rows = int(cells[ROWS].sum())
    _check_reduction(spec, rows, len(cells))
    return _cells_model(spec, cells, keys, rows)


def _free_name(name: str, taken: list[str]) -> str:
    while name in taken:
        name = f"{name}_"
    return name


def _cells_model(spec: Spec, cells: pd.DataFrame, keys: list[str], rows: int) -> GLMMCells:
    """The cells as a data frame of the same model: binomial with trials, or Poisson."""
    name = spec.family.name
    y, n, t = (cells[c].to_numpy(dtype=float) for c in (Y, N, T))
    frame = cells[keys].copy()
    frame[spec.outcome] = y
    if name == "poisson":
        exposure = spec.exposure or _free_name("exposure", keys)
        frame[exposure] = t
        cell_spec = replace(spec, exposure=exposure)
    else:
        trials = spec.trials or _free_name("trials", keys)
        frame[trials] = n
        cell_spec = replace(spec, family=get_family("binomial"), trials=trials)
    constant = float(cells[CONST].sum() - _row_constant(name, y, n, t).sum())
    saturated = float(cells[SAT].sum() - _row_saturated(name, y, n).sum())
    return GLMMCells(frame, cell_spec, rows, constant, saturated)
