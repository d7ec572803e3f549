"""One declarative prior distribution (``Prior("HalfNormal", sigma=1.0)``), named as in PyMC.

Every family here is a scale family, so a prior declared on the original scale of a parameter
maps exactly onto the standardised scale the model is built on (:meth:`Prior.scaled`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from bayesmix.errors import SpecError

_PARAMS: dict[str, tuple[str, ...]] = {
    "Normal": ("mu", "sigma"),
    "StudentT": ("nu", "mu", "sigma"),
    "HalfNormal": ("sigma",),
    "HalfStudentT": ("nu", "sigma"),
    "HalfCauchy": ("beta",),
    "Exponential": ("lam",),
    "Gamma": ("alpha", "beta"),
    "LogNormal": ("mu", "sigma"),
}
# How each parameter changes when the variable is multiplied by a factor.
_SCALE_RULES: dict[str, dict[str, str]] = {
    "Normal": {"mu": "mul", "sigma": "mul"},
    "StudentT": {"mu": "mul", "sigma": "mul"},
    "HalfNormal": {"sigma": "mul"},
    "HalfStudentT": {"sigma": "mul"},
    "HalfCauchy": {"beta": "mul"},
    "Exponential": {"lam": "div"},
    "Gamma": {"beta": "div"},
    "LogNormal": {"mu": "log"},
}
_POSITIVE = ("HalfNormal", "HalfStudentT", "HalfCauchy", "Exponential", "Gamma", "LogNormal")


@dataclass(frozen=True)
class Prior:
    """One prior distribution, named as in PyMC, e.g. ``Prior("HalfNormal", sigma=1.0)``.

    Parameters may be scalars or, for vector parameters (SDs of U), sequences.
    """

    dist: str
    params: tuple[tuple[str, Any], ...] = ()

    def __init__(self, dist: str, **params: Any) -> None:
        if dist not in _PARAMS:
            raise SpecError(
                f"unknown prior distribution {dist!r}; choose one of {', '.join(_PARAMS)}"
            )
        expected = _PARAMS[dist]
        missing = [p for p in expected if p not in params]
        extra = [p for p in params if p not in expected]
        if missing or extra:
            raise SpecError(
                f"{dist} takes parameters ({', '.join(expected)}); "
                + (f"missing {', '.join(missing)}" if missing else f"unknown {', '.join(extra)}")
            )
        clean = []
        for key in expected:
            value = params[key]
            arr = np.asarray(value, dtype=float)
            if not np.all(np.isfinite(arr)):
                raise SpecError(f"{dist} parameter {key} must be finite, not {value!r}")
            if key in ("sigma", "nu", "beta", "lam", "alpha") and np.any(arr <= 0):
                raise SpecError(f"{dist} parameter {key} must be positive, not {value!r}")
            clean.append((key, tuple(arr.tolist()) if arr.ndim else float(arr)))
        object.__setattr__(self, "dist", dist)
        object.__setattr__(self, "params", tuple(clean))

    @classmethod
    def from_value(cls, value: Any, *, where: str) -> Prior:
        """Build from a mapping ``{"dist": "Normal", "mu": 0, "sigma": 1}`` or a Prior."""
        if isinstance(value, Prior):
            return value
        if not isinstance(value, Mapping) or "dist" not in value:
            raise SpecError(
                f"the prior for {where} must be a table with a `dist` key, e.g. "
                '{ dist = "HalfNormal", sigma = 1 }'
            )
        params = {k: v for k, v in value.items() if k != "dist"}
        try:
            return cls(str(value["dist"]), **params)
        except SpecError as exc:
            raise SpecError(f"prior for {where}: {exc}") from None

    @property
    def kwargs(self) -> dict[str, Any]:
        """Parameters as a dict."""
        return dict(self.params)

    @property
    def positive(self) -> bool:
        """Whether the distribution lives on the positive half-line."""
        return self.dist in _POSITIVE

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON / TOML)."""
        return {"dist": self.dist, **{k: (list(v) if isinstance(v, tuple) else v)
                                      for k, v in self.params}}

    def __str__(self) -> str:
        def fmt(v: Any) -> str:
            if isinstance(v, tuple):
                return "[" + ", ".join(f"{x:.4g}" for x in v) + "]"
            return f"{v:.4g}"

        return f"{self.dist}({', '.join(f'{k}={fmt(v)}' for k, v in self.params)})"

    def scaled(self, factor: np.ndarray | float) -> Prior:
        """The prior of ``factor · X`` for X with this prior (factor > 0, per element).

        Every family here is a scale family (Normal and StudentT location-scale), so the
        result is the same family with its location and scale multiplied (a rate divided,
        LogNormal's mu shifted by log factor).
        """
        f = np.asarray(factor, dtype=float)
        rules = _SCALE_RULES[self.dist]
        out = {}
        for key, value in self.params:
            v = np.asarray(value, dtype=float)
            rule = rules.get(key)
            if rule == "mul":
                v = v * f
            elif rule == "div":
                v = v / f
            elif rule == "log":
                v = v + np.log(f)
            out[key] = tuple(v.tolist()) if v.ndim else float(v)
        return Prior(self.dist, **out)

    def take(self, index: np.ndarray | list[int]) -> Prior:
        """The prior of some elements of a vector-valued prior (scalars are kept)."""
        idx = np.asarray(index, dtype=int)
        out = {}
        for key, value in self.params:
            arr = np.asarray(value, dtype=float)
            out[key] = tuple(arr[idx].tolist()) if arr.ndim else float(arr)
        return Prior(self.dist, **out)

    def broadcast(self, size: int) -> Prior:
        """The same prior with every parameter as a vector of ``size``."""
        out = {}
        for key, value in self.params:
            arr = np.broadcast_to(np.asarray(value, dtype=float), (size,))
            out[key] = tuple(arr.tolist())
        return Prior(self.dist, **out)
