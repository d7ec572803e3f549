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

This module holds the Spec's :class:`Weights`; :mod:`bayesmix.design.sampling_weights` reads
and scales the weights of the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bayesmix.errors import SpecError

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
