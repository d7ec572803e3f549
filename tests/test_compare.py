"""compare() and plot_compare() on posteriors with known summaries, and on a real fit."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from bayesmix import Spec, build_design
from bayesmix.compare import AGREES, DIFFERS, NO_VERDICT_UNCONVERGED, compare, own_estimates
from bayesmix.plots import plot_compare
from bayesmix.reml import REMLFormatError, fit_reml, read_reml

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
REF = ROOT / "tests" / "reference"


@dataclass(frozen=True)
class FakeFit:
    """Stands in for bayesmix.Fit: a design and a DataTree posterior."""

    design: object
    posterior: xr.DataTree


def exact_normal(mean, sd, shape, rng):
    """Draws (chain, draw, *mean.shape) with sample mean and sd exactly ``mean`` and ``sd``."""
    z = rng.standard_normal(shape + np.shape(mean))
    flat = z.reshape(-1, *np.shape(mean))
    flat = (flat - flat.mean(axis=0)) / flat.std(axis=0, ddof=1)
    return (np.asarray(mean) + np.asarray(sd) * flat).reshape(z.shape)


def fake_fit(design, reml, *, beta_shift_sd=None, post_sd_scale=1.0, chains=2, draws=400,
             seed=0):
    """A posterior centred on the REML values (plus shifts measured in posterior sds)."""
    rng = np.random.default_rng(seed)
    shape = (chains, draws)
    p, q = design.p, design.q
    bsd = reml.se.to_numpy() * post_sd_scale
    shift = np.zeros(p) if beta_shift_sd is None else np.asarray(beta_shift_sd, float)
    beta = exact_normal(reml.beta.to_numpy() + shift * bsd, bsd, shape, rng)
    sd_ref = reml.sd_u.to_numpy()
    sd_u = np.abs(exact_normal(sd_ref * 1.1, 0.1 * sd_ref + 1e-3, shape, rng))
    u = exact_normal(reml.u.to_numpy(), 0.3 * sd_ref[None, :] + 1e-4, shape, rng)
    sigma = np.abs(exact_normal(reml.sigma, 0.02 * reml.sigma, shape, rng))
    corr = np.broadcast_to(np.eye(q), (*shape, q, q)).copy()
    if q > 1:
        c = np.clip(exact_normal(np.nan_to_num(reml.corr_u.iloc[1, 0]), 0.2, shape, rng), -1, 1)
        corr[..., 1, 0] = corr[..., 0, 1] = c
    coords = design.coords
    ds = xr.Dataset(
        {
            "beta": (("chain", "draw", "fixed"), beta),
            "u": (("chain", "draw", "cluster", "random"), u),
            "sd_u": (("chain", "draw", "random"), sd_u),
            "corr_u": (("chain", "draw", "random", "random2"), corr),
            "sigma": (("chain", "draw"), sigma),
        },
        coords={"chain": np.arange(chains), "draw": np.arange(draws),
                "fixed": coords["fixed"], "cluster": coords["cluster"],
                "random": coords["random"], "random2": coords["random2"]},
    )
    tree = xr.DataTree.from_dict({"posterior": ds})
    return FakeFit(design=design, posterior=tree["posterior"])


@pytest.fixture(scope="module")
def sleep():
    d = pd.read_csv(DATA / "sleepstudy.csv")
    design = build_design(Spec.from_formula("Reaction ~ Days + (Days | Subject)", d), d)
    return design, fit_reml(design)


@pytest.fixture(scope="module")
def dung():
    d = pd.read_csv(DATA / "dung.csv")
    design = build_design(Spec.from_formula("pr_dung ~ flies + (1 | oven_block)", d), d)
    return design, fit_reml(design)


def test_table_rows_and_summaries(sleep):
    design, reml = sleep
    fit = fake_fit(design, reml, beta_shift_sd=[0.5, -2.0])
    cmp = compare(fit, reml)
    t = cmp.table
    assert list(t.index) == ["g00 (Intercept)", "g10 (Days)", "sd U0 (Intercept)",
                             "sd U1 (Days)", "corr U1 (Days), U0 (Intercept)", "sigma"]
    assert list(t["kind"]) == ["beta", "beta", "sd_u", "sd_u", "corr_u", "sigma"]
    # z is exactly the shift in posterior sds we put in.
    np.testing.assert_allclose(t.loc[["g00 (Intercept)", "g10 (Days)"], "z"], [0.5, -2.0],
                               atol=1e-9)
    assert t.loc["g00 (Intercept)", "verdict"] == AGREES
    assert t.loc["g10 (Days)", "verdict"] == DIFFERS
    np.testing.assert_allclose(t["REML"].iloc[:2], reml.beta)
    np.testing.assert_allclose(t["REML SE"].iloc[:2], reml.se)
    assert t["REML SE"].iloc[2:].isna().all()
    draws = fit.posterior["beta"].to_numpy()[..., 1].ravel()
    assert t.loc["g10 (Days)", "median"] == pytest.approx(np.median(draws))
    assert t.loc["g10 (Days)", "2.5%"] == pytest.approx(np.quantile(draws, 0.025))
    assert t.loc["g10 (Days)", "sd"] == pytest.approx(reml.se.iloc[1])
    assert t.loc["corr U1 (Days), U0 (Intercept)", "REML"] == pytest.approx(
        reml.corr_u.iloc[1, 0])
    # The SD-vs-mode note is there since the fake posterior means of the SDs exceed REML.
    assert any("not its REML estimate" in n for n in cmp.notes)
    text = str(cmp)
    assert "g10 (Days)" in text and "Random effects u" in text and "Notes:" in text
    assert "<table" in cmp._repr_html_()


def test_u_table_and_shrinkage_of_random_intercept(dung):
    design, reml = dung
    cmp = compare(fake_fit(design, reml), reml)
    ut = cmp.u_table
    assert list(ut["cluster"]) == ["1", "2", "3"]
    np.testing.assert_allclose(ut["BLUP"], reml.u.iloc[:, 0])
    # Random intercept: BLUP_j = λ_j (ȳ_j − x̄_jᵀβ̂), λ_j = τ² / (τ² + σ²/n_j), so the
    # shrinkage is σ² / (σ² + n_j τ²).
    n_j = design.level2["n"].to_numpy()
    tau2, s2 = reml.sd_u.iloc[0] ** 2, reml.sigma**2
    np.testing.assert_allclose(ut["shrinkage"], s2 / (s2 + n_j * tau2), rtol=1e-9)
    # The own estimate is the cluster's mean residual from the fixed part.
    resid = design.y - design.X @ reml.beta.to_numpy()
    means = pd.Series(resid).groupby(design.cluster_index).mean().to_numpy()
    np.testing.assert_allclose(ut["own estimate"], means, rtol=1e-10)
    np.testing.assert_allclose(ut["z"], 0.0, atol=1e-9)
    assert (ut["verdict"] == AGREES).all()
    # Only three clusters: the notes say that the SD depends on the prior.
    assert any("only 3 clusters" in n for n in cmp.notes)


def test_own_estimates_two_terms(sleep):
    design, reml = sleep
    own = own_estimates(design, reml.beta.to_numpy())
    # Per subject: OLS of the residual on (1, Days).
    resid = design.y - design.X @ reml.beta.to_numpy()
    for j in (0, 7):
        rows = design.cluster_index == j
        coef, *_ = np.linalg.lstsq(design.Zq[rows], resid[rows], rcond=None)
        np.testing.assert_allclose(own[j], coef, rtol=1e-9)


def test_unconverged_reml_gives_no_verdicts(sleep):
    design, reml = sleep
    bad = replace(reml, converged=False, messages=("the optimiser stopped early",))
    cmp = compare(fake_fit(design, reml), bad)
    assert (cmp.table["verdict"] == NO_VERDICT_UNCONVERGED).all()
    assert (cmp.u_table["verdict"] == NO_VERDICT_UNCONVERGED).all()
    assert cmp.notes[0].startswith("WARNING: the REML fit did not converge")
    assert "DID NOT CONVERGE" in str(cmp)
    assert "did not converge" in cmp._repr_html_()


def test_singular_reml_is_explained():
    d = pd.read_csv(REF / "dyestuff2.csv")
    design = build_design(Spec.from_formula("Yield ~ 1 + (1 | Batch)", d), d)
    reml = fit_reml(design)
    fit = fake_fit(design, replace(reml, sd_u=reml.sd_u + 0.5))
    cmp = compare(fit, reml)
    assert any("singular" in n for n in cmp.notes)
    assert cmp.table.loc["sd U0 (Intercept)", "REML"] == 0.0


def test_imported_lme4_fit_is_matched_by_name():
    d = pd.read_csv(DATA / "hsb.csv")
    spec = Spec.from_equations(
        "MathAch = b0 + b1*cses + e\nb0 = g00 + g01*MEANSES + g02*Sector + U0\n"
        "b1 = g10 + g11*MEANSES + g12*Sector + U1", "School", reference={"Sector": "Public"})
    design = build_design(spec, d)
    imported = read_reml(REF / "hsb_crosslevel_lmer.json")  # lme4 names, no design
    own = fit_reml(design)
    cmp = compare(fake_fit(design, own), imported)
    assert cmp.table.loc["g02 (Sector[Catholic])", "REML"] == pytest.approx(1.2166720071955)
    assert any("imported from lme4::lmer" in n for n in cmp.notes)
    assert len(cmp.u_table) == 2 * 160
    # A model without the cross-level terms: the error names the terms.
    small = build_design(Spec.from_formula("MathAch ~ cses + (cses | School)", d), d)
    with pytest.raises(REMLFormatError, match="'cses:SectorCatholic'"):
        compare(fake_fit(small, fit_reml(small)), imported)


def test_plot_compare_writes_png(tmp_path, sleep):
    design, reml = sleep
    cmp = compare(fake_fit(design, reml, beta_shift_sd=[0.3, -1.5]), reml)
    fig = plot_compare(cmp, tmp_path / "cmp.png")
    assert (tmp_path / "cmp.png").stat().st_size > 10_000
    texts = [t.get_text() for ax in fig.axes for t in ax.get_yticklabels()]
    assert "308" in texts  # cluster labels from the data
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert "g10 (Days)" in labels and "sd U1 (Days)" in labels


def test_plot_compare_many_clusters(tmp_path):
    d = pd.read_csv(DATA / "hsb.csv")
    design = build_design(Spec.from_formula("MathAch ~ cses + (cses | School)", d), d)
    reml = read_reml(REF / "hsb_rc_lmer.json", design=design)
    fig = plot_compare(compare(fake_fit(design, reml), reml), tmp_path / "hsb.png")
    assert fig.get_size_inches()[1] <= 14.0


# --------------------------------------------------------------------------- CLI
def _args(model, **kw):
    import argparse

    from bayesmix.compare_cli import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    extra = []
    for key, value in kw.items():
        flag = "--" + key.replace("_", "-")
        extra += [flag] if value is True else [flag, str(value)]
    return parser.parse_args([str(model), *extra])


@pytest.fixture()
def dung_model(tmp_path):
    path = tmp_path / "dung.toml"
    path.write_text(
        f'name = "dung"\ndata = "{(DATA / "dung.csv").as_posix()}"\ncluster = "oven_block"\n'
        "equations = '''\npr_dung = b0 + b1*flies + e\nb0 = g00 + U0\nb1 = g10\n'''\n"
    )
    return path


def test_cli_reml_only_and_json(tmp_path, dung_model):
    import io

    from bayesmix.compare_cli import run_compare_cli

    buf = io.StringIO()
    rc = run_compare_cli(_args(dung_model, reml_only=True, write_reml=tmp_path / "r.json"),
                         out=buf)
    assert rc == 0
    assert "REML criterion -89.429" in buf.getvalue()
    back = read_reml(tmp_path / "r.json")
    assert back.beta.iloc[0] == pytest.approx(0.1662317, rel=1e-6)


def test_cli_compare_with_fit_function(tmp_path, dung_model):
    import io

    from bayesmix.compare_cli import run_compare_cli

    def fit_function(spec, data):
        design = build_design(spec, data)
        return fake_fit(design, fit_reml(design))

    buf = io.StringIO()
    rc = run_compare_cli(_args(dung_model, reml=REF / "dung_lme.json", plot=tmp_path / "c.png"),
                         fit_function=fit_function, out=buf)
    text = buf.getvalue()
    assert rc == 0
    assert "g10 (flies)" in text and "nlme::lme" in text and "Figure written" in text
    assert (tmp_path / "c.png").exists()


# --------------------------------------------------------------------------- a real fit
@pytest.fixture(scope="session")
def hsb_real_fit(fitted_model):
    """The HSB cross-level model (models/hsb.toml), sampled once per session."""
    return fitted_model("hsb")


@pytest.mark.slow
def test_hsb_posterior_agrees_with_reml(hsb_real_fit):
    """160 schools: the γ's posterior means lie within a quarter posterior sd of REML."""
    fit = hsb_real_fit
    reml = fit_reml(fit.design)
    cmp = compare(fit, reml)
    gam = cmp.table[cmp.table["kind"] == "beta"]
    assert (gam["z"].abs() < 0.25).all(), gam[["REML", "mean", "sd", "z"]]
    assert (gam["verdict"] == AGREES).all()
    # The REML SEs and the posterior sds of the γ's measure the same uncertainty.
    np.testing.assert_allclose(gam["sd"], gam["REML SE"], rtol=0.2)
    assert cmp.table.loc["sigma", "verdict"] == AGREES
    assert (cmp.u_table["z"].abs() < 1).mean() > 0.95
