"""``bayesmix reml``: the same estimates from the model file's data and from files left on disk."""

from __future__ import annotations

import pytest
from conftest import MODELS

import bayesmix as bm
from bayesmix.cli import main


def test_reml_command_from_memory_and_from_a_glob_prints_the_same_fit(tmp_path, capsys):
    pytest.importorskip("duckdb")
    model = MODELS / "sleepstudy.toml"
    data = bm.load_data(bm.Spec.from_file(model))
    for k, half in enumerate((data.iloc[:77], data.iloc[77:])):
        half.to_parquet(tmp_path / f"part-{k}.parquet")
    assert main(["reml", str(model)]) == 0
    in_memory = capsys.readouterr().out
    assert main(["reml", str(model), "--data", str(tmp_path / "*.parquet")]) == 0
    from_files = capsys.readouterr().out
    assert "REML criterion 1743.628" in in_memory
    assert from_files == in_memory
    assert main(["reml", str(model), "--method", "ML"]) == 0
    assert "ML" in capsys.readouterr().out


def test_reml_command_refuses_a_scheduler_without_data(capsys):
    assert main(["reml", str(MODELS / "sleepstudy.toml"), "--scheduler", "tcp://x:1"]) != 0
    assert "give --data too" in capsys.readouterr().err
