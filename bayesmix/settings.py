"""Sampler settings: one options object for the sampling stage."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

import numpy as np

from bayesmix.errors import SpecError

Sampler = Literal["nutpie", "pymc", "numpyro"]
Likelihood = Literal["auto", "collapsed", "sufficient", "rows"]

SAMPLERS: tuple[str, ...] = ("nutpie", "pymc", "numpyro")
BACKENDS: tuple[str, ...] = ("auto", "c", "numba")
LIKELIHOODS: tuple[str, ...] = ("auto", "collapsed", "sufficient", "rows", "cells", "laplace",
                                "agq")


@dataclass(frozen=True)
class SamplerSettings:
    """How to sample the posterior.

    Attributes
    ----------
    draws : int
        Draws kept per chain.
    tune : int
        Warm-up draws per chain (discarded).
    chains : int
        Number of chains; 1 is allowed with a warning (R-hat needs at least 2).
    target_accept : float
        NUTS target acceptance probability; raise it (0.95, 0.99) when there are divergences.
    random_seed : int or None
        The same seed gives identical draws.
    sampler : {"nutpie", "pymc", "numpyro"}
        NUTS implementation.  numpyro needs ``pip install bayesmix[numpyro]``.
    likelihood : {"auto", "collapsed", "sufficient", "rows", "cells", "laplace", "agq"}
        Form of the likelihood, passed on to :func:`bayesmix.build_model`, which resolves
        ``"auto"`` per family and structure (collapsed for one factor or nested Gaussian
        ones, sufficient for crossed Gaussian ones, cells or rows for the other families).
        ``"laplace"`` and ``"agq"`` (one-factor GLMMs) integrate each cluster's effects out
        numerically and sample (γ, T) only (:mod:`bayesmix.glmm_marginal`).
    progressbar : bool or None
        None shows a progress bar in terminals and notebooks only.
    cores : int or None
        Chains run in parallel on this many cores; None lets the sampler choose (nutpie with
        the C back end: 1, since its log-density calls hold Python's GIL).
    backend : {"auto", "c", "numba"}
        How nutpie gets the log density and its gradient.  ``"c"``: a PyTensor function
        (its own disk cache makes a known graph quick to compile), called from nutpie through
        Python, chains one after another; ``"numba"``: C-callable Numba kernels, chains in
        parallel without the GIL, compiled once per model structure and loaded from disk
        afterwards (:mod:`bayesmix.kernel_cache`; ~0.5 s when cached, 7–25 s the first
        time).  ``"auto"`` picks ``"numba"`` when the model's data are shared
        (``build_model(..., shared_data=True)``, which ``bm.fit`` asks for with the Gaussian
        family), since then the kernels serve every data set of the structure; otherwise
        ``"c"`` for small models (≤ 1,000 clusters, and ≤ 20,000 rows for the row-wise and
        marginal GLMM forms) and ``"numba"`` above (``benchmarks/run.py``).

    Raises
    ------
    SpecError
        On construction, naming the field: a count that is not a whole number of the right
        size (``cores=0``, ``draws=1.5``, ``chains=True``), a seed that is negative or not a
        whole number, a ``target_accept`` that is not a number in (0, 1), a non-boolean
        ``progressbar``, or an unknown sampler, likelihood or back end.
    """

    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    target_accept: float = 0.8
    random_seed: int | None = None
    sampler: str = "nutpie"
    likelihood: str = "auto"
    progressbar: bool | None = None
    cores: int | None = None
    backend: str = "auto"

    def __post_init__(self) -> None:
        for name, choices in (
            ("sampler", SAMPLERS), ("backend", BACKENDS), ("likelihood", LIKELIHOODS)
        ):
            value = getattr(self, name)
            if not isinstance(value, str) or value not in choices:
                raise SpecError(
                    f"unknown {name} {value!r}; choose one of {', '.join(choices)}"
                )
        # Plain ints and floats (not numpy scalars), so the settings stay JSON-serialisable.
        set_ = object.__setattr__
        set_(self, "draws", _whole("draws", self.draws, 1))
        set_(self, "tune", _whole("tune", self.tune, 0))
        set_(self, "chains", _whole("chains", self.chains, 1))
        if self.cores is not None:
            set_(self, "cores", _whole("cores", self.cores, 1, none="None (the sampler chooses)"))
        if self.random_seed is not None:
            seed = _whole("random_seed", self.random_seed, 0, none="None (a fresh seed each time)")
            if seed >= 2**64:
                raise SpecError(f"random_seed must be below 2**64, not {seed}")
            set_(self, "random_seed", seed)
        ta = self.target_accept
        real = (int, float, np.integer, np.floating)
        if isinstance(ta, (bool, np.bool_)) or not isinstance(ta, real):
            raise SpecError(
                f"target_accept must be a number in (0, 1) such as 0.9, not {ta!r} "
                f"({type(ta).__name__})"
            )
        if not 0 < float(ta) < 1:
            raise SpecError(f"target_accept must lie strictly between 0 and 1, not {ta}")
        set_(self, "target_accept", float(ta))
        if self.progressbar is not None:
            if not isinstance(self.progressbar, (bool, np.bool_)):
                raise SpecError(
                    f"progressbar must be true, false or None (automatic), not "
                    f"{self.progressbar!r} ({type(self.progressbar).__name__})"
                )
            set_(self, "progressbar", bool(self.progressbar))
        if self.chains == 1:
            warnings.warn(
                "chains=1: R-hat needs at least 2 chains, so convergence cannot be checked; "
                "use chains=4 (the default) for results you report",
                UserWarning,
                stacklevel=3,
            )

    @classmethod
    def from_dict(
        cls, values: dict[str, Any], *, where: str = "sampler settings"
    ) -> SamplerSettings:
        """Build from a mapping, naming any unknown key."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SpecError(
                f"unknown key {unknown[0]!r} in {where}; known keys: {', '.join(sorted(known))}"
            )
        return cls(**values)

    def updated(self, **changes: Any) -> SamplerSettings:
        """A copy with the non-None ``changes`` applied."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-serialisable)."""
        return asdict(self)


def _whole(name: str, value: Any, least: int, *, none: str | None = None) -> int:
    """Refuse anything but a whole number (not a bool, float or text) of at least ``least``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        also = f", or {none}" if none else ""
        raise SpecError(
            f"{name} must be a whole number{also}, not {value!r} ({type(value).__name__})"
        )
    if value < least:
        what = "at least 1" if least == 1 else f"{least} or more"
        raise SpecError(f"{name} must be {what}, not {value}")
    return int(value)
