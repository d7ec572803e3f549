"""Per-cluster cross-products in one pass: the sufficient statistics of a Gaussian 2-level model.

For cluster j with rows X_j (n_j × p), Z_j (n_j × q, the random terms' level-1 columns Zq) and
y_j, stack ``W_j = [X_j, Z_j, y_j]`` (n_j × d, d = p + q + 1) and keep ``M_j = W_jᵀ W_j``.
Every block the likelihoods and the profiled REML need is a slice of M:

    X_jᵀX_j = M[:, :p, :p]     X_jᵀZ_j = M[:, :p, p:p+q]    X_jᵀy_j = M[:, :p, -1]
    Z_jᵀZ_j = M[:, p:p+q, p:p+q]                            Z_jᵀy_j = M[:, p:p+q, -1]
    y_jᵀy_j = M[:, -1, -1]

The columns are first centred and scaled (:mod:`bayesmix.scaling`): M holds the cross-products
of ``W̃ = [X̃, Z̃, ỹ]``, so that no digits are lost to cancellation when a column is far from 0
(``Days + 100``, years, incomes); ``stats.scaling`` says how to map every estimate back, and
:meth:`ClusterStats.raw_M` gives the cross-products of the raw columns when they are wanted.

Computed with vectorised NumPy in row chunks (a sparse cluster-indicator product per chunk), so
memory is O(chunk · d² + J · d²) whatever n is.  :func:`stream_cluster_stats` computes the
same from a CSV or Parquet file larger than memory, chunk by chunk.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from bayesmix.design import Design
from bayesmix.errors import DataError
from bayesmix.scaling import Scaling
from bayesmix.spec.model import Spec


@dataclass(frozen=True)
class ClusterStats:
    """Cross-products per cluster.

    Attributes
    ----------
    n : ndarray of int, shape (J,)
        Rows per cluster n_j (with level-1 sampling weights: Σ_i w_i|j, floats).
    M : ndarray, shape (J, d, d)
        ``W̃_jᵀ W̃_j`` with ``W̃ = [X̃, Z̃, ỹ]``, the standardised columns of ``scaling``
        (with level-1 weights: ``Σ_i w_i|j W̃_iᵀW̃_i``).
    p, q : int
        Columns of X and random terms.
    scaling : Scaling
        How the columns were centred and scaled; the slices below are all on that scale.
    weight : ndarray, shape (J,), or None
        Level-2 sampling weights w_j: cluster j's log-likelihood counts w_j times
        (:mod:`bayesmix.weights`); None: 1.
    """

    n: np.ndarray
    M: np.ndarray
    p: int
    q: int
    scaling: Scaling
    weight: np.ndarray | None = None

    @property
    def w(self) -> np.ndarray:
        """The level-2 weights, ones when unweighted, shape (J,)."""
        return np.ones(self.J) if self.weight is None else self.weight

    @property
    def n_total(self) -> float:
        """Σ_j w_j n_j: the number of rows the (weighted) likelihood counts."""
        return float(np.sum(self.w * self.n))

    def raw_M(self) -> np.ndarray:
        """Cross-products of the raw columns ``[X, Zq, y]``, ``Aᵀ M A``, shape (J, d, d).

        For inspection and tests: on badly centred data these lose the digits the
        standardised M keeps.
        """
        a = self.scaling.full_matrix()
        return np.einsum("ba,jbc,cd->jad", a, self.M, a)

    def to_scaling(self, scaling: Scaling) -> ClusterStats:
        """The same statistics on another standardised scale (exact linear map).

        ``W̃₁ = W̃₀ B`` with ``B = A₀ A₁⁻¹``, so ``M₁ = Bᵀ M₀ B``; both scales being centred
        near the data, B is well conditioned.
        """
        if self.scaling.same_as(scaling):
            return self
        b = self.scaling.full_matrix() @ np.linalg.inv(scaling.full_matrix())
        M = np.einsum("ba,jbc,cd->jad", b, self.M, b)
        return ClusterStats(n=self.n, M=M, p=self.p, q=self.q, scaling=scaling,
                            weight=self.weight)

    @property
    def XX(self) -> np.ndarray:
        """X_jᵀX_j, shape (J, p, p)."""
        return self.M[:, : self.p, : self.p]

    @property
    def XZ(self) -> np.ndarray:
        """X_jᵀZ_j, shape (J, p, q)."""
        return self.M[:, : self.p, self.p : self.p + self.q]

    @property
    def ZZ(self) -> np.ndarray:
        """Z_jᵀZ_j, shape (J, q, q)."""
        return self.M[:, self.p : self.p + self.q, self.p : self.p + self.q]

    @property
    def Xy(self) -> np.ndarray:
        """X_jᵀy_j, shape (J, p)."""
        return self.M[:, : self.p, -1]

    @property
    def Zy(self) -> np.ndarray:
        """Z_jᵀy_j, shape (J, q)."""
        return self.M[:, self.p : self.p + self.q, -1]

    @property
    def yy(self) -> np.ndarray:
        """y_jᵀy_j, shape (J,)."""
        return self.M[:, -1, -1]

    @property
    def J(self) -> int:
        """Number of clusters."""
        return int(self.n.shape[0])


def cross_products(
    atoms: np.ndarray,
    y: np.ndarray,
    cluster_index: np.ndarray,
    J: int,
    *,
    scaling: Scaling,
    chunk_rows: int = 262_144,
    row_weights: np.ndarray | None = None,
    cluster_weights: np.ndarray | None = None,
) -> ClusterStats:
    """Per-cluster ``W̃ᵀW̃``, ``W̃ = [X̃, Z̃, ỹ]`` standardised by ``scaling``, in one pass.

    Parameters
    ----------
    atoms : ndarray, shape (n, a)
        The coded variable columns (``design.atoms``); X̃ and Z̃ are formed from them chunk
        by chunk (:meth:`bayesmix.scaling.Scaling.standardize`).
    y : ndarray, shape (n,)
    cluster_index : ndarray of int, shape (n,)
        Codes 0..J-1.
    J : int
        Number of clusters.
    scaling : Scaling
        Centres and scales (``design.scaling``: :mod:`bayesmix.scaling`).
    chunk_rows : int
        Rows per chunk; bounds the temporary memory at ``chunk_rows · d²`` floats.
    row_weights : ndarray, shape (n,), optional
        Level-1 weights w_i|j: ``M_j = Σ_i w_i|j W̃_iᵀW̃_i`` and ``n_j = Σ_i w_i|j``.
    cluster_weights : ndarray, shape (J,), optional
        Level-2 weights w_j, kept in :attr:`ClusterStats.weight`.

    Returns
    -------
    ClusterStats
    """
    n = y.shape[0]
    p, q = scaling.p, scaling.q
    d = p + q + 1
    upper = np.zeros((J, d * (d + 1) // 2))
    for start in range(0, n, chunk_rows):
        stop = min(start + chunk_rows, n)
        Xs, Zs, ys = scaling.standardize(atoms[start:stop], y[start:stop])
        W = np.concatenate([Xs, Zs, ys[:, None]], axis=1)
        if row_weights is not None:
            W = W * np.sqrt(row_weights[start:stop])[:, None]
        upper += _upper_sums(W, cluster_index[start:stop], J)
    counts = (np.bincount(cluster_index, minlength=J) if row_weights is None
              else np.bincount(cluster_index, row_weights, J))
    return ClusterStats(n=counts, M=_symmetric(upper, d), p=p, q=q, scaling=scaling,
                        weight=cluster_weights)


def _upper_sums(W: np.ndarray, index: np.ndarray, J: int) -> np.ndarray:
    """Per-unit sums of the upper triangle of w wᵀ over rows: shape (J, d(d+1)/2)."""
    rows_, cols_ = np.triu_indices(W.shape[1])
    C = sp.csr_array((np.ones(len(index)), (index, np.arange(len(index)))),
                     shape=(J, len(index)))
    return C @ (W[:, rows_] * W[:, cols_])


def _symmetric(upper: np.ndarray, d: int) -> np.ndarray:
    rows_, cols_ = np.triu_indices(d)
    M = np.empty((upper.shape[0], d, d))
    M[:, rows_, cols_] = upper
    M[:, cols_, rows_] = upper
    return M


def grouped_gram(W: np.ndarray, index: np.ndarray, J: int, *,
                 chunk_rows: int = 262_144) -> np.ndarray:
    """``W_jᵀW_j`` for every unit j of ``index``: shape (J, d, d), in row chunks.

    Only the upper triangle is summed (d(d+1)/2 products per row); M is symmetric.
    """
    d = W.shape[1]
    upper = np.zeros((J, d * (d + 1) // 2))
    for start in range(0, W.shape[0], chunk_rows):
        stop = min(start + chunk_rows, W.shape[0])
        upper += _upper_sums(W[start:stop], index[start:stop], J)
    return _symmetric(upper, d)


def cluster_stats(
    design: Design, *, scaling: Scaling | None = None, chunk_rows: int = 262_144
) -> ClusterStats:
    """The per-cluster cross-products of a design (see :func:`cross_products`).

    ``scaling`` defaults to the design's own column means and SDs.  Needs one grouping
    factor (several: :mod:`bayesmix.nested` for nested ones).
    """
    design.require_single_factor("the per-cluster statistics")
    return cross_products(
        design.atoms, design.y, design.cluster_index, design.J,
        scaling=scaling if scaling is not None else design.scaling,
        chunk_rows=chunk_rows,
        row_weights=design.weights1,
        cluster_weights=design.weights2,
    )


# --------------------------------------------------------------------------------------------
# Streaming from a file larger than memory
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Levels:
    """What must be known before a file can be coded chunk by chunk.

    Attributes
    ----------
    clusters : tuple of str
        Cluster labels in the order :func:`bayesmix.build_design` gives them (sorted like
        ``pd.factorize(sort=True)``; the labels are the values as text).
    categorical : dict of str to tuple of str
        Levels of every categorical variable the model uses, reference level first (as
        :func:`bayesmix.build_design` codes them: the spec's reference level, else the first in
        sorted order).
    fitted : dict
        The constants of the transformed variables over the whole file (group and grand
        means, scale(), poly(); :mod:`bayesmix.stream_transforms`), as ``Design.fitted``.
    """

    clusters: tuple[str, ...]
    categorical: dict[str, tuple[str, ...]]
    fitted: dict = field(default_factory=dict)


def _iter_chunks(path: str | Path, columns: list[str], chunk_rows: int) -> Iterator[pd.DataFrame]:
    """DataFrames of at most ``chunk_rows`` rows of ``columns``, from a CSV or Parquet file."""
    path = Path(path)
    if path.suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq  # lazy: pyarrow is only needed for Parquet

        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(batch_size=chunk_rows, columns=columns):
            yield batch.to_pandas()
    else:
        yield from pd.read_csv(path, usecols=columns, chunksize=chunk_rows)


def _sorted_unique(values: set) -> list:
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=str)


def scan_levels(
    path: str | Path, spec: Spec, *, chunk_rows: int = 1_000_000
) -> Levels:
    """First pass over a file: the cluster labels and the levels of categorical variables.

    Reads only the cluster column and the categorical columns, chunk by chunk; memory grows
    with the number of distinct values, not with the rows.  A column is categorical when the
    spec lists it under ``categorical`` or its first chunk is not numeric (text or boolean),
    as in :func:`bayesmix.build_design`.

    Parameters
    ----------
    path : str or Path
        CSV, or Parquet (``.parquet``; needs pyarrow).
    spec : Spec
    chunk_rows : int

    Returns
    -------
    Levels
    """
    from bayesmix.design.coding import POLY_CONTRASTS, _levels, contrasts_key
    from bayesmix.design.validate import is_categorical
    from bayesmix.stream_transforms import TransformSums

    _streamable(spec)
    variables = [v for v in spec.variables if v not in (spec.outcome, spec.cluster)]
    plain = [v for v in variables if v not in spec.transforms]
    # C(x): the levels of its column, under the variable's name
    coded = {v: t.expr.column for v, t in spec.transforms.items() if t.categorical}
    columns = list(spec.columns)  # the outcome too: its missing rows are not in the sums
    sums = TransformSums(spec)
    cluster_values: set = set()
    cat_values: dict[str, set] = {}
    dtypes: dict[str, pd.CategoricalDtype] = {}  # category columns (Parquet): their order
    checked = False
    for chunk in _iter_chunks(path, columns, chunk_rows):
        if not checked:
            cat_values = {v: set() for v in plain if is_categorical(spec, chunk[v])}
            cat_values.update({v: set() for v in coded})
            dtypes = {v: chunk[v].dtype for v in cat_values if v not in coded
                      and isinstance(chunk[v].dtype, pd.CategoricalDtype)}
            checked = True
        cluster_values.update(pd.unique(chunk[spec.cluster].dropna()))
        for var, seen in cat_values.items():
            seen.update(pd.unique(chunk[coded.get(var, var)].dropna()))
        if sums.nodes:
            sums.add(chunk.dropna())
    clusters = tuple(str(v) for v in _sorted_unique(cluster_values))
    if len(set(clusters)) != len(clusters):
        raise DataError(
            f"cluster labels of {spec.cluster!r} are not distinct as text (e.g. 1 and '1')"
        )
    references = {v: t.expr.reference for v, t in spec.transforms.items() if t.categorical}
    categorical, fitted = {}, sums.fitted(clusters)
    for var, seen in cat_values.items():
        values = pd.Series(_sorted_unique(seen))
        if var in dtypes:  # a category column keeps its categories' order, as build_design
            values = values.astype(dtypes[var])
        ref = references.get(var) or spec.reference_levels.get(var)
        categorical[var] = tuple(_levels(values, ref, var))
        if var in dtypes and dtypes[var].ordered and ref is None:  # R's contr.poly
            fitted[contrasts_key(var)] = POLY_CONTRASTS
    return Levels(clusters, categorical, fitted)


def _streamable(spec: Spec) -> None:
    """Refuse what the streamed statistics do not carry (they would be silently dropped)."""
    what = ("sampling weights" if spec.weights is not None else
            "sigma_by" if spec.sigma_by is not None else None)
    if what is not None:
        raise DataError(f"statistics streamed from a file do not carry {what} yet; read the "
                        "file into a DataFrame and use build_design")


def _chunk_arrays(
    spec: Spec, chunk: pd.DataFrame, levels: Levels, cluster_pos: pd.Index
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple, tuple]:
    """Atoms, y, cluster codes and the columns' atoms of one chunk, coded as build_design."""
    from bayesmix.design.coding import Coder as _Coder
    from bayesmix.design.coding import model_columns

    # The design's own coder, with the levels fixed: a level not in `levels` is an error.
    cols = model_columns(spec, _Coder(spec, chunk, levels=dict(levels.categorical),
                                      fitted=levels.fitted))
    codes = cluster_pos.get_indexer(chunk[spec.cluster].astype(str))
    if (codes < 0).any():
        bad = chunk[spec.cluster][codes < 0].iloc[0]
        raise DataError(f"cluster {bad!r} is not among the cluster labels given in `levels`")
    if spec.outcome in spec.transforms:  # log(y) ~ ...: stateless (stream_transforms)
        from bayesmix.design.derive import Deriver

        y = Deriver(spec, chunk).values(spec.transforms[spec.outcome])
    else:
        y = chunk[spec.outcome].to_numpy(dtype=float)
    _, atoms, x_factors, z_factors = cols.atom_matrix()
    return atoms, y, codes, x_factors, z_factors


def _stateful_keys(spec: Spec) -> list[str]:
    from bayesmix.spec.transforms import Poly, to_text
    from bayesmix.stream_transforms import stateful_nodes

    return [to_text(n) for n in stateful_nodes(spec) if not (isinstance(n, Poly) and n.raw)]


def stream_cluster_stats(
    path: str | Path,
    spec: Spec,
    *,
    levels: Levels | None = None,
    scaling: Scaling | None = None,
    chunk_rows: int = 262_144,
    missing: Literal["error", "drop"] = "error",
) -> ClusterStats:
    """Per-cluster cross-products of a CSV or Parquet file, in chunks, in constant memory.

    The result equals ``cluster_stats(build_design(spec, pd.read_csv(path)))`` (to rounding,
    once both are on one scale: ``streamed.to_scaling(in_memory.scaling)``),
    without ever holding the file: pandas ``read_csv(chunksize=...)`` or pyarrow's
    ``ParquetFile.iter_batches`` give ``chunk_rows`` rows at a time, each is coded like
    :func:`bayesmix.build_design` and folded into M with :func:`cross_products`.  Memory is
    O(chunk_rows · d² + J · d²).

    Categorical levels and cluster labels must be known up front, because a chunk may not
    hold all of them: pass ``levels`` (e.g. from a previous run or a data dictionary), or let a
    first pass (:func:`scan_levels`, reading only those columns) find them.

    Unlike :func:`bayesmix.build_design`, this does not check that level-2 variables are
    constant within clusters or that X has full column rank (both need the whole data); check
    them on a sample, or fit the design of a sample first.

    Parameters
    ----------
    path : str or Path
        CSV, or Parquet (``.parquet``; pyarrow is imported only then).
    spec : Spec
    levels : Levels, optional
        Cluster labels and categorical levels; found by :func:`scan_levels` when not given.
    scaling : Scaling, optional
        Centres and scales of the columns; by default the means and spreads of the first
        chunk (any centre near the data keeps the sums free of cancellation, and the
        estimates do not depend on which is used).
    chunk_rows : int
        Rows per chunk.
    missing : {"error", "drop"}
        Rows with a missing value in a used column raise (default) or are dropped (with a
        warning that counts them, once, at the end).

    Returns
    -------
    ClusterStats
        With ``J = len(levels.clusters)``, clusters in ``levels.clusters`` order.
    """
    if missing not in ("error", "drop"):
        raise DataError(f"missing must be 'error' or 'drop', not {missing!r}")
    if levels is None:
        levels = scan_levels(path, spec, chunk_rows=max(chunk_rows, 1_000_000))
    J = len(levels.clusters)
    cluster_pos = pd.Index(levels.clusters)
    _streamable(spec)
    missing_fits = [k for k in _stateful_keys(spec) if k not in levels.fitted]
    if missing_fits:
        raise DataError(f"`levels` lacks the constants of {missing_fits[0]} (a mean, scale or "
                        "poly over the whole file); let scan_levels(path, spec) find them")
    columns = list(dict.fromkeys(spec.columns))
    M: np.ndarray | None = None
    counts = np.zeros(J, dtype=np.int64)
    dropped = 0
    p = q = 0
    seen_rows = 0
    for chunk in _iter_chunks(path, columns, chunk_rows):
        na = chunk.isna().any(axis=1).to_numpy()
        if na.any():
            if missing == "error":
                col = chunk.columns[chunk.isna().any()].tolist()
                first = seen_rows + int(np.flatnonzero(na)[0])
                raise DataError(
                    f"missing values in {', '.join(repr(c) for c in col)} (first at data row "
                    f"{first}); pass missing='drop' to drop those rows"
                )
            dropped += int(na.sum())
            chunk = chunk.loc[~na]
        seen_rows += len(na)
        if len(chunk) == 0:
            continue
        atoms, y, codes, x_factors, z_factors = _chunk_arrays(spec, chunk, levels, cluster_pos)
        if scaling is None:
            scaling = Scaling.from_arrays(atoms, y, x_factors, z_factors)
        part = cross_products(atoms, y, codes, J, scaling=scaling, chunk_rows=chunk_rows)
        p, q = part.p, part.q
        M = part.M if M is None else M + part.M
        counts += part.n
    if M is None or scaling is None:
        raise DataError(f"{path} holds no usable rows")
    if dropped:
        warnings.warn(
            f"dropped {dropped} of {seen_rows} rows with missing values", UserWarning,
            stacklevel=2,
        )
    return ClusterStats(n=counts, M=M, p=p, q=q, scaling=scaling)
