"""The sampling weights of the rows used, read and scaled (:mod:`bayesmix.weights`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayesmix.design.derive import range_by
from bayesmix.errors import DataError
from bayesmix.weights import Weights


def _positive(name: str, data: pd.DataFrame) -> np.ndarray:
    col = data[name]
    if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        raise DataError(f"the weight column {name!r} is not numeric")
    values = col.to_numpy(dtype=float)
    bad = ~np.isfinite(values) | (values <= 0)
    if bad.any():
        rows = data.index[bad]
        raise DataError(
            f"the weight column {name!r} has {int(bad.sum())} values that are not positive "
            f"numbers (rows {', '.join(map(str, rows[:5]))}{' ...' if len(rows) > 5 else ''});"
            " a unit with weight 0 is not in the sample: drop those rows")
    return values


def survey_weights(weights: Weights, data: pd.DataFrame, cluster_index: np.ndarray,
                   clusters: tuple[str, ...], cluster: str) -> tuple[np.ndarray, np.ndarray]:
    """The scaled level-1 weights (n,) and level-2 weights (J,) of the rows used.

    Raises
    ------
    DataError
        A weight that is not a positive number (naming the rows), or a level-2 weight that
        varies inside a cluster (naming it).
    """
    J = len(clusters)
    n = len(cluster_index)
    w1 = np.ones(n)
    if weights.level1 is not None:
        w1 = _positive(weights.level1, data)
        total = np.bincount(cluster_index, w1, J)
        if weights.scale == "size":
            w1 = w1 * (np.bincount(cluster_index, minlength=J) / total)[cluster_index]
        elif weights.scale == "effective":
            w1 = w1 * (total / np.bincount(cluster_index, w1**2, J))[cluster_index]
    w2 = np.ones(J)
    if weights.level2 is not None:
        raw = _positive(weights.level2, data)
        lo, hi = range_by(raw, cluster_index, J)
        varying = np.flatnonzero(lo != hi)
        if len(varying):
            j = int(varying[0])
            raise DataError(
                f"the level-2 weight {weights.level2!r} varies inside {cluster} "
                f"{clusters[j]!r} ({lo[j]:g} to {hi[j]:g}); give one weight per {cluster}")
        w2 = lo
        if weights.scale != "none":
            w2 = w2 * (J / w2.sum())
    return w1, w2
