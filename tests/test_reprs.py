"""Short terminal reprs and HTML reprs of what people print: Spec, Design, Fit, Summary, ..."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix as bm
from bayesmix.checks.summary import Summary, significant

ROOT = Path(__file__).resolve().parents[1]
SHORT = 1_500


@pytest.fixture(scope="module")
def dung():
    data = pd.read_csv(ROOT / "data" / "dung.csv")
    spec = bm.Spec.from_file(ROOT / "models" / "dung.toml")
    fit = bm.fit(spec, data, draws=50, tune=50, chains=2, random_seed=2, progressbar=False)
    return spec, data, fit


@pytest.fixture(scope="module")
def hsb_design():
    data = pd.read_csv(ROOT / "data" / "hsb.csv")
    return bm.build_design(bm.Spec.from_file(ROOT / "models" / "hsb.toml"), data)


def test_significant_digits():
    assert significant(-3.46674e-05) == "-3.467e-05"
    assert significant(0.166232) == "0.1662"
    assert significant(251.405) == "251.4"
    assert significant(25.5918, 3) == "25.6"
    assert significant(1_234_567.0) == "1.235e+06"
    assert significant(0.0) == "0" and significant(float("nan")) == "nan"
    assert significant(0.00123456) == "0.001235"


def _summary(names: list[str], scale: float) -> Summary:
    rng = np.random.default_rng(1)
    k = len(names)
    table = pd.DataFrame({
        "mean": rng.normal(size=k) * scale, "sd": rng.uniform(0.1, 1, k) * scale,
        "eti95_lb": -2 * scale * np.ones(k), "eti95_ub": 2 * scale * np.ones(k),
        "ess_bulk": rng.uniform(10, 5000, k), "ess_tail": rng.uniform(10, 5000, k),
        "r_hat": 1 + rng.uniform(0, 0.2, k), "mcse_mean": np.full(k, 0.01 * scale),
        "mcse_sd": np.full(k, 0.01 * scale),
    }, index=names)
    return Summary(table, 1.2, 10.0, 3, ("R-hat reaches 1.2 " + "and more words " * 20,))


def test_summary_compact_is_narrow_and_rounded():
    names = ["beta[g10 (flies)]", "beta[g13 (cses:MEANSES:Sector[Catholic]:a_very_long_name)]",
             "sd_u[U0 (Intercept)]", "corr_u[U1 (cses), U0 (Intercept)]", "sigma"]
    s = _summary(names, 3.5e-5)
    text = s.compact()
    lines = text.splitlines()
    assert max(map(len, lines)) <= 100
    assert lines[0].split() == ["parameter", "mean", "sd", "2.5%", "97.5%", "ESS", "bulk", "ESS",
                                "tail", "R-hat"]
    body = lines[1:6]
    assert body[0].startswith("g10 (flies) ") and body[2].startswith("sd U0 (Intercept)")
    assert body[3].startswith("corr U1 (cses), U0 (Intercept)")
    assert "…" in body[1]  # the over-long label is cut, not the numbers
    for line in body:
        *_, ess_b, ess_t, rhat = line.split()
        assert re.fullmatch(r"\d+", ess_b) and re.fullmatch(r"\d+", ess_t)
        assert re.fullmatch(r"1\.\d{3}", rhat)
        assert re.search(r"-?\d\.\d{3}e-0[4-6]", line)  # values near 1e-5 stay readable
    assert "WARNING: R-hat reaches 1.2" in text
    assert "<table" in s._repr_html_()
    assert str(s) == text and repr(s) == text


def test_spec_repr(dung):
    spec, _, _ = dung
    text = repr(spec)
    assert len(text) < SHORT
    assert "pr_dung ~ 1 + flies + (1 | oven_block)" in text
    assert "pr_dung = b0 + b1*flies + e" in text and "b0 = g00 + U0" in text
    assert "oven_block" in text and "dung.csv" in text
    assert "SamplerSettings" not in text and "Coefficient(" not in text
    html = spec._repr_html_()
    assert "<table" in html and "b1 = g10" in html


def test_design_repr_is_short_for_thousands_of_rows(hsb_design):
    text = repr(hsb_design)
    assert len(text) < SHORT, len(text)
    assert "n = 7185 rows, J = 160 clusters (School)" in text
    assert "g02 (Sector[Catholic])" in text and "U1 (cses)" in text
    assert "(160 in all)" in text and "array(" not in text
    assert f"{hsb_design.Z.nnz} non-zeros" in text
    html = hsb_design._repr_html_()
    assert "<table" in html and len(html) < 20_000


def test_fit_repr(dung):
    _, _, fit = dung
    text = repr(fit)
    assert len(text) < SHORT, len(text)
    assert str(fit) == text
    assert "pr_dung ~ 1 + flies + (1 | oven_block)" in text
    assert "collapsed likelihood, nutpie, 2 chains x 50 draws" in text
    assert "g10 (flies)" in text and "max R-hat" in text
    assert "WARNING" not in text  # warnings are counted, not spelled out
    assert max(map(len, text.splitlines())) <= 100
    assert "<table" in fit._repr_html_()


def test_prediction_repr(dung):
    _, data, fit = dung
    rows = pd.concat([data] * 2, ignore_index=True)
    rows.loc[0, "oven_block"] = 99
    pred = bm.predict(fit, rows, random_seed=1)
    text = repr(pred)
    assert len(text) < SHORT, len(text)
    assert f"of {len(rows)} rows from 2 chains x 50 draws" in text
    assert "clusters not in the fit: 99" in text
    assert f"{len(rows) - 10} more rows" in text
    assert "array(" not in text
    assert "<table" in pred._repr_html_()
    summary_only = bm.predict(fit, rows, random_seed=1, keep_draws=False)
    assert "summary only" in repr(summary_only) and len(repr(summary_only)) < SHORT


def test_comparison_repr(dung):
    _, _, fit = dung
    cmp = bm.compare(fit, bm.fit_reml(fit.design))
    text = repr(cmp)
    assert len(text) < SHORT, len(text)
    assert "g10 (flies)" in text and "sd U0 (Intercept)" in text and "sigma" in text
    assert re.search(r"\b(agrees|differs)\b", text)
    assert "u_table=" not in text and "of 3 posterior means" in text
    assert max(map(len, str(cmp).splitlines())) <= 200  # notes wrapped
    assert all(len(line) <= 100 for line in str(cmp).split("Notes:")[1].splitlines())


def test_equations_repr(dung):
    spec, data, _ = dung
    text = repr(bm.equations(spec, data))
    assert len(text) < SHORT
    assert "pr_dung ~ 1 + flies + (1 | oven_block)" in text
    assert "β_1j" in text and ".matrix" in text and "with the data's numbers" in text
