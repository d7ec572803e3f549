"""The design's random-effect terms as typed objects: grouping factors, blocks and Z parts.

The random part of ``Y = Xβ + Zu + e`` is partitioned by grouping factor,
``Zu = Σ_g Z_g u_g``: for a factor g with J_g units and q_g effects,
``Z_g[i, j q_g + r] = Zq_g[i, r]`` when row i is in unit j (else 0), so ``u_g`` flattens
row-wise from its (J_g, q_g) array (lme4's order), and ``Z = [Z_1 | Z_2 | ...]``.  The effects
of one factor form one or more blocks (``(1 + X | g)`` is one unstructured block; ``(1 + X ||
g)`` or ``(1 | g) + (0 + X | g)`` two independent ones): ``Cov(u_gj)`` is block-diagonal
over them.  Downstream stages read these objects; nobody splits a label to find a factor.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from bayesmix.errors import DataError
from bayesmix.notation import random_label


@dataclass(frozen=True)
class Grouping:
    """A grouping factor: its units and which unit each row is in.

    Attributes
    ----------
    name : str
        ``"schoolid"``, or ``"schoolid:childid"`` for the children within schools.
    columns : tuple of str
        The data columns combined.
    levels : tuple of str
        Unit labels (``"2020:17"`` for a combination), sorted like R's factor levels.
    index : ndarray of int, shape (n,)
        Unit code 0..J-1 of each row.
    parent : str or None
        The grouping factor this one is nested in (each unit within one unit of the parent;
        the parent with the most units), or None.
    note : str or None
        What the design did to the ids, e.g. that child ids repeat across schools and the
        units are the (school, child) combinations.
    """

    name: str
    columns: tuple[str, ...]
    levels: tuple[str, ...]
    index: np.ndarray = field(repr=False)
    parent: str | None = None
    note: str | None = None

    @property
    def J(self) -> int:
        """Number of units."""
        return len(self.levels)

    def sizes(self) -> np.ndarray:
        """Rows per unit, shape (J,)."""
        return np.bincount(self.index, minlength=self.J)


@dataclass(frozen=True)
class RandomBlock:
    """Random effects of one factor with one covariance structure.

    Attributes
    ----------
    grouping : str
        Name of the factor.
    names : tuple of str
        Effect names (``"U0"``, ``"r1"``, ``"U2[Catholic]"``), one per column.
    terms : tuple of str
        The coded level-1 term each effect multiplies (``"(Intercept)"``, ``"X"``).
    columns : tuple of int
        Positions of the block's effects among its factor's effects.
    structure : {"unstructured", "diagonal"}
    """

    grouping: str
    names: tuple[str, ...]
    terms: tuple[str, ...]
    columns: tuple[int, ...]
    structure: str

    @property
    def q(self) -> int:
        """Number of effects."""
        return len(self.names)

    @property
    def labels(self) -> tuple[str, ...]:
        """``"U1 (X)"`` labels."""
        return tuple(random_label(n, t) for n, t in zip(self.names, self.terms, strict=True))


@dataclass(frozen=True)
class FactorEffects:
    """All random effects over one grouping factor, and its part of Z.

    Attributes
    ----------
    grouping : Grouping
    blocks : tuple of RandomBlock
    Zq : ndarray, shape (n, q)
        The level-1 columns of the effects row by row.
    factors : tuple of tuple of int
        The atoms (coded variable columns of the design) multiplied in each column of Zq.
    scale : FactorScale or None
        The factor's standardised scale, block by block (:class:`bayesmix.scaling.FactorScale`),
        found once by ``build_design`` and read by the likelihoods, REML and the checks.
    """

    grouping: Grouping
    blocks: tuple[RandomBlock, ...]
    Zq: np.ndarray = field(repr=False)
    factors: tuple[tuple[int, ...], ...] = field(repr=False, default=())
    scale: Any = field(repr=False, default=None)

    @property
    def name(self) -> str:
        """The factor's name."""
        return self.grouping.name

    @property
    def q(self) -> int:
        """Effects per unit."""
        return int(self.Zq.shape[1])

    @property
    def J(self) -> int:
        """Units."""
        return self.grouping.J

    @property
    def labels(self) -> tuple[str, ...]:
        """Effect labels (``"U1 (X)"``) in column order."""
        return self._by_column("labels")

    @property
    def names(self) -> tuple[str, ...]:
        """Effect names (``"U1"``) in column order."""
        return self._by_column("names")

    @property
    def terms(self) -> tuple[str, ...]:
        """The coded term each effect multiplies (``"(Intercept)"``, ``"X"``), column order."""
        return self._by_column("terms")

    def _by_column(self, what: str) -> tuple[str, ...]:
        out = [""] * self.q
        for block in self.blocks:
            for c, value in zip(block.columns, getattr(block, what), strict=True):
                out[c] = value
        return tuple(out)

    @property
    def single_unstructured(self) -> bool:
        """One block with a full covariance (T unrestricted)."""
        return len(self.blocks) == 1 and self.blocks[0].structure == "unstructured"

    def covariance_pattern(self) -> np.ndarray:
        """Which entries of the q × q covariance are free (True within a correlated block)."""
        mask = np.eye(self.q, dtype=bool)
        for block in self.blocks:
            if block.structure == "unstructured":
                mask[np.ix_(block.columns, block.columns)] = True
        return mask

    @property
    def Z(self) -> sp.csr_array:
        """The factor's part of Z, shape (n, J q), unit-major."""
        return unit_major(self.Zq, self.grouping.index, self.J)

    @property
    def z_names(self) -> tuple[str, ...]:
        """Column labels of Z_g (``"r0[2020:17]"``)."""
        return tuple(f"{name}[{lev}]" for lev in self.grouping.levels for name in self.names)


def with_scale(fe: FactorEffects, atoms: np.ndarray, y: np.ndarray, scaling: Any) -> FactorEffects:
    """The same effects with their :class:`~bayesmix.scaling.FactorScale` found."""
    from bayesmix.scaling import factor_scale

    return replace(fe, scale=factor_scale(atoms, y, scaling, fe))


def unit_major(Zq: np.ndarray, index: np.ndarray, J: int) -> sp.csr_array:
    """``Z[i, j q + r] = Zq[i, r]`` when row i is in unit j (else 0): shape (n, J q)."""
    n, q = Zq.shape
    rows = np.repeat(np.arange(n), q)
    cols = (index[:, None] * q + np.arange(q)[None, :]).ravel()
    return sp.csr_array((np.ascontiguousarray(Zq).ravel(), (rows, cols)), shape=(n, J * q))


def make_grouping(columns: tuple[str, ...], data: pd.DataFrame) -> Grouping:
    """The units of a grouping factor (one column, or the combinations of several).

    Raises
    ------
    DataError
        If labels are not distinct as text (e.g. 1 and '1' in one column).
    """
    name = ":".join(columns)
    if len(columns) == 1:
        codes, uniques = pd.factorize(data[columns[0]], sort=True)
        labels = [str(v) for v in uniques]
    else:
        keys = pd.MultiIndex.from_arrays([data[c].to_numpy() for c in columns])
        codes, uniques = keys.factorize(sort=True)
        labels = [":".join(str(v) for v in u) for u in uniques]
    if len(set(labels)) != len(labels):
        raise DataError(
            f"unit labels of {name!r} are not distinct as text (e.g. 1 and '1'); make the "
            "column one type"
        )
    note = None
    if len(columns) > 1:
        inner = data[columns[-1]].nunique()
        if inner < len(labels):
            note = (f"{columns[-1]} ids repeat across {':'.join(columns[:-1])}: the units are "
                    f"the {len(labels)} combinations {name}")
    return Grouping(name, tuple(columns), tuple(labels), codes.astype(np.int64), None, note)


def with_parents(groupings: list[Grouping]) -> tuple[Grouping, ...]:
    """Set each factor's parent: the factor with the most units that every unit lies in."""
    out = []
    for g in groupings:
        best: Grouping | None = None
        for h in groupings:
            if h is g or h.J >= g.J:
                continue
            # nested when each unit of g meets one unit of h
            first = np.full(g.J, -1)
            first[g.index] = h.index
            if np.array_equal(first[g.index], h.index) and (best is None or h.J > best.J):
                best = h
        out.append(Grouping(g.name, g.columns, g.levels, g.index,
                            None if best is None else best.name, g.note))
    return tuple(out)
