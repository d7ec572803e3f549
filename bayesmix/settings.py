"""Sampler settings: one options object for the sampling stage."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from bayesmix.errors import SpecError

Sampler = Literal["nutpie", "pymc", "numpyro"]
Likelihood = Literal["auto", "collapsed", "sufficient", "rows"]

SAMPLERS: tuple[str, ...] = ("nutpie", "pymc", "numpyro")
BACKENDS: tuple[str, ...] = ("auto", "c", "numba")
LIKELIHOODS: tuple[str, ...] = ("auto", "collapsed", "sufficient", "rows")


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
        Number of chains.
    target_accept : float
        NUTS target acceptance probability; raise it (0.95, 0.99) when there are divergences.
    random_seed : int or None
        The same seed gives identical draws.
    sampler : {"nutpie", "pymc", "numpyro"}
        NUTS implementation.  numpyro needs ``pip install bayesmix[numpyro]``.
    likelihood : {"auto", "collapsed", "sufficient", "rows"}
        Form of the likelihood (see :func:`bayesmix.build_model`); ``"auto"`` is
        ``"collapsed"`` for the Gaussian models bayesmix fits.
    progressbar : bool or None
        None shows a progress bar in terminals and notebooks only.
    cores : int or None
        Chains run in parallel on this many cores; None lets the sampler choose (nutpie with
        the C back end: 1, since its log-density calls hold Python's GIL).
    backend : {"auto", "c", "numba"}
        How nutpie gets the log density and its gradient.  ``"c"``: PyTensor's C back end
        (compiled code is cached on disk, so a model of a known shape compiles in ≈ 0.5–1 s),
        called from nutpie through Python; ``"numba"``: nutpie's own Numba compilation
        (≈ 8–12 s per model, never cached, but chains run in parallel without the GIL).
        ``"auto"`` picks ``"c"`` for small models (≤ 100 clusters, and ≤ 20,000 rows for the
        row-wise likelihood), where compiling dominates, and ``"numba"`` otherwise, where the
        fused, GIL-free gradient pays for the compile (measured in ``benchmarks/run.py``).
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
        if self.sampler not in SAMPLERS:
            raise SpecError(
                f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}"
            )
        if self.backend not in BACKENDS:
            raise SpecError(
                f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}"
            )
        if self.likelihood not in LIKELIHOODS:
            raise SpecError(
                f"unknown likelihood {self.likelihood!r}; choose one of {', '.join(LIKELIHOODS)}"
            )
        for name in ("draws", "chains"):
            if int(getattr(self, name)) < 1:
                raise SpecError(f"{name} must be at least 1, not {getattr(self, name)}")
        if int(self.tune) < 0:
            raise SpecError(f"tune must be 0 or more, not {self.tune}")
        if not 0 < float(self.target_accept) < 1:
            raise SpecError(f"target_accept must lie in (0, 1), not {self.target_accept}")

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
