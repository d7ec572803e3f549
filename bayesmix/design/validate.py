"""Checks on the data against a Spec, each failing with a message that says how to fix it."""

from __future__ import annotations

import difflib
import warnings
from typing import Literal

import numpy as np
import pandas as pd

from bayesmix.errors import DataError
from bayesmix.notation import INTERCEPT
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
    used_in = {c: t.name for t in spec.transforms.values() for c in t.columns}
    for var in spec.columns:
        if var not in data.columns:
            if var in used_in and var not in spec.variables:
                close = difflib.get_close_matches(var, columns, n=1, cutoff=0.5)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise DataError(f"column {var!r} (in {used_in[var]}) is not in the data{hint}"
                                f"\nThe data has: {_show(columns, 20)}")
            close = difflib.get_close_matches(var, columns, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            if var in columns:
                hint = (f"; the data has a column {var} whose name is not text: rename the "
                        "columns with data.columns = data.columns.astype(str)")
            raise DataError(
                f"column {var!r} is not in the data{hint}\nThe data has: {_show(columns, 20)}"
            )
        count = int((data.columns == var).sum())
        if count > 1:
            raise DataError(
                f"the data has {count} columns named {var!r}; bayesmix cannot tell which one "
                "the model means. Rename or drop the duplicates (data.columns.duplicated() "
                "finds them)"
            )
    for var in spec.categorical:
        if var not in spec.variables:
            raise DataError(
                f"{var!r} is listed under `categorical`, but the model does not use it"
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
    used = list(spec.columns)
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
    """The outcome is numeric, finite and not constant; returns it as float64 (n,).

    For a Bernoulli family a boolean or two-level categorical outcome is coded 0/1 first
    (:func:`bayesmix.design.outcome.bernoulli_codes`); the family's own checks follow in
    :func:`bayesmix.design.outcome.family_arrays`.

    A binary or small-count outcome is modelled as Gaussian with a UserWarning that names the
    family it calls for (:func:`warn_outcome_family`).
    """
    col = data[spec.outcome]
    if spec.family.name == "bernoulli":
        from bayesmix.design.outcome import bernoulli_codes

        col = bernoulli_codes(spec.outcome, col)
    if pd.api.types.is_complex_dtype(col):
        raise DataError(_complex_message(spec.outcome, "the outcome"))
    if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        raise DataError(
            f"the outcome {spec.outcome!r} must be numeric; it has type {col.dtype} "
            f"(first values: {_show(col.head(3))}). Convert it, e.g. with pd.to_numeric."
        )
    y = col.to_numpy(dtype=float)
    if len(y) == 0:
        raise DataError("the data has no rows (after dropping those with missing values)")
    bad = ~np.isfinite(y)
    if bad.any():
        raise DataError(
            f"the outcome {spec.outcome!r} has {int(bad.sum())} infinite values, at rows "
            f"{_show(data.index[bad])}"
        )
    if np.ptp(y) == 0 and spec.family.is_gaussian:
        raise DataError(
            f"the outcome {spec.outcome!r} is constant ({y[0]:g} in every row); there is "
            "nothing to model"
        )
    if spec.family.is_gaussian:
        warn_outcome_family(spec.outcome, y)
    return y


MAX_COUNT = 20
"""Largest value of a non-negative integer outcome that warns as a count."""


def warn_outcome_family(name: str, y: np.ndarray) -> None:
    """Warn when a Gaussian outcome looks binary or like a small count.

    Binary: exactly two distinct values.  Count: non-negative integers up to
    :data:`MAX_COUNT`, with ties (at least twice as many rows as distinct values).
    """
    values = np.unique(y)
    if len(values) == 2:
        warnings.warn(
            f"the outcome {name!r} takes only two values ({values[0]:g} and {values[1]:g}): it "
            "looks binary, but the model is Gaussian (a linear probability model whose "
            "predictions can leave the two values' range). Fit it with family='bernoulli' "
            "(a multilevel logistic model) instead.",
            UserWarning,
            stacklevel=4,
        )
    elif (values[0] >= 0 and values[-1] <= MAX_COUNT and len(y) >= 2 * len(values)
          and np.all(values == np.round(values))):
        warnings.warn(
            f"the outcome {name!r} holds only small non-negative integers "
            f"({values[0]:g} to {values[-1]:g}): it looks like a count, but the model is "
            "Gaussian. Fit it with family='poisson' (or family='binomial' with trials=, for k "
            "successes out of n) instead.",
            UserWarning,
            stacklevel=4,
        )


def _complex_message(var: str, what: str) -> str:
    return (
        f"{what} {var!r} holds complex numbers; bayesmix models real values. Keep the part "
        f"you mean, e.g. data[{var!r}].real or abs(data[{var!r}])"
    )


def check_predictor(spec: Spec, var: str, series: pd.Series) -> None:
    """Refuse complex values and numbers stored as text in a predictor.

    A text column whose values are (nearly all) numbers was read wrongly (a quoted CSV column,
    a stray "n/a"); coded as categorical it would give one column per distinct value.
    """
    if pd.api.types.is_complex_dtype(series):
        raise DataError(_complex_message(var, "the predictor"))
    if pd.api.types.is_datetime64_any_dtype(series) or pd.api.types.is_timedelta64_dtype(series):
        raise DataError(
            f"the predictor {var!r} holds dates or times ({series.dtype}); convert it to a "
            f"number, e.g. days since the first: (data[{var!r}] - data[{var!r}].min()).dt.days"
        )
    if var in spec.categorical or pd.api.types.is_numeric_dtype(series):
        return
    if isinstance(series.dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(series):
        return
    if pd.api.types.infer_dtype(series, skipna=True) in ("boolean", "empty"):
        return
    present = series.dropna()
    numbers = pd.to_numeric(present, errors="coerce")
    ok = numbers.notna().to_numpy()
    if len(present) == 0 or ok.mean() < 0.9:
        return
    others = pd.unique(present[~ok])
    rest = (f"; the other {int((~ok).sum())} values are {_show(others)} (missing-value "
            f"markers? pd.to_numeric(..., errors='coerce') makes them NaN)") if len(others) else ""
    raise DataError(
        f"the predictor {var!r} holds numbers stored as text ({int(ok.sum())} of {len(present)} "
        f"values, e.g. {_show(pd.unique(present[ok])[:3])}){rest}. As text it would be coded as "
        f"a categorical with {present.nunique()} levels. Convert it with "
        f"data[{var!r}] = pd.to_numeric(data[{var!r}]), or list it under `categorical` if the "
        "numbers are codes of categories"
    )


def numeric_column(var: str, series: pd.Series, index: pd.Index) -> np.ndarray:
    """A numeric predictor as float64, refusing text, complex and infinite values."""
    if pd.api.types.is_complex_dtype(series):
        raise DataError(_complex_message(var, "the predictor"))
    if not pd.api.types.is_numeric_dtype(series):
        raise DataError(
            f"the predictor {var!r} is numeric in the model but has type {series.dtype} here "
            f"(first values: {_show(series.head(3))}); convert it with pd.to_numeric"
        )
    values = series.to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        raise DataError(
            f"column {var!r} has {int(bad.sum())} infinite values, at rows {_show(index[bad])}"
        )
    return values


def check_level2(spec: Spec, values_of, codes: np.ndarray, labels: list[str]) -> None:
    """Level-2 variables must be constant within each cluster; name the first that is not.

    ``values_of(var)`` gives a variable's values before coding (a column, or a transformed
    variable's values, (n, k) for poly).
    """
    for var in spec.level2_variables:
        raw = values_of(var)
        frame = pd.DataFrame(np.asarray(raw).reshape(len(codes), -1))
        nunique = frame.groupby(codes, sort=True).nunique(dropna=False).max(axis=1)
        varying = nunique[nunique > 1]
        if len(varying):
            j = int(varying.index[0])
            values = pd.unique(frame[0].to_numpy()[codes == j])
            raise DataError(
                f"{var!r} is a level-2 predictor but varies inside {spec.cluster} "
                f"{labels[j]!r} (values {_show(values)}); {len(varying)} of {len(nunique)} "
                f"clusters vary. Use a level-2 variable (one value per {spec.cluster}), or "
                f"move {var!r} to the level-1 equation (e.g. `b2*{var}` with `b2 = g20`)."
            )


def check_random_slopes(
    spec: Spec, Zq: np.ndarray, names: tuple[str, ...], terms: tuple[str, ...],
    codes: np.ndarray, *, factor: str | None = None,
) -> None:
    """A random slope's column must vary inside some cluster.

    A variable constant within every cluster gives a random slope that only rescales the
    random intercept (the two are confounded); name it and say what to write instead.
    """
    sizes = np.bincount(codes)
    if not (sizes > 1).any():
        return
    frame = pd.DataFrame(Zq, copy=False)
    grouped = frame.groupby(codes, sort=True)  # rows of the result: np.unique(codes)
    spread = (grouped.max() - grouped.min()).to_numpy()[sizes[np.unique(codes)] > 1]
    for r, term in enumerate(terms):
        col = Zq[:, r]
        scale = float(np.max(np.abs(col))) if len(col) else 0.0
        if term == INTERCEPT or np.ptp(col) == 0 or spread[:, r].max() > 1e-12 * scale:
            continue
        has_intercept = INTERCEPT in terms
        why = ("so its random slope is confounded with the random intercept"
               if has_intercept else "so its random slope only rescales a random intercept")
        g = spec.cluster if factor is None else factor
        raise DataError(
            f"the random slope {names[r]} is on {term!r}, which is constant within every "
            f"{g} ({why}). Make the slope fixed (drop {term} from "
            f"`( ... | {g})`, or drop its U in the level-2 equation), or use "
            f"{term} as a level-2 predictor of the intercept (`b0 = g00 + g01*{term} + U0`)."
        )


def _cluster_key(label: str) -> str:
    text = label.strip()
    try:
        value = float(text)
    except ValueError:
        return text.casefold()
    return repr(value) if np.isfinite(value) else text.casefold()


def check_cluster_labels(labels: np.ndarray, clusters: tuple[str, ...], cluster: str) -> None:
    """Refuse new cluster labels that are a fitted cluster written differently.

    Labels are matched exactly as text: ``'308.0'`` or ``' 308'`` is not the fitted ``'308'``
    and would silently be predicted as a new cluster.  A label that equals a fitted one after
    stripping spaces, ignoring case or reading both as numbers raises instead.

    Parameters
    ----------
    labels : ndarray of str
        The cluster labels of the new rows, as text.
    clusters : tuple of str
        The fitted clusters' labels.
    cluster : str
        The cluster column, for the message.

    Raises
    ------
    DataError
        Naming the label, how many rows have it and the fitted cluster it resembles.
    """
    known = set(clusters)
    unseen = [c for c in pd.unique(np.asarray(labels, dtype=object)) if c not in known]
    if not unseen:
        return
    keys = {_cluster_key(c): c for c in clusters}
    for label in unseen:
        match = keys.get(_cluster_key(label))
        if match is not None:
            rows = int((np.asarray(labels) == label).sum())
            raise DataError(
                f"{cluster} {label!r} ({rows} rows of new_data) is not a cluster of the fit, "
                f"but looks like the fitted {cluster} {match!r} written differently. Labels "
                "are matched exactly as text, so it would be predicted as a new cluster "
                f"(U drawn from N(0, T)). Convert the column so the labels match (e.g. "
                f"new_data[{cluster!r}].astype(str).str.strip(), or the type the fit had), or "
                "give a genuinely new cluster a label of its own."
            )


RANK_TOL = 1e-7
"""Relative singular value of the standardised X below which columns count as collinear
(lme4's ``rankMatrix`` tolerance for its fixed-effects check)."""


def check_rank(X: np.ndarray, names: tuple[str, ...]) -> None:
    """X must have full column rank; otherwise name the collinear columns.

    ``X`` should be the design's columns built from centred and scaled variables
    (:mod:`bayesmix.scaling`): then a shifted or rescaled variable cannot fake a collinearity,
    and columns whose smallest relative singular value is below :data:`RANK_TOL` (condition
    number above 1e7: ``X2 = X + 1e-9·noise``) are refused rather than fitted to noise.
    """
    n, p = X.shape
    if n < p:
        raise DataError(
            f"X has more columns ({p}) than rows ({n}); the fixed effects are not identified"
        )
    norms = np.linalg.norm(X, axis=0)
    zero = [names[k] for k in range(p) if norms[k] == 0]
    if zero:
        raise DataError(
            f"the column {zero[0]!r} of X is constant in the rows used (all zeros, or the same "
            "value everywhere, which the intercept already is; does the variable take only "
            "one value or level?); drop it from the model"
        )
    if p == 0:
        return
    Xs = X / norms
    _, s, vt = np.linalg.svd(Xs, full_matrices=False)
    if s.min() > RANK_TOL * s.max():
        return
    v = vt[-1]
    involved = [names[k] for k in np.flatnonzero(np.abs(v) > 1e-6 * np.abs(v).max())]
    exact = s.min() <= s.max() * max(n, p) * np.finfo(float).eps * 100
    how = ("collinear (one is a linear combination of the others)" if exact else
           f"nearly collinear (condition number {s.max() / s.min():.2g}: one is a linear "
           "combination of the others up to noise far below its own variation)")
    raise DataError(
        f"X does not have full column rank: the columns {', '.join(repr(c) for c in involved)} "
        f"are {how}. Drop one of them, or a level-2 predictor that duplicates another."
    )


def check_not_exact(X_std: np.ndarray, y_std: np.ndarray, names: tuple[str, ...],
                    outcome: str) -> None:
    """Refuse a y that is an exact linear function of X: σ would be 0, nothing is random.

    ``X_std`` and ``y_std`` are X and y on the design's standardised scale
    (:mod:`bayesmix.scaling`), so a shifted or rescaled outcome cannot fool the check.
    """
    if X_std.shape[1] == 0:
        return
    coef, *_ = np.linalg.lstsq(X_std, y_std, rcond=None)
    if float(np.sqrt(np.mean((y_std - X_std @ coef) ** 2))) <= 1e-10:
        raise DataError(
            f"{outcome!r} is an exact linear function of the fixed-effect columns "
            f"({', '.join(names)}): the residual SD would be 0 and the model has "
            "no random variation to estimate. Check that the outcome is not computed from the "
            "predictors."
        )
