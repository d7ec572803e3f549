"""Model files: one TOML file per model under ``models/``.

Format (every key but the model's equations or formula is optional)::

    name = "dung"
    description = "The seed tutorial's model"
    data = "../data/dung.csv"          # relative to this file
    cluster = "oven_block"
    equations = '''
        pr_dung = b0 + b1*flies + e
        b0 = g00 + U0
        b1 = g10
    '''
    # or: formula = "pr_dung ~ flies + (1 | oven_block)"   (cluster comes from the formula)
    categorical = ["oven_block"]       # numeric columns to code as categorical
    [reference]                        # reference level of categorical predictors
    Sector = "Public"
    [priors]                           # overrides of the autoscaled defaults
    eta = 2
    sigma = { dist = "HalfStudentT", nu = 3, sigma = 0.05 }
    beta.g10 = { dist = "Normal", mu = 0, sigma = 0.01 }
    [sampler]                          # SamplerSettings
    draws = 1000
    chains = 4
    random_seed = 1
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from bayesmix.errors import SpecError
from bayesmix.priors import Priors
from bayesmix.settings import SamplerSettings
from bayesmix.spec.model import Spec

_KEYS = {
    "name", "description", "data", "cluster", "equations", "formula", "categorical",
    "reference", "priors", "sampler", "level2",
}


def read_model_file(path: str | Path) -> Spec:
    """Read a model file into a Spec (with its data path, priors and sampler settings).

    Raises
    ------
    SpecError
        Naming the file, and the line within the equations for equation errors.
    FileNotFoundError
        If the file does not exist.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise SpecError(
            f"{path}: unknown key {unknown[0]!r}; known keys: {', '.join(sorted(_KEYS))}"
        )
    has_eq, has_formula = "equations" in raw, "formula" in raw
    if has_eq == has_formula:
        raise SpecError(f"{path}: give exactly one of `equations` or `formula`")
    data_path = (path.parent / raw["data"]).resolve() if "data" in raw else None
    common = {
        "reference": raw.get("reference"),
        "categorical": tuple(raw.get("categorical", ())),
        "name": raw.get("name", path.stem),
    }
    try:
        if has_eq:
            if "cluster" not in raw:
                raise SpecError("`cluster` names the column of the level-2 units")
            spec = Spec.from_equations(raw["equations"], raw["cluster"], **common)
        else:
            spec = Spec.from_formula(raw["formula"], level2=raw.get("level2"), **common)
            if "cluster" in raw and raw["cluster"] != spec.cluster:
                raise SpecError(
                    f"`cluster` is {raw['cluster']!r} but the formula groups by {spec.cluster!r}"
                )
        priors = Priors.from_dict(raw["priors"]) if "priors" in raw else None
        sampler = (
            SamplerSettings.from_dict(raw["sampler"], where="[sampler]")
            if "sampler" in raw
            else None
        )
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None
    return spec.with_options(data_path=data_path, priors=priors, sampler=sampler)
