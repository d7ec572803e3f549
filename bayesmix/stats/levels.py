"""The first pass over data read in pieces: cluster labels, categorical levels, constants.

A file streamed in chunks, the partitions of a Dask DataFrame or DuckDB's record batches are
coded one piece at a time, so what depends on the whole data must be known first: the
cluster labels, the levels of every categorical variable, and the constants of the
transformed variables (:mod:`bayesmix.stats.transform_sums`).  :class:`LevelScan` folds pieces
into sets and sums (:meth:`LevelScan.add`), two scans of different pieces combine
(:meth:`LevelScan.merge`, associative, so a tree reduction on a cluster gives the same result
as one pass), and :meth:`LevelScan.levels` gives the :class:`bayesmix.stats.stream.Levels` that the
second pass codes with.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayesmix.errors import DataError
from bayesmix.spec.model import Spec


def sorted_unique(values: set) -> list:
    """The values sorted (as text where they do not compare)."""
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=str)


class LevelScan:
    """Distinct cluster labels and categorical values, and the transforms' sums, of pieces.

    Parameters
    ----------
    spec : Spec
        A column is categorical when the spec lists it under ``categorical`` or the first
        piece seen holds it as text, boolean or a pandas category (as
        :func:`bayesmix.build_design` decides).
    """

    def __init__(self, spec: Spec) -> None:
        from bayesmix.stats.stream import _streamable
        from bayesmix.stats.transform_sums import TransformSums

        _streamable(spec)
        self.spec = spec
        variables = [v for v in spec.variables if v not in (spec.outcome, spec.cluster)]
        self._plain = [v for v in variables if v not in spec.transforms]
        # C(x): the levels of its column, under the variable's name
        self._coded = {v: t.expr.column for v, t in spec.transforms.items() if t.categorical}
        self.sums = TransformSums(spec)
        self.clusters: set = set()
        self.categories: dict[str, set] | None = None  # None until the first piece
        self.dtypes: dict[str, pd.CategoricalDtype] = {}  # category columns keep their order

    @property
    def columns(self) -> list[str]:
        """The columns a piece must hold (the outcome too: its missing rows are not summed)."""
        return list(self.spec.columns)

    def add(self, piece: pd.DataFrame) -> LevelScan:
        """Fold one piece (a DataFrame with :attr:`columns`) into the scan; returns self."""
        from bayesmix.design.validate import is_categorical

        if self.categories is None:
            if len(piece) == 0:
                return self
            self.categories = {v: set() for v in self._plain
                               if is_categorical(self.spec, piece[v])}
            self.categories.update({v: set() for v in self._coded})
            self.dtypes = {v: piece[v].dtype for v in self.categories if v not in self._coded
                           and isinstance(piece[v].dtype, pd.CategoricalDtype)}
        self.clusters.update(pd.unique(piece[self.spec.cluster].dropna()))
        for var, seen in self.categories.items():
            seen.update(pd.unique(piece[self._coded.get(var, var)].dropna()))
        if self.sums.nodes:
            self.sums.add(piece.dropna())
        return self

    def merge(self, other: LevelScan) -> LevelScan:
        """One scan of this scan's pieces and of ``other``'s (a new object)."""
        out = LevelScan(self.spec)
        out.clusters = self.clusters | other.clusters
        if self.categories is None or other.categories is None:
            out.categories = self.categories if other.categories is None else other.categories
        else:
            out.categories = {v: self.categories[v] | other.categories.get(v, set())
                              for v in self.categories}
        out.dtypes = self.dtypes or other.dtypes
        out.sums = self.sums.merge(other.sums)
        return out

    def levels(self):
        """The :class:`bayesmix.stats.stream.Levels` of everything scanned."""
        from bayesmix.design.coding import POLY_CONTRASTS, _levels, contrasts_key
        from bayesmix.stats.stream import Levels

        spec = self.spec
        clusters = tuple(str(v) for v in sorted_unique(self.clusters))
        if len(set(clusters)) != len(clusters):
            raise DataError(
                f"cluster labels of {spec.cluster!r} are not distinct as text (e.g. 1 and '1')"
            )
        references = {v: t.expr.reference for v, t in spec.transforms.items() if t.categorical}
        categorical, fitted = {}, self.sums.fitted(clusters)
        for var, seen in (self.categories or {}).items():
            values = pd.Series(sorted_unique(seen))
            if var in self.dtypes:  # a category column keeps its categories' order
                values = values.astype(self.dtypes[var])
            ref = references.get(var) or spec.reference_levels.get(var)
            categorical[var] = tuple(_levels(values, ref, var))
            if var in self.dtypes and self.dtypes[var].ordered and ref is None:  # contr.poly
                fitted[contrasts_key(var)] = POLY_CONTRASTS
        return Levels(clusters, categorical, fitted)


def shift_moments(sums: np.ndarray, old: float, new: float) -> np.ndarray:
    """Power sums Σ(x − old)^m, m = 0..k, re-expressed about ``new``: Σ(x − new)^m.

    (x − new)^m = Σ_k C(m, k) (x − old)^k (old − new)^(m−k), exact; both shifts are near
    the data (means of pieces), so the terms are of the size of the sums themselves.
    """
    from math import comb

    d = old - new
    return np.array([sum(comb(m, k) * sums[k] * d ** (m - k) for k in range(m + 1))
                     for m in range(len(sums))])
