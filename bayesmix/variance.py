"""variance(): variance partition of a multilevel model — ICCs, Nakagawa R², Rights & Sterba.

For ``η = Xβ + Σ_g Z_g u_g`` with ``u_gj ~ N(0, T_g)`` the variance of the outcome (on the
latent scale of a GLMM) is split as in Nakagawa & Schielzeth (2013), extended to random slopes
by Johnson (2014) and to GLMMs by Nakagawa, Johnson & Schielzeth (2017)::

    σ²_f    = Var(Xβ) = βᵀ Cov(X) β          fixed part; Cov(X) with denominator n − 1 (p × p)
    σ²_g    = (1/n) Σ_i z_giᵀ T_g z_gi = tr(T_g Z_gᵀZ_g / n)    factor g (z_gi: row i of Zq_g)
    σ²_r    = Σ_g σ²_g                       over the factors that are not observation-level
    σ²_ε    = σ²_d + σ²_o                    distribution-specific + observation-level factors
    σ²_d    = σ² (Gaussian) | π²/3 (logit) | log(1 + 1/λ) (Poisson, log link)

    ICC adjusted    = σ²_r / (σ²_r + σ²_ε)           per factor: σ²_g / (σ²_r + σ²_ε)
    ICC conditional = σ²_r / (σ²_f + σ²_r + σ²_ε)    per factor: σ²_g / (σ²_f + σ²_r + σ²_ε)
    R² marginal     = σ²_f / (σ²_f + σ²_r + σ²_ε)
    R² conditional  = (σ²_f + σ²_r) / (σ²_f + σ²_r + σ²_ε)

These are the definitions of R's ``insight::get_variance`` (0.19) behind ``performance::icc``
and ``performance::r2_nakagawa`` (0.10.2), whose numbers the tests reproduce, with these
choices made the same way: an *observation-level* factor (one unit per row, as grouseticks'
INDEX) is over-dispersion and counts in σ²_ε, not σ²_r; the Poisson λ is ``exp(β̂₀)`` of the
*null model* (intercept only, the same random part and exposure) fitted by Laplace ML — not
``exp(β₀ + σ²/2)``, which ``poisson_lambda="null_adjusted"`` gives (the supplement of Nakagawa
et al. 2017). One difference: ``insight`` takes a random slope's column from the fixed-effects
matrix and leaves out a slope whose variable is not a fixed effect; here z_gi is Zq's row, so
such a slope counts.

For a two-level Gaussian model with one grouping factor the Rights & Sterba (2019) shares are
added (:mod:`bayesmix.variance_rs` says what they cover).

A REML / ML / Laplace fit (:class:`~bayesmix.reml.REMLFit`) gives point estimates; a Bayesian
:class:`~bayesmix.Fit` a posterior: every quantity is computed per draw (the Poisson λ is a
point value from the Laplace fit of the null model even then).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import xarray as xr

from bayesmix import notation as nt
from bayesmix import variance_rs as rs
from bayesmix.design import Design
from bayesmix.errors import BayesmixError
from bayesmix.fit_result import Fit
from bayesmix.reml.result import REMLFit

__all__ = ["VariancePartition", "variance"]

SCALARS = ("var_fixed", "var_random", "var_residual", "var_distribution", "var_dispersion",
           "icc_adjusted", "icc_conditional", "r2_marginal", "r2_conditional")
PER_FACTOR = ("var_factor", "var_intercept", "icc_adjusted_factor", "icc_conditional_factor")


@dataclass(frozen=True, repr=False)
class VariancePartition:
    """Variance components, ICCs and R² of a fit (:func:`variance`).

    Attributes
    ----------
    values : xarray.Dataset
        Scalars ``var_fixed`` (σ²_f), ``var_random`` (σ²_r), ``var_residual`` (σ²_ε),
        ``var_distribution`` (σ²_d), ``var_dispersion`` (σ²_o), ``icc_adjusted``,
        ``icc_conditional``, ``r2_marginal``, ``r2_conditional``; per grouping factor (dim
        ``factor``) ``var_factor`` (σ²_g), ``var_intercept`` (T_g[0, 0], NaN without an
        intercept), ``icc_adjusted_factor``, ``icc_conditional_factor``; per random effect (dim
        ``effect``, ``"Subject: U1 (Days)"``) ``var_effect`` (diagonal of T_g); with the Rights
        & Sterba decomposition (dim ``source``) ``rs_variance`` and ``rs_share``. For a
        posterior every variable also has dims (chain, draw).
    kind : {"point", "posterior"}
    origin : str
        What was partitioned: ``"REML"``, ``"ML"``, ``"Laplace ML"``, ``"posterior"``.
    family : str
    factors : tuple of str
        Grouping factors, in the design's order.
    observation_level : tuple of str
        Factors with one unit per row, counted in σ²_ε.
    ci_prob : float
        Probability of the equal-tailed intervals of :meth:`to_frame` (posterior).
    notes : tuple of str
        What to keep in mind (singular fit, the Poisson λ used, a missing decomposition).
    rights_sterba_reason : str or None
        Why there is no Rights & Sterba decomposition (None when there is one).
    """

    values: xr.Dataset
    kind: Literal["point", "posterior"]
    origin: str
    family: str
    factors: tuple[str, ...]
    observation_level: tuple[str, ...]
    ci_prob: float = 0.95
    notes: tuple[str, ...] = ()
    rights_sterba_reason: str | None = None

    def __getattr__(self, name: str) -> xr.DataArray:
        values = self.__dict__.get("values")
        if values is not None and name in values:
            return values[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    @property
    def rights_sterba(self) -> xr.Dataset:
        """``rs_variance``, ``rs_share`` by source: f1, f2, v, m, residual (or f, v, m, residual).

        Raises
        ------
        RightsSterbaError
            Saying why the model is not covered.
        """
        if self.rights_sterba_reason is not None:
            raise rs.RightsSterbaError(self.rights_sterba_reason)
        return self.values[["rs_variance", "rs_share"]]

    def to_frame(self) -> pd.DataFrame:
        """One row per quantity (``var_factor[Subject]``, ``rs_share[f1]``).

        Returns
        -------
        DataFrame
            Point estimates: column ``estimate``. Posterior: ``mean``, ``sd`` and the
            equal-tailed interval bounds (``2.5%``, ``97.5%`` for ``ci_prob=0.95``).
        """
        rows: dict[str, xr.DataArray] = {}
        for name, da in self.values.data_vars.items():
            extra = [d for d in da.dims if d not in ("chain", "draw")]
            if not extra:
                rows[str(name)] = da
                continue
            for label in da[extra[0]].to_numpy():
                rows[f"{name}[{label}]"] = da.sel({extra[0]: label})
        if self.kind == "point":
            return pd.DataFrame({"estimate": {k: float(v) for k, v in rows.items()}})
        lo, hi = (1 - self.ci_prob) / 2, (1 + self.ci_prob) / 2
        out = {}
        for k, v in rows.items():
            x = v.to_numpy().ravel()
            out[k] = {"mean": x.mean(), "sd": x.std(ddof=1), f"{100 * lo:g}%": np.quantile(x, lo),
                      f"{100 * hi:g}%": np.quantile(x, hi)}
        return pd.DataFrame.from_dict(out, orient="index")

    def __repr__(self) -> str:
        from bayesmix.checks.summary import significant

        frame = self.to_frame().map(lambda v: significant(v, 4))
        what = (f"{self.origin} point estimates" if self.kind == "point"
                else "posterior draws")
        head = (f"Variance partition ({what}), {self.family}, factors: "
                f"{', '.join(self.factors)}")
        lines = [head, frame.to_string()]
        lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        import html

        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
        return (f"<p>{html.escape(self.__repr__().splitlines()[0])}</p>"
                + self.to_frame().to_html(float_format=lambda v: f"{v:.4g}")
                + (f"<ul>{notes}</ul>" if notes else ""))


# --------------------------------------------------------------------------- draws
@dataclass(frozen=True)
class _Draws:
    """Parameters per draw, flattened: S = chains × draws (S = 1 for a point estimate)."""

    beta: np.ndarray                  # (S, p)
    covs: dict[str, np.ndarray]       # factor -> T_g, (S, q_g, q_g)
    sigma2: np.ndarray | None         # (S,)
    shape: tuple[int, ...]            # (chain, draw), or () for a point estimate
    coords: dict[str, np.ndarray]


def _from_reml(reml: REMLFit, design: Design) -> _Draws:
    cov = reml.cov_u
    covs = {}
    for fe in design.effects:
        labels = list(fe.labels)
        covs[fe.name] = (cov.loc[labels, labels].to_numpy() * fe.covariance_pattern())[None]
    beta = reml.beta.loc[list(design.fixed_names)].to_numpy()[None, :]
    sigma2 = None if reml.sigma is None else np.array([float(reml.sigma) ** 2])
    return _Draws(beta, covs, sigma2, (), {})


def _from_fit(fit: Fit) -> _Draws:
    design = fit.design
    if design.sigma_index is not None:
        raise BayesmixError(
            f"variance(): the level-1 variance differs by {design.spec.sigma_by} (sigma_by), so "
            "there is no single ICC or R²; fit the model without sigma_by for them")
    post = fit.posterior.to_dataset()
    need = [nt.BETA] + ([nt.SD_U] if design.single_factor
                        else [f"{nt.SD_U}_{fe.name}" for fe in design.effects])
    need += [nt.SIGMA] if design.family.is_gaussian else []
    missing = [v for v in need if v not in post]
    if missing:
        raise BayesmixError(f"the fit's posterior lacks {', '.join(missing)}; variance() needs "
                            "the draws of beta, of the SDs of U and (Gaussian) of sigma; "
                            "refit, or load the full fit")
    beta = post[nt.BETA].transpose("chain", "draw", nt.DIM_FIXED)
    shape = beta.shape[:2]
    coords = {d: beta[d].to_numpy() for d in ("chain", "draw")}
    beta = beta.sel({nt.DIM_FIXED: list(design.fixed_names)}).to_numpy().reshape(-1, design.p)
    covs = {}
    for fe in design.effects:
        if design.single_factor:
            sd_name, corr_name, eff, eff2 = nt.SD_U, nt.CORR_U, nt.DIM_RANDOM, nt.DIM_RANDOM2
        else:
            from bayesmix.build_factors import factor_dims

            _, eff, eff2 = factor_dims(fe)
            sd_name, corr_name = f"{nt.SD_U}_{fe.name}", f"{nt.CORR_U}_{fe.name}"
        labels = list(fe.labels)
        sd = post[sd_name].sel({eff: labels}).transpose("chain", "draw", eff).to_numpy()
        sd = sd.reshape(-1, fe.q)
        corr = np.broadcast_to(np.eye(fe.q), (sd.shape[0], fe.q, fe.q))
        if fe.q > 1 and corr_name in post:
            corr = post[corr_name].sel({eff: labels, eff2: labels}).transpose(
                "chain", "draw", eff, eff2).to_numpy().reshape(-1, fe.q, fe.q)
        pattern = fe.covariance_pattern()
        covs[fe.name] = np.where(pattern, corr, 0.0) * sd[:, :, None] * sd[:, None, :]
    sigma2 = None
    if design.family.is_gaussian:
        sigma2 = post[nt.SIGMA].transpose("chain", "draw").to_numpy().reshape(-1) ** 2
    return _Draws(beta, covs, sigma2, tuple(shape), coords)


# --------------------------------------------------------------------------- Poisson λ
def _null_spec(design: Design):
    """The null model's Spec: intercept only in the fixed part, the same random part."""
    from bayesmix.spec.terms import Coefficient, Gamma

    spec = design.spec
    coefs = []
    for c in spec.coefficients:
        if not c.variables:
            const = [g for g in c.gammas if not g.variables] or [Gamma(f"g{c.name[1:]}0")]
            coefs.append(Coefficient(c.name, (), (const[0],), c.random))
        elif c.random is not None:
            coefs.append(Coefficient(c.name, c.variables, (), c.random))
    if not any(not c.variables for c in coefs):
        raise BayesmixError(
            "the Poisson distribution-specific variance log(1 + 1/λ) takes λ from the null "
            "model's intercept, and this model has no intercept; give poisson_lambda=<a "
            "positive number> (e.g. the mean count per unit of exposure)")
    used = {v for c in coefs for v in c.variables}
    used |= {v for c in coefs for g in c.gammas for v in g.variables}
    return dataclasses.replace(
        spec, coefficients=tuple(coefs),
        categorical=tuple(v for v in spec.categorical if v in used),
        reference=tuple(r for r in spec.reference if r[0] in used))


def _poisson_lambda(design: Design, how: str | float,
                    null_fit: REMLFit | None) -> tuple[float, str]:
    """λ of the Poisson distribution-specific variance, and a note saying where it came from."""
    if not isinstance(how, str):
        lam = float(how)
        if not (math.isfinite(lam) and lam > 0):
            raise BayesmixError(f"poisson_lambda must be a positive number, not {how!r}")
        return lam, f"Poisson σ²_d = log(1 + 1/λ) with the given λ = {lam:.6g}"
    if how not in ("null", "null_adjusted"):
        raise BayesmixError(f"poisson_lambda must be 'null', 'null_adjusted' or a positive "
                            f"number, not {how!r}")
    if null_fit is None:
        from bayesmix.reml.result import fit_reml

        null_fit = fit_reml(_null_spec(design), design.data)
    null_fit.require_converged()
    d0 = null_fit.design
    b0 = float(null_fit.beta.iloc[list(d0.fixed_terms).index(nt.INTERCEPT)])
    shift = 0.0
    if how == "null_adjusted":
        covs = _from_reml(null_fit, d0).covs
        shift = 0.5 * sum(_johnson(fe, covs[fe.name], d0.n)[0] for fe in d0.effects)
    lam = math.exp(b0 + shift)
    what = "exp(β₀)" if how == "null" else "exp(β₀ + σ²_null/2)"
    note = (f"Poisson σ²_d = log(1 + 1/λ), λ = {what} = {lam:.4g} of the null model "
            f"(intercept only, same random part; Laplace ML)")
    if lam < 6:
        note += "; λ < 6, so this lognormal approximation is rough (Nakagawa et al. 2017)"
    return lam, note


def _johnson(fe, cov: np.ndarray, n: int) -> np.ndarray:
    """σ²_g = tr(T_g Zq_gᵀ Zq_g / n) per draw: cov (S, q, q) -> (S,)."""
    M = fe.Zq.T @ fe.Zq / n
    return np.einsum("sab,ab->s", cov, M)


# --------------------------------------------------------------------------- assembly
def _partition(design: Design, draws: _Draws, dist_var: np.ndarray) -> tuple[dict, dict]:
    S = draws.beta.shape[0]
    covX = np.atleast_2d(np.cov(design.X, rowvar=False))
    var_fixed = np.einsum("sa,ab,sb->s", draws.beta, covX, draws.beta)
    var_g, tau0, eff_var, eff_labels = {}, {}, [], []
    for fe in design.effects:
        cov = draws.covs[fe.name]
        var_g[fe.name] = _johnson(fe, cov, design.n)
        k = fe.terms.index(nt.INTERCEPT) if nt.INTERCEPT in fe.terms else None
        tau0[fe.name] = np.full(S, np.nan) if k is None else cov[:, k, k]
        eff_var += [cov[:, r, r] for r in range(fe.q)]
        eff_labels += [f"{fe.name}: {label}" for label in fe.labels]
    obs = [fe.name for fe in design.effects if fe.J == design.n]
    R = sum((var_g[g] for g in var_g if g not in obs), np.zeros(S))
    disp = sum((var_g[g] for g in obs), np.zeros(S))
    E = dist_var + disp
    total = var_fixed + R + E
    factors = list(var_g)
    per_g = np.stack([var_g[g] for g in factors], axis=-1)
    out = {
        "var_fixed": var_fixed, "var_random": R, "var_residual": E,
        "var_distribution": dist_var + np.zeros(S), "var_dispersion": disp,
        "icc_adjusted": R / (R + E), "icc_conditional": R / total,
        "r2_marginal": var_fixed / total, "r2_conditional": (var_fixed + R) / total,
        "var_factor": per_g, "var_intercept": np.stack([tau0[g] for g in factors], axis=-1),
        "icc_adjusted_factor": per_g / (R + E)[:, None],
        "icc_conditional_factor": per_g / total[:, None],
        "var_effect": np.stack(eff_var, axis=-1),
    }
    return out, {"factor": factors, "effect": eff_labels, "obs": obs}


def _dataset(values: dict, labels: dict, draws: _Draws) -> xr.Dataset:
    lead = ("chain", "draw") if draws.shape else ()
    data = {}
    for name, arr in values.items():
        extra = (() if arr.ndim == 1 else
                 ("factor",) if name in PER_FACTOR else
                 ("effect",) if name == "var_effect" else ("source",))
        shape = (*draws.shape, *arr.shape[1:]) if draws.shape else arr.shape[1:]
        data[name] = ((*lead, *extra), arr.reshape(shape))
    coords = {**draws.coords, "factor": labels["factor"], "effect": labels["effect"]}
    if "source" in labels:
        coords["source"] = list(labels["source"])
    return xr.Dataset(data, coords=coords)


def variance(result: Fit | REMLFit, *, ci_prob: float = 0.95,
             poisson_lambda: Literal["null", "null_adjusted"] | float = "null",
             null_fit: REMLFit | None = None) -> VariancePartition:
    """Variance components, ICCs, Nakagawa R² and (where covered) Rights & Sterba shares.

    Parameters
    ----------
    result : Fit or REMLFit
        A Bayesian fit (each quantity per draw) or a REML / ML / Laplace fit from
        :func:`bayesmix.fit_reml` (point estimates; it must be attached to a design and have
        converged).
    ci_prob : float
        Probability of the equal-tailed intervals that :meth:`VariancePartition.to_frame`
        shows for a posterior.
    poisson_lambda : {"null", "null_adjusted"} or float
        Poisson only, λ of σ²_d = log(1 + 1/λ): ``"null"`` (default; ``performance``'s
        choice) ``exp(β̂₀)`` of the null model, ``"null_adjusted"`` ``exp(β̂₀ + σ̂²_null/2)``
        (σ̂²_null: the null model's random variance, all factors), or a given λ > 0.
    null_fit : REMLFit, optional
        The null model already fitted (``fit_reml`` of the same random part with intercept
        only), to avoid fitting it again.

    Returns
    -------
    VariancePartition
        ``.values`` (an xarray Dataset: 0-d variables, or dims (chain, draw) for a posterior),
        ``.to_frame()``, ``.rights_sterba``; the equations are in the module docstring.

    Raises
    ------
    BayesmixError
        An unconverged or unattached REML fit, a link without a distribution-specific variance,
        a posterior without the needed draws.
    """
    if isinstance(result, Fit):
        design, draws, origin = result.design, _from_fit(result), "posterior"
        notes = []
    elif isinstance(result, REMLFit):
        if result.design is None:
            raise BayesmixError("this REML fit is not attached to a design; read it with "
                                "read_reml(path, design=...) or align_reml(reml, design)")
        result.require_converged()
        design, draws = result.design, _from_reml(result, result.design)
        origin = result.method if design.family.is_gaussian else "Laplace ML"
        notes = ["singular fit: a variance component is at 0 (performance returns NA here)"
                 ] if result.singular else []
    else:
        raise BayesmixError(f"variance() takes a Fit (posterior) or a REMLFit (from fit_reml), "
                            f"not {type(result).__name__}")
    if not 0 < ci_prob < 1:
        raise BayesmixError(f"ci_prob must lie between 0 and 1, not {ci_prob!r}")
    fam = design.family
    if fam.is_gaussian:
        dist = draws.sigma2
    elif fam.link == "logit":
        dist = np.array(np.pi**2 / 3)
    elif fam.link == "log":
        lam, note = _poisson_lambda(design, poisson_lambda, null_fit)
        dist, notes = np.array(math.log1p(1 / lam)), [*notes, note]
    else:
        raise BayesmixError(f"no distribution-specific variance for the {fam.name} family with "
                            f"the {fam.link} link")
    values, labels = _partition(design, draws, dist)
    if labels["obs"]:
        notes.append(f"observation-level factor(s) {', '.join(labels['obs'])}: counted as "
                     "over-dispersion in the residual variance, not in the random variance")
    reason = None
    try:
        sigma2 = draws.sigma2 if draws.sigma2 is not None else np.zeros(draws.beta.shape[0])
        fe = design.effects[0]
        sources, parts, roles = rs.rights_sterba_parts(design, draws.beta, draws.covs[fe.name],
                                                       sigma2)
        values["rs_variance"] = parts
        values["rs_share"] = parts / parts.sum(axis=-1, keepdims=True)
        labels["source"] = sources
        if not roles.centred:
            notes.append(rs.uncentred_note(roles))
    except rs.RightsSterbaError as exc:
        reason = str(exc)
    kind: Literal["point", "posterior"] = "posterior" if draws.shape else "point"
    return VariancePartition(_dataset(values, labels, draws), kind, origin, fam.name,
                             tuple(labels["factor"]), tuple(labels["obs"]), ci_prob,
                             tuple(notes), reason)
