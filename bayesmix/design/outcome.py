"""The outcome of a non-Gaussian family: its codes, trials and exposure, checked.

=============  =================================================================
family         what the data must hold
=============  =================================================================
bernoulli      y in {0, 1}; or a boolean column (True = 1); or a column with two
               levels (the level sorted second, as R's factor levels, is 1; the
               warning says which)
binomial       0 ≤ k_i ≤ n_i, integers; n_i ≥ 1 (the ``trials`` column)
poisson        y_i non-negative integers; exposure t_i > 0 and finite
=============  =================================================================

Every failure raises :class:`~bayesmix.errors.DataError` naming the column, the number of bad
rows and the first of them, and saying how to fix it; nothing is rounded, clipped or dropped.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from bayesmix.errors import DataError
from bayesmix.spec import Spec


def _rows(index: pd.Index, bad: np.ndarray, limit: int = 5) -> str:
    where = list(index[bad][:limit])
    more = int(bad.sum()) - len(where)
    return ", ".join(map(str, where)) + (f" and {more} more" if more > 0 else "")


def bernoulli_codes(name: str, col: pd.Series) -> pd.Series:
    """A Bernoulli outcome as 0/1 floats: booleans, two-level categories, or numbers.

    A two-level categorical column is coded with its second level (sorted as R sorts
    factor levels) as 1, with a UserWarning that names both levels.
    """
    if pd.api.types.is_bool_dtype(col):
        return col.astype(float)
    if pd.api.types.is_numeric_dtype(col):
        return col
    levels = sorted(pd.unique(col.dropna()).tolist(), key=str)
    if len(levels) != 2:
        raise DataError(
            f"the Bernoulli outcome {name!r} must have two values; it has {len(levels)} "
            f"({', '.join(map(str, levels[:6]))}{', ...' if len(levels) > 6 else ''}). Code "
            "it 0/1 (1 = the event), or use family='binomial' for counts out of n"
        )
    warnings.warn(
        f"the Bernoulli outcome {name!r} has levels {levels[0]!r} and {levels[1]!r}: "
        f"{levels[1]!r} is coded 1 (the event whose probability is modelled), as R's glm "
        "does; recode the column 0/1 to choose the other",
        UserWarning,
        stacklevel=5,
    )
    return (col == levels[1]).astype(float).where(col.notna())


def _integers(name: str, what: str, values: np.ndarray, index: pd.Index) -> None:
    bad = values != np.round(values)
    if bad.any():
        raise DataError(
            f"the {what} {name!r} must hold whole numbers; {int(bad.sum())} rows do not "
            f"(rows {_rows(index, bad)}, e.g. {values[bad][0]:g})"
        )


def family_arrays(spec: Spec, data: pd.DataFrame, y: np.ndarray,
                  whole: bool = True) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Check y for the family; return the trials n_i and the offset log t_i (or None).

    Parameters
    ----------
    spec : Spec
    data : DataFrame
        The rows the design uses.
    y : ndarray, shape (n,)
        The outcome as float (Bernoulli categories already coded 0/1).
    whole : bool
        Whether ``data`` is the whole data (then an outcome at 0, or at its maximum, in every
        row is refused); a piece of it (:mod:`bayesmix.stats.glmm_cells`) may be.

    Returns
    -------
    trials : ndarray, shape (n,), or None
        Binomial only.
    offset : ndarray, shape (n,), or None
        log of the exposure, Poisson with ``exposure`` only.

    Raises
    ------
    DataError
        Module docstring.
    """
    fam, index = spec.family, data.index
    if fam.is_gaussian:
        return None, None
    name = spec.outcome
    trials = offset = None
    if fam.name == "bernoulli":
        bad = (y != 0) & (y != 1)
        if bad.any():
            raise DataError(
                f"the Bernoulli outcome {name!r} must be 0 or 1; {int(bad.sum())} rows are not "
                f"(rows {_rows(index, bad)}, e.g. {y[bad][0]:g}). Counts of successes out of n "
                "trials are family='binomial' with trials=; counts without a maximum are "
                "family='poisson'"
            )
    elif fam.name == "binomial":
        trials = _numeric(spec.trials, "number of trials", data)
        _integers(spec.trials, "number of trials", trials, index)
        bad = trials < 1
        if bad.any():
            raise DataError(
                f"the number of trials {spec.trials!r} must be at least 1; {int(bad.sum())} "
                f"rows have fewer (rows {_rows(index, bad)}). Drop the rows with no trials "
                "yourself: they carry no information"
            )
        _integers(name, "binomial outcome", y, index)
        bad = (y < 0) | (y > trials)
        if bad.any():
            raise DataError(
                f"the binomial outcome {name!r} must lie between 0 and {spec.trials!r}; "
                f"{int(bad.sum())} rows do not (rows {_rows(index, bad)}, e.g. "
                f"{y[bad][0]:g} of {trials[bad][0]:g})"
            )
    else:  # poisson
        _integers(name, "count outcome", y, index)
        bad = y < 0
        if bad.any():
            raise DataError(
                f"the Poisson outcome {name!r} must be a non-negative count; {int(bad.sum())} "
                f"rows are negative (rows {_rows(index, bad)})"
            )
        if spec.exposure is not None:
            t = _numeric(spec.exposure, "exposure", data)
            bad = t <= 0
            if bad.any():
                raise DataError(
                    f"the exposure {spec.exposure!r} must be positive (its log is the "
                    f"offset); {int(bad.sum())} rows are not (rows {_rows(index, bad)}, e.g. "
                    f"{t[bad][0]:g})"
                )
            offset = np.log(t)
    top = trials if trials is not None else 1.0
    if whole and ((fam.name != "poisson" and np.all(y == top)) or np.all(y == 0)):
        raise DataError(
            f"the outcome {name!r} is {'0' if np.all(y == 0) else 'the maximum'} in every row: "
            "the fixed intercept has no finite estimate; there is nothing to model"
        )
    return trials, offset


def _numeric(column: str | None, what: str, data: pd.DataFrame) -> np.ndarray:
    col = data[column]
    if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        raise DataError(f"the {what} {column!r} must be numeric; it has type {col.dtype}")
    values = col.to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        raise DataError(f"the {what} {column!r} has {int(bad.sum())} infinite values (rows "
                        f"{_rows(data.index, bad)})")
    return values
