"""compare(): the Bayesian posterior side by side with a REML (or ML) fit.

For every fixed effect γ, SD and correlation of U, and σ, the table puts the REML estimate
(with its standard error where REML gives one) next to the posterior mean, sd, median and 95%
interval, and

    z = (posterior mean − REML estimate) / posterior sd

with the verdict "agrees" when |z| ≤ 1 and "differs by more than one posterior sd" otherwise.
A second table does the same for the random effects u, per cluster and random term, with the
shrinkage of each (how far the estimate is pulled from the cluster's own least-squares value
towards the fixed part, see :func:`compare`).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bayesmix.design import Design
from bayesmix.errors import BayesmixError
from bayesmix.notation import BETA, CORR_U, DIM_CLUSTER, DIM_FIXED, DIM_RANDOM, SD_U, SIGMA, U
from bayesmix.reml.io import align_reml
from bayesmix.reml.result import REMLFit
from bayesmix.stats import cluster_stats

DRAWS_DIM = "(chain, draw)"
"""The stacked chain × draw dimension (not a valid column name of a formula)."""
AGREES = "agrees"
DIFFERS = "differs by more than one posterior sd"
NO_VERDICT_UNCONVERGED = "no verdict: the REML fit did not converge"
NO_REML_VALUE = "no REML value"

TABLE_COLUMNS = ("kind", "REML", "REML SE", "mean", "sd", "median", "2.5%", "97.5%",
                 "REML in 95%", "z", "verdict")
U_COLUMNS = ("cluster", "term", "BLUP", "own estimate", "shrinkage", "mean", "sd", "2.5%",
             "97.5%", "posterior shrinkage", "z", "verdict")


@dataclass(frozen=True)
class Comparison:
    """Posterior summaries next to a REML fit.

    Attributes
    ----------
    table : DataFrame
        One row per parameter (index: ``"g10 (Days)"``, ``"sd U1 (Days)"``,
        ``"corr U1 (Days), U0 (Intercept)"``, ``"sigma"``) with columns ``kind`` (beta, sd_u,
        corr_u, sigma), ``REML``, ``REML SE`` (NaN where REML gives none), posterior ``mean``,
        ``sd``, ``median``, ``2.5%``, ``97.5%``, ``REML in 95%``, ``z`` and ``verdict``.
    u_table : DataFrame
        One row per cluster × random term: ``cluster``, ``term``, ``BLUP`` (REML conditional
        mode), ``own estimate`` (the cluster's own least-squares deviation from the fixed
        part, no pooling), ``shrinkage`` = 1 − BLUP / own estimate, posterior ``mean``, ``sd``,
        ``2.5%``, ``97.5%``, ``posterior shrinkage`` = 1 − mean / own estimate, ``z``, ``verdict``.
    notes : tuple of str
        Plain-language notes for reading the tables.
    reml : REMLFit
        The REML fit, aligned to the Bayesian fit's design.
    design : Design
        The design both refer to.
    """

    table: pd.DataFrame
    u_table: pd.DataFrame
    notes: tuple[str, ...]
    reml: REMLFit
    design: Design

    @property
    def reml_converged(self) -> bool:
        """Whether the REML fit converged (else no verdicts are given)."""
        return self.reml.converged

    def __str__(self) -> str:
        return format_comparison(self)

    def __repr__(self) -> str:
        return comparison_repr(self)

    def _repr_html_(self) -> str:
        parts = []
        if not self.reml.converged:
            parts.append(
                "<p style='color:#b00;font-weight:bold'>The REML fit did not converge: its "
                "numbers are not estimates and no verdicts are given.</p>"
            )
        parts.append(f"<h4>Posterior vs {self.reml.method} ({html.escape(self.reml.origin)})"
                     "</h4>")
        parts.append(self.table.to_html(float_format=lambda v: f"{v:.4g}", na_rep="–"))
        parts.append("<h4>Random effects u: BLUP vs posterior</h4>")
        parts.append(self.u_table.to_html(float_format=lambda v: f"{v:.4g}", na_rep="–",
                                          max_rows=60))
        parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
                     + "</ul>")
        return "\n".join(parts)


# --------------------------------------------------------------------------- helpers
def _posterior(fit: Any) -> xr.Dataset:
    post = getattr(fit, "posterior", None)
    if post is None:
        raise BayesmixError(
            "compare(fit, reml) needs a Bayesian fit with a `posterior` (from bayesmix.fit or "
            f"bayesmix.sample); got {type(fit).__name__}"
        )
    if isinstance(post, xr.DataTree):
        post = post.to_dataset()
    if not isinstance(post, xr.Dataset):
        raise BayesmixError(f"fit.posterior is a {type(post).__name__}, not an xarray tree")
    needed = (BETA, U, SD_U) if fit.design.single_factor else (BETA,)
    if fit.design.family.has_sigma:
        needed = (*needed, SIGMA)
    missing = [v for v in needed if v not in post]
    if missing:
        raise BayesmixError(
            f"the posterior lacks {', '.join(missing)}; compare() needs beta, u, sd_u, sigma"
        )
    return post


def _draws(da: xr.DataArray) -> xr.DataArray:
    """Stack chain × draw into one ``sample`` dimension (the last)."""
    dims = [d for d in ("chain", "draw") if d in da.dims]
    # the stacked dim's name must not be a grouping factor's (a column may be called "sample")
    return da.stack({DRAWS_DIM: dims}).transpose(..., DRAWS_DIM)


def _summ(x: np.ndarray) -> dict[str, np.ndarray]:
    """Summaries over the last axis of ``x`` (draws)."""
    q = np.quantile(x, [0.025, 0.5, 0.975], axis=-1)
    return {"mean": x.mean(axis=-1), "sd": x.std(axis=-1, ddof=1), "median": q[1],
            "2.5%": q[0], "97.5%": q[2]}


def _verdicts(z: np.ndarray, reml: np.ndarray, converged: bool) -> list[str]:
    out = []
    for zi, ri in zip(z, reml, strict=True):
        if not converged:
            out.append(NO_VERDICT_UNCONVERGED)
        elif not np.isfinite(ri) or not np.isfinite(zi):
            out.append(NO_REML_VALUE)
        else:
            out.append(AGREES if abs(zi) <= 1.0 else DIFFERS)
    return out


def own_estimates(design: Design, beta: np.ndarray) -> np.ndarray:
    """Each cluster's own least-squares deviation from the fixed part (no pooling).

    ``û_j^own = (Z_jᵀZ_j)⁻¹ Z_jᵀ (y_j − X_j β)``, from the per-cluster cross-products.

    Parameters
    ----------
    design : Design
    beta : ndarray, shape (p,)

    Returns
    -------
    ndarray, shape (J, q)
        NaN for a cluster whose Z_jᵀZ_j is singular (e.g. one row and a random slope).
    """
    # On the statistics' standardised scale (bayesmix.scaling), then mapped back exactly.
    st = cluster_stats(design)
    rhs = st.Zy - np.einsum("jpq,p->jq", st.XZ, st.scaling.beta_to_std(beta))
    out = np.full((design.J, design.q), np.nan)
    cond = np.linalg.cond(st.ZZ)
    ok = np.isfinite(cond) & (cond < 1e10)
    if ok.any():
        out[ok] = st.scaling.u_from_std(np.linalg.solve(st.ZZ[ok], rhs[ok][..., None])[..., 0])
    return out


class _Rows:
    """The parameter table, row by row: a posterior summary beside each REML estimate."""

    def __init__(self, converged: bool) -> None:
        self.converged = converged
        self.rows: list[dict[str, Any]] = []
        self.index: list[str] = []

    def add(self, kind: str, labels: list[str], draws: np.ndarray, est: np.ndarray,
            se: np.ndarray) -> None:
        """Rows for ``labels``: draws (k, S), REML estimates (k,) and SEs (k,)."""
        s = _summ(draws)
        z = (s["mean"] - est) / s["sd"]
        verdict = _verdicts(z, est, self.converged)
        for k, label in enumerate(labels):
            self.index.append(label)
            self.rows.append({
                "kind": kind, "REML": est[k], "REML SE": se[k],
                **{key: val[k] for key, val in s.items()},
                "REML in 95%": bool(s["2.5%"][k] <= est[k] <= s["97.5%"][k])
                if np.isfinite(est[k]) else False,
                "z": z[k], "verdict": verdict[k],
            })

    def table(self) -> pd.DataFrame:
        """The rows as a DataFrame indexed by parameter."""
        return pd.DataFrame(self.rows, index=pd.Index(self.index, name="parameter"),
                            columns=list(TABLE_COLUMNS))


# --------------------------------------------------------------------------- compare
def _check_arguments(fit: Any, reml: Any) -> None:
    """Say what to call when the arguments are not (Bayesian fit, REML fit)."""
    from bayesmix.fit_result import Fit

    if isinstance(reml, Fit):
        raise BayesmixError(
            "bm.compare puts one Bayesian fit next to a REML/ML fit of the same model "
            "(bm.compare(fit, bm.fit_reml(spec, data))); to compare two Bayesian models use "
            "bm.compare_models({'name 1': fit1, 'name 2': fit2}) (LOO, weights)"
        )
    if not hasattr(reml, "beta") or not hasattr(reml, "sd_u"):
        raise BayesmixError(f"bm.compare needs a REMLFit second (from bm.fit_reml or "
                            f"bm.read_reml), not {type(reml).__name__}")
    if not hasattr(fit, "posterior") or not hasattr(fit, "design"):
        raise BayesmixError(f"bm.compare needs a Bayesian Fit first (from bm.fit), not "
                            f"{type(fit).__name__}")


def compare(fit: Any, reml: REMLFit) -> Comparison:
    """Put a Bayesian fit's posterior next to a REML (or ML) fit of the same model.

    Parameters
    ----------
    fit : Fit
        A Bayesian fit: ``fit.design`` and ``fit.posterior`` with ``beta`` (chain, draw,
        fixed), ``u`` (chain, draw, cluster, random), ``sd_u`` (chain, draw, random),
        ``corr_u`` (chain, draw, random, random2; optional when q = 1) and ``sigma``.
    reml : REMLFit
        From :func:`bayesmix.fit_reml` or :func:`bayesmix.read_reml`; an imported fit is matched
        to ``fit.design`` by term and cluster names (errors name what does not match).

    Returns
    -------
    Comparison
        ``.table`` (γ, SDs, correlations, σ), ``.u_table`` (per cluster and term), ``.notes``.

    Notes
    -----
    Shrinkage of cluster j's term r is ``1 − BLUP_jr / own_jr``, where ``own_jr`` is the
    cluster's own least-squares estimate ``(Z_jᵀZ_j)⁻¹ Z_jᵀ(y_j − X_j β̂)``. For a random
    intercept it is ``σ² / (σ² + n_j τ²)``, between 0 (no pooling) and 1 (complete pooling); with
    correlated random terms one term can borrow from another and the ratio can leave [0, 1].
    """
    _check_arguments(fit, reml)
    design: Design = fit.design
    if not design.single_factor:
        from bayesmix.compare_factors import compare_factors

        return compare_factors(fit, reml, _posterior(fit))
    post = _posterior(fit)
    if reml.design is not design:
        reml = align_reml(reml, design)
    rows = _Rows(reml.converged)
    add = rows.add

    fixed = list(design.fixed_names)
    beta = _draws(post[BETA].sel({DIM_FIXED: fixed})).to_numpy()
    add(BETA, fixed, beta, reml.beta.to_numpy(), reml.se.to_numpy())
    rnames = list(design.random_names)
    sd = _draws(post[SD_U].sel({DIM_RANDOM: rnames})).to_numpy()
    nan_q = np.full(len(rnames), np.nan)
    add(SD_U, [f"sd {r}" for r in rnames], sd, reml.sd_u.to_numpy(), nan_q)
    q = len(rnames)
    free = design.effects[0].covariance_pattern()  # a || pair is fixed at 0: not compared
    if q > 1 and CORR_U in post and free[np.tril_indices(q, -1)].any():
        corr = _draws(post[CORR_U]).to_numpy()  # (q, q, S)
        pairs = [(i, j) for i in range(q) for j in range(i) if free[i, j]]
        labels = [f"corr {rnames[i]}, {rnames[j]}" for i, j in pairs]
        draws = np.stack([corr[i, j] for i, j in pairs])
        est = np.array([reml.corr_u.iloc[i, j] for i, j in pairs])
        add(CORR_U, labels, draws, est, np.full(len(pairs), np.nan))
    if SIGMA in post and design.sigma_index is not None:  # σ_s per group (sigma_by)
        if reml.sigma_by is None:
            raise BayesmixError("the Bayesian fit has a residual SD per "
                                f"{design.spec.sigma_by}; the REML fit has one σ: fit it with "
                                "the same spec (fit_reml(fit.spec, data))")
        sig = _draws(post[SIGMA]).to_numpy().reshape(len(design.sigma_levels), -1)
        add(SIGMA, [f"sigma[{g}]" for g in design.sigma_levels], sig,
            reml.sigma_by.loc[list(design.sigma_levels)].to_numpy(),
            np.full(len(design.sigma_levels), np.nan))
    elif SIGMA in post:  # the Gaussian family's σ
        sig = _draws(post[SIGMA]).to_numpy()[None, :]
        add(SIGMA, ["sigma"], sig, np.array([reml.sigma]), np.array([np.nan]))
    table = rows.table()

    # ---- random effects
    u = _draws(post[U].sel({DIM_CLUSTER: list(design.clusters), DIM_RANDOM: rnames}))
    u = u.to_numpy()  # (J, q, S)
    su = _summ(u)
    blup = reml.u.to_numpy()
    # No-pooling estimates are least squares: defined for the Gaussian family only (a GLMM
    # cluster's own fit may not exist, e.g. all 0 or all 1).
    own = (own_estimates(design, reml.beta.to_numpy()) if design.family.is_gaussian
           else np.full_like(blup, np.nan))
    with np.errstate(divide="ignore", invalid="ignore"):
        shrink = np.where(np.abs(own) > 0, 1.0 - blup / own, np.nan)
        pshrink = np.where(np.abs(own) > 0, 1.0 - su["mean"] / own, np.nan)
        zu = (su["mean"] - blup) / su["sd"]
    J = design.J
    verdict_u = np.array(_verdicts(zu.ravel(), blup.ravel(), reml.converged)).reshape(J, q)
    u_table = pd.DataFrame({
        "cluster": np.repeat(np.asarray(design.clusters, dtype=object), q),
        "term": np.tile(np.asarray(rnames, dtype=object), J),
        "BLUP": blup.ravel(), "own estimate": own.ravel(), "shrinkage": shrink.ravel(),
        "mean": su["mean"].ravel(), "sd": su["sd"].ravel(), "2.5%": su["2.5%"].ravel(),
        "97.5%": su["97.5%"].ravel(), "posterior shrinkage": pshrink.ravel(),
        "z": zu.ravel(), "verdict": verdict_u.ravel(),
    }, columns=list(U_COLUMNS))
    notes = _notes(table, u_table, reml, design)
    return Comparison(table=table, u_table=u_table, notes=tuple(notes), reml=reml,
                      design=design)


def _notes(table: pd.DataFrame, u_table: pd.DataFrame, reml: REMLFit,
           design: Design) -> list[str]:
    notes: list[str] = []
    if not reml.converged:
        notes.append(
            "WARNING: the REML fit did not converge. Its numbers are where the optimiser "
            "stopped, not estimates, so no verdicts are given. " + " ".join(reml.messages)
        )
    notes.append(
        "z = (posterior mean − REML estimate) / posterior sd; 'agrees' means |z| ≤ 1. For the "
        "γ's the REML SE and the posterior sd measure the same uncertainty and should be "
        "close when the priors are weak."
    )
    sd_rows = table[table["kind"] == SD_U]
    above = sd_rows[sd_rows["mean"] > sd_rows["REML"]]
    if len(above):
        notes.append(
            "An SD's posterior mean is not its REML estimate: REML gives the peak (mode) of "
            "the restricted likelihood, while the posterior of an SD is skewed to the right "
            "(an SD cannot go below 0 but can be large), so its mean sits above the peak, "
            f"the more so with few clusters (here {design.J}). Compare the REML value with "
            "the posterior median and interval instead: "
            + "; ".join(f"{i}: REML {r['REML']:.4g}, posterior median {r['median']:.4g}, "
                        f"mean {r['mean']:.4g}" for i, r in above.iterrows())
            + "."
        )
    if reml.singular:
        notes.append(
            "The REML fit is singular (an SD at 0 or a correlation of ±1). A posterior cannot "
            "put all its mass on the boundary, so the posterior SD will be above 0 and its "
            "interval shows how large it could plausibly be; a 'differs' verdict there is "
            "expected, not a fault of either fit."
        )
    if reml.method == "ML":
        notes.append(
            "These are ML estimates: ML ignores that the γ's were estimated, so its SDs and σ "
            "are biased downwards (REML corrects this); expect them below the posterior."
        )
    if design.J < 10:
        notes.append(
            f"With only {design.J} clusters the data say little about the SDs of U, so their "
            "posterior depends on the prior; disagreement on the SDs is expected."
        )
    if reml.design is not None and reml.source == "imported":
        notes.append(f"The REML fit was imported from {reml.origin}.")
    outside = u_table["shrinkage"].dropna()
    if design.q > 1 and ((outside < 0) | (outside > 1)).any():
        notes.append(
            "Shrinkage = 1 − BLUP / own estimate. With correlated random terms a cluster's "
            "estimate of one term also borrows from its other terms, so some shrinkages fall "
            "outside 0–1 (a BLUP can even change sign); that is expected, not an error."
        )
    n_diff = int((u_table["verdict"] == DIFFERS).sum())
    notes.append(
        "BLUPs are conditional modes of u given the REML estimates of T and σ; posterior "
        "means also average over the uncertainty in T and σ, so they are usually close but "
        f"not equal. {n_diff} of {len(u_table)} u's differ by more than one posterior sd."
    )
    return notes


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _fmt_z(v: float) -> str:
    return "–" if not np.isfinite(v) else f"{v:+.2f}"


def comparison_repr(cmp: Comparison, width: int = 100) -> str:
    """A short view: REML, posterior mean and sd, z and verdict per parameter; u in one line."""
    from bayesmix.checks.summary import significant

    out = []
    if not cmp.reml.converged:
        out.append("WARNING: the REML fit did not converge; no verdicts are given.")
    out.append(f"Comparison: posterior vs {cmp.reml.method} ({cmp.reml.origin}), "
               f"{cmp.design.spec.to_formula()}")
    short = {AGREES: "agrees", DIFFERS: "differs", NO_REML_VALUE: "no REML value",
             NO_VERDICT_UNCONVERGED: "no verdict"}
    t = cmp.table
    view = pd.DataFrame({
        "REML": t["REML"].map(significant), "mean": t["mean"].map(significant),
        "sd": t["sd"].map(lambda v: significant(v, 3)), "z": t["z"].map(_fmt_z),
        "verdict": t["verdict"].map(lambda v: short.get(v, v)),
    }, index=t.index)
    out.append(view.to_string(max_colwidth=width))
    ut = cmp.u_table
    n_ok = int((ut["verdict"] == AGREES).sum())
    out.append(f"u: {n_ok} of {len(ut)} posterior means within one posterior sd of the BLUP. "
               "print() for both tables and the notes")
    return "\n".join(out)


def format_comparison(cmp: Comparison, *, max_u_rows: int = 40) -> str:
    """Render both tables and the notes as plain text."""
    out = []
    if not cmp.reml.converged:
        out += ["!" * 78,
                "!! THE REML FIT DID NOT CONVERGE: its numbers are not estimates; no verdicts.",
                "!" * 78]
    out.append(f"Posterior vs {cmp.reml.method} ({cmp.reml.origin}), "
               f"{cmp.design.spec.to_formula()}")
    t = cmp.table.copy()
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        out.append(t.to_string(float_format=_fmt, na_rep="–", formatters={"z": _fmt_z}))
        out += ["", "Random effects u (BLUP vs posterior):"]
        ut = cmp.u_table
        shown = ut if len(ut) <= max_u_rows else ut.iloc[:max_u_rows]
        out.append(shown.to_string(index=False, float_format=_fmt, na_rep="–",
                                   formatters={"z": _fmt_z}))
        if len(ut) > max_u_rows:
            out.append(f"... {len(ut) - max_u_rows} more rows in .u_table")
    import textwrap

    out += ["", "Notes:"]
    for note in cmp.notes:
        out += textwrap.wrap(note, 100, initial_indent="- ", subsequent_indent="  ")
    return "\n".join(out)
