"""Sampling weights at level 1 and level 2: the survey pseudo-likelihood.

With level-1 weights w_i|j (inverse probabilities of selecting student i given school j) and
level-2 weights w_j (of selecting school j), the pseudo-log-likelihood of a two-level model is
(Pfeffermann et al. 1998; Rabe-Hesketh & Skrondal 2006)::

    ℓ_w(γ, T, σ) = Σ_j w_j log ∫ Π_i p(y_ij | u_j)^{w_i|j} p(u_j | T) du_j

For the Gaussian family the inner integral has the closed form of the unweighted model with
the cross-products ``Σ_i w_i|j W_iᵀW_i`` and ``n_j = Σ_i w_i|j``, so the statistics, REML and
the collapsed likelihood keep their cost: integer weights are exactly repeated rows (level 1)
and repeated clusters (level 2), which is how the tests check them.

Level-1 weights are scaled within each cluster before use, as the survey literature advises
(Pfeffermann et al. 1998; Asparouhov 2006), ``scale=``:

``"size"`` (default)
    w*_i|j = w_i|j · n_j / Σ_i w_i|j: they sum to the cluster's size (Asparouhov's "scaling
    to cluster size", Pfeffermann et al.'s method 2; Mplus's default).
``"effective"``
    w*_i|j = w_i|j · Σ_i w_i|j / Σ_i w²_i|j: they sum to the effective cluster size
    (Pfeffermann et al.'s method 1).
``"none"``
    the weights as given (frequency weights: 2 means the row counts twice).

Level-2 weights are scaled to sum to the number of clusters J (``"none"``: as given); a
common factor of the level-2 weights changes no ML estimate, but the Bayesian
pseudo-posterior's spread follows Σ_j w_j.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from bayesmix.errors import DataError, SpecError

SCALES = ("size", "effective", "none")


@dataclass(frozen=True)
class Weights:
    """Sampling weights of a two-level model.

    Parameters
    ----------
    level1 : str or None
        Column of the level-1 weights w_i|j (> 0).
    level2 : str or None
        Column of the level-2 weights w_j (> 0, one value per cluster).
    scale : {"size", "effective", "none"}
        How the level-1 weights are scaled within clusters (module docstring).
    """

    level1: str | None = None
    level2: str | None = None
    scale: Literal["size", "effective", "none"] = "size"

    def __post_init__(self) -> None:
        for what in ("level1", "level2"):
            value = getattr(self, what)
            if value is not None and not (isinstance(value, str) and value):
                raise SpecError(f"Weights({what}=...) names a column, not {value!r}")
        if self.level1 is None and self.level2 is None:
            raise SpecError("Weights() needs level1= and/or level2= (the weight columns)")
        if self.scale not in SCALES:
            raise SpecError(f"Weights(scale=...) is one of {', '.join(SCALES)}, "
                            f"not {self.scale!r}")

    @property
    def columns(self) -> tuple[str, ...]:
        """The weight columns."""
        return tuple(c for c in (self.level1, self.level2) if c is not None)

    @classmethod
    def coerce(cls, value: object) -> Weights | None:
        """A Weights from a Weights, a dict (model files) or None."""
        if value is None or isinstance(value, Weights):
            return value
        if isinstance(value, dict):
            unknown = set(value) - {"level1", "level2", "scale"}
            if unknown:
                raise SpecError(f"weights take level1, level2 and scale, not "
                                f"{', '.join(sorted(unknown))}")
            return cls(**value)  # type: ignore[arg-type]
        raise SpecError(f"weights= takes bm.Weights(level1=..., level2=...), not "
                        f"{type(value).__name__}")


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
        lo = np.full(J, np.inf)
        hi = np.full(J, -np.inf)
        np.minimum.at(lo, cluster_index, raw)
        np.maximum.at(hi, cluster_index, raw)
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
