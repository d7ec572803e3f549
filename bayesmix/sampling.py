"""sample(): draw the posterior of a built model with nutpie, PyMC or numpyro -> Fit."""

from __future__ import annotations

import importlib.util
import sys
import time

import numpy as np
import pymc as pm
import xarray as xr

from bayesmix import notation as nt
from bayesmix.build import COV_RV, BuiltModel, draw_u_conditional
from bayesmix.errors import SpecError
from bayesmix.fit_result import Fit
from bayesmix.priors import Prior
from bayesmix.settings import SamplerSettings


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    ip = shell.get_ipython()  # type: ignore[attr-defined]
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def _progressbar(settings: SamplerSettings) -> bool:
    if settings.progressbar is not None:
        return bool(settings.progressbar)
    return sys.stderr.isatty() or _in_notebook()


def _scale(prior: Prior) -> np.ndarray:
    """A typical value of a positive prior, to start the sampler from."""
    kw = {k: np.asarray(v, dtype=float) for k, v in prior.params}
    if "sigma" in kw and prior.dist != "LogNormal":
        return kw["sigma"]
    if prior.dist == "HalfCauchy":
        return kw["beta"]
    if prior.dist == "Exponential":
        return 1.0 / kw["lam"]
    if prior.dist == "Gamma":
        return kw["alpha"] / kw["beta"]
    return np.exp(kw["mu"])


def _initvals(built: BuiltModel) -> dict[str, np.ndarray]:
    """Start T at diag(prior scale of the SDs) with no correlation.

    Besides being a sensible start, it sidesteps nutpie 0.16's failure to draw a jittered
    start for ``LKJCholeskyCov`` when ``sd_dist`` is HalfStudentT.
    """
    q = built.design.q
    sd0 = np.broadcast_to(_scale(built.priors.sd_u), (q,))
    if q == 1:
        return {COV_RV: np.array(sd0, dtype=float)}
    packed = np.zeros(q * (q + 1) // 2)
    for i in range(q):
        packed[i * (i + 1) // 2 + i] = sd0[i]
    return {COV_RV: packed}


def sample(built: BuiltModel, settings: SamplerSettings | None = None) -> Fit:
    """Sample the posterior and assemble a :class:`Fit`.

    Parameters
    ----------
    built : BuiltModel
        From :func:`bayesmix.build_model`.
    settings : SamplerSettings, optional

    Returns
    -------
    Fit
        Its posterior holds ``beta`` (chain, draw, fixed), ``u`` (chain, draw, cluster, random),
        ``sd_u``, ``corr_u``, ``chol_u``, ``sigma`` and the cluster coefficients ``coef``
        (chain, draw, cluster, level1).  With the collapsed likelihood, ``u`` is drawn after
        sampling from its exact conditional, one draw of u per posterior draw.
    """
    settings = settings or SamplerSettings()
    if settings.sampler == "numpyro" and importlib.util.find_spec("numpyro") is None:
        raise SpecError(
            "sampler='numpyro' needs numpyro and JAX: pip install 'bayesmix[numpyro]'"
        )
    timings: dict[str, float] = {}
    kwargs = {
        "draws": settings.draws,
        "tune": settings.tune,
        "chains": settings.chains,
        "target_accept": settings.target_accept,
        "random_seed": settings.random_seed,
        "progressbar": _progressbar(settings),
        "nuts_sampler": settings.sampler,
        "model": built.model,
        "initvals": _initvals(built),
        "compute_convergence_checks": False,
    }
    if settings.cores is not None:
        kwargs["cores"] = settings.cores
    start = time.perf_counter()
    idata = pm.sample(**kwargs)
    timings["sample"] = time.perf_counter() - start

    post = idata["posterior"].to_dataset()
    design = built.design
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    start = time.perf_counter()
    if nt.U not in post:
        rng = np.random.default_rng(
            None if settings.random_seed is None else [settings.random_seed, 1]
        )
        beta = post[nt.BETA].transpose("chain", "draw", nt.DIM_FIXED).to_numpy()
        chol = post[nt.CHOL_U].transpose("chain", "draw", nt.DIM_RANDOM, nt.DIM_RANDOM2)
        sigma = post[nt.SIGMA].to_numpy()
        u = draw_u_conditional(
            built.stats,  # type: ignore[arg-type]
            beta.reshape(chains * draws, -1),
            chol.to_numpy().reshape(chains * draws, design.q, design.q),
            sigma.reshape(-1),
            rng,
        )
        post[nt.U] = (
            ("chain", "draw", nt.DIM_CLUSTER, nt.DIM_RANDOM),
            u.reshape(chains, draws, design.J, design.q),
        )
        timings["u_draws"] = time.perf_counter() - start
    beta = post[nt.BETA].transpose("chain", "draw", nt.DIM_FIXED).to_numpy()
    u = post[nt.U].transpose("chain", "draw", nt.DIM_CLUSTER, nt.DIM_RANDOM).to_numpy()
    post[nt.COEF] = (
        ("chain", "draw", nt.DIM_CLUSTER, nt.DIM_LEVEL1),
        design.cluster_coefficients(beta, u),
    )
    post = post.assign_coords(
        {
            nt.DIM_CLUSTER: list(design.clusters),
            nt.DIM_LEVEL1: list(design.level1_names),
        }
    )
    keep = [nt.BETA, nt.SD_U, nt.CORR_U, nt.CHOL_U, nt.SIGMA, nt.U, nt.COEF]
    extra = [v for v in post.data_vars if v not in keep and v != nt.U_OFFSET]
    post = post[keep + extra + ([nt.U_OFFSET] if nt.U_OFFSET in post else [])]
    attrs = dict(idata["posterior"].attrs)
    attrs.update({"likelihood": built.likelihood, "sampler": settings.sampler})
    post.attrs = attrs
    groups = {"posterior": post}
    for name in ("sample_stats",):
        if name in idata.children:
            groups[name] = idata[name].to_dataset()
    tree = xr.DataTree.from_dict(groups)
    return Fit(
        spec=design.spec,
        design=design,
        priors=built.priors,
        settings=settings,
        likelihood=built.likelihood,
        idata=tree,
        timings=timings,
        built=built,
    )
