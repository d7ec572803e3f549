"""build_design(): y, X (with cross-level interactions), sparse Z and the level-2 table."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from bayesmix.design import validate
from bayesmix.design.coding import Coder, _levels, model_columns
from bayesmix.design.derive import Deriver
from bayesmix.design.outcome import family_arrays
from bayesmix.design.sampling_weights import survey_weights
from bayesmix.design.terms import (
    FactorEffects,
    Grouping,
    RandomBlock,
    make_grouping,
    with_parents,
    with_scale,
)
from bayesmix.errors import DataError
from bayesmix.families import Family, link_centre
from bayesmix.notation import (
    DIM_CLUSTER,
    DIM_FIXED,
    DIM_LEVEL1,
    DIM_RANDOM,
    DIM_RANDOM2,
)
from bayesmix.scaling import Scaling
from bayesmix.spec.model import Spec


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
    fitted : dict
        The constants of the transformed variables, computed on these rows (group and grand
        means, scale(), poly() recurrence; :mod:`bayesmix.design.derive`), to transform new
        data the same way.
    weights1 : ndarray, shape (n,), or None
        The scaled level-1 sampling weights w*_i|j (:mod:`bayesmix.weights`); None: unweighted.
    weights2 : ndarray, shape (J,), or None
        The scaled level-2 sampling weights w*_j per cluster; None: unweighted.
    sigma_index : ndarray of int, shape (n,), or None
        With ``spec.sigma_by``: the residual-SD group s of each row (codes into
        ``sigma_levels``, sorted like R's factor levels); None: one σ.
    sigma_levels : tuple of str
        The levels of ``spec.sigma_by``.
    trials : ndarray, shape (n,), or None
        Number of trials n_i of a binomial outcome.
    offset : ndarray, shape (n,), or None
        log t_i of a Poisson exposure t_i (η = Xβ + Zu + offset).
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
    fitted: dict = field(default_factory=dict, repr=False)
    weights1: np.ndarray | None = field(default=None, repr=False)
    weights2: np.ndarray | None = field(default=None, repr=False)
    sigma_index: np.ndarray | None = field(default=None, repr=False)
    sigma_levels: tuple[str, ...] = field(default=(), repr=False)
    groupings: tuple[Grouping, ...] = field(default=(), repr=False)
    effects: tuple[FactorEffects, ...] = field(default=(), repr=False)
    trials: np.ndarray | None = field(default=None, repr=False)
    offset: np.ndarray | None = field(default=None, repr=False)

    @property
    def family(self) -> Family:
        """The Spec's family (:mod:`bayesmix.families`)."""
        return self.spec.family

    def __repr__(self) -> str:
        from bayesmix.reprs import design_text

        return design_text(self)

    def _repr_html_(self) -> str:
        from bayesmix.reprs import design_html

        return design_html(self)

    @property
    def single_factor(self) -> bool:
        """Whether every random effect varies over one grouping factor (``spec.cluster``)."""
        return len(self.effects) <= 1

    def require_single_factor(self, what: str) -> None:
        """Raise a DataError naming the factors when ``what`` needs one grouping factor."""
        if not self.single_factor:
            raise DataError(
                f"{what} needs one grouping factor; this model has "
                f"{len(self.effects)} ({', '.join(fe.name for fe in self.effects)}). "
                "Use a form that handles several (likelihood='rows' for sampling, "
                "bm.fit_reml for REML)"
            )

    def factor(self, name: str) -> FactorEffects:
        """The random effects over one grouping factor, by name."""
        for fe in self.effects:
            if fe.name == name:
                return fe
        raise KeyError(f"no grouping factor {name!r}; the design has "
                       f"{', '.join(fe.name for fe in self.effects)}")

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
    if spec.outcome in spec.transforms:  # log(y) ~ ...: y's transform is the outcome column
        transform = spec.transforms[spec.outcome]
        if transform.categorical or transform.width > 1:
            raise DataError(f"the outcome {spec.outcome} must be one numeric column")
        data = data.assign(**{spec.outcome: Deriver(spec, data).values(transform)})
    y = validate.check_outcome(spec, data)
    trials, log_exposure = family_arrays(spec, data, y)
    n = len(y)
    groupings = with_parents([make_grouping(_columns_of(spec, g), data)
                              for g in spec.groupings])
    for g in groupings:
        if g.J < 2:
            raise DataError(
                f"the grouping factor {g.name!r} has {g.J} unit{'' if g.J == 1 else 's'}; a "
                "random effect needs at least two"
            )
    primary = next(g for g in groupings if g.name == spec.cluster)
    codes, clusters, J = primary.index, list(primary.levels), primary.J
    weights1, weights2 = _weights(spec, data, codes, tuple(clusters))
    sigma_index, sigma_levels = _sigma_groups(spec, data)
    coder = Coder(spec, data, groupings=groupings)
    validate.check_level2(spec, coder.raw, codes, clusters)
    first_row = np.full(J, -1)
    first_row[codes[::-1]] = np.arange(n)[::-1]
    cols_ = model_columns(spec, coder)
    X = cols_.X
    # Rank on the columns built from centred and scaled variables (bayesmix.scaling): a
    # shifted variable cannot fake a collinearity, and a near-duplicate column cannot hide.
    atom_names, atoms, fixed_factors, random_factors = cols_.atom_matrix()
    single = spec.single_factor
    # Centring a random slope mixes it with the intercept (T̃ = A_z T A_zᵀ): only where one
    # unstructured block holds both; a diagonal T must stay diagonal.
    z_centred = single and len(spec.random) == 1 and spec.random[0].correlated
    scaling = Scaling.from_arrays(atoms, y, fixed_factors, random_factors, z_centred=z_centred)
    if not spec.family.is_gaussian:
        # The link scale: η = m + η̃ with m = g(ȳ) and no rescaling (families.link_centre).
        scaling = replace(scaling, y_center=link_centre(spec.family, y, trials, log_exposure),
                          y_scale=1.0)
    X_std, _, y_std = scaling.standardize(atoms, y)
    validate.check_rank(X_std, cols_.fixed_names)
    if spec.family.is_gaussian:
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
    effects = tuple(with_scale(fe, atoms, y, scaling)
                    for fe in _factor_effects(cols_, groupings, atom_names))
    for fe in effects:
        validate.check_random_slopes(spec, fe.Zq, fe.labels, fe.terms, fe.grouping.index,
                                     factor=fe.name)
        if n <= fe.J * fe.q and spec.family.is_gaussian:
            raise DataError(
                f"the number of observations ({n}) is not larger than the number of random "
                f"effects over {fe.name} ({fe.J} units x {fe.q} terms = {fe.J * fe.q}); the "
                "random effects and the residual variance cannot both be estimated. Use fewer "
                "random terms."
            )
    if single:
        q = Zq.shape[1]
        Z = effects[0].Z
        z_columns = {name: np.arange(J) * q + r for r, name in enumerate(random_names)}
    else:
        parts = [fe.Z for fe in effects]
        Z = sp.hstack(parts, format="csr") if parts else sp.csr_array((n, 0))
        z_columns, offset = {}, 0
        for fe in effects:
            for r, label in enumerate(fe.labels):
                z_columns[label] = offset + np.arange(fe.J) * fe.q + r
            offset += fe.J * fe.q

    level2 = pd.DataFrame(index=pd.Index(clusters, name=spec.cluster))
    level2["n"] = np.bincount(codes, minlength=J)
    for var in spec.level2_variables:
        raw = np.asarray(coder.raw(var))
        if raw.ndim == 2:  # poly(W, k): one column per degree, named as in X
            for d in range(raw.shape[1]):
                level2[f"{var}{d + 1}"] = raw[first_row, d]
        else:
            level2[var] = raw[first_row]

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
        data=data[list(spec.columns)].copy(),
        levels=dict(coder.levels),
        fitted=dict(coder.fitted),
        weights1=weights1,
        weights2=weights2,
        sigma_index=sigma_index,
        sigma_levels=sigma_levels,
        groupings=groupings,
        effects=effects,
        trials=trials,
        offset=log_exposure,
    )


def _weights(spec: Spec, data: pd.DataFrame, codes: np.ndarray,
             clusters: tuple[str, ...]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The scaled sampling weights of the rows and clusters, or (None, None)."""
    if spec.weights is None:
        return None, None
    if not spec.single_factor:
        raise DataError(
            "sampling weights are built for models with one grouping factor (two levels); "
            f"this model has {', '.join(spec.groupings)}")
    if not spec.family.is_gaussian:
        raise DataError(
            f"sampling weights are built for the Gaussian family; a {spec.family.name} model "
            "cannot take them yet")
    w1, w2 = survey_weights(spec.weights, data, codes, clusters, spec.cluster)
    return (w1 if spec.weights.level1 is not None else None,
            w2 if spec.weights.level2 is not None else None)


def _sigma_groups(spec: Spec, data: pd.DataFrame) -> tuple[np.ndarray | None, tuple[str, ...]]:
    """The residual-SD group of every row (``spec.sigma_by``) and the groups' labels."""
    if spec.sigma_by is None:
        return None, ()
    if not spec.single_factor:
        raise DataError(
            "sigma_by is built for models with one grouping factor (two levels); this model "
            f"has {', '.join(spec.groupings)}")
    text = data[spec.sigma_by].astype(str)
    levels = tuple(_levels(data[spec.sigma_by], None, spec.sigma_by))
    return pd.Index(levels).get_indexer(text).astype(np.int64), levels


def _columns_of(spec: Spec, grouping: str) -> tuple[str, ...]:
    return next(t.factor for t in spec.random if t.grouping == grouping)


def _factor_effects(cols_, groupings, atom_names) -> tuple[FactorEffects, ...]:
    """Typed random-effect terms per grouping factor, in the order the spec names them."""
    by_name = {g.name: g for g in groupings}
    pos = {a: i for i, a in enumerate(atom_names)}
    out = []
    for fc in cols_.factors:
        blocks = tuple(
            RandomBlock(fc.grouping, names, terms, columns, structure)
            for names, terms, columns, structure in fc.blocks
        )
        n = cols_.X.shape[0]
        Zq = (np.column_stack([c.values for c in fc.columns]) if fc.columns
              else np.zeros((n, 0)))
        factors = tuple(tuple(pos[a] for a in c.factors) for c in fc.columns)
        out.append(FactorEffects(by_name[fc.grouping], blocks, Zq, factors))
    return tuple(out)
