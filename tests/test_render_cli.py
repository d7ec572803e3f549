"""The `bayesmix equations` command body: run_equations_cli / equations_text."""

from __future__ import annotations

import argparse
import io

import pytest
from render_support import DUNG, ROOT, model_files

from bayesmix.render import run_equations_cli
from bayesmix.render.cli import add_arguments, equations_text


@pytest.fixture()
def dung_model(tmp_path):
    path = tmp_path / "dung.toml"
    equations = DUNG.strip().replace("\n", "\n    ")
    path.write_text(
        f'name = "dung"\ndata = "{ROOT / "data" / "dung.csv"}"\ncluster = "oven_block"\n'
        f"equations = '''\n    {equations}\n'''\n"
    )
    return path


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bayesmix equations")
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_cli_prints_requested_form_and_format(dung_model):
    out = io.StringIO()
    status = run_equations_cli(_parse(str(dung_model), "--form", "combined", "--format", "latex"),
                               out)
    assert status == 0
    assert out.getvalue().startswith(r"\begin{aligned}")
    assert r"\gamma_{10} \cdot \text{flies}_{ij}" in out.getvalue()


def test_cli_matrix_uses_the_model_files_data(dung_model):
    text = equations_text(dung_model, "matrix", "text")
    assert "0.1433747" in text and "223" in text
    assert "0.1433747" not in equations_text(dung_model, "matrix", "text", use_data=False)
    elided = equations_text(dung_model, "matrix", "text", max_rows=6)
    assert "showing" in elided and "⋮" in elided


def test_cli_all_forms_markdown(dung_model):
    out = io.StringIO()
    run_equations_cli(_parse(str(dung_model), "--format", "markdown"), out)
    assert out.getvalue().count("$$") == 10


def test_cli_rejects_unknown_form(dung_model):
    with pytest.raises(SystemExit):
        _parse(str(dung_model), "--form", "nope")


@pytest.mark.parametrize("path", model_files(), ids=lambda p: p.stem)
def test_cli_every_model_file(path):
    for fmt in ("latex", "markdown", "text"):
        assert equations_text(path, "all", fmt)
