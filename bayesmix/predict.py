"""predict(): posterior predictions for new rows, in clusters seen or never seen."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from bayesmix import notation as nt
from bayesmix.design import validate
from bayesmix.design.build import _Coder, model_columns
from bayesmix.errors import DataError
from bayesmix.fit_result import Fit


@dataclass(frozen=True)
class Prediction:
    """Posterior draws of predictions for new rows.

    Attributes
    ----------
    draws : xarray.DataArray, dims (chain, draw, row)
        ``X_new β + Z_new u`` per posterior draw (plus ε ~ N(0, σ²) when ``kind="y"``).
    kind : {"mean", "y"}
        Expected value or a new observation.
    new_clusters : tuple of str
        Clusters of the new rows that the fit never saw; their U is drawn from N(0, T).
    """

    draws: xr.DataArray
    kind: str
    new_clusters: tuple[str, ...]

    def summary(self, ci_prob: float = 0.95) -> pd.DataFrame:
        """Mean, sd and equal-tailed interval per row."""
        flat = self.draws.stack(s=("chain", "draw")).transpose(nt.DIM_ROW, "s").to_numpy()
        lo, hi = np.quantile(flat, [(1 - ci_prob) / 2, (1 + ci_prob) / 2], axis=1)
        pct = f"{100 * ci_prob:g}%"
        return pd.DataFrame(
            {"mean": flat.mean(axis=1), "sd": flat.std(axis=1, ddof=1),
             f"lower {pct}": lo, f"upper {pct}": hi},
            index=self.draws[nt.DIM_ROW].to_numpy(),
        )


def predict(
    fit: Fit,
    new_data: pd.DataFrame,
    *,
    kind: str = "mean",
    random_seed: int | None = None,
) -> Prediction:
    """Predict new rows from the posterior, coding them exactly as the fitted design.

    For a row in cluster j seen in the fit, ``μ = x β + z U_j`` uses the posterior draws of
    U_j; for a cluster never seen, U_j is drawn from N(0, T) for every posterior draw (as
    lme4's ``allow.new.levels`` and brms's ``sample_new_levels = "gaussian"``).

    Parameters
    ----------
    fit : Fit
    new_data : DataFrame
        The predictors and the cluster column (the outcome is not needed).
    kind : {"mean", "y"}
        The expected value, or a new observation (adds ε ~ N(0, σ²)).
    random_seed : int, optional
        For the draws of new clusters' U and of ε.

    Returns
    -------
    Prediction
    """
    if kind not in ("mean", "y"):
        raise DataError(f"kind must be 'mean' or 'y', not {kind!r}")
    spec, design = fit.spec, fit.design
    needed = [v for v in spec.variables if v != spec.outcome]
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
    cols = model_columns(spec, _Coder(spec, new_data, levels=design.levels))
    X, Zq = cols.X, cols.Zq
    labels = new_data[spec.cluster].astype(str).to_numpy()
    known = {c: j for j, c in enumerate(design.clusters)}
    post = fit.posterior
    beta = post[nt.BETA].transpose("chain", "draw", nt.DIM_FIXED).to_numpy()
    u = post[nt.U].transpose("chain", "draw", nt.DIM_CLUSTER, nt.DIM_RANDOM).to_numpy()
    chol = post[nt.CHOL_U].transpose("chain", "draw", nt.DIM_RANDOM, nt.DIM_RANDOM2).to_numpy()
    chains, draws = beta.shape[:2]
    rng = np.random.default_rng(random_seed)
    new = tuple(dict.fromkeys(c for c in labels if c not in known))
    u_new = np.einsum("cdab,cdkb->cdka", chol, rng.standard_normal((chains, draws, len(new),
                                                                    design.q)))
    u_all = np.concatenate([u, u_new], axis=2)
    index = np.array([known[c] if c in known else design.J + new.index(c) for c in labels])
    mu = np.einsum("cdp,np->cdn", beta, X) + np.einsum("cdnq,nq->cdn", u_all[:, :, index], Zq)
    if kind == "y":
        sigma = post[nt.SIGMA].to_numpy()
        mu = mu + sigma[..., None] * rng.standard_normal(mu.shape)
    da = xr.DataArray(
        mu, dims=("chain", "draw", nt.DIM_ROW),
        coords={nt.DIM_ROW: np.asarray(new_data.index)}, name=f"prediction_{kind}",
    )
    return Prediction(da, kind, new)
