"""The log density compiled once per model structure, cached on disk, handed to nutpie.

nutpie's own Numba path (``nutpie.compile_pymc_model``) rebuilds the log-density graph,
rewrites it and compiles two C-callable wrappers around PyTensor's Numba function in every
process: 7 s for the 18-row dung model on a warm machine, most of it the wrappers, which Numba
cannot cache.  Here the whole artefact is keyed by the PyMC model's structure and cached:

1. :func:`bayesmix.structure_key.structure_key` hashes the model's random-variable graph
   (every operation with its properties, every constant by value, every shared variable by
   name and type), the transforms, and the versions of the libraries that compile it.
   Walking the graph takes milliseconds; building the log density and its gradient from it
   takes seconds.
2. On a miss, nutpie's graph builder compiles the log density and gradient and the
   "expand" function (the trace's values from the unconstrained point) with PyTensor's Numba
   linker, and two wrappers with nutpie's C signatures are compiled from generated source
   through PyTensor's Numba cache locator (``compile_numba_function_src`` with a key): each
   wrapper's machine code, with PyTensor's function inlined, is stored under the key.  A small
   JSON file beside it holds the names, shapes and shared inputs.
3. On a hit, neither the graph nor PyTensor's function is built: the wrappers load from disk,
   the shared inputs are read from the model by name, and only PyMC's initial-point function
   is compiled (FAST_COMPILE, 0.1 s).

The wrappers receive the shared data (``pm.Data`` arrays) through nutpie's ``user_data``
pointer, an int64 array ``[address, shape...]`` per input, so the machine code does not depend
on the data's values: a model built with ``shared_data=True`` hits the cache for any data set
of the same structure and sizes.  Data baked in as constants are part of the key (a new data
set then compiles again, as before).

The PyMC model stays the source of truth: ``tests/test_kernel_cache.py`` checks that the
loaded kernels' log density and gradient equal ``model.compile_logp`` / ``compile_dlogp`` at
random points, for every likelihood form.  nutpie is pinned to the minor version whose
``CompiledPyMCModel`` and ``_make_functions`` this module was written against.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bayesmix.structure_key import KERNEL_VERSION, structure_key

__all__ = ["KERNEL_VERSION", "CachedKernels", "cache_dir", "load_or_compile", "structure_key"]

_LOGP_SIG = "int64(uint64, CPointer(float64), CPointer(float64), CPointer(float64), voidptr)"
_EXPAND_SIG = "int64(uint64, uint64, CPointer(float64), CPointer(float64), voidptr)"


@dataclass(frozen=True)
class CachedKernels:
    """A nutpie model from the structure cache, and whether it was loaded or compiled.

    Attributes
    ----------
    nutpie_model : Any
        A ``nutpie.compile_pymc.CompiledPyMCModel``.
    key : str
        The structure key (sha256 hex).
    hit : bool
        True when the kernels were loaded from disk (no graph was built or compiled).
    seconds : float
        Wall time of :func:`load_or_compile`.
    """

    nutpie_model: Any
    key: str
    hit: bool
    seconds: float


def cache_dir() -> Path:
    """The sidecar directory: ``<PyTensor base_compiledir>/bayesmix`` (next to its Numba cache)."""
    import pytensor

    path = Path(pytensor.config.base_compiledir) / "bayesmix"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _wrapper_source(kind: str, inputs: list[dict[str, Any]], used: list[int]) -> str:
    """Source of nutpie's C-callable logp or expand function around PyTensor's ``inner``.

    ``meta`` (int64, nutpie's ``user_data``) holds, for each shared input in ``inputs``, its
    address and then its shape; ``used`` lists the inputs ``inner`` takes, in its order.
    """
    offsets, pos = [], 0
    for spec in inputs:
        offsets.append(pos)
        pos += 1 + spec["ndim"]
    lines, args = [], []
    for i in used:
        spec, at = inputs[i], offsets[i]
        dims = [f"meta[{at + 1 + d}]" for d in range(spec["ndim"])]
        shape = "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"
        lines.append(f"    a{i} = numba.carray(_void_pointer(meta[{at}]), {shape}, "
                     f"np.{spec['dtype']})")
        args.append(f"a{i}")
    call = ", ".join(["x", *args])
    head = [f"    meta = numba.carray(meta_, ({max(pos, 1)},), np.int64)"]
    if kind == "logp":
        return "\n".join([
            "def bayesmix_logp(dim, x_, out_, logp_, meta_):",
            *head, *lines,
            "    x = numba.carray(x_, (dim,))",
            "    out = numba.carray(out_, (dim,))",
            "    logp = numba.carray(logp_, ())",
            "    try:",
            f"        value, grad = inner({call})",
            "    except Exception:",
            "        return 1",
            "    if grad.shape[0] != dim:",
            "        return -1",
            "    logp[()] = value",
            "    out[...] = grad",
            "    if not np.all(np.isfinite(out)):",
            "        return 3",
            "    if not np.isfinite(value):",
            "        return 4",
            "    return 0",
        ]) + "\n"
    return "\n".join([
        "def bayesmix_expand(dim, expanded, x_, out_, meta_):",
        *head, *lines,
        "    x = numba.carray(x_, (dim,))",
        "    out = numba.carray(out_, (expanded,))",
        "    try:",
        f"        (values,) = inner({call})",
        "    except Exception:",
        "        return -2",
        "    if values.shape[0] != expanded:",
        "        return -1",
        "    out[...] = values",
        "    return 0",
    ]) + "\n"


def _void_pointer_intrinsic() -> Any:
    from numba.core import cgutils, types
    from numba.extending import intrinsic

    @intrinsic
    def _void_pointer(typingctx, src):
        def codegen(cgctx, builder, sig, args):
            return builder.inttoptr(args[0], cgutils.voidptr_t)

        return types.voidptr(src), codegen

    return _void_pointer


_VOID_POINTER: Any = None


def _cfunc(kind: str, entry: dict[str, Any], inner: Any, key: str) -> Any:
    """Compile (miss) or load (hit, ``inner`` unused) one wrapper under ``key``."""
    global _VOID_POINTER
    import numba
    from pytensor.link.numba.cache import compile_numba_function_src

    if _VOID_POINTER is None:
        _VOID_POINTER = _void_pointer_intrinsic()
    name = f"bayesmix_{kind}"
    func = compile_numba_function_src(
        _wrapper_source(kind, entry["inputs"], entry[f"{kind}_uses"]), name,
        global_env={"__name__": __name__, "numba": numba, "np": np, "inner": inner,
                    "_void_pointer": _VOID_POINTER},
        cache_key=f"bayesmix-{kind}-{key}",
    )
    sig = _LOGP_SIG if kind == "logp" else _EXPAND_SIG
    return numba.cfunc(sig, cache=True, error_model="numpy")(func)


def _user_data(inputs: list[dict[str, Any]], shared: dict[str, Any]) -> tuple[np.ndarray, dict]:
    """Nutpie's ``user_data`` (int64 address and shape per input) and the arrays it points to.

    The arrays are C-contiguous copies, which the caller keeps alive.
    """
    arrays, meta = {}, []
    for spec in inputs:
        value = np.array(shared[spec["name"]].get_value(borrow=True), dtype=spec["dtype"],
                         order="C", copy=True)
        if value.ndim != spec["ndim"]:
            raise ValueError(f"shared input {spec['name']!r} has {value.ndim} dimensions, "
                             f"the cached kernel {spec['ndim']}")
        value.flags.writeable = False
        arrays[spec["name"]] = value
        meta += [value.ctypes.data, *value.shape]
    return np.array(meta or [0], dtype=np.int64), arrays


def _compile(model: Any, point_fn: Any, key: str, shared: dict[str, Any]) -> dict[str, Any]:
    """Miss: build and compile the graphs (nutpie's builder) and the two wrappers."""
    from nutpie.compile_pymc import _make_functions

    n_dim, n_expanded, logp_pt, expand_pt, _, shape_info, reparam = _make_functions(
        model, mode="NUMBA", compute_grad=True, join_expanded=True,
        pymc_initial_point_fn=point_fn,
    )
    inputs: list[dict[str, Any]] = []
    uses: dict[str, list[int]] = {"logp": [], "expand": []}
    for kind, fn in (("logp", logp_pt), ("expand", expand_pt)):
        for var in fn.get_shared():
            if var.name is None or shared.get(var.name) is not var:
                raise ValueError(f"shared input {var.name!r} is not a named pm.Data")
            value = np.asarray(var.get_value(borrow=True))
            spec = {"name": var.name, "ndim": value.ndim, "dtype": value.dtype.name}
            if spec not in inputs:
                inputs.append(spec)
            uses[kind].append(inputs.index(spec))
    entry: dict[str, Any] = {
        "data_shapes": _data_shapes(inputs, shared), "n_dim": int(n_dim),
        "n_expanded": int(n_expanded), "inputs": inputs,
        "logp_uses": uses["logp"], "expand_uses": uses["expand"], "names": shape_info[0],
        "slices": [[int(s.start), int(s.stop)] for s in shape_info[1]],
        "shapes": [list(map(int, s)) for s in shape_info[2]], "reparameterized": reparam,
    }
    logp = _cfunc("logp", entry, logp_pt.vm.jit_fn, key)
    expand = _cfunc("expand", entry, expand_pt.vm.jit_fn, key)
    path = cache_dir() / f"{key}.json"
    tmp = path.with_suffix(f".{time.time_ns()}.tmp")
    tmp.write_text(json.dumps(entry))
    tmp.replace(path)  # atomic: a concurrent reader sees the whole file or none
    return {**entry, "logp": logp, "expand": expand}


def _data_shapes(inputs: list[dict[str, Any]], shared: dict[str, Any]) -> list[list[int]]:
    return [list(np.shape(shared[spec["name"]].get_value(borrow=True))) for spec in inputs]


def _reshape(entry: dict[str, Any], model: Any) -> None:
    """The trace's shapes for data of other sizes than the kernels were compiled with.

    The kernels read sizes at run time; only the layout of the parameter vector and of the
    expanded trace (e.g. J × q effects) follows the data, evaluated here by nutpie's shape
    helper (~1 s, against 7-25 s for compiling).
    """
    from nutpie.compile_pymc import _compute_shapes

    shapes = _compute_shapes(model)
    entry["shapes"] = [list(map(int, shapes[name])) for name in entry["names"]]
    sizes = [int(np.prod(s)) for s in entry["shapes"]]
    stops = np.cumsum(sizes).tolist()
    entry["slices"] = [[b - n, b] for n, b in zip(sizes, stops, strict=True)]
    entry["n_dim"] = int(sum(sizes[:len(model.free_RVs)]))
    entry["n_expanded"] = int(sum(sizes))


def _flat_initial_point(point_fn: Any, names: list[str], shapes: list[list[int]],
                        n_dim: int) -> Any:
    """PyMC's initial point (a dict) as nutpie's flat vector of the ``n_dim`` free values."""

    def initial_point(seed: Any = None) -> np.ndarray:
        values = point_fn(seed)
        flat = np.empty(n_dim, dtype="float64")
        pos = 0
        for name, shape in zip(names, shapes, strict=False):
            if pos >= n_dim:
                break
            value = np.asarray(values[name], dtype="float64")
            if value.shape != tuple(shape):
                raise ValueError(f"initial value of {name} has shape {value.shape}, "
                                 f"expected {tuple(shape)}")
            flat[pos:pos + value.size] = value.ravel()
            pos += value.size
        return flat

    return initial_point


def load_or_compile(model: Any, initvals: dict[str, Any]) -> CachedKernels | None:
    """A nutpie model for ``model``, from the structure cache or compiled into it.

    Parameters
    ----------
    model : pymc.Model
    initvals : dict
        Initial values (PyMC's ``initvals``), as for ``nutpie.compile_pymc_model``.

    Returns
    -------
    CachedKernels or None
        None when the model cannot be cached (PyTensor's Numba cache is off, or a shared
        input is not a named ``pm.Data``): the caller then compiles with nutpie as before.
    """
    import pytensor

    from bayesmix.nutpie_import import import_nutpie

    import_nutpie()
    from nutpie.compile_pymc import CompiledPyMCModel, _prepare_dims_and_coords, _wrap_with_lock
    from pymc.initial_point import make_initial_point_fn

    if not pytensor.config.numba__cache:
        return None
    start = time.perf_counter()
    key, shared = structure_key(model)
    if key is None:
        return None
    point_fn = _wrap_with_lock(make_initial_point_fn(
        model=model, overrides=initvals, default_strategy="support_point",
        jitter_rvs=set(model.free_RVs), return_transformed=True,
    ))
    path = cache_dir() / f"{key}.json"
    hit = path.exists()
    if hit:
        entry = json.loads(path.read_text())
        entry["logp"] = _cfunc("logp", entry, None, key)
        entry["expand"] = _cfunc("expand", entry, None, key)
        if _data_shapes(entry["inputs"], shared) != entry["data_shapes"]:
            _reshape(entry, model)
    else:
        try:
            entry = _compile(model, point_fn, key, shared)
        except ValueError:
            return None
    user_data, arrays = _user_data(entry["inputs"], shared)
    names, shapes = entry["names"], entry["shapes"]
    shape_info = (names, [slice(a, b) for a, b in entry["slices"]], [tuple(s) for s in shapes])
    dims, coords = _prepare_dims_and_coords(model, shape_info, entry["reparameterized"])
    nutpie_model = CompiledPyMCModel(
        _n_dim=entry["n_dim"], dims=dims, _coords=coords,
        _shapes={n: tuple(s) for n, s in zip(names, shapes, strict=True)},
        compiled_logp_func=entry["logp"], compiled_expand_func=entry["expand"],
        initial_point_func=_flat_initial_point(point_fn, names, shapes, entry["n_dim"]),
        shared_data=arrays, shared_var_keys={}, user_data=user_data,
        n_expanded=entry["n_expanded"], shape_info=shape_info, logp_func=None,
        expand_func=None, reparameterized_names=entry["reparameterized"],
    )
    return CachedKernels(nutpie_model, key, hit, time.perf_counter() - start)
