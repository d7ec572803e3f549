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


THREE_LEVELS = '''
math = p0 + p1*year + e
p0 = b00 + b01*black + r0
p1 = b10 + r1
b00 = g000 + g001*lowinc + u00
b01 = g010
b10 = g100 + u10
'''


def test_levels_crossed_and_diagonal_keys(tmp_path):
    path = tmp_path / "three.toml"
    path.write_text(f'levels = ["childid", "schoolid"]\ndiagonal = ["schoolid"]\n'
                    f'equations = """{THREE_LEVELS}"""\n')
    spec = Spec.from_file(path)
    assert spec == Spec.from_equations(THREE_LEVELS, levels=["childid", "schoolid"],
                                       diagonal=["schoolid"], name="three")
    assert spec.to_formula().endswith("(1 + year || schoolid) + (1 + year | schoolid:childid)")
    path = tmp_path / "crossed.toml"
    path.write_text('crossed = ["plate", "sample"]\n'
                    'equations = "y = b0 + b1*x + e\\nb0 = g00 + U0 + V0\\nb1 = g10"\n')
    assert Spec.from_file(path) == Spec.from_formula("y ~ x + (1 | plate) + (1 | sample)",
                                                     name="crossed")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (f'levels = 3\nequations = """{THREE_LEVELS}"""\n', "`levels` must be a column name"),
        (f'cluster = "g"\nlevels = ["c", "s"]\nequations = """{THREE_LEVELS}"""\n',
         "not `cluster` and `levels`"),
        ('levels = ["c", "s"]\nformula = "y ~ x + (1 | s/c)"\n', "`levels` goes with"),
        (f'levels = ["c", "k", "s"]\nequations = """{THREE_LEVELS}"""\n',
         "line 4.*drop the extra columns from `levels`"),
        (f'cluster = "c"\nequations = """{THREE_LEVELS}"""\n', "line 4.*pass levels="),
        (f'levels = ["c", "s"]\ndiagonal = 2\nequations = """{THREE_LEVELS}"""\n',
         "`diagonal` must be true, false or an array"),
        (f'levels = ["c", "s"]\ndiagonal = ["k"]\nequations = """{THREE_LEVELS}"""\n',
         "`diagonal` names 'k'"),
        ('crossed = ["a"]\nequations = "y = b0 + e\\nb0 = g00 + U0"\n', "`crossed` lists 2"),
    ],
)
def test_bad_grouping_keys_name_the_file_and_key(tmp_path, body, fragment):
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(SpecError, match=fragment) as info:
        Spec.from_file(path)
    assert "bad.toml" in str(info.value)
