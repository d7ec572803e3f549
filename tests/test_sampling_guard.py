"""The private nutpie helpers sampling.py relies on exist with the shape it unpacks.

nutpie is pinned below its next minor version in pyproject.toml; this test says what broke if
the pin is lifted and the helpers changed.
"""

from __future__ import annotations

import inspect

import nutpie.compile_pymc as cp


def test_private_helpers_are_there():
    for name in ("_make_functions", "_prepare_dims_and_coords", "_wrap_with_lock",
                 "_compute_shapes"):
        assert callable(getattr(cp, name, None)), f"nutpie.compile_pymc.{name} is gone"
    params = inspect.signature(cp._make_functions).parameters
    for arg in ("mode", "compute_grad", "join_expanded", "pymc_initial_point_fn"):
        assert arg in params, f"nutpie's _make_functions no longer takes {arg}"


def test_make_functions_returns_what_sampling_unpacks():
    import numpy as np
    import pymc as pm
    from pymc.initial_point import make_initial_point_fn

    with pm.Model() as model:
        pm.Normal("x", 0.0, 1.0, shape=2)
    point_fn = make_initial_point_fn(model=model, return_transformed=True)
    out = cp._make_functions(model, mode="FAST_COMPILE", compute_grad=True,
                             join_expanded=False,
                             pymc_initial_point_fn=cp._wrap_with_lock(point_fn))
    assert len(out) == 7  # n_dim, _, logp, expand, init, shape_info, reparam
    n_dim, _, logp_fn, _, _, shape_info, _ = out
    assert n_dim == 2
    value, grad = logp_fn(np.zeros(2))
    assert np.isclose(float(value), -np.log(2 * np.pi)) and np.allclose(grad, 0)
    names, _, shapes = shape_info
    assert list(names) == ["x"] and tuple(shapes[0]) == (2,)


def test_compiled_pymc_model_takes_what_kernel_cache_passes():
    """bayesmix.kernel_cache builds nutpie's CompiledPyMCModel from its own kernels."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(cp.CompiledPyMCModel)}
    wanted = {"_n_dim", "dims", "_coords", "_shapes", "compiled_logp_func",
              "compiled_expand_func", "initial_point_func", "shared_data", "shared_var_keys",
              "user_data", "n_expanded", "shape_info", "logp_func", "expand_func",
              "reparameterized_names"}
    assert wanted <= fields, f"CompiledPyMCModel lost {wanted - fields}"
    source = inspect.getsource(cp.CompiledPyMCModel._make_model)
    assert "compiled_logp_func.address" in source and "user_data.ctypes.data" in source
