"""summarize(): ArviZ's summary of γ, SDs and correlations of U, σ, with diagnostics in words."""

from __future__ import annotations

import math
import re
import textwrap
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

    @property
    def diagnostics(self) -> str:
        """One line: the largest R-hat, the smallest bulk ESS and the divergences."""
        return (
            f"max R-hat {self.max_rhat:.3f}, min bulk ESS {_ess(self.min_ess_bulk)}, "
            f"{self.divergences} divergent transitions"
        )

    def rounded(self) -> pd.DataFrame:
        """The table as people read it: short labels, significant digits, ESS as integers.

        Returns
        -------
        DataFrame of str
            Index: ``g10 (flies)``, ``sd U0 (Intercept)``, ``corr U1 (Days), U0 (Intercept)``,
            ``sigma``; columns mean, sd, the interval bounds (``2.5%``, ``97.5%``),
            ``ESS bulk``, ``ESS tail``, ``R-hat``.
        """
        t = self.table
        lb = next(c for c in t.columns if str(c).endswith("_lb"))
        ub = next(c for c in t.columns if str(c).endswith("_ub"))
        lo, hi = _interval_labels(str(lb))
        rows = {
            short_label(str(name)): {
                "mean": significant(r["mean"]), "sd": significant(r["sd"], 3),
                lo: significant(r[lb], 3), hi: significant(r[ub], 3),
                "ESS bulk": _ess(r["ess_bulk"]), "ESS tail": _ess(r["ess_tail"]),
                "R-hat": _rhat(r["r_hat"]),
            }
            for name, r in t.iterrows()
        }
        return pd.DataFrame.from_dict(rows, orient="index")

    def compact(self, width: int = 100) -> str:
        """The summary in at most ``width`` characters a line (labels cut with … if needed).

        Parameters
        ----------
        width : int

        Returns
        -------
        str
            The rounded table (:meth:`rounded`), the diagnostics line and the warnings,
            wrapped.
        """
        table = self.rounded()
        cols = list(table.columns)
        widths = [max(len(c), *(len(v) for v in table[c])) for c in cols]
        numbers = sum(w + 2 for w in widths)
        names = [str(i) for i in table.index]
        name_w = min(max(len("parameter"), *(len(n) for n in names)),
                     max(width - numbers, 12))
        lines = ["parameter".ljust(name_w)
                 + "".join(c.rjust(w + 2) for c, w in zip(cols, widths, strict=True))]
        for name, (_, row) in zip(names, table.iterrows(), strict=True):
            label = name if len(name) <= name_w else name[: name_w - 1] + "…"
            lines.append(label.ljust(name_w) + "".join(
                str(row[c]).rjust(w + 2) for c, w in zip(cols, widths, strict=True)))
        lines += ["", self.diagnostics]
        for note in self.warnings:
            lines += textwrap.wrap(f"WARNING: {note}", width, subsequent_indent="  ")
        if not self.warnings:
            lines.append("Diagnostics: all good.")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.compact()

    def __repr__(self) -> str:
        return self.compact()

    def _repr_html_(self) -> str:
        import html

        notes = "".join(f"<li>{html.escape(w)}</li>" for w in self.warnings) or "<li>all good</li>"
        return (
            self.rounded().to_html()
            + f"<p>{html.escape(self.diagnostics)}</p><ul>{notes}</ul>"
            + "<p><small>Full precision: <code>.table</code></small></p>"
        )


def significant(value: float, digits: int = 4) -> str:
    """``value`` to ``digits`` significant digits; scientific below 1e-3 or from 1e6 on.

    Parameters
    ----------
    value : float
    digits : int

    Returns
    -------
    str
        ``0.1657``, ``251.4``, ``-3.467e-05``, ``1.235e+06``, ``0``; ``nan`` if not finite.
    """
    v = float(value)
    if not math.isfinite(v):
        return "nan"
    if v == 0:
        return "0"
    a = abs(v)
    if a < 1e-3 or a >= 1e6:
        return f"{v:.{digits - 1}e}"
    decimals = max(digits - 1 - math.floor(math.log10(a)), 0)
    text = f"{v:.{decimals}f}"
    return "0" if float(text) == 0 else text


def short_label(name: str) -> str:
    """``beta[g10 (flies)]`` -> ``g10 (flies)``; ``sd_u[...]`` -> ``sd ...``; corr likewise."""
    m = re.fullmatch(r"(\w+)\[(.*)\]", name)
    if m is None:
        return name
    kind, inner = m.groups()
    if kind == nt.BETA:
        return inner
    if kind == nt.SD_U:
        return f"sd {inner}"
    if kind == nt.CORR_U:
        return f"corr {inner}"
    return name


def _interval_labels(lb_column: str) -> tuple[str, str]:
    m = re.search(r"(\d+(?:\.\d+)?)", lb_column)
    if m is None:
        return "lower", "upper"
    p = float(m.group(1)) / 100
    return f"{100 * (1 - p) / 2:g}%", f"{100 * (1 + p) / 2:g}%"


def _ess(value: float) -> str:
    v = float(value)
    return f"{round(v):d}" if math.isfinite(v) else "nan"


def _rhat(value: float) -> str:
    v = float(value)
    return f"{v:.3f}" if math.isfinite(v) else "nan"


def _pairs(fe) -> list[tuple[int, int]]:
    """Index pairs (i > k) of correlated effects (within an unstructured block)."""
    free = fe.covariance_pattern()
    return [(i, k) for i in range(fe.q) for k in range(i) if free[i, k]]


def summary_dataset(fit: Fit) -> xr.Dataset:
    """The summarised quantities: beta, the SDs of U, their free correlations, sigma.

    σ only for the Gaussian family (the others have no residual SD).

    With several grouping factors, ``sd_u_<factor>`` and ``corr_u_<factor>`` per factor.
    Correlations fixed at 0 by a diagonal structure (``||``) are left out.
    """
    post = fit.posterior.to_dataset()
    design = fit.design
    if not design.single_factor:
        return _factors_dataset(fit, post)
    out = xr.Dataset({nt.BETA: post[nt.BETA], nt.SD_U: post[nt.SD_U]})
    if nt.SIGMA in post:  # the Gaussian family's σ; the others have none
        out[nt.SIGMA] = post[nt.SIGMA]
    names = list(design.random_names)
    pairs = [(names[i], names[k]) for i, k in _pairs(design.effects[0])]
    if pairs:
        labels = [f"{a}, {b}" for a, b in pairs]
        values = np.stack(
            [post[nt.CORR_U].sel({nt.DIM_RANDOM: a, nt.DIM_RANDOM2: b}).to_numpy()
             for a, b in pairs],
            axis=-1,
        )
        out[nt.CORR_U] = (("chain", "draw", "pair"), values)
        out = out.assign_coords(pair=labels)
        out = out[[v for v in (nt.BETA, nt.SD_U, nt.CORR_U, nt.SIGMA) if v in out]]
    return out


def _factors_dataset(fit: Fit, post: xr.Dataset) -> xr.Dataset:
    from bayesmix.build_factors import factor_dims

    out = xr.Dataset({nt.BETA: post[nt.BETA]})
    for fe in fit.design.effects:
        _, eff, eff2 = factor_dims(fe)
        out[f"{nt.SD_U}_{fe.name}"] = post[f"{nt.SD_U}_{fe.name}"]
        pairs = _pairs(fe)
        if pairs:
            labels = [f"{fe.labels[i]}, {fe.labels[k]}" for i, k in pairs]
            corr = post[f"{nt.CORR_U}_{fe.name}"].transpose("chain", "draw", eff, eff2).to_numpy()
            dim = f"pair_{fe.name}"
            out[f"{nt.CORR_U}_{fe.name}"] = (("chain", "draw", dim),
                                             np.stack([corr[..., i, k] for i, k in pairs], -1))
            out = out.assign_coords({dim: labels})
    if nt.SIGMA in post:
        out[nt.SIGMA] = post[nt.SIGMA]
    return out


def latent_icc(fit: Fit) -> dict[str, xr.DataArray]:
    """Latent-scale adjusted ICCs of a logit model, per draw, from :func:`bayesmix.variance`.

    Per grouping factor g: σ²_g / (Σ_h σ²_h + π²/3), with σ²_g the factor's random variance
    (its intercept variance τ_g in a random-intercept model; with random slopes Johnson's
    mean of z_iᵀ T_g z_i over the rows) and π²/3 the variance of the standard logistic
    latent residual (``performance::icc``). Named ``icc`` with one factor, ``icc_<factor>``
    with several. Empty for other families: ``bm.variance(fit)`` gives the Gaussian and
    Poisson ICCs (the Poisson one needs a fit of the null model, too slow for a summary).
    """
    if fit.design.family.link != "logit":
        return {}
    from bayesmix.variance import variance

    icc = variance(fit).values["icc_adjusted_factor"]
    if fit.design.single_factor:
        return {"icc": icc.isel(factor=0, drop=True)}
    return {f"icc_{name}": icc.sel(factor=name, drop=True) for name in icc["factor"].to_numpy()}


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
    # arviz_stats, not the arviz meta-package: the latter also imports arviz_plots and
    # matplotlib (~1 s more); imported here, as `import bayesmix` should not
    from arviz_stats import summary as az_summary

    ds = summary_dataset(fit)
    for name, value in latent_icc(fit).items():
        ds[name] = value
    table = az_summary(ds, ci_prob=ci_prob, ci_kind="eti", round_to="none")
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
