"""summarize(): ArviZ's summary of γ, SDs and correlations of U, σ, with diagnostics in words."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from bayesmix import notation as nt
from bayesmix.fit_result import Fit

RHAT_MAX = 1.01
ESS_MIN = 400


class ConvergenceWarning(UserWarning):
    """The sampler's diagnostics say the draws may not be trusted yet."""


@dataclass(frozen=True, repr=False)
class Summary:
    """Posterior summary with diagnostics.

    Attributes
    ----------
    table : DataFrame
        One row per γ (``beta[g01 (M)]``), SD of U, correlation of U, and σ; columns mean, sd,
        the interval bounds, ess_bulk, ess_tail, r_hat, mcse.
    max_rhat : float
    min_ess_bulk : float
    divergences : int
        Divergent transitions after warm-up.
    warnings : tuple of str
        What to do about each problem found (empty when none).
    """

    table: pd.DataFrame
    max_rhat: float
    min_ess_bulk: float
    divergences: int
    warnings: tuple[str, ...]

    def __str__(self) -> str:
        with pd.option_context("display.width", 120, "display.max_columns", 20):
            text = self.table.to_string()
        diag = (
            f"max R-hat {self.max_rhat:.3f}, min bulk ESS {self.min_ess_bulk:.0f}, "
            f"{self.divergences} divergent transitions"
        )
        notes = "\n".join(f"WARNING: {w}" for w in self.warnings) or "Diagnostics: all good."
        return f"{text}\n\n{diag}\n{notes}"

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        notes = "".join(f"<li>{w}</li>" for w in self.warnings) or "<li>all good</li>"
        return (
            self.table.to_html()
            + f"<p>max R-hat {self.max_rhat:.3f}, min bulk ESS {self.min_ess_bulk:.0f}, "
            f"{self.divergences} divergent transitions</p><ul>{notes}</ul>"
        )


def summary_dataset(fit: Fit) -> xr.Dataset:
    """The summarised quantities: beta, sd_u, the correlations of U (one per pair), sigma."""
    post = fit.posterior.to_dataset()
    out = xr.Dataset({nt.BETA: post[nt.BETA], nt.SD_U: post[nt.SD_U], nt.SIGMA: post[nt.SIGMA]})
    names = list(fit.design.random_names)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[:i]]
    if pairs:
        labels = [f"{a}, {b}" for a, b in pairs]
        values = np.stack(
            [post[nt.CORR_U].sel({nt.DIM_RANDOM: a, nt.DIM_RANDOM2: b}).to_numpy()
             for a, b in pairs],
            axis=-1,
        )
        out[nt.CORR_U] = (("chain", "draw", "pair"), values)
        out = out.assign_coords(pair=labels)
        out = out[[nt.BETA, nt.SD_U, nt.CORR_U, nt.SIGMA]]
    return out


def summarize(fit: Fit, *, ci_prob: float = 0.95, warn: bool = True) -> Summary:
    """Summarise the posterior of γ, the SDs and correlations of U, and σ.

    Parameters
    ----------
    fit : Fit
    ci_prob : float
        Probability of the equal-tailed interval.
    warn : bool
        Also emit the diagnostics as :class:`ConvergenceWarning`.

    Returns
    -------
    Summary
        Warnings say what to do when R-hat > 1.01, bulk ESS < 400, or any divergence.
    """
    import arviz as az  # imported here: it costs ~2 s, and `import bayesmix` should not

    ds = summary_dataset(fit)
    table = az.summary(ds, ci_prob=ci_prob, ci_kind="eti", round_to="none")
    rhat = float(np.nanmax(table["r_hat"].to_numpy(dtype=float)))
    ess = float(np.nanmin(table["ess_bulk"].to_numpy(dtype=float)))
    divergences = 0
    if "sample_stats" in fit.idata.children and "diverging" in fit.sample_stats:
        divergences = int(fit.sample_stats["diverging"].to_numpy().sum())
    notes = []
    if rhat > RHAT_MAX:
        worst = table["r_hat"].astype(float).idxmax()
        notes.append(
            f"R-hat reaches {rhat:.3f} (for {worst}) > {RHAT_MAX}: the chains have not mixed. "
            "Run longer (raise tune and draws), and check the model for weakly identified terms."
        )
    if ess < ESS_MIN:
        worst = table["ess_bulk"].astype(float).idxmin()
        notes.append(
            f"bulk ESS is only {ess:.0f} (for {worst}) < {ESS_MIN}: too few effective draws for "
            "stable intervals. Raise draws (or chains)."
        )
    if divergences:
        notes.append(
            f"{divergences} divergent transitions: the sampler missed part of the posterior. "
            "Raise target_accept (e.g. 0.95 or 0.99); if they persist, the priors on the SDs of U "
            "may be too wide for the data."
        )
    if warn:
        for note in notes:
            warnings.warn(note, ConvergenceWarning, stacklevel=2)
    return Summary(table, rhat, ess, divergences, tuple(notes))
