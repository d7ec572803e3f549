"""Declarative priors, autoscaled defaults from the data, and user overrides.

Default rule (in the spirit of rstanarm and brms).  s_y is the SD of y; s_k is the product of
the SDs of the variables multiplied in column k of X (the SD of the variable for a main
effect), s_r the same for a random term's level-1 column, and x̄, z̄ the variables' means (the
scales of ``design.scaling``, :mod:`bayesmix.scaling`; a variable that cannot be centred keeps 0
as its centre and its root mean square stands for its SD).  The priors below are on the
coefficients with every centred variable at its mean (δ = C_x γ,
:meth:`bayesmix.scaling.Scaling.x_centring`); for a column no interaction contains that is γ
itself:

=====================  ===========================================================
parameter              default prior
=====================  ===========================================================
γ (slope column k)     Normal(0, 2.5 s_y / s_k)
α (the intercept at    Normal(ȳ, 2.5 s_y), where ``α = γ_00 + Σ_k x̄_k γ_k`` is the mean
the predictors' means) of y at the means of the predictors (rstanarm's and brms's
                       ``Intercept``); γ_00 itself is ``α − Σ_k x̄_k γ_k``
SD of U_r (slope)      HalfStudentT(ν=3, σ = s_y / s_r)
SD of U_0 at z̄         HalfStudentT(ν=3, σ = s_y): the SD of the cluster intercepts at the
                       means of the random-slope variables, ``U_0 + Σ_r z̄_r U_r``
correlations of U      LKJ(η = 2) on the correlations of (U_0 + Σ_r z̄_r U_r, U_1, ...)
σ                      HalfStudentT(ν=3, σ = s_y)
=====================  ===========================================================

Placing the intercept's priors at the means makes the posterior *equivariant*: shifting or
rescaling y or any predictor changes the posterior exactly as it changes the estimates (a
shifted Days leaves every SD and σ unchanged, Days × c divides its γ and its SD by c), which
a prior on the intercept at 0 cannot do.  Every prior can be overridden (:class:`Priors`),
from Python or from a model file's ``[priors]`` table: ``intercept`` for α, ``beta`` for any
γ (a prior given for γ_00 puts it on the intercept at 0, instead of α), ``sd_u``, ``sigma``
and ``eta``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from bayesmix.errors import SpecError
from bayesmix.scaling import Scaling, random_column_scale

if TYPE_CHECKING:
    from bayesmix.design import Design

from bayesmix.prior import Prior  # one distribution; the rules of the defaults are here


@dataclass(frozen=True)
class Priors:
    """User overrides of the autoscaled default priors.

    Attributes
    ----------
    beta : mapping of str to Prior
        Per γ, keyed by γ name (``"g01"``) or column label (``"g01 (M)"``).  Must be Normal.
        The prior is on γ itself (for γ_00: the intercept where every predictor is 0, instead
        of α; for a main effect that an interaction contains: its slope where the other
        variable is 0), the other γ's keep theirs at the means.
    intercept : Prior or None
        Prior of α, the intercept at the means of the predictors (module docstring); must be
        Normal.  Give this or a ``beta`` prior for γ_00, not both.
    sd_u : Prior, mapping of str to Prior, or None
        Prior of the SDs of the random effects: one Prior for all (vector parameters
        allowed), or per effect name (``"U0"``, ``"u10"``) or per grouping factor
        (``"schoolid"``: every effect over it); all entries must share one distribution
        family.
    sigma : Prior or None
        Prior of the residual SD σ.
    eta : float
        LKJ shape of the correlations of U (1 is uniform; larger pulls them towards 0).
    """

    beta: Mapping[str, Prior] = field(default_factory=dict)
    intercept: Prior | None = None
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
        if self.intercept is not None:
            prior = Prior.from_value(self.intercept, where="intercept")
            if prior.dist != "Normal":
                raise SpecError(
                    f"the prior of the intercept must be Normal (α ~ Normal(mu, sigma)), not "
                    f"{prior.dist}"
                )
            object.__setattr__(self, "intercept", prior)
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
        known = {"beta", "intercept", "sd_u", "sigma", "eta"}
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
        if self.intercept is not None:
            out["intercept"] = self.intercept.to_dict()
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
        Independent ``Normal(beta_mu[k], beta_sigma[k])`` priors, one per column k of X: on
        δ_k, the coefficient of column k with every centred variable at its mean (α for the
        intercept; :meth:`bayesmix.scaling.Scaling.x_centring`), where ``beta_at_means[k]``,
        else on γ_k itself.  For a column that no interaction contains, δ_k = γ_k.
    beta_at_means : tuple of bool, length p
        Where each γ's prior is placed (above).
    sd_u : Prior
        Vector-valued prior (length q) of the SDs of the random effects with the random-slope
        variables at their means (the intercept's: that of ``U_0 + Σ_r z̄_r U_r``).
    sigma : Prior
        Prior of σ.
    eta : float
        LKJ shape, on the correlations of those same random effects.
    fixed_names, random_names : tuple of str
        Labels, to print the priors.
    scaling : Scaling
        The design's centres and scales: the means the priors are placed at, and the
        standardised scale the model is built on (:meth:`std_beta`, :meth:`std_sd_u`,
        :meth:`std_sigma` give the same priors there).
    """

    beta_mu: np.ndarray
    beta_sigma: np.ndarray
    sd_u: Prior
    sigma: Prior
    eta: float
    fixed_names: tuple[str, ...]
    random_names: tuple[str, ...]
    scaling: Scaling
    beta_at_means: tuple[bool, ...] = ()

    @property
    def intercept_centred(self) -> bool:
        """Whether the intercept's prior is that of α (the intercept at the means)."""
        k0 = self.scaling.x_intercept
        return k0 is not None and self.beta_at_means[k0]

    def _basis(self) -> np.ndarray:
        """B with ``Bβ`` the quantities the independent priors are on (p × p)."""
        basis = self.scaling.x_centring()
        at_zero = ~np.asarray(self.beta_at_means, dtype=bool)
        basis[at_zero] = np.eye(basis.shape[0])[at_zero]
        return basis

    # ---------------------------------------------------------------- on the model's scale
    def beta_normal(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean (p,) and covariance (p, p) of the joint Normal prior of γ (original scale).

        ``Bβ ~ N(μ, diag σ²)`` with B the rows of the centring map (or of I), so
        ``β ~ N(B⁻¹μ, B⁻¹ diag(σ²) B⁻ᵀ)``; e.g. γ_00 = α − Σ_k x̄_k γ_k has the variance
        ``σ_α² + Σ_k x̄_k² σ_k²`` and is correlated with the slopes.
        """
        b_inv = np.linalg.inv(self._basis())
        return b_inv @ self.beta_mu, b_inv @ np.diag(self.beta_sigma**2) @ b_inv.T

    def std_beta(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean (p,) and covariance (p, p) of the prior of β̃ (the standardised scale).

        ``β̃ = (A_x β − m e₀)/s_y`` with ``A_x = diag(D_x) C_x``; writing β through the prior's
        basis, ``A_x β = diag(D_x) C_x B⁻¹ (Bβ)``, the Normal prior maps exactly; with every
        prior at the means (the default) ``C_x B⁻¹ = I`` and the covariance is diagonal.
        """
        sc = self.scaling
        basis = self._basis()
        g = np.linalg.solve(basis.T, sc.x_centring().T).T  # C_x B⁻¹
        a = sc.x_column_scale[:, None] * g / sc.y_scale
        shift = sc.beta_to_std(np.zeros(sc.p))  # −m e₀ / s_y
        return _snap(a @ self.beta_mu + shift), _snap(a @ np.diag(self.beta_sigma**2) @ a.T)

    def std_sd_u(self) -> Prior:
        """The prior of the SDs of ũ: ``SD(ũ_r) = D_z[r] SD(δ^u_r) / s_y``."""
        return _snap_prior(self.sd_u.scaled(self.scaling.z_column_scale / self.scaling.y_scale))

    def std_sigma(self) -> Prior:
        """The prior of σ̃ = σ / s_y."""
        return _snap_prior(self.sigma.scaled(1.0 / self.scaling.y_scale))

    # ---------------------------------------------------------------- printing, storage
    def table(self) -> list[tuple[str, str]]:
        """(parameter, prior) rows, e.g. ``("g01 (M)", "Normal(mu=0, sigma=2.5)")``."""
        k0 = self.scaling.x_intercept
        cx, cz = self.scaling.x_centring(), self.scaling.z_centring()
        rows = []
        for k, (name, m, s) in enumerate(
            zip(self.fixed_names, self.beta_mu, self.beta_sigma, strict=True)
        ):
            label = name
            moved = not np.array_equal(cx[k], np.eye(cx.shape[0])[k])
            if self.beta_at_means[k] and moved:
                label += (" at the predictors' means (α)" if k == k0
                          else " at the means of the variables it interacts with")
            rows.append((label, str(Prior("Normal", mu=m, sigma=s))))
        sd = self.sd_u.kwargs
        for i, name in enumerate(self.random_names):
            one = {k: (v[i] if isinstance(v, tuple) else v) for k, v in sd.items()}
            moved = (len(self.random_names) == cz.shape[0]
                     and not np.array_equal(cz[i], np.eye(cz.shape[0])[i]))
            where = " at the slope variables' means" if moved else ""
            rows.append((f"sd of {name}{where}", str(Prior(self.sd_u.dist, **one))))
        if len(self.random_names) > 1:
            rows.append(("correlations of U", f"LKJ(eta={self.eta:g})"))
        rows.append(("sigma", str(self.sigma)))
        return rows

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (stored with a fit)."""
        return {
            "beta_mu": self.beta_mu.tolist(),
            "beta_sigma": self.beta_sigma.tolist(),
            "beta_at_means": list(self.beta_at_means),
            "sd_u": self.sd_u.to_dict(),
            "sigma": self.sigma.to_dict(),
            "eta": self.eta,
            "fixed_names": list(self.fixed_names),
            "random_names": list(self.random_names),
            "scaling": self.scaling.to_dict(),
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
            scaling=Scaling.from_dict(values["scaling"]),
            beta_at_means=tuple(bool(v) for v in values["beta_at_means"]),
        )


def random_labels(design: Design) -> tuple[str, ...]:
    """Labels of every random effect, factor by factor (``design.random_names`` for one)."""
    if design.single_factor:
        return design.random_names
    return tuple(label for fe in design.effects for label in fe.labels)


def _sd_u_prior(design: Design, priors: Priors, default: Prior) -> Prior:
    """The vector prior of every SD of the random effects: the default, one prior, or per U.

    Keys of a mapping: an effect's name (``"U0"``), its label (``"U0 (Intercept)"``) or a
    grouping factor (``"schoolid"``, for all its effects).
    """
    labels = random_labels(design)
    q = len(labels)
    if priors.sd_u is None:
        return default
    if isinstance(priors.sd_u, Prior):
        return priors.sd_u.broadcast(q)
    factor_of = ([design.spec.cluster] * q if design.single_factor
                 else [fe.name for fe in design.effects for _ in fe.labels])
    keys = set(labels) | {name.split(" ")[0] for name in labels} | set(factor_of)

    def lookup(k: int) -> Prior | None:
        name = labels[k]
        for key in (name, name.split(" ")[0], factor_of[k]):
            if key in priors.sd_u:  # type: ignore[operator]
                return priors.sd_u[key]  # type: ignore[index]
        return None

    unknown = [key for key in priors.sd_u if key not in keys]
    if unknown:
        raise SpecError(
            f"an SD prior is given for {unknown[0]!r}, which is not a random effect or a "
            f"grouping factor of this model; they are {', '.join(labels)} "
            f"(factors {', '.join(dict.fromkeys(factor_of))})"
        )
    missing = [labels[k] for k in range(q) if lookup(k) is None]
    if missing:
        raise SpecError(
            "SD priors given per U must cover every random effect; missing "
            f"{', '.join(missing)}"
        )
    dist = next(iter(priors.sd_u.values())).dist
    params: dict[str, list[float]] = {}
    for k in range(q):
        prior = lookup(k)
        for key, value in prior.params:  # type: ignore[union-attr]
            params.setdefault(key, []).append(float(np.asarray(value).ravel()[0]))
    return Prior(dist, **{k: tuple(v) for k, v in params.items()})


def resolve_priors(design: Design, priors: Priors | None = None) -> ResolvedPriors:
    """Autoscale the default priors from the data and apply the user's overrides.

    Parameters
    ----------
    design : Design
        Supplies y (n,), X (n, p) and the random terms' level-1 columns Zq (n, q), through
        their centres and scales (``design.scaling``).
    priors : Priors, optional
        Overrides; keys must name γ's and U's of the design.

    Returns
    -------
    ResolvedPriors
    """
    priors = priors or Priors()
    sc = design.scaling
    s_y = sc.y_scale
    p = design.X.shape[1]
    k0 = sc.x_intercept
    mu = np.zeros(p)
    sigma = 2.5 * s_y / sc.x_column_scale
    at_means = [True] * p
    if k0 is not None:
        mu[k0] = sc.y_center
        sigma[k0] = 2.5 * s_y
    gamma_index: dict[str, list[int]] = {}
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
            at_means[k] = False  # the user's prior is on γ_k itself
    if priors.intercept is not None:
        if k0 is None:
            raise SpecError(
                "a prior is given for the intercept, but the model has no intercept γ_00"
            )
        if not at_means[k0]:
            raise SpecError(
                "give a prior either for the intercept at the predictors' means (`intercept`) "
                f"or for {design.fixed_names[k0]!r} itself (`beta`), not both"
            )
        mu[k0] = priors.intercept.kwargs["mu"]
        sigma[k0] = priors.intercept.kwargs["sigma"]
    default_sd = Prior("HalfStudentT", nu=3.0,
                       sigma=tuple((s_y / random_column_scale(design)).tolist()))
    return ResolvedPriors(
        beta_mu=mu,
        beta_sigma=sigma,
        sd_u=_sd_u_prior(design, priors, default_sd),
        sigma=priors.sigma or Prior("HalfStudentT", nu=3.0, sigma=s_y),
        eta=priors.eta,
        fixed_names=design.fixed_names,
        random_names=random_labels(design),
        scaling=sc,
        beta_at_means=tuple(at_means),
    )


def _snap(values: np.ndarray) -> np.ndarray:
    """Round to 12 significant digits, and below 1e-12 to 0 (a standardised-scale value).

    The autoscaled priors are defined on the standardised scale, stored on the original one
    and mapped back, which leaves rounding noise (a mean of 8.9e-16 for 0, an SD of
    1.0000000000000002 for 1) that differs between data sets.  Snapping it off (a change of
    at most 5e-13 relative) keeps the prior constants of the model graph equal for every data
    set of a structure, so its compiled kernels are reused (:mod:`bayesmix.kernel_cache`).
    """
    arr = np.asarray(values, dtype=float)
    out = np.array([float(f"{x:.12g}") for x in arr.ravel()]).reshape(arr.shape)
    out[np.abs(out) < 1e-12] = 0.0
    return out


def _snap_prior(prior: Prior) -> Prior:
    """:func:`_snap` applied to every parameter of a prior."""
    params = {k: (_snap(np.asarray(v)) if isinstance(v, tuple | float | np.ndarray) else v)
              for k, v in prior.params}
    return Prior(prior.dist, **params)
