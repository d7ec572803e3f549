"""Declarative priors, autoscaled defaults from the data, and user overrides.

Default rule (in the spirit of rstanarm and bambi; s_y is the sample SD of y, x̄_k and s_k the
mean and SD of column k of X, s_z the SD of a random term's level-1 column, 1 for the intercept):

=====================  ===========================================================
parameter              default prior
=====================  ===========================================================
γ (slope column k)     Normal(0, 2.5 s_y / s_k)  (2.5 s_y / |x̄_k| if s_k = 0)
γ_00 (intercept)       Normal(ȳ, sqrt((2.5 s_y)² + Σ_k (2.5 s_y x̄_k / s_k)²))
SD of U_q              HalfStudentT(ν=3, σ = s_y / s_z)
correlations of U      LKJ(η = 2) on the Cholesky factor of T (``LKJCholeskyCov``)
σ                      HalfStudentT(ν=3, σ = s_y)
=====================  ===========================================================

The intercept's scale widens with the slopes' because X is not centred: γ_00 is the mean of y
where every predictor is 0.  Every prior can be overridden (:class:`Priors`), from Python or from
a model file's ``[priors]`` table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from bayesmix.errors import SpecError

if TYPE_CHECKING:
    from bayesmix.design import Design

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

    def broadcast(self, size: int) -> Prior:
        """The same prior with every parameter as a vector of ``size``."""
        out = {}
        for key, value in self.params:
            arr = np.broadcast_to(np.asarray(value, dtype=float), (size,))
            out[key] = tuple(arr.tolist())
        return Prior(self.dist, **out)


@dataclass(frozen=True)
class Priors:
    """User overrides of the autoscaled default priors.

    Attributes
    ----------
    beta : mapping of str to Prior
        Per γ, keyed by γ name (``"g01"``) or column label (``"g01 (M)"``).  Must be Normal.
    sd_u : Prior, mapping of str to Prior, or None
        Prior of the SDs of U: one Prior for all (vector parameters allowed), or per U name
        (``"U0"``); all entries must share one distribution family.
    sigma : Prior or None
        Prior of the residual SD σ.
    eta : float
        LKJ shape of the correlations of U (1 is uniform; larger pulls them towards 0).
    """

    beta: Mapping[str, Prior] = field(default_factory=dict)
    sd_u: Prior | Mapping[str, Prior] | None = None
    sigma: Prior | None = None
    eta: float = 2.0

    def __post_init__(self) -> None:
        beta = {str(k): Prior.from_value(v, where=f"beta {k}") for k, v in dict(self.beta).items()}
        for key, prior in beta.items():
            if prior.dist != "Normal":
                raise SpecError(
                    f"the prior of {key} must be Normal (γ ~ Normal(mu, sigma)), not {prior.dist}"
                )
        object.__setattr__(self, "beta", beta)
        if isinstance(self.sd_u, Mapping) and "dist" not in self.sd_u:
            sd = {str(k): Prior.from_value(v, where=f"sd_u {k}") for k, v in self.sd_u.items()}
            families = {p.dist for p in sd.values()}
            if len(families) > 1:
                raise SpecError(
                    "the SD priors of U must share one distribution family (LKJCholeskyCov "
                    f"takes one sd_dist); got {', '.join(sorted(families))}"
                )
            for key, prior in sd.items():
                if not prior.positive:
                    raise SpecError(f"the SD prior of {key} must be positive, not {prior.dist}")
            object.__setattr__(self, "sd_u", sd)
        elif self.sd_u is not None:
            prior = Prior.from_value(self.sd_u, where="sd_u")
            if not prior.positive:
                raise SpecError(f"the SD prior of U must be positive, not {prior.dist}")
            object.__setattr__(self, "sd_u", prior)
        if self.sigma is not None:
            prior = Prior.from_value(self.sigma, where="sigma")
            if not prior.positive:
                raise SpecError(f"the prior of sigma must be positive, not {prior.dist}")
            object.__setattr__(self, "sigma", prior)
        if not float(self.eta) > 0:
            raise SpecError(f"the LKJ eta must be positive, not {self.eta}")
        object.__setattr__(self, "eta", float(self.eta))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Priors:
        """Build from a model file's ``[priors]`` table, naming any unknown key."""
        known = {"beta", "sd_u", "sigma", "eta"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SpecError(
                f"unknown key {unknown[0]!r} in [priors]; known keys: {', '.join(sorted(known))}"
            )
        return cls(**dict(values))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, the inverse of :meth:`from_dict`."""
        out: dict[str, Any] = {"eta": self.eta}
        if self.beta:
            out["beta"] = {k: v.to_dict() for k, v in self.beta.items()}
        if isinstance(self.sd_u, Prior):
            out["sd_u"] = self.sd_u.to_dict()
        elif self.sd_u:
            out["sd_u"] = {k: v.to_dict() for k, v in self.sd_u.items()}
        if self.sigma is not None:
            out["sigma"] = self.sigma.to_dict()
        return out


@dataclass(frozen=True)
class ResolvedPriors:
    """The priors a built model uses, after autoscaling and overrides.

    Attributes
    ----------
    beta_mu, beta_sigma : ndarray, shape (p,)
        γ ~ Normal(beta_mu, beta_sigma), one entry per column of X.
    sd_u : Prior
        Vector-valued prior (length q) of the SDs of U.
    sigma : Prior
        Prior of σ.
    eta : float
        LKJ shape.
    fixed_names, random_names : tuple of str
        Labels, to print the priors.
    """

    beta_mu: np.ndarray
    beta_sigma: np.ndarray
    sd_u: Prior
    sigma: Prior
    eta: float
    fixed_names: tuple[str, ...]
    random_names: tuple[str, ...]

    def table(self) -> list[tuple[str, str]]:
        """(parameter, prior) rows, e.g. ``("g01 (M)", "Normal(mu=0, sigma=2.5)")``."""
        rows = [
            (name, str(Prior("Normal", mu=m, sigma=s)))
            for name, m, s in zip(
                self.fixed_names, self.beta_mu, self.beta_sigma, strict=True
            )
        ]
        sd = self.sd_u.kwargs
        for i, name in enumerate(self.random_names):
            one = {k: (v[i] if isinstance(v, tuple) else v) for k, v in sd.items()}
            rows.append((f"sd of {name}", str(Prior(self.sd_u.dist, **one))))
        if len(self.random_names) > 1:
            rows.append(("correlations of U", f"LKJ(eta={self.eta:g})"))
        rows.append(("sigma", str(self.sigma)))
        return rows

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (stored with a fit)."""
        return {
            "beta_mu": self.beta_mu.tolist(),
            "beta_sigma": self.beta_sigma.tolist(),
            "sd_u": self.sd_u.to_dict(),
            "sigma": self.sigma.to_dict(),
            "eta": self.eta,
            "fixed_names": list(self.fixed_names),
            "random_names": list(self.random_names),
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ResolvedPriors:
        """Inverse of :meth:`to_dict`."""
        sd = dict(values["sd_u"])
        sig = dict(values["sigma"])
        return cls(
            beta_mu=np.asarray(values["beta_mu"], dtype=float),
            beta_sigma=np.asarray(values["beta_sigma"], dtype=float),
            sd_u=Prior(sd.pop("dist"), **sd),
            sigma=Prior(sig.pop("dist"), **sig),
            eta=float(values["eta"]),
            fixed_names=tuple(values["fixed_names"]),
            random_names=tuple(values["random_names"]),
        )


def resolve_priors(design: Design, priors: Priors | None = None) -> ResolvedPriors:
    """Autoscale the default priors from the data and apply the user's overrides.

    Parameters
    ----------
    design : Design
        Supplies y (n,), X (n, p) and the random terms' level-1 columns Zq (n, q).
    priors : Priors, optional
        Overrides; keys must name γ's and U's of the design.

    Returns
    -------
    ResolvedPriors
    """
    priors = priors or Priors()
    y = design.y
    X = design.X
    s_y = float(np.std(y, ddof=1))
    y_bar = float(np.mean(y))
    p = X.shape[1]
    mu = np.zeros(p)
    sigma = np.zeros(p)
    x_mean = X.mean(axis=0)
    x_sd = X.std(axis=0, ddof=1) if X.shape[0] > 1 else np.zeros(p)
    intercept = [k for k in range(p) if np.all(X[:, k] == 1.0)]
    for k in range(p):
        if k in intercept:
            continue
        scale = x_sd[k] if x_sd[k] > 0 else abs(x_mean[k]) or 1.0
        sigma[k] = 2.5 * s_y / scale
    for k in intercept:
        others = [j for j in range(p) if j not in intercept]
        mu[k] = y_bar
        sigma[k] = float(np.sqrt((2.5 * s_y) ** 2 + np.sum((sigma[others] * x_mean[others]) ** 2)))
    gamma_index = {}
    for k, (gname, label) in enumerate(zip(design.gamma_names, design.fixed_names, strict=True)):
        gamma_index.setdefault(gname, []).append(k)
        gamma_index[label] = [k]
    for key, prior in priors.beta.items():
        if key not in gamma_index:
            raise SpecError(
                f"a prior is given for {key!r}, which is not a γ of this model; the γ's are "
                f"{', '.join(design.fixed_names)}"
            )
        for k in gamma_index[key]:
            mu[k] = prior.kwargs["mu"]
            sigma[k] = prior.kwargs["sigma"]

    q = len(design.random_names)
    zq = design.Zq
    z_sd = zq.std(axis=0, ddof=1) if zq.shape[0] > 1 else np.ones(q)
    z_scale = np.array(
        [1.0 if np.all(zq[:, k] == 1.0) else (z_sd[k] if z_sd[k] > 0 else 1.0) for k in range(q)]
    )
    if priors.sd_u is None:
        sd_u = Prior("HalfStudentT", nu=3.0, sigma=tuple((s_y / z_scale).tolist()))
    elif isinstance(priors.sd_u, Prior):
        sd_u = priors.sd_u.broadcast(q)
    else:
        by_u = {name.split(" ")[0]: k for k, name in enumerate(design.random_names)}
        by_u.update({name: k for k, name in enumerate(design.random_names)})
        missing = [name for name in design.random_names
                   if name not in priors.sd_u and name.split(" ")[0] not in priors.sd_u]
        unknown = [key for key in priors.sd_u if key not in by_u]
        if unknown:
            raise SpecError(
                f"an SD prior is given for {unknown[0]!r}, which is not a random effect of this "
                f"model; they are {', '.join(design.random_names)}"
            )
        if missing:
            raise SpecError(
                "SD priors given per U must cover every random effect; missing "
                f"{', '.join(missing)}"
            )
        dist = next(iter(priors.sd_u.values())).dist
        params: dict[str, list[float]] = {}
        for name in design.random_names:
            prior = priors.sd_u.get(name) or priors.sd_u[name.split(" ")[0]]
            for key, value in prior.params:
                params.setdefault(key, []).append(float(np.asarray(value).ravel()[0]))
        sd_u = Prior(dist, **{k: tuple(v) for k, v in params.items()})
    sigma_prior = priors.sigma or Prior("HalfStudentT", nu=3.0, sigma=s_y)
    return ResolvedPriors(
        beta_mu=mu,
        beta_sigma=sigma,
        sd_u=sd_u,
        sigma=sigma_prior,
        eta=priors.eta,
        fixed_names=design.fixed_names,
        random_names=design.random_names,
    )
