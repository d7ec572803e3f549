"""The structure-keyed kernels (bayesmix.kernel_cache) against the PyMC model they come from.

For every likelihood form, the cached kernels' log density and gradient (called through their
C entry points, as nutpie calls them) equal PyMC's ``compile_logp`` / ``compile_dlogp`` at
random points; a second process loads them without compiling; the key follows the structure
and not the shared data.
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix as bm
from bayesmix import kernel_cache
from bayesmix.sampling import _initvals

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"


def _call(kernels, x: np.ndarray) -> tuple[float, np.ndarray]:
    model = kernels.nutpie_model
    out, logp = np.zeros(model.n_dim), np.zeros(1)
    ptr = ctypes.POINTER(ctypes.c_double)
    code = model.compiled_logp_func.ctypes(
        model.n_dim, x.ctypes.data_as(ptr), out.ctypes.data_as(ptr), logp.ctypes.data_as(ptr),
        ctypes.c_void_p(model.user_data.ctypes.data))
    assert code == 0, f"logp kernel returned {code}"
    return float(logp[0]), out


def _check_equal_to_pymc(built, points: int = 4) -> kernel_cache.CachedKernels:
    kernels = kernel_cache.load_or_compile(built.model, _initvals(built))
    assert kernels is not None
    model = built.model
    logp, dlogp = model.compile_logp(), model.compile_dlogp()
    names, slices, shapes = kernels.nutpie_model.shape_info
    rng = np.random.default_rng(7)
    n_dim = kernels.nutpie_model.n_dim
    for k in range(points):
        x = kernels.nutpie_model.initial_point_func(k) + 0.3 * rng.standard_normal(n_dim)
        point = {n: x[s].reshape(sh) for n, s, sh in zip(names, slices, shapes, strict=True)
                 if s.stop <= n_dim}
        value, grad = _call(kernels, x)
        want = float(logp(point))
        assert value == pytest.approx(want, rel=1e-10, abs=1e-10)
        want_grad = dlogp(point)
        scale = np.max(np.abs(want_grad)) + 1.0
        assert np.max(np.abs(grad - want_grad)) / scale < 1e-10
    return kernels


def _dung(**kw):
    data = pd.read_csv(DATA / "dung.csv")
    spec = bm.Spec.from_formula("pr_dung ~ flies + (1 | oven_block)")
    return bm.build_model(bm.build_design(spec, data), **kw)


@pytest.mark.slow
@pytest.mark.parametrize("likelihood,shared", [("collapsed", True), ("collapsed", False),
                                                ("sufficient", True), ("rows", True)])
def test_gaussian_forms_equal_pymc(likelihood, shared):
    _check_equal_to_pymc(_dung(likelihood=likelihood, shared_data=shared))


@pytest.mark.slow
def test_several_factors_equal_pymc():
    data = pd.read_csv(DATA / "pastes.csv")
    spec = bm.Spec.from_formula("strength ~ 1 + (1 | batch/cask)")
    _check_equal_to_pymc(bm.build_model(bm.build_design(spec, data), shared_data=True))


@pytest.mark.slow
@pytest.mark.parametrize("likelihood", ["rows", "cells", "laplace", "agq"])
def test_glmm_forms_equal_pymc(likelihood):
    spec = bm.Spec.from_file(ROOT / "models" / "cbpp.toml")
    design = bm.build_design(spec, bm.load_data(spec))
    _check_equal_to_pymc(bm.build_model(design, likelihood=likelihood), points=2)


def test_key_follows_structure_not_shared_data():
    data = pd.read_csv(DATA / "dung.csv")
    spec = bm.Spec.from_formula("pr_dung ~ flies + (1 | oven_block)")
    other = data.assign(pr_dung=data["pr_dung"].sample(frac=1.0, random_state=1).to_numpy())
    keys = [kernel_cache.structure_key(bm.build_model(bm.build_design(spec, d),
                                                      shared_data=True).model)[0]
            for d in (data, data, other)]
    assert keys[0] == keys[1] == keys[2]
    baked = [kernel_cache.structure_key(bm.build_model(bm.build_design(spec, d)).model)[0]
             for d in (data, other)]
    assert baked[0] != baked[1] and keys[0] not in baked  # constants are part of the key
    slope = bm.Spec.from_formula("pr_dung ~ flies + (1 + flies | oven_block)")
    wider = kernel_cache.structure_key(bm.build_model(bm.build_design(slope, data),
                                                      shared_data=True).model)[0]
    assert wider != keys[0]
    tighter = bm.Priors(sigma=bm.Prior("HalfNormal", sigma=0.5))
    stricter = bm.build_model(bm.build_design(spec, data), tighter, shared_data=True)
    assert kernel_cache.structure_key(stricter.model)[0] != keys[0]


@pytest.mark.slow
def test_other_sizes_load_the_same_kernels():
    """Fewer clusters (another J, so statistics of other sizes): the same key, the kernels
    loaded, the trace's layout evaluated again, and still equal to PyMC's log density."""
    data = pd.read_csv(DATA / "dung.csv")
    spec = bm.Spec.from_formula("pr_dung ~ flies + (1 + flies | oven_block)")
    fewer = data[data["oven_block"] != data["oven_block"].iloc[0]]
    built = [bm.build_model(bm.build_design(spec, d), shared_data=True) for d in (data, fewer)]
    full = _check_equal_to_pymc(built[0])
    part = _check_equal_to_pymc(built[1])
    assert part.key == full.key and part.hit
    assert part.nutpie_model.n_dim == full.nutpie_model.n_dim


SECOND_PROCESS = """
import json, sys
import pandas as pd
import bayesmix as bm
from bayesmix import kernel_cache
from bayesmix.sampling import _initvals
data = pd.read_csv("data/dung.csv").sample(frac=1.0, random_state=int(sys.argv[1]))
spec = bm.Spec.from_formula("pr_dung ~ flies + (1 | oven_block)")
built = bm.build_model(bm.build_design(spec, data), shared_data=True)
calls = []
compile_ = kernel_cache._compile
kernel_cache._compile = lambda *a, **kw: calls.append(1) or compile_(*a, **kw)
k = kernel_cache.load_or_compile(built.model, _initvals(built))
print(json.dumps({"hit": k.hit, "key": k.key, "compiled": bool(calls)}))
"""


@pytest.mark.slow
def test_second_process_loads_without_compiling(tmp_path):
    env = {**__import__("os").environ, "PYTENSOR_FLAGS": f"base_compiledir={tmp_path}"}
    runs = [json.loads(subprocess.run([sys.executable, "-c", SECOND_PROCESS, str(seed)],
                                      cwd=ROOT, env=env, capture_output=True, text=True,
                                      check=True).stdout.strip().splitlines()[-1])
            for seed in (1, 2)]
    assert runs[0]["hit"] is False and runs[1]["hit"] is True
    assert runs[0]["key"] == runs[1]["key"]
    assert runs[0]["compiled"] is True and runs[1]["compiled"] is False  # nothing built on a hit
    assert (tmp_path / "bayesmix" / f"{runs[0]['key']}.json").exists()


@pytest.mark.slow
def test_fit_through_cached_kernels_matches_c_backend():
    """Same data, same priors: the Numba kernels' posterior and the C path's agree."""
    data = pd.read_csv(DATA / "dung.csv")
    spec = bm.Spec.from_formula("pr_dung ~ flies + (1 | oven_block)")
    kw = {"draws": 500, "tune": 500, "chains": 2, "random_seed": 3, "progressbar": False}
    fast = bm.fit(spec, data, **kw)
    assert fast.posterior.attrs["kernel_cache"] in ("loaded", "compiled")
    slow = bm.fit(spec, data, settings=bm.SamplerSettings(backend="c"), **kw)
    for name in ("beta", "sigma"):
        a, b = fast.posterior[name], slow.posterior[name]
        sd = float(b.std())
        assert abs(float(a.mean()) - float(b.mean())) < 0.3 * sd, name
