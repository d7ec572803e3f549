"""The public coder: variables and products of variables into numeric columns.

Used by :func:`bayesmix.build_design`, the streamed statistics and ``predict`` alike, so new
data are coded exactly as the fitted model's (categorical levels fixed, treatment coding with
the reference level first).  A :class:`Coder` has no side effects on its inputs; it remembers
the columns it coded (``cache``) and the categorical levels it found (``levels``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bayesmix.design import validate
from bayesmix.design.derive import Deriver, Fitted, contr_poly
from bayesmix.design.terms import Grouping
from bayesmix.errors import DataError
from bayesmix.notation import INTERCEPT, fixed_label, level1_label, random_label
from bayesmix.spec.model import Spec


@dataclass(frozen=True)
class _Column:
    """One coded column of a product of variables (categorical levels expanded)."""

    name: str  # "X", "Sector[Catholic]", "X:Sector[Catholic]", "(Intercept)"
    levels: tuple[str, ...]  # categorical levels in the product, for γ labels
    values: np.ndarray  # (n,)
    factors: tuple[str, ...] = ()  # the coded variable columns multiplied ("X", "Sector[...]")


def _levels(series: pd.Series, reference: str | None, var: str) -> list[str]:
    if isinstance(series.dtype, pd.CategoricalDtype):
        levels = [str(c) for c in series.cat.categories if (series == c).any()]
    else:
        uniq = pd.unique(series)
        try:
            uniq = sorted(uniq)
        except TypeError:
            uniq = sorted(uniq, key=str)
        levels = [str(v) for v in uniq]
    if len(levels) < 2:
        raise DataError(
            f"the categorical predictor {var!r} takes only one value ({levels[0]!r}) in the rows "
            "used; it cannot be estimated. Drop it from the model."
        )
    if reference is not None:
        if reference not in levels:
            raise DataError(
                f"the reference level {reference!r} of {var!r} is not among its levels "
                f"({', '.join(repr(x) for x in levels)})"
            )
        levels.remove(reference)
        levels.insert(0, reference)
    return levels


POLY_CONTRASTS = "poly"
"""The value kept under :func:`contrasts_key` for an ordered factor coded with ``contr.poly``."""


def contrasts_key(var: str) -> str:
    """The key of ``Design.fitted`` that records a variable's polynomial contrasts."""
    return f"contrasts({var})"


class Coder:
    """Codes variables and products of variables into numeric columns.

    Parameters
    ----------
    spec : Spec
    data : DataFrame
    levels : dict of str to tuple of str, optional
        The categorical levels to code with (a fitted model's); found in ``data`` when None.
    """

    def __init__(
        self,
        spec: Spec,
        data: pd.DataFrame,
        levels: dict[str, tuple[str, ...]] | None = None,
        *,
        fitted: Fitted | None = None,
        groupings: tuple[Grouping, ...] | None = None,
    ) -> None:
        self.spec = spec
        self.data = data
        self.cache: dict[str, list[_Column]] = {}
        # None: find the levels in the data; a dict (even empty): the fitted model's coding.
        self.fixed_levels = levels
        self.levels: dict[str, tuple[str, ...]] = {}
        self.deriver = Deriver(spec, data, groupings, fitted)

    @property
    def fitted(self) -> Fitted:
        """The constants of the transformed variables coded so far (means, scales, poly)."""
        return self.deriver.fitted

    def raw(self, var: str) -> np.ndarray | pd.Series:
        """A variable's values before coding.

        A column, or a transformed variable's values ((n, k) for poly; the column itself for
        ``C(x)``).
        """
        transform = self.spec.transforms.get(var)
        if transform is None:
            return self.data[var]
        return self.deriver.values(transform)

    def variable(self, var: str) -> list[_Column]:
        """The coded columns of one variable (one, or one per non-reference level)."""
        if var in self.cache:
            return self.cache[var]
        transform = self.spec.transforms.get(var)
        if transform is not None and not transform.categorical:
            values = self.deriver.values(transform)
            if values.ndim == 2:
                cols = [_Column(f"{var}{d}", (str(d),), values[:, d - 1], (f"{var}{d}",))
                        for d in range(1, values.shape[1] + 1)]
            else:
                cols = [_Column(var, (), values, (var,))]
            self.cache[var] = cols
            return cols
        if transform is not None:
            series = self.data[transform.expr.column].rename(var)
            ref = transform.expr.reference or self.spec.reference_levels.get(var)
        else:
            series = self.data[var]
            ref = self.spec.reference_levels.get(var)
        if self.fixed_levels is None:
            validate.check_predictor(self.spec, var, series)
            categorical = transform is not None or validate.is_categorical(self.spec, series)
        else:
            categorical = var in self.fixed_levels
        if categorical:
            as_text = series.astype(str)
            if self.fixed_levels is not None:
                levels = list(self.fixed_levels[var])
                unseen = sorted(set(as_text) - set(levels))
                if unseen:
                    raise DataError(
                        f"{var!r} takes values outside its known levels (the fitted "
                        f"model's, or those given): "
                        f"{validate._show(unseen)}; its levels are {validate._show(levels)}"
                    )
            else:
                levels = _levels(series, ref, var)
            self.levels[var] = tuple(levels)
            if self._polynomial_contrasts(var, series, transform, ref):
                values, names = contr_poly(len(levels))
                codes = pd.Index(levels).get_indexer(as_text)
                cols = [_Column(f"{var}{nm}", (nm,), values[codes, d], (f"{var}{nm}",))
                        for d, nm in enumerate(names)]
                self.cache[var] = cols
                return cols
            cols = [
                _Column(f"{var}[{lev}]", (lev,), (as_text == lev).to_numpy(dtype=float),
                        (f"{var}[{lev}]",))
                for lev in levels[1:]
            ]
        else:
            if ref is not None:
                raise DataError(
                    f"a reference level is given for {var!r}, but it is numeric; list it under "
                    "`categorical` to code it as categorical"
                )
            cols = [_Column(var, (), validate.numeric_column(var, series, self.data.index),
                            (var,))]
        self.cache[var] = cols
        return cols

    def _polynomial_contrasts(self, var: str, series: pd.Series, transform, ref) -> bool:
        """Whether ``var`` is coded with polynomial contrasts.

        An ordered factor (pandas ordered categorical) without C() or a reference level is
        coded with R's default contrasts for ordered factors, ``contr.poly`` (.L, .Q, .C ...);
        the choice is kept in :attr:`fitted` so new data are coded alike.
        """
        key = contrasts_key(var)
        if self.fixed_levels is not None:
            return self.fitted.get(key) == POLY_CONTRASTS
        ordered = (transform is None and ref is None
                   and isinstance(series.dtype, pd.CategoricalDtype) and series.dtype.ordered)
        if ordered:
            self.fitted[key] = POLY_CONTRASTS  # type: ignore[assignment]
        return ordered

    def product(self, variables: tuple[str, ...]) -> list[_Column]:
        """The coded columns of a product of variables (``()``: the intercept)."""
        cols = [_Column(INTERCEPT, (), np.ones(len(self.data)))]
        for var in variables:
            new = []
            for a in cols:
                for b in self.variable(var):
                    name = b.name if a.name == INTERCEPT else f"{a.name}:{b.name}"
                    new.append(_Column(name, a.levels + b.levels, a.values * b.values,
                                       a.factors + b.factors))
            cols = new
        return cols


@dataclass(frozen=True)
class FactorColumns:
    """The coded random-effect columns over one grouping factor, and its blocks.

    ``blocks`` holds per block (names, terms, positions among ``columns``, structure).
    """

    grouping: str
    columns: list[_Column]
    labels: tuple[str, ...]
    blocks: tuple[tuple[tuple[str, ...], tuple[str, ...], tuple[int, ...], str], ...]


@dataclass(frozen=True)
class ModelColumns:
    """The coded columns of a spec on some rows: X, the level-1 and the random columns.

    ``g_entries`` holds, per γ column k, ``(m, k, w)``: level-1 column m it belongs to and its
    level-2 factor w row by row (n,).  ``fixed_factors[k]`` names the coded variable columns
    (the *atoms*: ``"X"``, ``"Sector[Catholic]"``) whose product is column k of X, ``()`` for
    the intercept; ``atoms`` holds their values (n,), e.g. to centre variables before products
    (:mod:`bayesmix.scaling`).
    """

    X: np.ndarray
    fixed_names: tuple[str, ...]
    gamma_names: tuple[str, ...]
    fixed_terms: tuple[str, ...]
    level1: list[_Column]
    level1_names: tuple[str, ...]
    random: list[_Column]
    random_names: tuple[str, ...]
    random_terms: tuple[str, ...]
    random_of_level1: list[int]
    g_entries: list[tuple[int, int, np.ndarray]]
    fixed_factors: tuple[tuple[str, ...], ...] = ()
    atoms: dict[str, np.ndarray] = field(default_factory=dict)
    factors: tuple[FactorColumns, ...] = ()

    @property
    def random_factors(self) -> tuple[tuple[str, ...], ...]:
        """The atoms multiplied in each random term's level-1 column (``cluster``'s)."""
        return tuple(c.factors for c in self.random)

    def atom_matrix(
        self,
    ) -> tuple[tuple[str, ...], np.ndarray, tuple[tuple[int, ...], ...],
               tuple[tuple[int, ...], ...]]:
        """The atoms X and Zq use: names, values (n, a), and each column's atom indices."""
        every = [c.factors for fc in self.factors for c in fc.columns]
        used = dict.fromkeys(
            a for f in (*self.fixed_factors, *self.random_factors, *every) for a in f
        )
        names = tuple(used)
        pos = {a: i for i, a in enumerate(names)}
        n = self.X.shape[0]
        values = np.column_stack([self.atoms[a] for a in names]) if names else np.zeros((n, 0))
        return (
            names,
            values,
            tuple(tuple(pos[a] for a in f) for f in self.fixed_factors),
            tuple(tuple(pos[a] for a in f) for f in self.random_factors),
        )

    @property
    def Zq(self) -> np.ndarray:
        """The random terms' level-1 columns, shape (n, q)."""
        return np.column_stack([c.values for c in self.random])


def model_columns(spec: Spec, coder: Coder) -> ModelColumns:
    """Code every column of X and of the level-1 / random designs (X in spec.fixed_terms order)."""
    level1_cols: list[_Column] = []
    level1_names: list[str] = []
    l1_index: dict[tuple[str, str], int] = {}
    random_of_level1: list[int] = []
    random_cols: list[_Column] = []
    random_names: list[str] = []
    random_terms: list[str] = []
    random_base: list[str] = []
    random_effects: list[str] = []  # effect names, "U2[Catholic]"
    for coef in spec.coefficients:
        cols = coder.product(coef.variables)
        for col in cols:
            l1_index[(coef.name, col.name)] = len(level1_cols)
            level1_cols.append(col)
            level1_names.append(level1_label(coef.name + _suffix(col.levels, len(cols) > 1),
                                             col.name))
            if coef.random is not None:
                random_of_level1.append(len(random_cols))
                random_cols.append(col)
                random_names.append(
                    random_label(coef.random + _suffix(col.levels, len(cols) > 1), col.name)
                )
                random_terms.append(col.name)
                random_base.append(coef.random)
                random_effects.append(coef.random + _suffix(col.levels, len(cols) > 1))
            else:
                random_of_level1.append(-1)
    x_cols: list[np.ndarray] = []
    fixed_names: list[str] = []
    gamma_names: list[str] = []
    fixed_terms: list[str] = []
    fixed_factors: list[tuple[str, ...]] = []
    g_entries: list[tuple[int, int, np.ndarray]] = []
    for term in spec.fixed_terms:
        coef, gamma = term.coefficient, term.gamma
        l1 = coder.product(coef.variables)
        l2 = coder.product(gamma.variables)
        many = len(l1) * len(l2) > 1
        for a in l1:
            for b in l2:
                name = a.name if b.name == INTERCEPT else (
                    b.name if a.name == INTERCEPT else f"{a.name}:{b.name}"
                )
                k = len(x_cols)
                x_cols.append(a.values * b.values)
                gname = gamma.name + _suffix(a.levels + b.levels, many)
                gamma_names.append(gname)
                fixed_terms.append(name)
                fixed_factors.append(a.factors + b.factors)
                fixed_names.append(fixed_label(gname, name))
                g_entries.append((l1_index[(coef.name, a.name)], k, b.values))
    n = len(coder.data)
    X = np.column_stack(x_cols) if x_cols else np.zeros((n, 0))
    factors = _factor_columns(spec, coder, random_cols, tuple(random_names), random_base,
                              random_effects)
    atoms = {c.name: c.values for cols in coder.cache.values() for c in cols}
    return ModelColumns(
        X=X,
        fixed_names=tuple(fixed_names),
        gamma_names=tuple(gamma_names),
        fixed_terms=tuple(fixed_terms),
        level1=level1_cols,
        level1_names=tuple(level1_names),
        random=random_cols,
        random_names=tuple(random_names),
        random_terms=tuple(random_terms),
        random_of_level1=random_of_level1,
        g_entries=g_entries,
        fixed_factors=tuple(fixed_factors),
        atoms=atoms,
        factors=factors,
    )


def _factor_columns(
    spec: Spec, coder: Coder, cluster_cols: list[_Column], cluster_labels: tuple[str, ...],
    cluster_base: list[str], cluster_names: list[str],
) -> tuple[FactorColumns, ...]:
    """Every grouping factor's coded random columns (``cluster``'s in coefficient order)."""
    out: dict[str, tuple[list[_Column], list[str], list]] = {}
    for block in spec.random:
        if block.grouping == spec.cluster:
            cols, labels, blocks = out.setdefault(
                block.grouping, (list(cluster_cols), list(cluster_labels), [])
            )
            pos = tuple(i for i, b in enumerate(cluster_base) if b in block.names)
            blocks.append((tuple(cluster_names[i] for i in pos),
                           tuple(cols[i].name for i in pos), pos, block.structure))
            continue
        cols, labels, blocks = out.setdefault(block.grouping, ([], [], []))
        names, terms, pos = [], [], []
        for name, term in zip(block.names, block.terms, strict=True):
            coded = coder.product(term)
            for col in coded:
                pos.append(len(cols))
                cols.append(col)
                names.append(name + _suffix(col.levels, len(coded) > 1))
                terms.append(col.name)
                labels.append(random_label(names[-1], col.name))
        blocks.append((tuple(names), tuple(terms), tuple(pos), block.structure))
    return tuple(FactorColumns(g, cols, tuple(labels), tuple(blocks))
                 for g, (cols, labels, blocks) in out.items())


def _suffix(levels: tuple[str, ...], many: bool) -> str:
    return f"[{','.join(levels)}]" if many and levels else ""


_Coder = Coder  # the name predict and the streamed statistics used before it was public
