"""Model files: the shipped ones parse; priors and sampler settings are read; errors say where."""

from __future__ import annotations

from pathlib import Path

import pytest

from bayesmix import Prior, SamplerSettings, Spec, SpecError, build_design, load_data

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((ROOT / "models").glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_model_files_parse_and_build(path):
    spec = Spec.from_file(path)
    assert spec.name == path.stem
    assert spec.data_path is not None and spec.data_path.exists()
    design = build_design(spec, load_data(spec))
    assert design.J >= 2


def test_hsb_file_matches_the_classic_model():
    spec = Spec.from_file(ROOT / "models" / "hsb.toml")
    assert spec.to_formula() == (
        "MathAch ~ 1 + cses + MEANSES + Sector + cses:MEANSES + cses:Sector + (1 + cses | School)"
    )
    assert spec.reference_levels == {"Sector": "Public"}
    assert spec.sampler == SamplerSettings(random_seed=5, target_accept=0.95)


def test_priors_and_sampler_from_file(tmp_path):
    (tmp_path / "d.csv").write_text((ROOT / "data" / "dung.csv").read_text())
    path = tmp_path / "m.toml"
    path.write_text(
        'data = "d.csv"\ncluster = "oven_block"\n'
        'formula = "pr_dung ~ flies + (1 | oven_block)"\n'
        "[priors]\neta = 3\n"
        'sigma = { dist = "Exponential", lam = 100 }\n'
        'beta.g10 = { dist = "Normal", mu = 0, sigma = 0.001 }\n'
        'sd_u = { dist = "HalfNormal", sigma = 0.05 }\n'
        "[sampler]\ndraws = 300\nchains = 2\nsampler = \"pymc\"\n"
    )
    spec = Spec.from_file(path)
    assert spec.priors.eta == 3.0
    assert spec.priors.sigma == Prior("Exponential", lam=100.0)
    assert spec.priors.beta["g10"] == Prior("Normal", mu=0.0, sigma=0.001)
    assert spec.sampler.draws == 300 and spec.sampler.sampler == "pymc"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ('cluster = "g"\nequations = "y = b0 + e\\nb0 = g00 + U0"\ncolour = 1\n',
         "unknown key 'colour'"),
        ('cluster = "g"\nequations = "y = b0 + e\\nb0 = g00 + U0"\n[sampler]\ndraw = 5\n',
         "unknown key 'draw' in \\[sampler\\]"),
        ('cluster = "g"\nequations = "y = b0 + e\\nb0 = g00 + U0"\n[priors]\nsigma = 2\n',
         "must be a table with a `dist` key"),
        ('cluster = "g"\n', "exactly one of `equations` or `formula`"),
        ('equations = "y = b0 + e\\nb0 = g00 + U0"\n', "`cluster` names the column"),
        ('cluster = "g"\nequations = "y = b0 + e\\nb0 = g00 + + U0"\n', "line 2, position"),
        ("cluster = [", "not valid TOML"),
    ],
)
def test_bad_model_files_name_the_fault(tmp_path, body, fragment):
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(SpecError, match=fragment) as info:
        Spec.from_file(path)
    assert "bad.toml" in str(info.value)
