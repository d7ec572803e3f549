"""The bayesmix command: compact output, --out checked before sampling, --force, errors."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import pytest

import bayesmix
import bayesmix.api
import bayesmix.sampling
from bayesmix.cli import WIDTH, main

ROOT = Path(__file__).resolve().parents[1]
DUNG = str(ROOT / "models" / "dung.toml")
QUICK = ["--draws", "50", "--tune", "50", "--chains", "2", "--seed", "3"]


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One `bayesmix fit models/dung.toml --out ...` run shared by the tests below."""
    path = tmp_path_factory.mktemp("cli") / "dung.nc"
    rc, text, err = _run(["fit", DUNG, *QUICK, "--out", str(path)])
    assert rc == 0, err
    return path, text


def test_fit_prints_a_compact_rounded_summary(fitted):
    path, text = fitted
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= WIDTH, max(lines, key=len)
    header = next(line for line in lines if line.startswith("parameter"))
    assert header.split() == ["parameter", "mean", "sd", "2.5%", "97.5%", "ESS", "bulk", "ESS",
                              "tail", "R-hat"]
    rows = {line.split("  ")[0].strip(): line for line in lines
            if line.startswith(("g00", "g10", "sd U0", "sigma"))}
    assert set(rows) == {"g00 (Intercept)", "g10 (flies)", "sd U0 (Intercept)", "sigma"}
    for line in rows.values():
        *_, ess_bulk, ess_tail, rhat = line.split()
        assert re.fullmatch(r"\d+", ess_bulk) and re.fullmatch(r"\d+", ess_tail)
        assert re.fullmatch(r"\d\.\d{3}", rhat)
    # The flies slope (about -3.5e-05) keeps its significant digits and reads as a number.
    mean = rows["g10 (flies)"].split()[2]
    assert re.fullmatch(r"-?\d\.\d{3}e-0[4-6]", mean), mean
    assert abs(float(mean)) < 2e-4
    # The reconstruction is one line, the table only with --reconstruct.
    rec = [line for line in lines if line.startswith("Reconstruction:")]
    assert len(rec) == 1 and "max |Y - (Xb+Zu+e)|" in rec[0] and "graph vs explicit" in rec[0]
    assert "agree" in rec[0] and "Zu" in rec[0]
    assert not any(re.match(r"\s*cluster\s+y\s+Xb", line) for line in lines)
    # Timings: compile apart from sampling.
    (time_line,) = [line for line in lines if line.startswith("Time ")]
    assert re.search(r"compile (\(kernels (loaded|compiled)\) )?\d+\.\d\d, sample \d+\.\d\d",
                     time_line)
    assert f"Saved the fit to {path}" in text and path.exists()


def test_summary_of_a_saved_fit_and_the_reconstruction_table(fitted):
    path, _ = fitted
    rc, text, _ = _run(["summary", str(path), "--reconstruct"])
    assert rc == 0
    assert "sd U0 (Intercept)" in text
    assert re.search(r"cluster\s+y\s+Xb\s+Zu\s+e\s+sum", text)  # the full table
    assert "max |Y - (Xb + Zu + e)|" in text
    rc, text, _ = _run(["summary", str(path), "--full"])
    assert rc == 0 and "mcse_mean" in text and "beta[g10 (flies)]" in text


@pytest.fixture
def no_sampling(monkeypatch):
    """Make every way of sampling fail loudly: the checks must come first."""

    def boom(*args, **kwargs):
        raise AssertionError("sampling started before --out was checked")

    for module, name in [(bayesmix, "fit"), (bayesmix.api, "fit"), (bayesmix.api, "sample"),
                         (bayesmix.sampling, "sample"), (bayesmix.sampling, "compile_model"),
                         (bayesmix.api, "build_model")]:
        monkeypatch.setattr(module, name, boom)


def test_existing_out_file_is_refused_before_sampling(tmp_path, no_sampling):
    out = tmp_path / "old.nc"
    out.write_text("precious")
    rc, _, err = _run(["fit", DUNG, *QUICK, "--out", str(out)])
    assert rc == 2
    assert str(out) in err and "--force" in err and "exists" in err
    assert out.read_text() == "precious"


def test_out_folder_problems_are_refused_before_sampling(tmp_path, no_sampling):
    rc, _, err = _run(["fit", DUNG, "--out", str(tmp_path)])
    assert rc == 2 and "is a folder" in err and "fit.nc" in err
    missing = tmp_path / "no" / "such" / "fit.nc"
    rc, _, err = _run(["fit", DUNG, "--out", str(missing)])
    assert rc == 2 and "does not exist" in err and str(missing.parent) in err


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root can write to read-only folders")
def test_read_only_out_folder_is_refused_before_sampling(tmp_path, no_sampling):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        rc, _, err = _run(["fit", DUNG, "--out", str(folder / "fit.nc")])
    finally:
        folder.chmod(0o755)
    assert rc == 2 and "not writable" in err


def test_force_overwrites(fitted, tmp_path, monkeypatch):
    path, _ = fitted
    loaded = bayesmix.Fit.load(path)
    monkeypatch.setattr(bayesmix, "fit", lambda *a, **k: loaded)  # no second sampling run
    out = tmp_path / "again.nc"
    out.write_text("old")
    rc, text, err = _run(["fit", DUNG, "--out", str(out), "--force"])
    assert rc == 0, err
    assert bayesmix.Fit.load(out).design.n == loaded.design.n
    assert f"Saved the fit to {out}" in text


def test_bad_model_file_gives_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('cluster = "oven_block"\ndata = "x.csv"\nequations = "y = b0 + e\\nb0 = g00"\n')
    rc = main(["fit", str(bad)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "bad.toml" in err and "not a multilevel model" in err


def test_ctrl_c_during_sampling_is_one_line_and_exit_130(monkeypatch):
    def interrupted(*args, **kwargs):
        raise bayesmix.sampling.SamplingInterrupted(
            "sampling interrupted after 1.0 s (Ctrl-C): no fit was made and nothing was saved")

    monkeypatch.setattr(bayesmix, "fit", interrupted)
    rc, _, err = _run(["fit", DUNG, *QUICK])
    assert rc == 130
    assert err.strip().splitlines() == [
        "bayesmix: sampling interrupted after 1.0 s (Ctrl-C): no fit was made and nothing was "
        "saved"]
