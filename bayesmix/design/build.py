"""build_design(): y, X (with cross-level interactions), sparse Z and the level-2 table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from bayesmix.design import validate
from bayesmix.errors import DataError
from bayesmix.notation import (
    DIM_CLUSTER,
    DIM_FIXED,
    DIM_LEVEL1,
    DIM_RANDOM,
    DIM_RANDOM2,
    INTERCEPT,
    fixed_label,
    level1_label,
    random_label,
)
from bayesmix.scaling import Scaling
from bayesmix.spec.model import Spec


@dataclass(frozen=True)
class _Column:
    """One coded column of a product of variables (categorical levels expanded)."""

    name: str  # "X", "Sector[Catholic]", "X:Sector[Catholic]", "(Intercept)"
    levels: tuple[str, ...]  # categorical levels in the product, for γ labels
    values: np.ndarray  # (n,)
    factors: tuple[str, ...] = ()  # the coded variable columns multiplied ("X", "Sector[...]")


@dataclass(frozen=True)
class Design:
    """The mixed form ``Y = Xβ + Zu + e`` of a Spec on a DataFrame.

    Rows keep the data's order; Z is block-diagonal when the rows are ordered by cluster.
    Columns of Z are cluster-major, as in lme4: column ``j*q + r`` holds random term r of
    cluster j, so ``u`` flattens row-wise from its (J, q) array.

    Attributes
    ----------
    spec : Spec
    y : ndarray, shape (n,)
        The outcome.
    X : ndarray, shape (n, p)
        Fixed-effects design; column k multiplies γ ``fixed_names[k]``.
    Z : scipy.sparse.csr_array, shape (n, J*q)
        Random-effects design.
    Zq : ndarray, shape (n, q)
        The random terms' level-1 columns row by row: ``Z[i, j*q + r] = Zq[i, r]`` when row i
        is in cluster j, else 0.
    L1 : ndarray, shape (n, m)
        Every level-1 coefficient's column (``y_ij = Σ_m L1[i, m] β_mj + ε_ij``).
    G : ndarray, shape (J, m, p)
        Level-2 equations: ``β_mj = Σ_k G[j, m, k] γ_k + U_{r(m), j}``.
    random_of_level1 : ndarray of int, shape (m,)
        Index r of the random term of each level-1 column, or -1 when it has no U.
    cluster_index : ndarray of int, shape (n,)
        Cluster code 0..J-1 of each row.
    clusters : tuple of str
        Cluster labels as in the data (sorted like R factor levels).
    fixed_names, gamma_names, fixed_terms : tuple of str
        Column labels of X (``"g01 (M)"``), their γ names (``"g01"``) and terms (``"M"``).
    random_names, random_terms : tuple of str
        Random terms (``"U1 (X)"``) and their level-1 terms (``"X"``).
    level1_names : tuple of str
        Level-1 coefficient columns (``"b1 (X)"``).
    atoms : ndarray, shape (n, a)
        The coded variable columns (numeric variables, categorical indicators) whose products
        make the columns of X and Zq.
    atom_names : tuple of str
        Their names (``"X"``, ``"Sector[Catholic]"``).
    fixed_factors, random_factors : tuple of tuple of int
        For each column of X (of Zq), the atoms multiplied in it (indices into ``atom_names``;
        ``()`` for an intercept): ``X[:, k] = Π_{i ∈ fixed_factors[k]} atoms[:, i]``.
    scaling : Scaling
        The means and SDs of the atoms and of y: the standardised scale that the statistics,
        REML and the PyMC model work on (:mod:`bayesmix.scaling`), found once here.
    z_columns : dict of str to ndarray of int
        Random term label -> its columns of Z.
    level2 : DataFrame
        One row per cluster (index: cluster label) with ``n`` and the level-2 variables.
    row_labels : Index
        The data's index labels of the rows used.
    data : DataFrame
        The columns the model uses, for the rows used (kept to save and rebuild a fit).
    levels : dict of str to tuple of str
        Levels of each categorical predictor, reference first (to code new data the same way).
    """

    spec: Spec
    y: np.ndarray
    X: np.ndarray
    Z: sp.csr_array
    Zq: np.ndarray
    L1: np.ndarray
    G: np.ndarray
    random_of_level1: np.ndarray
    cluster_index: np.ndarray
    clusters: tuple[str, ...]
    fixed_names: tuple[str, ...]
    gamma_names: tuple[str, ...]
    fixed_terms: tuple[str, ...]
    random_names: tuple[str, ...]
    random_terms: tuple[str, ...]
    level1_names: tuple[str, ...]
    atoms: np.ndarray = field(repr=False)
    atom_names: tuple[str, ...] = field(repr=False)
    fixed_factors: tuple[tuple[int, ...], ...] = field(repr=False)
    random_factors: tuple[tuple[int, ...], ...] = field(repr=False)
    scaling: Scaling = field(repr=False)
    z_columns: dict[str, np.ndarray] = field(repr=False)
    level2: pd.DataFrame = field(repr=False)
    row_labels: pd.Index = field(repr=False)
    data: pd.DataFrame = field(repr=False)
    levels: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        from bayesmix.reprs import design_text

        return design_text(self)

    def _repr_html_(self) -> str:
        from bayesmix.reprs import design_html

        return design_html(self)

    @property
    def n(self) -> int:
        """Number of rows."""
        return int(self.y.shape[0])

    @property
    def p(self) -> int:
        """Number of columns of X (γ's)."""
        return int(self.X.shape[1])

    @property
    def q(self) -> int:
        """Number of random terms per cluster."""
        return int(self.Zq.shape[1])

    @property
    def J(self) -> int:
        """Number of clusters."""
        return len(self.clusters)

    @property
    def z_names(self) -> tuple[str, ...]:
        """Column labels of Z, e.g. ``"U0[308]"`` (cluster-major)."""
        return tuple(
            f"{r.split(' ')[0]}[{c}]" for c in self.clusters for r in self.random_names
        )

    @property
    def coords(self) -> dict[str, list[str]]:
        """Coordinates for the posterior: fixed, cluster, random, random2, level1."""
        return {
            DIM_FIXED: list(self.fixed_names),
            DIM_CLUSTER: list(self.clusters),
            DIM_RANDOM: list(self.random_names),
            DIM_RANDOM2: list(self.random_names),
            DIM_LEVEL1: list(self.level1_names),
        }

    @property
    def X_frame(self) -> pd.DataFrame:
        """X as a labelled DataFrame (rows: the data's index)."""
        return pd.DataFrame(self.X, index=self.row_labels, columns=list(self.fixed_names))

    def Z_frame(self, max_cells: int = 5_000_000) -> pd.DataFrame:
        """Z as a dense labelled DataFrame, for printing small designs as the seed does."""
        if self.n * self.Z.shape[1] > max_cells:
            raise DataError(
                f"Z is {self.n} x {self.Z.shape[1]}; too large for a dense view (raise "
                "max_cells, or use design.Z, which is sparse)"
            )
        return pd.DataFrame(self.Z.toarray(), index=self.row_labels, columns=list(self.z_names))

    def linear_predictor(self, beta: np.ndarray, u: np.ndarray) -> np.ndarray:
        """``Xβ + Zu`` from the explicit matrices.

        Parameters
        ----------
        beta : ndarray, shape (..., p)
        u : ndarray, shape (..., J, q)

        Returns
        -------
        ndarray, shape (..., n)
        """
        beta = np.asarray(beta, dtype=float)
        u = np.asarray(u, dtype=float)
        lead = beta.shape[:-1]
        flat_b = beta.reshape(-1, self.p)
        flat_u = u.reshape(-1, self.J * self.q)
        out = flat_b @ self.X.T + (self.Z @ flat_u.T).T
        return out.reshape((*lead, self.n))

    def cluster_coefficients(self, beta: np.ndarray, u: np.ndarray) -> np.ndarray:
        """β_mj from the level-2 equations.

        Parameters
        ----------
        beta : ndarray, shape (..., p)
        u : ndarray, shape (..., J, q)

        Returns
        -------
        ndarray, shape (..., J, m)
        """
        beta = np.asarray(beta, dtype=float)
        u = np.asarray(u, dtype=float)
        coef = np.einsum("jmk,...k->...jm", self.G, beta)
        # Column by column: fancy indexing of u would copy all of it at once.
        for m in np.flatnonzero(self.random_of_level1 >= 0):
            coef[..., m] += u[..., self.random_of_level1[m]]
        return coef


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


class _Coder:
    """Codes variables and products of variables into numeric columns."""

    def __init__(
        self,
        spec: Spec,
        data: pd.DataFrame,
        levels: dict[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.spec = spec
        self.data = data
        self.cache: dict[str, list[_Column]] = {}
        # None: find the levels in the data; a dict (even empty): the fitted model's coding.
        self.fixed_levels = levels
        self.levels: dict[str, tuple[str, ...]] = {}

    def variable(self, var: str) -> list[_Column]:
        if var in self.cache:
            return self.cache[var]
        series = self.data[var]
        ref = self.spec.reference_levels.get(var)
        if self.fixed_levels is None:
            validate.check_predictor(self.spec, var, series)
            categorical = validate.is_categorical(self.spec, series)
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

    def product(self, variables: tuple[str, ...]) -> list[_Column]:
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

    @property
    def random_factors(self) -> tuple[tuple[str, ...], ...]:
        """The atoms multiplied in each random term's level-1 column."""
        return tuple(c.factors for c in self.random)

    def atom_matrix(
        self,
    ) -> tuple[tuple[str, ...], np.ndarray, tuple[tuple[int, ...], ...],
               tuple[tuple[int, ...], ...]]:
        """The atoms X and Zq use: names, values (n, a), and each column's atom indices."""
        used = dict.fromkeys(a for f in (*self.fixed_factors, *self.random_factors) for a in f)
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


def model_columns(spec: Spec, coder: _Coder) -> ModelColumns:
    """Code every column of X and of the level-1 / random designs (X in spec.fixed_terms order)."""
    level1_cols: list[_Column] = []
    level1_names: list[str] = []
    l1_index: dict[tuple[str, str], int] = {}
    random_of_level1: list[int] = []
    random_cols: list[_Column] = []
    random_names: list[str] = []
    random_terms: list[str] = []
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
    )


def _suffix(levels: tuple[str, ...], many: bool) -> str:
    return f"[{','.join(levels)}]" if many and levels else ""


def build_design(
    spec: Spec, data: pd.DataFrame, *, missing: Literal["error", "drop"] = "error"
) -> Design:
    """Build y, X, Z and the level-2 table of ``spec`` on ``data``.

    Parameters
    ----------
    spec : Spec
    data : DataFrame
        One row per level-1 observation.
    missing : {"error", "drop"}
        Missing values in a used column raise (default, saying how many and where), or drop
        their rows with a warning that counts them.

    Returns
    -------
    Design

    Raises
    ------
    DataError
        Unknown column (with the closest name), missing values, a level-2 predictor that varies
        inside a cluster (naming the first one), fewer than two clusters, X without full column
        rank (naming the collinear columns), a constant or non-numeric outcome, or more random
        effects than observations.
    """
    validate.check_columns(spec, data)
    data = validate.handle_missing(spec, data, missing)
    y = validate.check_outcome(spec, data)
    n = len(y)
    codes, uniques = pd.factorize(data[spec.cluster], sort=True)
    clusters = [str(v) for v in uniques]
    if len(set(clusters)) != len(clusters):
        raise DataError(
            f"cluster labels of {spec.cluster!r} are not distinct as text "
            f"(e.g. 1 and '1'); make the column one type"
        )
    J = len(clusters)
    if J < 2:
        raise DataError(
            f"the cluster column {spec.cluster!r} has {J} cluster"
            f"{'' if J == 1 else 's'}; a two-level model needs at least two"
        )
    validate.check_level2(spec, data, codes, clusters)
    coder = _Coder(spec, data)
    first_row = np.full(J, -1)
    first_row[codes[::-1]] = np.arange(n)[::-1]
    cols_ = model_columns(spec, coder)
    X = cols_.X
    # Rank on the columns built from centred and scaled variables (bayesmix.scaling): a
    # shifted variable cannot fake a collinearity, and a near-duplicate column cannot hide.
    atom_names, atoms, fixed_factors, random_factors = cols_.atom_matrix()
    scaling = Scaling.from_arrays(atoms, y, fixed_factors, random_factors)
    X_std, _, y_std = scaling.standardize(atoms, y)
    validate.check_rank(X_std, cols_.fixed_names)
    validate.check_not_exact(X_std, y_std, cols_.fixed_names, spec.outcome)
    del X_std, y_std
    level1_cols = cols_.level1
    random_cols = cols_.random
    g_entries = [(mi, k, w[first_row]) for mi, k, w in cols_.g_entries]
    fixed_names, gamma_names, fixed_terms = (
        cols_.fixed_names, cols_.gamma_names, cols_.fixed_terms
    )
    level1_names, random_names, random_terms = (
        cols_.level1_names, cols_.random_names, cols_.random_terms
    )
    random_of_level1 = cols_.random_of_level1

    m = len(level1_cols)
    G = np.zeros((J, m, X.shape[1]))
    for mi, k, w in g_entries:
        G[:, mi, k] = w
    L1 = np.column_stack([c.values for c in level1_cols])
    Zq = np.column_stack([c.values for c in random_cols])
    validate.check_random_slopes(spec, Zq, random_names, random_terms, codes)
    q = Zq.shape[1]
    if n <= J * q:
        raise DataError(
            f"the number of observations ({n}) is not larger than the number of random effects "
            f"({J} {spec.cluster} x {q} terms = {J * q}); the random effects and the residual "
            "variance cannot both be estimated. Use fewer random terms."
        )
    rows = np.repeat(np.arange(n), q)
    cols = (codes[:, None] * q + np.arange(q)[None, :]).ravel()
    Z = sp.csr_array((Zq.ravel(), (rows, cols)), shape=(n, J * q))
    z_columns = {name: np.arange(J) * q + r for r, name in enumerate(random_names)}

    level2 = pd.DataFrame(index=pd.Index(clusters, name=spec.cluster))
    level2["n"] = np.bincount(codes, minlength=J)
    for var in spec.level2_variables:
        level2[var] = data[var].to_numpy()[first_row]

    return Design(
        spec=spec,
        y=y,
        X=X,
        Z=Z,
        Zq=Zq,
        L1=L1,
        G=G,
        random_of_level1=np.asarray(random_of_level1, dtype=int),
        cluster_index=codes.astype(np.int64),
        clusters=tuple(clusters),
        fixed_names=tuple(fixed_names),
        gamma_names=tuple(gamma_names),
        fixed_terms=tuple(fixed_terms),
        random_names=tuple(random_names),
        random_terms=tuple(random_terms),
        level1_names=tuple(level1_names),
        atoms=atoms,
        atom_names=atom_names,
        fixed_factors=fixed_factors,
        random_factors=random_factors,
        scaling=scaling,
        z_columns=z_columns,
        level2=level2,
        row_labels=data.index,
        data=data[list(spec.variables)].copy(),
        levels=dict(coder.levels),
    )
