"""predict(): posterior predictions for new rows, in clusters seen or never seen.

Rows are predicted in chunks, so the working memory stays near :data:`CHUNK_BYTES` whatever
the number of rows; only the kept draws (``keep_draws``) grow with it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from bayesmix import notation as nt
from bayesmix.design import validate
from bayesmix.design.coding import Coder as _Coder
from bayesmix.design.coding import model_columns
from bayesmix.errors import DataError
from bayesmix.fit_result import Fit

CHUNK_BYTES = 128 * 2**20
"""Working memory of one chunk of rows (about 8 bytes × chains × draws × (4 + q) per row)."""
MAX_DRAWS_BYTES = 2**30
"""With ``keep_draws=None``, the draws are kept when they take at most this much (1 GiB)."""
BLOCK_ROWS = 256
"""Rows that share one random stream for ε: the draws do not depend on the chunk size."""


class Prediction:
    """Posterior predictions for new rows: the draws, or only their per-row summary.

    Attributes
    ----------
    draws : xarray.DataArray, dims (chain, draw, row)
        ``X_new β + Z_new u`` per posterior draw (plus ε ~ N(0, σ²) when ``kind="y"``); an
        error when :func:`predict` kept only the summary.
    kind : {"mean", "y"}
        Expected value or a new observation.
    new_clusters : tuple of str
        Clusters of the new rows that the fit never saw; their U is drawn from N(0, T).
    has_draws : bool
        Whether the draws were kept.
    """

    def __init__(
        self,
        draws: xr.DataArray | None,
        kind: str,
        new_clusters: tuple[str, ...],
        *,
        table: pd.DataFrame | None = None,
        ci_prob: float = 0.95,
        nbytes: int = 0,
    ) -> None:
        self._draws = draws
        self.kind = kind
        self.new_clusters = new_clusters
        self._table = table
        self._ci_prob = ci_prob
        self._nbytes = nbytes

    @property
    def has_draws(self) -> bool:
        """Whether the draws were kept (otherwise only :meth:`summary` is there)."""
        return self._draws is not None

    @property
    def draws(self) -> xr.DataArray:
        """The draws, dims (chain, draw, row); DataError when only the summary was kept."""
        if self._draws is None:
            raise DataError(
                f"this prediction kept only its summary (the draws would take "
                f"{_size(self._nbytes)}); call predict(..., keep_draws=True) for them"
            )
        return self._draws

    def __repr__(self) -> str:
        from bayesmix.reprs import prediction_text

        return prediction_text(self)

    def _repr_html_(self) -> str:
        from bayesmix.reprs import prediction_html

        return prediction_html(self)

    def summary(self, ci_prob: float | None = None) -> pd.DataFrame:
        """Mean, sd and equal-tailed interval per row (default: 95%, or predict's ci_prob)."""
        prob = self._ci_prob if ci_prob is None else ci_prob
        if self._draws is None:
            if self._table is not None and prob == self._ci_prob:
                return self._table.copy()
            raise DataError(
                f"this prediction kept only its {100 * self._ci_prob:g}% summary; call "
                f"predict(..., ci_prob={prob}) or predict(..., keep_draws=True)"
            )
        da = self._draws.transpose("chain", "draw", nt.DIM_ROW)
        values = da.to_numpy()
        c, d, n = values.shape
        step = max(1, CHUNK_BYTES // (16 * c * d))
        parts = [_summarize(values[:, :, a:a + step].reshape(c * d, -1), prob)
                 for a in range(0, n, step)]
        return _table(parts, prob, da[nt.DIM_ROW].to_numpy())


def _summarize(flat: np.ndarray, ci_prob: float) -> np.ndarray:
    """Rows of (mean, sd, lower, upper) of the draws ``flat`` (samples, rows)."""
    lo, hi = np.quantile(flat, [(1 - ci_prob) / 2, (1 + ci_prob) / 2], axis=0)
    return np.column_stack([flat.mean(axis=0), flat.std(axis=0, ddof=1), lo, hi])


def _table(parts: list[np.ndarray], ci_prob: float, index) -> pd.DataFrame:
    pct = f"{100 * ci_prob:g}%"
    values = np.concatenate(parts) if parts else np.zeros((0, 4))
    return pd.DataFrame(values, index=index,
                        columns=["mean", "sd", f"lower {pct}", f"upper {pct}"])


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**30:.1f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.0f} MiB"


def predict(
    fit: Fit,
    new_data: pd.DataFrame,
    *,
    kind: str = "mean",
    scale: str = "response",
    random_seed: int | None = None,
    keep_draws: bool | None = None,
    ci_prob: float = 0.95,
    chunk_rows: int | None = None,
) -> Prediction:
    """Predict new rows from the posterior, coding them exactly as the fitted design.

    For a row in cluster j seen in the fit, ``μ = x β + z U_j`` uses the posterior draws of
    U_j; for a cluster never seen, U_j is drawn from N(0, T) for every posterior draw (as
    lme4's ``allow.new.levels`` and brms's ``sample_new_levels = "gaussian"``).

    Memory: the rows are computed in chunks of about :data:`CHUNK_BYTES` (128 MiB) of working
    memory.  The kept draws take 8 bytes × chains × draws × rows (4 chains × 1,000 draws ×
    100,000 rows: 3.2 GB); the summary takes 32 bytes per row.

    Parameters
    ----------
    fit : Fit
    new_data : DataFrame
        The predictors and the cluster column (the outcome is not needed).
    kind : {"mean", "y"}
        The expected value, or a new observation (adds ε ~ N(0, σ²); for another family a
        draw from it: Bernoulli 0/1, binomial counts out of the ``trials`` column of
        ``new_data``, Poisson counts).
    scale : {"response", "link"}
        For a non-Gaussian family and ``kind="mean"``: μ = g⁻¹(η) (the probability p of a
        Bernoulli or binomial trial, as lme4's ``predict(type = "response")``; the expected
        count t·λ of a Poisson row, its exposure included), or η itself (the link scale,
        offset included).  The Gaussian family has one scale.
    random_seed : int, optional
        For the draws of new clusters' U and of ε (the same seed gives the same draws
        whatever ``chunk_rows``).
    keep_draws : bool, optional
        Keep every draw (``prediction.draws``), or only the per-row summary.  None (default):
        keep them when they take at most :data:`MAX_DRAWS_BYTES` (1 GiB), otherwise keep the
        summary and warn.
    ci_prob : float
        Interval of the summary computed while predicting (when the draws are not kept).
    chunk_rows : int, optional
        Rows per chunk; by default as many as fit in :data:`CHUNK_BYTES`.

    Returns
    -------
    Prediction
    """
    if kind not in ("mean", "y"):
        raise DataError(f"kind must be 'mean' or 'y', not {kind!r}")
    if scale not in ("response", "link"):
        raise DataError(f"scale must be 'response' or 'link', not {scale!r}")
    family = fit.spec.family
    if kind == "y" and scale == "link" and not family.is_gaussian:
        raise DataError("kind='y' draws outcomes, which live on the response scale; use "
                        "scale='response' (or kind='mean' for η)")
    if keep_draws not in (None, True, False):
        raise DataError(f"keep_draws must be True, False or None, not {keep_draws!r}")
    if not (isinstance(ci_prob, (int, float)) and 0 < ci_prob < 1):
        raise DataError(f"ci_prob must be a number in (0, 1), not {ci_prob!r}")
    if chunk_rows is not None and (isinstance(chunk_rows, bool) or
                                   not isinstance(chunk_rows, (int, np.integer)) or chunk_rows < 1):
        raise DataError(f"chunk_rows must be a whole number of at least 1, not {chunk_rows!r}")
    spec, design = fit.spec, fit.design
    needed = [v for v in spec.columns if v != spec.outcome
              and (v != spec.trials or kind == "y")]
    missing_cols = [v for v in needed if v not in new_data.columns]
    if missing_cols:
        raise DataError(
            f"new_data lacks the column {missing_cols[0]!r}; prediction needs "
            f"{', '.join(repr(v) for v in needed)}"
        )
    na = new_data[needed].isna().any(axis=1)
    if na.any():
        raise DataError(
            f"new_data has missing values in {int(na.sum())} rows (first: "
            f"{validate._show(new_data.index[na.to_numpy()])}); fill or drop them first"
        )
    cols = model_columns(spec, _Coder(spec, new_data, levels=design.levels,
                                      fitted=design.fitted))
    X = cols.X
    post = fit.posterior
    beta = post[nt.BETA].transpose("chain", "draw", nt.DIM_FIXED).to_numpy()
    sigma = (post[nt.SIGMA].transpose("chain", "draw", ...).to_numpy()
             if family.is_gaussian else None)
    if sigma is not None and sigma.ndim == 3:  # sigma_by: each new row's group's σ_s
        sigma = sigma[..., _sigma_groups(design, new_data)]
    c, d = beta.shape[:2]
    offset = (np.log(new_data[spec.exposure].to_numpy(dtype=float))
              if spec.exposure is not None else None)
    trials = (new_data[spec.trials].to_numpy(dtype=float)
              if spec.trials is not None and kind == "y" else None)
    n = len(new_data)
    u_seq, e_seq = np.random.SeedSequence(random_seed).spawn(2)
    factors = _factor_draws(fit, new_data, cols, u_seq)
    new = tuple(label for f in factors for label in f.new)
    q = sum(f.Zq.shape[1] for f in factors)
    nbytes = 8 * c * d * n
    keep = nbytes <= MAX_DRAWS_BYTES if keep_draws is None else keep_draws
    if keep_draws is None and not keep:
        warnings.warn(
            f"predict: the draws for {n} rows would take {_size(nbytes)}; kept only the "
            "summary (pass keep_draws=True for the draws, keep_draws=False to silence this)",
            UserWarning, stacklevel=2,
        )
    e_seqs = e_seq.spawn(-(-n // BLOCK_ROWS)) if kind == "y" else []
    step = chunk_rows or max(BLOCK_ROWS, CHUNK_BYTES // (8 * c * d * (4 + q)) // BLOCK_ROWS
                             * BLOCK_ROWS)
    out = np.empty((c, d, n)) if keep else None
    parts = []
    for a in range(0, n, step):
        b = min(n, a + step)
        mu = np.einsum("cdp,np->cdn", beta, X[a:b])
        for f in factors:
            mu += f.contribution(a, b, c, d)
        if offset is not None:
            mu += offset[a:b]
        if not family.is_gaussian and scale == "response":
            mu = family.linkinv(mu)
        if kind == "y" and sigma is not None:
            sd = sigma[..., None] if sigma.ndim == 2 else sigma[..., a:b]
            mu += sd * _noise(e_seqs, a, b, c, d)
        elif kind == "y":
            mu = _family_draws(family, mu, None if trials is None else trials[a:b],
                               _noise(e_seqs, a, b, c, d))
        if out is not None:
            out[:, :, a:b] = mu
        else:
            parts.append(_summarize(mu.reshape(c * d, -1), ci_prob))
    rows = np.asarray(new_data.index)
    if out is None:
        return Prediction(None, kind, new, table=_table(parts, ci_prob, rows), ci_prob=ci_prob,
                          nbytes=nbytes)
    da = xr.DataArray(out, dims=("chain", "draw", nt.DIM_ROW), coords={nt.DIM_ROW: rows},
                      name=f"prediction_{kind}")
    return Prediction(da, kind, new, ci_prob=ci_prob, nbytes=nbytes)


@dataclass(frozen=True)
class _FactorDraws:
    """One grouping factor's part of the prediction: Σ_r Zq[:, r] u[unit, r] per draw.

    ``index`` codes the new rows' units: 0..J-1 for units seen in the fit, J + k for the
    k-th unseen unit, whose effects are drawn from N(0, T) per draw (``chol`` (c, d, q, q))
    with its own random stream.
    """

    index: np.ndarray
    J: int
    Zq: np.ndarray
    u: np.ndarray
    chol: np.ndarray
    new: tuple[str, ...]
    seqs: list

    def contribution(self, a: int, b: int, c: int, d: int) -> np.ndarray:
        q = self.Zq.shape[1]
        idx = self.index[a:b]
        seen = idx < self.J
        total = np.zeros((c, d, b - a))
        if not seen.all():
            here = np.unique(idx[~seen]) - self.J
            z = np.stack([np.random.default_rng(self.seqs[k]).standard_normal((c, d, q))
                          for k in here], axis=2)
            u_new = np.einsum("cdab,cdkb->cdka", self.chol, z)
            pos = np.searchsorted(here, idx[~seen] - self.J)
        for r in range(q):
            ur = np.empty((c, d, b - a))
            ur[:, :, seen] = self.u[:, :, idx[seen], r]
            if not seen.all():
                ur[:, :, ~seen] = u_new[:, :, pos, r]
            total += ur * self.Zq[a:b, r]
        return total


def _unit_labels(data: pd.DataFrame, columns: tuple[str, ...]) -> np.ndarray:
    """Unit labels as the design writes them (``"A:a"`` for a combination of columns)."""
    parts = [data[c].astype(str).to_numpy(dtype=object) for c in columns]
    out = parts[0]
    for part in parts[1:]:
        out = np.char.add(np.char.add(out.astype(str), ":"), part.astype(str))
    return np.asarray(out, dtype=object)


def _sigma_groups(design, new_data: pd.DataFrame) -> np.ndarray:
    """The residual-SD group (``sigma_by``) of each new row, as codes into the fitted ones."""
    column = design.spec.sigma_by
    if column not in new_data.columns:
        raise DataError(f"new_data lacks the column {column!r}: kind='y' draws each row's "
                        f"residual with the SD of its {column}")
    codes = pd.Index(design.sigma_levels).get_indexer(new_data[column].astype(str))
    if (codes < 0).any():
        unseen = sorted(set(new_data[column].astype(str)) - set(design.sigma_levels))
        raise DataError(f"{column!r} takes values the fit has no residual SD for: "
                        f"{validate._show(unseen)}; its groups are "
                        f"{validate._show(design.sigma_levels)}")
    return codes


def _codes(labels: np.ndarray, levels: tuple[str, ...]) -> tuple[np.ndarray, tuple[str, ...]]:
    index = pd.Index(levels).get_indexer(labels)
    unseen = index < 0
    new_codes, new_labels = pd.factorize(labels[unseen])  # in order of first appearance
    index[unseen] = len(levels) + new_codes
    return index, tuple(str(v) for v in new_labels)


def _factor_draws(fit: Fit, new_data: pd.DataFrame, cols, u_seq) -> list[_FactorDraws]:
    """Every grouping factor's codes, columns and draws (one factor: ``u`` and ``chol_u``)."""
    spec, design, post = fit.spec, fit.design, fit.posterior
    if design.single_factor:
        labels = _unit_labels(new_data, design.groupings[0].columns)
        validate.check_cluster_labels(labels, design.clusters, spec.cluster)  # '308.0'
        index, new = _codes(labels, design.clusters)
        u = post[nt.U].transpose("chain", "draw", nt.DIM_CLUSTER, nt.DIM_RANDOM).to_numpy()
        chol = post[nt.CHOL_U].transpose("chain", "draw", nt.DIM_RANDOM,
                                         nt.DIM_RANDOM2).to_numpy()
        return [_FactorDraws(index, design.J, cols.Zq, u, chol, new, u_seq.spawn(len(new)))]
    from bayesmix.build_factors import factor_dims

    by_name = {fc.grouping: fc for fc in cols.factors}
    seqs = u_seq.spawn(len(design.effects))
    out = []
    for fe, seq in zip(design.effects, seqs, strict=True):
        unit, eff, eff2 = factor_dims(fe)
        labels = _unit_labels(new_data, fe.grouping.columns)
        validate.check_cluster_labels(labels, fe.grouping.levels, fe.name)
        index, new = _codes(labels, fe.grouping.levels)
        u = post[f"{nt.U}_{fe.name}"].transpose("chain", "draw", unit, eff).to_numpy()
        sd = post[f"{nt.SD_U}_{fe.name}"].transpose("chain", "draw", eff).to_numpy()
        if fe.q > 1:
            corr = post[f"{nt.CORR_U}_{fe.name}"].transpose("chain", "draw", eff,
                                                            eff2).to_numpy()
            chol = np.linalg.cholesky(corr * sd[..., :, None] * sd[..., None, :])
        else:
            chol = sd[..., None]
        Zq = np.column_stack([col.values for col in by_name[fe.name].columns])
        out.append(_FactorDraws(index, fe.J, Zq, u, chol, tuple(f"{fe.name} {v}" for v in new),
                                seq.spawn(len(new))))
    return out


def _family_draws(family, mean: np.ndarray, trials: np.ndarray | None,
                  normals: np.ndarray) -> np.ndarray:
    """New outcomes given μ (c, d, rows), by inversion of the uniforms Φ(normals)."""
    from scipy import stats

    u = stats.norm.cdf(normals)
    if family.name == "bernoulli":
        return (u < mean).astype(float)
    if family.name == "binomial":
        return stats.binom.ppf(u, trials, mean)
    return stats.poisson.ppf(u, mean)


def _noise(seqs: list, a: int, b: int, c: int, d: int) -> np.ndarray:
    """Standard normals for rows a..b-1: block k of BLOCK_ROWS rows has its own stream."""
    pieces = []
    for k in range(a // BLOCK_ROWS, (b - 1) // BLOCK_ROWS + 1):
        lo = k * BLOCK_ROWS
        block = np.random.default_rng(seqs[k]).standard_normal((c, d, BLOCK_ROWS))
        pieces.append(block[:, :, max(a, lo) - lo:min(b, lo + BLOCK_ROWS) - lo])
    return np.concatenate(pieces, axis=2)
