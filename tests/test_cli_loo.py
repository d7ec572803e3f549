"""`bayesmix loo` and `bayesmix compare-models`: numbers as bm.loo / bm.compare_models, saved
fits read without sampling, errors checked before sampling and shown without a traceback."""

from __future__ import annotations

import contextlib
import io
import math
import re
from pathlib import Path

import pytest

import bayesmix
import bayesmix.api
import bayesmix.sampling
from bayesmix.cli import WIDTH, main

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
DUNG = str(MODELS / "dung.toml")
SLEEP = str(MODELS / "sleepstudy.toml")
SLEEP_UNCORR = str(MODELS / "sleepstudy_uncorrelated.toml")
CROSSED = str(MODELS / "penicillin_crossed.toml")
QUICK = ["--draws", "50", "--tune", "50", "--chains", "2", "--seed", "3"]


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    """dung, sleepstudy and sleepstudy_uncorrelated fitted once with `bayesmix fit --out`."""
    folder = tmp_path_factory.mktemp("cli_loo")
    paths = {}
    for name, model in [("dung", DUNG), ("sleep", SLEEP), ("sleep_uncorr", SLEEP_UNCORR)]:
        paths[name] = folder / f"{name}.nc"
        rc, _, err = _run(["fit", model, *QUICK, "--out", str(paths[name])])
        assert rc == 0, err
    return paths


@pytest.fixture
def no_sampling(monkeypatch):
    """Make every way of sampling fail loudly: saved fits and checks need none."""

    def boom(*args, **kwargs):
        raise AssertionError("sampling started")

    for module, name in [(bayesmix, "fit"), (bayesmix.api, "fit"), (bayesmix.api, "sample"),
                         (bayesmix.sampling, "sample"), (bayesmix.sampling, "compile_model")]:
        monkeypatch.setattr(module, name, boom)


def _rows(text: str) -> dict[str, list[str]]:
    """The LOO table's rows by model name: [name, left out, units, elpd, SE, p, draws, k...]."""
    rows = {}
    for line in text.splitlines():
        m = re.fullmatch(r"(.+?)\s+(cluster \(\S+\)|observation)((\s+-?[\d.]+){8})", line)
        if m:
            rows[m[1]] = [m[1], m[2], *m[3].split()]
    return rows


def test_loo_fits_a_model_file_and_prints_elpd_se_p_and_pareto_k():
    rc, text, err = _run(["loo", DUNG, *QUICK])
    assert rc == 0, err
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= WIDTH, max(lines, key=len)
    header = next(line for line in lines if "elpd_loo" in line)
    assert header.split() == ["left", "out", "units", "elpd_loo", "SE", "p_loo", "draws",
                              "k<=0.50", "k<=1", "k>1"]  # 100 draws: good k <= 0.50
    (row,) = _rows(text).values()
    name, left_out, units, elpd, se, p, draws, *k = row
    assert (name, left_out, units, draws) == ("dung", "cluster (oven_block)", "3", "100")
    assert math.isfinite(float(elpd)) and float(se) > 0 and float(p) > 0
    assert sum(map(int, k)) == 3
    assert "Pareto k: good up to" in text
    # A unit with high k is named in a note, with the model it belongs to.
    if int(k[1]) + int(k[2]):
        assert "- dung: Pareto k > 0.50 for" in text and "clusters (oven_block): " in text


@pytest.mark.parametrize("unit", ["cluster", "observation"])
def test_loo_of_saved_fits_agrees_with_bm_loo(saved, no_sampling, unit):
    rc, text, err = _run(["loo", "--fit", str(saved["dung"]), str(saved["sleep"]),
                          "--unit", unit])
    assert rc == 0, err
    rows = _rows(text)
    assert list(rows) == ["dung", "sleepstudy"]
    for name, key in [("dung", "dung"), ("sleepstudy", "sleep")]:
        expected = bayesmix.loo(bayesmix.Fit.load(saved[key]), unit, warn=False)
        _, left_out, units, elpd, se, p, draws, *k = rows[name]
        assert left_out.startswith(unit) and int(units) == expected.n_data_points
        assert float(elpd) == pytest.approx(expected.elpd, abs=0.006)
        assert float(se) == pytest.approx(expected.se, abs=0.006)
        assert float(p) == pytest.approx(expected.p, abs=0.006)
        assert int(draws) == expected.n_samples
        assert sum(map(int, k)) == expected.n_data_points
    assert "cluster (Subject)" in text if unit == "cluster" else "observation" in text


def test_a_saved_fit_as_model_argument_and_same_names_made_unique(saved, no_sampling):
    path = str(saved["dung"])
    rc, text, err = _run(["loo", path, "--fit", path])
    assert rc == 0, err
    assert "dung (dung.nc) #1" in text and "dung (dung.nc) #2" in text


def test_crossed_model_with_unit_cluster_is_refused_before_sampling(no_sampling):
    rc, out, err = _run(["loo", CROSSED, "--unit", "cluster"])
    assert rc == 2 and out == ""
    assert err.startswith("bayesmix: error: ") and "Traceback" not in err
    assert "penicillin_crossed.toml" in err and "crossed" in err
    assert "--unit observation" in err


def test_unknown_unit_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["loo", DUNG, "--unit", "school"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'school'" in err and "cluster" in err and "observation" in err


def test_file_problems_are_clear_errors(tmp_path, no_sampling):
    rc, _, err = _run(["loo"])
    assert rc == 2 and "at least 1" in err
    rc, _, err = _run(["loo", "--fit", DUNG])
    assert rc == 2 and "a model file, not a saved fit" in err
    bad = tmp_path / "bad.nc"
    bad.write_text("not a fit")
    rc, _, err = _run(["loo", "--fit", str(bad)])
    assert rc == 2 and "bad.nc" in err and "Traceback" not in err
    rc, _, err = _run(["loo", str(tmp_path / "missing.toml")])
    assert rc == 2 and "missing.toml" in err


@pytest.mark.filterwarnings("ignore:PSIS-LOO")
def test_compare_models_prints_the_table_and_writes_the_plot(saved, no_sampling, tmp_path):
    plot = tmp_path / "compare.png"
    rc, text, err = _run(["compare-models", "--fit", str(saved["sleep"]),
                          str(saved["sleep_uncorr"]), "--plot", str(plot)])
    assert rc == 0, err
    assert text.startswith("Models compared by leave-one-cluster-out ELPD (PSIS-LOO)")
    fits = {name: bayesmix.Fit.load(saved[key]) for name, key in
            [("sleepstudy", "sleep"), ("sleepstudy_uncorrelated", "sleep_uncorr")]}
    expected = bayesmix.compare_models(fits)
    header = text.splitlines()[1].split()
    assert header[0] == "rank" and header[-1] == "weight"
    assert {"elpd", "se", "p", "elpd_diff", "dse"} <= set(header)
    for name in fits:
        line = next(line for line in text.splitlines() if line.startswith(name + " "))
        values = line.split()
        assert int(values[1]) == expected.table.loc[name, "rank"]
        assert float(values[-1]) == pytest.approx(expected.table.loc[name, "weight"], abs=0.006)
        # From the end: the diag_* columns before it hold text with spaces.
        elpd = float(values[header.index("elpd") - len(header)])
        assert elpd == pytest.approx(expected.table.loc[name, "elpd"], abs=0.006)
    assert "weight: stacking weights" in text
    if expected.table["diag_elpd"].str.len().max() > 0:  # some Pareto k above the threshold
        assert re.search(r"^- sleepstudy\S*: Pareto k > 0\.50 for \d+ of 18 clusters \(Subject\)",
                         text, re.MULTILINE)
    assert f"Figure written to {plot}" in text
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_models_by_observation_and_pseudo_bma(saved, no_sampling):
    rc, text, err = _run(["compare-models", str(saved["sleep"]), str(saved["sleep_uncorr"]),
                          "--unit", "observation", "--method", "pseudo-BMA"])
    assert rc == 0, err
    assert text.startswith("Models compared by leave-one-observation-out ELPD")
    assert "weight: pseudo-BMA weights" in text


def test_compare_models_errors_come_before_sampling(saved, no_sampling, tmp_path):
    rc, _, err = _run(["compare-models", SLEEP])
    assert rc == 2 and "at least 2" in err
    rc, _, err = _run(["compare-models", DUNG, "--fit", str(saved["sleep"])])
    assert rc == 2 and "different data" in err and "Traceback" not in err
    rc, _, err = _run(["compare-models", SLEEP, SLEEP_UNCORR, "--plot",
                       str(tmp_path / "plot.txt")])
    assert rc == 2 and ".png" in err
    rc, _, err = _run(["compare-models", SLEEP, SLEEP_UNCORR, "--plot",
                       str(tmp_path / "no" / "plot.png")])
    assert rc == 2 and "does not exist" in err
    rc, _, err = _run(["compare-models", CROSSED, CROSSED, "--unit", "cluster"])
    assert rc == 2 and "crossed" in err
