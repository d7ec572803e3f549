"""The bayesmix command: fit a model file, save, read back, and clear errors."""

from __future__ import annotations

from pathlib import Path

from bayesmix.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_fit_then_summary(tmp_path, capsys):
    out = tmp_path / "dung.nc"
    rc = main(["fit", str(ROOT / "models" / "dung.toml"), "--draws", "200", "--tune", "300",
               "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    assert "beta[g10 (flies)]" in text
    assert "max |Y - (Xb + Zu + e)|" in text
    assert "Time:" in text and out.exists()
    rc = main(["summary", str(out), "--reconstruct"])
    text = capsys.readouterr().out
    assert rc == 0 and "sd_u[U0 (Intercept)]" in text and "max |Y" in text


def test_bad_model_file_gives_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('cluster = "oven_block"\ndata = "x.csv"\nequations = "y = b0 + e\\nb0 = g00"\n')
    rc = main(["fit", str(bad)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "bad.toml" in err and "not a two-level model" in err
