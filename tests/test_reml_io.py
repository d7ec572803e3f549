"""read_reml checks the JSON types: a boolean is a JSON boolean, numbers are numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bayesmix.reml.io import REMLFormatError, read_reml

REFERENCE = Path(__file__).resolve().parent / "reference"
FILES = sorted(REFERENCE.glob("*.json"))


def _write(tmp_path, **changes) -> Path:
    data = json.loads((REFERENCE / "sleepstudy_lmer_reml.json").read_text())
    data.update(changes)
    path = tmp_path / "fit.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_reference_files_read(path):
    reml = read_reml(path)
    assert isinstance(reml.converged, bool) and isinstance(reml.singular, bool)


@pytest.mark.parametrize("value", ["false", "true", [False], 0, 1, None, {"ok": True}])
@pytest.mark.parametrize("key", ["converged", "singular"])
def test_a_flag_must_be_a_json_boolean(tmp_path, key, value):
    with pytest.raises(REMLFormatError, match=rf'"{key}" must be true or false'):
        read_reml(_write(tmp_path, **{key: value}))


def test_flags_read_as_written(tmp_path):
    reml = read_reml(_write(tmp_path, converged=False, singular=True))
    assert reml.converged is False and reml.singular is True


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"sigma": "25.6"}, "lacks or garbles"),
        ({"criterion": True}, "lacks or garbles"),
        ({"loglik": "-871"}, "lacks or garbles"),
        ({"nobs": 180.5}, '"nobs" must be a whole number'),
        ({"nobs": "180"}, '"nobs" must be a whole number'),
        ({"theta": ["0.9"]}, '"theta" must be a list of numbers'),
        ({"method": ["REML"]}, '"method" must be'),
        ({"formula": 3}, '"formula" must be text'),
    ],
)
def test_numbers_and_text_have_their_json_types(tmp_path, changes, match):
    with pytest.raises(REMLFormatError, match=match):
        read_reml(_write(tmp_path, **changes))


def test_a_text_estimate_is_refused(tmp_path):
    data = json.loads((REFERENCE / "sleepstudy_lmer_reml.json").read_text())
    data["fixed"][0]["estimate"] = "251.4"
    with pytest.raises(REMLFormatError, match="is not a number"):
        read_reml(_write(tmp_path, fixed=data["fixed"]))
