"""A PyMC model's structure as a key, the same in every process (:mod:`bayesmix.kernel_cache`).

:func:`structure_key` walks the graph of every random variable, deterministic, potential and
value variable of a ``pm.Model`` in milliseconds, and hashes what decides the compiled log
density: every operation by its properties (an operation with an inner graph, such as PyMC's
symbolic random variables or Scan, by its attributes and inner graph, recursively), every
constant by value, every shared variable (``pm.Data``) by name and type (not its value or
size: those are the data), the value transforms, ``check_bounds``, PyTensor's flags and the
library versions.  An operation it cannot describe makes the model uncacheable (``None``),
never a guess.
"""

from __future__ import annotations

import dataclasses
import hashlib
from importlib.metadata import version
from typing import Any

KERNEL_VERSION = 1
"""Bumped whenever the key's recipe, the generated wrapper source or the sidecar's layout
(:mod:`bayesmix.kernel_cache`) changes."""


class _Uncacheable(Exception):
    """An operation whose identity cannot be written down: the model is compiled uncached."""


_SIMPLE = (str, bool, int, float, type(None))
_CACHES = {"_lop_op_cache", "_rop_op_cache", "_connection_pattern", "_frozen_lop",
           "_frozen_rop", "destroy_map"}


def _simple(value: Any) -> bool:
    if isinstance(value, _SIMPLE):
        return True
    if isinstance(value, tuple | list | frozenset):
        return all(_simple(v) for v in value)
    if isinstance(value, dict):
        return all(_simple(k) and _simple(v) for k, v in value.items())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _simple(dataclasses.astuple(value))
    return False


def _op_key(op: Any) -> Any:
    """An operation's identity, the same in every process.

    Its properties; for a graph-valued operation (PyMC's symbolic random variables, Scan),
    its attributes and its inner graph, recursively.
    """
    from pytensor.link.numba.dispatch.basic import default_hash_key_from_props

    if hasattr(op, "__props__"):
        return default_hash_key_from_props(op)
    fgraph = getattr(op, "fgraph", None)
    if fgraph is None:
        raise _Uncacheable(type(op).__qualname__)
    attrs = []
    for name, value in sorted(vars(op).items()):
        if name in _CACHES or name == "fgraph":
            continue
        if name in ("input_types", "output_types"):
            value = tuple(str(t) for t in value)
        elif not _simple(value):
            raise _Uncacheable(f"{type(op).__qualname__}.{name}")
        attrs.append((name, repr(value)))
    inner = _graph_parts(list(fgraph.outputs), list(fgraph.inputs), {})
    return (type(op).__module__, type(op).__qualname__, tuple(attrs), inner)


def _outputs(model: Any) -> list[Any]:
    values = [model.rvs_to_values[v] for v in (*model.free_RVs, *model.observed_RVs)]
    return [*model.free_RVs, *model.observed_RVs, *model.deterministics, *model.potentials,
            *values]


def _graph_parts(outputs: list[Any], inputs: list[Any], shared: dict[str, Any]) -> tuple:
    """A process-independent description of the graph from ``inputs`` to ``outputs``.

    Operations by :func:`_op_key`, constants by value, shared variables by name and type
    (collected into ``shared`` by name; their values and sizes are the data, read at run
    time), other roots by position.
    """
    from pytensor.compile.sharedvalue import SharedVariable
    from pytensor.graph.basic import Constant
    from pytensor.graph.traversal import toposort
    from pytensor.link.numba.dispatch.basic import cache_key_for_constant

    nodes = list(toposort(outputs))
    where: dict[Any, tuple] = {v: ("in", i) for i, v in enumerate(inputs)}
    for i, node in enumerate(nodes):
        for j, out in enumerate(node.outputs):
            where[out] = (i, j)
    roots: dict[Any, int] = {}

    def ref(var: Any) -> Any:
        if var in where:
            return where[var]
        if isinstance(var, Constant):
            return ("c", str(var.type), cache_key_for_constant(var.data))
        if var not in roots:
            roots[var] = len(roots)
        if isinstance(var, SharedVariable):
            if var.name is not None:
                shared[var.name] = var
            return ("s", roots[var], var.name, str(var.type))
        return ("v", roots[var], var.name, str(var.type))

    parts = [(_op_key(node.op), tuple(ref(v) for v in node.inputs),
              tuple((str(o.type), o.name) for o in node.outputs)) for node in nodes]
    return tuple(parts), tuple(ref(v) for v in outputs), tuple(v.name for v in outputs)


def _transform_key(transform: Any, shared: dict[str, Any]) -> Any:
    """A value transform's class and attributes (a graph-valued attribute by its graph)."""
    from pytensor.graph.basic import Variable

    if transform is None:
        return None
    attrs = []
    for name, value in sorted(vars(transform).items()):
        if name == "__doc__":
            continue
        if isinstance(value, Variable):
            value = _graph_parts([value], [], shared)
        elif not _simple(value):
            raise _Uncacheable(f"{type(transform).__qualname__}.{name}")
        attrs.append((name, repr(value)))
    return type(transform).__module__, type(transform).__qualname__, tuple(attrs)


def structure_key(model: Any) -> tuple[str | None, dict[str, Any]]:
    """Hash a PyMC model's structure; return the key and its shared variables by name.

    Parameters
    ----------
    model : pymc.Model

    Returns
    -------
    key : str or None
        sha256 of the graph of every random variable, deterministic, potential and value
        variable (:func:`_graph_parts`), the transforms, ``check_bounds``, PyTensor's flags
        and the versions of PyMC, PyTensor, Numba and nutpie; None when an operation cannot
        be described (then nothing is cached).
    shared : dict
        The model's named shared variables (``pm.Data``), which the kernels read.
    """
    import pytensor

    shared: dict[str, Any] = {}
    parts: list[Any] = [KERNEL_VERSION, *(version(p) for p in ("pymc", "pytensor", "numba",
                                                                "nutpie"))]
    parts += [pytensor.config.floatX, pytensor.config.numba__fastmath, model.check_bounds]
    try:
        parts.append(_graph_parts(_outputs(model), [], shared))
        for rv in model.free_RVs:
            parts.append((rv.name, _transform_key(model.rvs_to_transforms.get(rv), shared)))
    except _Uncacheable:
        return None, shared
    return hashlib.sha256(repr(parts).encode()).hexdigest(), shared
