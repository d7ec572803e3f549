"""Figures for a Bayesian-versus-REML comparison (matplotlib, no GUI backend needed).

:func:`plot_compare` draws, side by side,

- a forest plot: for every γ, SD and correlation of U and σ, the posterior 95% interval (line)
  and mean (dot), with the REML estimate (red diamond, drawn below the posterior so it never
  hides it) and, for the γ's, its ±1.96 SE interval (red bar); each parameter has its own axis,
  as their scales differ, with tick labels that share one power of ten (``×10⁻⁵``) so small
  coefficients stay readable;
- a caterpillar plot per random term: the posterior 95% interval and mean of u for every
  cluster (sorted by posterior mean) with the REML conditional mode (BLUP) as a hollow diamond
  just above it.

One legend, below the panels, explains the markers; it covers no data.

Figures are built with :class:`matplotlib.figure.Figure` directly (not pyplot), so they work
in scripts, on servers (Agg) and in notebooks alike.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, ScalarFormatter

from bayesmix.compare import Comparison

POSTERIOR_COLOR = "#1f4e79"
REML_COLOR = "#c0392b"
BLUP_OFFSET = 0.32
"""Vertical offset of a BLUP marker above its cluster's posterior line (rows are 1 apart)."""


def _readable_ticks(ax) -> None:
    """At most 5 ticks, labelled with one shared power of ten outside 1e-3 .. 1e4."""
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5, min_n_ticks=3))
    fmt = ScalarFormatter(useMathText=True)
    fmt.set_powerlimits((-3, 4))
    ax.xaxis.set_major_formatter(fmt)
    ax.xaxis.get_offset_text().set_fontsize(8)


def _forest(subfig, cmp: Comparison) -> None:
    table = cmp.table
    n = len(table)
    axes = subfig.subplots(n, 1, squeeze=False)[:, 0]
    for ax, (label, row) in zip(axes, table.iterrows(), strict=True):
        ax.hlines(0, row["2.5%"], row["97.5%"], color=POSTERIOR_COLOR, lw=2.2)
        ax.plot(row["mean"], 0, "o", color=POSTERIOR_COLOR, ms=6, zorder=3)
        ax.plot(row["median"], 0, "|", color="white", ms=7, mew=1.5, zorder=4)
        if np.isfinite(row["REML"]):
            if np.isfinite(row["REML SE"]):
                half = 1.96 * row["REML SE"]
                ax.errorbar(row["REML"], -0.45, xerr=half, fmt="none", ecolor=REML_COLOR,
                            elinewidth=1.4, capsize=3)
            ax.plot(row["REML"], -0.45, "D", color=REML_COLOR, ms=5.5, zorder=3)
        ax.set_ylim(-1.0, 0.6)
        ax.set_yticks([])
        ax.set_ylabel(str(label), rotation=0, ha="right", va="center", fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
        _readable_ticks(ax)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
        z = row["z"]
        if np.isfinite(z):
            ax.text(1.01, 0.5, f"z = {z:+.2f}", transform=ax.transAxes, fontsize=8,
                    va="center", color="black" if abs(z) <= 1 else REML_COLOR)
    axes[0].set_title("Parameters: posterior (above) vs REML (below)", fontsize=9)


def _caterpillar(subfig, cmp: Comparison, max_labels: int) -> None:
    ut = cmp.u_table
    # one panel per random term (and grouping factor, when there are several)
    factor_of = (ut["factor"] if "factor" in ut else
                 pd.Series(cmp.design.spec.cluster, index=ut.index))
    panels = list(dict.fromkeys(zip(factor_of, ut["term"], strict=True)))
    axes = subfig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (cluster_name, term) in zip(axes, panels, strict=True):
        rows = ut[(ut["term"] == term) & (factor_of == cluster_name)].sort_values("mean")
        J = len(rows)
        y = np.arange(J)
        ax.hlines(y, rows["2.5%"], rows["97.5%"], color=POSTERIOR_COLOR, lw=1.2 if J > 60 else 2)
        ax.plot(rows["mean"], y, "o", color=POSTERIOR_COLOR, ms=2.5 if J > 60 else 4.5,
                label="posterior mean, 95% interval")
        # Hollow, and just above the posterior line: the BLUP never hides the posterior mean.
        ax.plot(rows["BLUP"], y + BLUP_OFFSET, "D", mfc="none", mec=REML_COLOR,
                mew=0.9 if J > 60 else 1.2, ms=2.6 if J > 60 else 4.5, label="REML BLUP")
        ax.axvline(0.0, color="0.6", lw=0.8, zorder=0)
        if J <= max_labels:
            ax.set_yticks(y, [str(c) for c in rows["cluster"]], fontsize=7 if J > 30 else 8)
        else:
            step = int(np.ceil(J / max_labels))
            ax.set_yticks(y[::step], [str(c) for c in rows["cluster"].iloc[::step]], fontsize=6)
        ax.set_ylim(-1, J)
        ax.set_title(f"{term}\nby {cluster_name}", fontsize=9)
        ax.set_xlabel("u (deviation from\nthe fixed part)", fontsize=8)
        ax.set_ylabel(f"{cluster_name} (sorted by posterior mean)", fontsize=8)
        ax.tick_params(axis="x", labelsize=8)
        _readable_ticks(ax)
        ax.grid(axis="x", color="0.92")


def _legend(fig) -> None:
    """One legend for both panels, outside every axes (below them)."""
    handles = [
        Line2D([], [], color=POSTERIOR_COLOR, lw=2.2, marker="o", ms=5,
               label="posterior mean, 95% interval (tick: median)"),
        Line2D([], [], color=REML_COLOR, lw=1.4, marker="D", ms=4.5,
               label="REML ± 1.96 SE"),
        Line2D([], [], color=REML_COLOR, lw=0, marker="D", ms=4.5, mfc="none", mew=1.2,
               label="REML BLUP"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=8,
               frameon=False)


def plot_compare(
    comparison: Comparison,
    path: str | Path | None = None,
    *,
    max_labels: int = 60,
    dpi: int = 150,
) -> Figure:
    """Forest plot of the parameters and caterpillar plot of u, posterior vs REML.

    Parameters
    ----------
    comparison : Comparison
        From :func:`bayesmix.compare`.
    path : str or Path, optional
        Write the figure there (format from the suffix: .png, .pdf, .svg).
    max_labels : int
        Label at most this many clusters per caterpillar panel (every k-th beyond).
    dpi : int
        Resolution of raster output.

    Returns
    -------
    matplotlib.figure.Figure
    """
    n_par = len(comparison.table)
    J = comparison.design.J
    q = comparison.design.q
    height = max(0.55 * n_par + 1.6, min(0.17 * J + 1.9, 14.0), 4.4)
    width = 5.5 + 3.2 * q
    fig = Figure(figsize=(width, height), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[5.0, 3.2 * q], wspace=0.04)
    _forest(left, comparison)
    _caterpillar(right, comparison, max_labels)
    _legend(fig)
    title = f"Bayesian posterior vs {comparison.reml.method}: {comparison.design.spec.to_formula()}"
    if not comparison.reml.converged:
        title += "\nWARNING: the REML fit did not converge; its values are not estimates"
    fig.suptitle(title, fontsize=10, color="black" if comparison.reml.converged else REML_COLOR)
    if path is not None:
        fig.savefig(path, dpi=dpi)
    return fig
