"""sample(): draw the posterior of a built model with nutpie, PyMC or numpyro -> Fit."""

from __future__ import annotations

import importlib.util
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pymc as pm
import xarray as xr

from bayesmix import notation as nt
from bayesmix.build import BuiltModel
from bayesmix.build_factors import COV_RV, SD_RV
from bayesmix.collapsed import draw_u_conditional
from bayesmix.errors import SpecError
from bayesmix.fit_result import Fit
from bayesmix.glmm_draws import draw_effects
from bayesmix.glmm_marginal import MARGINAL_FORMS
from bayesmix.nutpie_import import import_nutpie
from bayesmix.predictive import add_predictive_groups
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


def _initvals(built: BuiltModel) -> dict[str, np.ndarray]:
    """Start every T̃ at diag(prior scale of the standardised SDs), no correlation.

    Besides being a sensible start, it sidesteps nutpie 0.16's failure to draw a jittered
    start for ``LKJCholeskyCov`` when ``sd_dist`` is HalfStudentT.
    """
    return dict(built.graph["initvals"])


ROWS_NUMBA_THRESHOLD = 20_000
"""Row-wise models (and the GLMM cluster-marginal forms, which pass over the rows about a
dozen times per gradient) with more rows than this compile with Numba under
``backend="auto"``."""
CLUSTERS_NUMBA_THRESHOLD = 1000
"""Models with more clusters than this compile with Numba under ``backend="auto"``: the "c"
path (a PyTensor function called through Python, its chains one after another) compiles
faster, nutpie's Numba back end runs chains in parallel but compiles its wrappers in every
process.  Since the GIL switch interval fix (:data:`C_BACKEND_SWITCH_INTERVAL`) the "c" path is
ahead up to about J = 1,000 (4 chains × 1,000 draws, whole fit in a fresh process, 2 cores):
HSB (J=160) 10.3 s vs 13.1 s warm, 20.0 s vs 31 s cold; the seed's cross-level model at
n = 50k, J = 500: 22.0 s vs 31.1 s; n = 100k, J = 1,000: 28.5 s vs 29.8 s (break-even).
A cost model (J × expected gradients vs compile time) would do better."""


C_BACKEND_SWITCH_INTERVAL = 1e-4
"""Python's GIL switch interval (s) while nutpie samples through the C back end (default 5 ms).

nutpie's sampler threads call the compiled log density through Python; a thread that waits
for the GIL waits for the switch interval, so with the default each gradient cost up to ~1 ms
more than the function itself.  Measured on cbpp, 4 × 2,000 iterations: the cells form's
sampling 5.9 s → 3.1 s, the Laplace form's (a PyTensor scan inside) 46.5 s → 5.5 s.  Restored
when sampling ends."""


def choose_backend(built: BuiltModel, settings: SamplerSettings) -> str:
    """Resolve ``settings.backend`` (``"auto"``: see :class:`SamplerSettings`).

    A model whose data are shared (``build_model(..., shared_data=True)``, which ``bm.fit``
    asks for whenever it can) gets nutpie's Numba path: its kernels are compiled once per
    model structure and loaded from disk afterwards (:mod:`bayesmix.kernel_cache`), and its
    chains run in parallel.  Otherwise the rules below, measured before that cache existed.
    """
    if settings.backend != "auto":
        return settings.backend
    if built.graph.get("shared_data") and built.likelihood not in MARGINAL_FORMS:
        return "numba"
    if (built.likelihood in ("rows", *MARGINAL_FORMS)
            and built.design.n > ROWS_NUMBA_THRESHOLD):
        return "numba"
    if built.design.J > CLUSTERS_NUMBA_THRESHOLD:
        return "numba"
    return "c"


@dataclass(frozen=True)
class CompiledModel:
    """A model compiled for nutpie, reusable across data sets of the same shape.

    Attributes
    ----------
    nutpie_model : Any
        What ``nutpie.sample`` takes.
    backend : str
        ``"c"`` or ``"numba"``.
    seconds : float
        Wall time spent compiling.
    """

    nutpie_model: Any
    backend: str
    seconds: float
    cached: bool | None = None
    """With the Numba back end: True when the kernels were loaded from the structure cache,
    False when they were compiled into it, None when the model could not be cached."""


def _pytensor_mode(built: BuiltModel) -> Any:
    """PyTensor's default mode (Numba linker in PyTensor 3), or its C linker (CVM).

    The marginal GLMM forms hold a ``scan`` whose Numba code is compiled on its first call,
    inside the sampler, again for every data set (the data are constants of the graph): 30-40 s
    each for the SBC's small models.  The C linker compiles each op once per machine (cached
    on disk, ~70 s the first time) and then ~4.5 s per data set.
    """
    if built.likelihood in MARGINAL_FORMS:
        from pytensor.compile.mode import Mode

        return Mode(linker="cvm", optimizer="fast_run")
    return "FAST_RUN"


def _compile_c(built: BuiltModel) -> Any:
    """Log density and gradient compiled by PyTensor's C back end, wrapped for nutpie.

    The compiled C modules are cached on disk by PyTensor, so a model compiles in about the
    time its graph takes to rewrite; nutpie then calls the function through Python
    (≈ 6 µs of overhead per call).  Shared data (``pm.Data``) stay shared: setting their
    values changes what the compiled function computes, without recompiling.
    """
    import_nutpie()
    from nutpie.compile_pymc import _make_functions, _prepare_dims_and_coords, _wrap_with_lock
    from nutpie.compiled_pyfunc import from_pyfunc
    from pymc.initial_point import make_initial_point_fn

    model = built.model
    point_fn = make_initial_point_fn(
        model=model,
        overrides=_initvals(built),
        default_strategy="support_point",
        jitter_rvs=set(model.free_RVs),
        return_transformed=True,
    )
    n_dim, _, logp_pt, expand_pt, init_fn, shape_info, reparam = _make_functions(
        model,
        mode=_pytensor_mode(built),
        compute_grad=True,
        join_expanded=False,
        pymc_initial_point_fn=_wrap_with_lock(point_fn),
    )
    logp_pt.trust_input = True
    expand_pt.trust_input = True
    names, _, shapes = shape_info
    _warm_up(logp_pt, expand_pt, init_fn)

    def make_logp():
        def logp(x: np.ndarray) -> tuple[float, np.ndarray]:
            value, grad = logp_pt(x)
            return float(value), grad

        return logp

    def make_expand(seed1: int, seed2: int, chain: int):
        def expand(x: np.ndarray) -> dict[str, np.ndarray]:
            return {
                name: np.asarray(val, dtype="float64", order="C").reshape(shape)
                for name, val, shape in zip(names, expand_pt(x), shapes, strict=True)
            }

        return expand

    dims, coords = _prepare_dims_and_coords(model, shape_info, reparam)
    return from_pyfunc(
        ndim=n_dim,
        make_logp_fn=make_logp,
        make_expand_fn=make_expand,
        make_initial_point_fn=init_fn,
        expanded_dtypes=[np.dtype("float64")] * len(names),
        expanded_shapes=shapes,
        expanded_names=names,
        dims=dims,
        coords=coords,
        reparameterized_names=reparam,
    )


def _warm_up(logp_pt: Any, expand_pt: Any, init_fn: Any) -> None:
    """Call the compiled functions once at an initial point.

    PyTensor 3's Numba linker compiles on the first call (its disk cache makes that quick
    when warm): this times it as "compile" rather than hiding it in the first gradient of
    "sample".  An initial point that cannot be drawn leaves the first call to the sampler.
    """
    try:
        x0 = np.asarray(init_fn(0), dtype="float64")
    except Exception:  # the sampler draws its own initial points and reports any failure
        return
    logp_pt(x0)
    expand_pt(x0)


def compile_model(built: BuiltModel, settings: SamplerSettings | None = None) -> CompiledModel:
    """Compile a built model for nutpie (timed), with the back end of ``settings.backend``.

    Parameters
    ----------
    built : BuiltModel
    settings : SamplerSettings, optional

    Returns
    -------
    CompiledModel
        Pass it to :func:`sample` (``compiled=``) to sample without compiling again; with
        ``build_model(..., shared_data=True)`` and the C back end, ``pm.set_data`` on
        ``built.model`` swaps in new statistics of the same shape.
    """
    settings = settings or SamplerSettings()
    backend = choose_backend(built, settings)
    start = time.perf_counter()
    if backend == "c":
        nutpie_model = _compile_c(built)
        return CompiledModel(nutpie_model, backend, time.perf_counter() - start)
    from bayesmix.kernel_cache import load_or_compile

    kernels = load_or_compile(built.model, _initvals(built))
    if kernels is not None:
        return CompiledModel(kernels.nutpie_model, backend, time.perf_counter() - start,
                             kernels.hit)
    nutpie = import_nutpie()
    nutpie_model = nutpie.compile_pymc_model(built.model, initial_points=_initvals(built))
    return CompiledModel(nutpie_model, backend, time.perf_counter() - start)


class SamplingInterrupted(KeyboardInterrupt):
    """Sampling was stopped (Ctrl-C) before it finished; no fit was made."""


def _interrupted(start: float) -> str:
    return (f"sampling interrupted after {time.perf_counter() - start:.1f} s (Ctrl-C): no fit "
            "was made and nothing was saved")


def _check_complete(idata: Any, settings: SamplerSettings, start: float) -> None:
    """Refuse a trace cut short (fewer chains or draws than asked for, or unfilled draws)."""
    post = idata["posterior"]
    sizes = (post.sizes.get("chain", 0), post.sizes.get("draw", 0))
    short = sizes != (settings.chains, settings.draws)
    if not short:
        values = [np.asarray(post[v].values) for v in post.data_vars]
        short = any(v.dtype.kind == "f" and np.isnan(v).any() for v in values)
    if short:
        raise SamplingInterrupted(
            _interrupted(start) + f" ({sizes[0]} chains x {sizes[1]} draws came back of "
            f"{settings.chains} x {settings.draws})"
        )


def _sample_nutpie(
    built: BuiltModel,
    settings: SamplerSettings,
    compiled: CompiledModel | None,
    timings: dict[str, float],
):
    nutpie = import_nutpie()
    if compiled is None:
        compiled = compile_model(built, settings)
        timings["compile"] = compiled.seconds
    cores = settings.cores
    if cores is None:
        cores = 1 if compiled.backend == "c" else None
    kwargs: dict[str, Any] = {
        "draws": settings.draws,
        "tune": max(int(settings.tune), 1),  # nuts-rs needs at least one warm-up step
        "chains": settings.chains,
        "target_accept": settings.target_accept,
        "progress_bar": _progressbar(settings),
    }
    if cores is not None:
        kwargs["cores"] = cores
    if settings.random_seed is not None:
        kwargs["seed"] = int(settings.random_seed)
    start = time.perf_counter()
    background = None
    interval = sys.getswitchinterval()
    if compiled.backend == "c":
        sys.setswitchinterval(C_BACKEND_SWITCH_INTERVAL)
    try:
        # Not nutpie's blocking call: on Ctrl-C it returns the partial trace as if complete.
        background = nutpie.sample(compiled.nutpie_model, blocking=False, **kwargs)
        idata = background.wait()
    except KeyboardInterrupt:
        if background is not None:
            background.cancel()
        raise SamplingInterrupted(_interrupted(start)) from None
    finally:
        sys.setswitchinterval(interval)
    _check_complete(idata, settings, start)
    timings["sample"] = time.perf_counter() - start
    idata["posterior"].attrs["sampling_time"] = timings["sample"]
    if compiled.cached is not None:
        idata["posterior"].attrs["kernel_cache"] = "loaded" if compiled.cached else "compiled"
    return idata


def sample(
    built: BuiltModel,
    settings: SamplerSettings | None = None,
    *,
    compiled: CompiledModel | None = None,
    predictive: bool = True,
) -> Fit:
    """Sample the posterior and assemble a :class:`Fit`.

    Parameters
    ----------
    built : BuiltModel
        From :func:`bayesmix.build_model`.
    settings : SamplerSettings, optional
    compiled : CompiledModel, optional
        From :func:`compile_model` (nutpie only); compiled here when not given.  ``timings``
        then hold ``compile`` and ``sample`` apart (PyMC's and numpyro's samplers compile
        inside ``sample``).
    predictive : bool
        Add the groups ``observed_data`` and ``log_likelihood`` (:mod:`bayesmix.predictive`).

    Returns
    -------
    Fit
        Its posterior holds ``beta`` (chain, draw, fixed), ``u`` (chain, draw, cluster, random),
        ``sd_u``, ``corr_u``, ``chol_u``, ``sigma`` and the cluster coefficients ``coef``
        (chain, draw, cluster, level1).  With the collapsed likelihood, ``u`` is drawn after
        sampling from its exact conditional, one draw of u per posterior draw.
    """
    settings = settings or SamplerSettings()
    if settings.sampler == "numpyro" and built.likelihood == "laplace":
        raise SpecError(
            "likelihood='laplace' is a compiled Numba operation that JAX (numpyro) cannot "
            "run: use sampler='nutpie' (the default) or 'pymc', or likelihood='agq' or "
            "'cells' with numpyro"
        )
    if settings.sampler == "numpyro" and importlib.util.find_spec("numpyro") is None:
        raise SpecError(
            "sampler='numpyro' needs numpyro and JAX: pip install 'bayesmix[numpyro]'"
        )
    timings: dict[str, float] = {}
    if settings.sampler == "nutpie":
        idata = _sample_nutpie(built, settings, compiled, timings)
    else:
        idata = _sample_pymc(built, settings, timings)
    return _assemble(built, settings, idata, timings, predictive)


def _sample_pymc(built: BuiltModel, settings: SamplerSettings, timings: dict[str, float]):
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
    try:
        idata = pm.sample(**kwargs)
    except KeyboardInterrupt:
        raise SamplingInterrupted(_interrupted(start)) from None
    _check_complete(idata, settings, start)  # PyMC returns a partial trace on Ctrl-C
    timings["sample"] = time.perf_counter() - start
    return idata


def _assemble(
    built: BuiltModel, settings: SamplerSettings, idata: Any, timings: dict[str, float],
    predictive: bool = True,
) -> Fit:
    post = idata["posterior"].to_dataset()
    design = built.design
    if not design.single_factor:
        if built.likelihood == "collapsed":
            from bayesmix.crossed import CrossedStats, draw_crossed_posterior
            from bayesmix.nested import draw_inner_posterior

            start = time.perf_counter()
            draw = (draw_crossed_posterior if isinstance(built.stats, CrossedStats)
                    else draw_inner_posterior)
            post = draw(built, settings.random_seed, post)
            timings["u_draws"] = time.perf_counter() - start
        return _fit(built, settings, idata, _factors_posterior(post, design), timings,
                    predictive)
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    beta = post[nt.BETA].transpose("chain", "draw", nt.DIM_FIXED).to_numpy()
    start = time.perf_counter()
    if nt.U not in post:
        # Collapsed / marginal forms: ũ from its exact conditional on the standardised scale,
        # mapped back.
        rng = np.random.default_rng(
            None if settings.random_seed is None else [settings.random_seed, 1]
        )
        flat = chains * draws
        beta_std = (
            post[nt.BETA_STD].transpose("chain", "draw", nt.DIM_FIXED).to_numpy()
            if nt.BETA_STD in post else np.zeros((chains, draws, 0))
        ).reshape(flat, -1)
        chol = post[nt.CHOL_STD].transpose("chain", "draw", nt.DIM_RANDOM, nt.DIM_RANDOM2)
        chol = chol.to_numpy().reshape(flat, design.q, design.q)
        if built.likelihood in MARGINAL_FORMS:
            u_std, rate = draw_effects(built, beta_std, chol, rng)
            idata["posterior"].attrs["u_acceptance"] = rate
        else:
            sigma = post[nt.SIGMA_STD].to_numpy()
            u_std = draw_u_conditional(
                built.stats,  # type: ignore[arg-type]
                beta_std,
                chol,
                sigma.reshape(-1),
                rng,
            )
        for lo in range(0, flat, 256):  # back to the original scale in place, in chunks
            u_std[lo : lo + 256] = built.scaling.u_from_std(u_std[lo : lo + 256])
        post[nt.U] = (
            ("chain", "draw", nt.DIM_CLUSTER, nt.DIM_RANDOM),
            u_std.reshape(chains, draws, design.J, design.q),
        )
        timings["u_draws"] = time.perf_counter() - start
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
    keep = [v for v in (nt.BETA, nt.SD_U, nt.CORR_U, nt.CHOL_U, nt.SIGMA, nt.U, nt.COEF)
            if v in post]
    # The standardised parameters (and the packed LKJ factor) are the sampler's coordinates,
    # not results: the posterior holds the original scale only.
    extra = [v for v in post.data_vars if v not in keep and not _internal(str(v))]
    post = post[keep + extra + ([nt.U_OFFSET] if nt.U_OFFSET in post else [])]
    return _fit(built, settings, idata, post, timings, predictive)


def _internal(name: str) -> bool:
    """The sampler's coordinates (standardised, packed), not results."""
    return name in {nt.U_OFFSET, nt.BETA_STD, nt.SIGMA_STD, nt.CHOL_STD, nt.U_STD,
                    "alpha_beta_std"} or (
        name.startswith((COV_RV, SD_RV, f"{nt.U_OFFSET}_", "u_mean_std", "u_dev_std"))
    )


def _factors_posterior(post: xr.Dataset, design) -> xr.Dataset:
    """Several grouping factors: β, σ and per factor u, sd_u, corr_u (original scale)."""
    keep = [v for v in (nt.BETA, nt.SIGMA) if v in post]
    for fe in design.effects:
        keep += [v for v in (f"{nt.U}_{fe.name}", f"{nt.SD_U}_{fe.name}",
                             f"{nt.CORR_U}_{fe.name}") if v in post]
    return post[keep]


def _fit(built: BuiltModel, settings: SamplerSettings, idata: Any, post: xr.Dataset,
         timings: dict[str, float], predictive: bool = True) -> Fit:
    design = built.design
    attrs = dict(idata["posterior"].attrs)
    attrs.update({"likelihood": built.likelihood, "sampler": settings.sampler})
    post.attrs = attrs
    groups = {"posterior": post}
    for name in ("sample_stats",):
        if name in idata.children:
            groups[name] = idata[name].to_dataset()
    tree = xr.DataTree.from_dict(groups)
    fit = Fit(
        spec=design.spec,
        design=design,
        priors=built.priors,
        settings=settings,
        likelihood=built.likelihood,
        idata=tree,
        timings=timings,
        built=built,
    )
    return add_predictive_groups(fit) if predictive else fit
