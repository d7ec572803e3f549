"""Posterior predictive checks drawn with arviz-plots: y, and statistics by cluster.

:func:`ppc_statistics` puts, side by side, the observed value and the replicated draws
(:func:`bayesmix.posterior_predictive`) of

- ``y`` itself (Gaussian and Poisson; for the binomial the proportion ``y / trials``),
- per unit of the outermost grouping factor: the mean of y (the proportion of successes for
  Bernoulli and binomial data), and for the Gaussian family the within-cluster SD,

and :func:`plot_ppc` overlays the distribution of each observed quantity on those of the
replicated data sets (``arviz_plots.plot_ppc_dist``): a model that reproduces the spread of
the cluster means but not their skew, or the within-cluster SDs but not their heterogeneity,
shows it here.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from bayesmix.errors import BayesmixError
from bayesmix.pointwise import OBS_DIM


def _by_unit(values: np.ndarray, index: np.ndarray, J: int, weights: np.ndarray | None
             ) -> np.ndarray:
    """Means of the last axis of ``values`` per unit (weighted by ``weights``)."""
    w = np.ones(index.size) if weights is None else weights
    total = np.zeros((*values.shape[:-1], J))
    np.add.at(total, (..., index), values)
    return total / np.bincount(index, weights=w, minlength=J)


def _sd_by_unit(values: np.ndarray, index: np.ndarray, J: int) -> np.ndarray:
    mean = _by_unit(values, index, J, None)
    dev = values - mean[..., index]
    n = np.bincount(index, minlength=J)
    ss = np.zeros((*values.shape[:-1], J))
    np.add.at(ss, (..., index), dev**2)
    return np.sqrt(ss / np.maximum(n - 1, 1))


def ppc_statistics(fit) -> xr.DataTree:
    """Observed and replicated y and cluster statistics (module docstring).

    Parameters
    ----------
    fit : Fit
        With a ``posterior_predictive`` group, or it is drawn here
        (:func:`bayesmix.posterior_predictive`).

    Returns
    -------
    xarray.DataTree
        Groups ``posterior_predictive`` (chain, draw, ...) and ``observed_data`` with the same
        variables: ``y`` (or ``proportion``), ``mean by <unit>`` (``proportion by <unit>``),
        ``SD by <unit>`` (Gaussian).
    """
    from bayesmix.pointwise import marginal_unit
    from bayesmix.predictive import posterior_predictive

    if "posterior_predictive" not in fit.idata.children:
        fit = posterior_predictive(fit, max_draws=400)
    design = fit.design
    yrep = fit.idata["posterior_predictive"]["y"].transpose("chain", "draw", OBS_DIM).values
    y = design.y
    family = design.family
    pp, obs = {}, {}
    trials = design.trials
    if family.name == "binomial":
        pp["proportion"], obs["proportion"] = yrep / trials, y / trials
    elif family.name != "bernoulli":
        pp["y"], obs["y"] = yrep, y
    if design.effects:
        try:
            unit = marginal_unit(design)
        except BayesmixError:  # crossed: the first factor's units
            unit = design.effects[0].name
        g = next(g for g in design.groupings if g.name == unit)
        label = ("proportion" if family.name in ("bernoulli", "binomial") else "mean")
        name = f"{label} by {unit}"
        pp[name] = _by_unit(yrep, g.index, g.J, trials)
        obs[name] = _by_unit(y, g.index, g.J, trials)
        if family.is_gaussian:
            pp[f"SD by {unit}"] = _sd_by_unit(yrep, g.index, g.J)
            obs[f"SD by {unit}"] = _sd_by_unit(y, g.index, g.J)

    def dims(v: np.ndarray, lead: tuple[str, ...]) -> tuple[str, ...]:
        return lead + ((OBS_DIM,) if v.shape[-1] == design.n else ("unit",))

    pp_ds = xr.Dataset({k: (dims(v, ("chain", "draw")), v) for k, v in pp.items()})
    obs_ds = xr.Dataset({k: (dims(v, ()), v) for k, v in obs.items()})
    return xr.DataTree.from_dict({"posterior_predictive": pp_ds, "observed_data": obs_ds})


def plot_ppc(fit, *, num_samples: int = 50, **kwargs):
    """Posterior predictive check: observed y and cluster statistics against replicates.

    Parameters
    ----------
    fit : Fit
    num_samples : int
        Replicated data sets drawn in each panel.
    **kwargs
        Passed to ``arviz_plots.plot_ppc_dist`` (``backend=``, ``visuals=`` ...).

    Returns
    -------
    arviz_plots.PlotCollection
        One panel per quantity of :func:`ppc_statistics`; ``.savefig(path)`` or
        ``.show()``.
    """
    import arviz_plots

    data = ppc_statistics(fit)
    kwargs.setdefault("backend", "matplotlib")
    discrete = fit.design.family.name == "poisson"
    if discrete:
        kwargs.setdefault("kind", "ecdf")
    return arviz_plots.plot_ppc_dist(data, num_samples=num_samples, **kwargs)
