"""Checks on the data against a Spec, each failing with a message that says how to fix it."""

from __future__ import annotations

import difflib
import warnings
from typing import Literal

import numpy as np
import pandas as pd

from bayesmix.errors import DataError
from bayesmix.spec.model import Spec


def _show(values, limit: int = 5) -> str:
    values = list(values)
    text = ", ".join(repr(v) if isinstance(v, str) else str(v) for v in values[:limit])
    return text + (f", … ({len(values)} in all)" if len(values) > limit else "")


def check_columns(spec: Spec, data: pd.DataFrame) -> None:
    """Every column the spec uses exists; otherwise name it, the closest match and the columns."""
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, not {type(data).__name__}")
    columns = [str(c) for c in data.columns]
    for var in spec.variables:
        if var not in data.columns:
            close = difflib.get_close_matches(var, columns, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise DataError(
                f"column {var!r} is not in the data{hint}\nThe data has: {_show(columns, 20)}"
            )
    for var in spec.reference_levels:
        if var not in spec.variables:
            raise DataError(
                f"a reference level is given for {var!r}, which the model does not use"
            )


def handle_missing(
    spec: Spec, data: pd.DataFrame, missing: Literal["error", "drop"]
) -> pd.DataFrame:
    """Refuse (default) or drop, with a warning that counts them, rows with missing values."""
    if missing not in ("error", "drop"):
        raise DataError(f"missing must be 'error' or 'drop', not {missing!r}")
    used = list(spec.variables)
    na = data[used].isna()
    if not na.to_numpy().any():
        return data
    bad_rows = na.any(axis=1)
    if missing == "drop":
        per_col = {c: int(n) for c, n in na.sum().items() if n}
        warnings.warn(
            f"dropped {int(bad_rows.sum())} of {len(data)} rows with missing values "
            f"({', '.join(f'{c}: {n}' for c, n in per_col.items())})",
            UserWarning,
            stacklevel=3,
        )
        return data.loc[~bad_rows]
    lines = []
    for col in used:
        rows = data.index[na[col].to_numpy()]
        if len(rows):
            lines.append(f"  {col!r}: {len(rows)} missing, at rows {_show(rows)}")
    raise DataError(
        "missing values in columns the model uses:\n" + "\n".join(lines) +
        "\nImpute them, or pass missing='drop' to drop those rows (with a warning that counts "
        "them)."
    )


def is_categorical(spec: Spec, series: pd.Series) -> bool:
    """Text, boolean and category columns, and numeric columns listed in ``spec.categorical``."""
    if series.name in spec.categorical:
        return True
    return not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)


def check_outcome(spec: Spec, data: pd.DataFrame) -> np.ndarray:
    """The outcome is numeric, finite and not constant; returns it as float64 (n,)."""
    col = data[spec.outcome]
    if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        raise DataError(
            f"the outcome {spec.outcome!r} must be numeric; it has type {col.dtype} "
            f"(first values: {_show(col.head(3))}). Convert it, e.g. with pd.to_numeric."
        )
    y = col.to_numpy(dtype=float)
    bad = ~np.isfinite(y)
    if bad.any():
        raise DataError(
            f"the outcome {spec.outcome!r} has {int(bad.sum())} infinite values, at rows "
            f"{_show(data.index[bad])}"
        )
    if np.ptp(y) == 0:
        raise DataError(
            f"the outcome {spec.outcome!r} is constant ({y[0]:g} in every row); there is "
            "nothing to model"
        )
    return y


def check_level2(spec: Spec, data: pd.DataFrame, codes: np.ndarray, labels: list[str]) -> None:
    """Level-2 variables must be constant within each cluster; name the first that is not."""
    for var in spec.level2_variables:
        nunique = data.groupby(codes, sort=True)[var].nunique(dropna=False)
        varying = nunique[nunique > 1]
        if len(varying):
            j = int(varying.index[0])
            values = pd.unique(data[var].to_numpy()[codes == j])
            raise DataError(
                f"{var!r} is a level-2 predictor but varies inside {spec.cluster} "
                f"{labels[j]!r} (values {_show(values)}); {len(varying)} of {len(nunique)} "
                f"clusters vary. Use a level-2 variable (one value per {spec.cluster}), or "
                f"move {var!r} to the level-1 equation (e.g. `b2*{var}` with `b2 = g20`)."
            )


def check_rank(X: np.ndarray, names: tuple[str, ...]) -> None:
    """X must have full column rank; otherwise name the collinear columns."""
    n, p = X.shape
    if n < p:
        raise DataError(
            f"X has more columns ({p}) than rows ({n}); the fixed effects are not identified"
        )
    norms = np.linalg.norm(X, axis=0)
    zero = [names[k] for k in range(p) if norms[k] == 0]
    if zero:
        raise DataError(
            f"the column {zero[0]!r} of X is all zeros (does the variable take only the "
            "reference level, or the value 0?); drop it from the model"
        )
    Xs = X / norms
    _, s, vt = np.linalg.svd(Xs, full_matrices=False)
    tol = s.max() * max(n, p) * np.finfo(float).eps * 100
    if s.min() > tol:
        return
    v = vt[-1]
    involved = [names[k] for k in np.flatnonzero(np.abs(v) > 1e-6)]
    raise DataError(
        f"X does not have full column rank: the columns {', '.join(repr(c) for c in involved)} "
        "are collinear (one is a linear combination of the others). Drop one of them, or a "
        "level-2 predictor that duplicates another."
    )
