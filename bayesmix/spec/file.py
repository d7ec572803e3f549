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
    # Three or more levels: levels = ["childid", "schoolid"] (innermost first) instead of
    # cluster, with π/β/γ equations; crossed factors: crossed = ["plate", "sample"] (U, V);
    # diagonal = true (or a list of those factors): independent random effects, lme4's ||.
    family = "bernoulli"               # or "binomial" (with trials = "n"), "poisson" (with
                                       # exposure = "t" if any); Gaussian when absent.  The
                                       # level-1 line may state the link: logit(y) = b0 + ...
    categorical = ["oven_block"]       # numeric columns to code as categorical
    sigma_by = "Sector"                # a residual SD per Sector (heterogeneous σ²)
    [reference]                        # reference level of categorical predictors
    Sector = "Public"
    [priors]                           # overrides of the autoscaled defaults
    eta = 2
    sigma = { dist = "HalfStudentT", nu = 3, sigma = 0.05 }
    beta.g10 = { dist = "Normal", mu = 0, sigma = 0.01 }
    [center]                           # centring per predictor, as HLM's dialog:
    SES = "group"                      # group(SES) wherever SES is used; "grand", "none"
    [weights]                          # sampling weights (bayesmix.weights)
    level1 = "w_student"
    level2 = "w_school"
    scale = "size"
    [sampler]                          # SamplerSettings
    draws = 1000
    chains = 4
    random_seed = 1
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from bayesmix.errors import BayesmixError, SpecError
from bayesmix.priors import Priors
from bayesmix.settings import SamplerSettings
from bayesmix.spec.model import Spec

_KEYS = {
    "name", "description", "data", "cluster", "equations", "formula", "categorical",
    "reference", "priors", "sampler", "level2", "levels", "crossed", "diagonal",
    "family", "trials", "exposure", "weights", "sigma_by", "center",
}
_TEXT_KEYS = ("name", "description", "data", "cluster", "equations", "formula", "family",
              "trials", "exposure", "sigma_by")
_NAMES_KEYS = ("categorical", "level2", "levels", "crossed")
_GROUPING_KEYS = ("cluster", "levels", "crossed")
_TABLE_KEYS = ("reference", "priors", "sampler", "weights", "center")


def _toml_type(value: object) -> str:
    names = {str: "a string", bool: "a boolean", int: "an integer", float: "a number",
             list: "an array", dict: "a table"}
    return names.get(type(value), f"a {type(value).__name__}")


def _check_types(path: Path, raw: dict) -> None:
    """Every key has the TOML type it needs; name the file, the key and the value."""

    def fail(key: str, expected: str, value: object) -> None:
        raise SpecError(
            f"{path}: `{key}` must be {expected}, not {_toml_type(value)} ({value!r})"
        )

    for key in _TEXT_KEYS:
        if key in raw and not isinstance(raw[key], str):
            fail(key, "a string", raw[key])
    for key in _NAMES_KEYS:
        value = raw.get(key)
        if value is not None and not isinstance(value, str) and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            fail(key, 'a column name or an array of them, e.g. ["Sector"]', value)
    diagonal = raw.get("diagonal")
    if diagonal is not None and not isinstance(diagonal, (bool, str)) and not (
        isinstance(diagonal, list) and all(isinstance(v, str) for v in diagonal)
    ):
        fail("diagonal", 'true, false or an array of grouping factors, e.g. ["schoolid"]',
             diagonal)
    for key in _TABLE_KEYS:
        if key in raw and not isinstance(raw[key], dict):
            fail(key, f"a table ([{key}] followed by `key = value` lines)", raw[key])
    for col, level in raw.get("reference", {}).items():
        if not isinstance(level, (str, int)) or isinstance(level, bool):
            fail(f"reference.{col}", "a level written as a string", level)


def _read_text(path: Path) -> str:
    if path.is_dir():
        raise SpecError(f"{path} is a folder, not a model file; name a .toml file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(
            f"{path}: not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x}); save "
            "the model file as UTF-8"
        ) from None


def _data_path(path: Path, raw: dict) -> Path | None:
    if "data" not in raw:
        return None
    data_path = (path.parent / raw["data"]).resolve()
    if data_path.is_dir():
        raise SpecError(
            f"{path}: `data` = {raw['data']!r} is a folder ({data_path}); name the data file "
            "(CSV or Parquet), relative to the model file"
        )
    return data_path


def read_model_file(path: str | Path) -> Spec:
    """Read a model file into a Spec (with its data path, priors and sampler settings).

    Raises
    ------
    SpecError
        Naming the file, and the key (or the line within the equations) at fault: a value of
        the wrong type, a folder or a file that is not UTF-8 text, ``data`` naming a folder.
    FileNotFoundError
        If the file does not exist.
    """
    path = Path(path)
    text = _read_text(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise SpecError(
            f"{path}: unknown key {unknown[0]!r}; known keys: {', '.join(sorted(_KEYS))}"
        )
    _check_types(path, raw)
    has_eq, has_formula = "equations" in raw, "formula" in raw
    if has_eq == has_formula:
        raise SpecError(f"{path}: give exactly one of `equations` or `formula`")
    data_path = _data_path(path, raw)
    common = {
        "reference": raw.get("reference"),
        "categorical": raw.get("categorical", ()),
        "name": raw.get("name", path.stem),
        "family": raw.get("family"),
        "trials": raw.get("trials"),
        "exposure": raw.get("exposure"),
    }
    try:
        if has_eq:
            grouping = {k: raw[k] for k in _GROUPING_KEYS if k in raw}
            if len(grouping) != 1:
                raise SpecError(
                    "`cluster` names the column of the level-2 units (or `levels` the columns "
                    "of levels 2, 3, ..., innermost first, or `crossed` the crossed factors); "
                    f"give one of them, not {' and '.join(f'`{k}`' for k in grouping) or 'none'}"
                )
            spec = Spec.from_equations(raw["equations"], **grouping,
                                       diagonal=raw.get("diagonal", False), **common)
        else:
            given = [k for k in ("levels", "crossed", "diagonal") if k in raw]
            if given:
                raise SpecError(
                    f"`{given[0]}` goes with `equations`; a formula names its grouping factors "
                    "itself, e.g. (1 + year | schoolid/childid) or (1 + x || g)"
                )
            spec = Spec.from_formula(raw["formula"], level2=raw.get("level2"), **common)
            if "cluster" in raw and raw["cluster"] != spec.cluster:
                raise SpecError(
                    f"`cluster` is {raw['cluster']!r} but the formula groups by {spec.cluster!r}"
                )
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None
    priors = _section(path, "priors", raw, Priors.from_dict)
    sampler = _section(
        path, "sampler", raw, lambda d: SamplerSettings.from_dict(d, where="[sampler]")
    )
    weights = _section(path, "weights", raw, lambda d: d)
    if "center" in raw:
        try:
            spec = spec.with_centring(raw["center"])
        except SpecError as exc:
            raise SpecError(f"{path}: [center]: {exc}") from None
    if "sigma_by" in raw:
        try:
            spec = spec.with_options(sigma_by=raw["sigma_by"])
        except SpecError as exc:
            raise SpecError(f"{path}: sigma_by: {exc}") from None
    try:
        spec = spec.with_options(weights=weights) if weights is not None else spec
    except SpecError as exc:
        raise SpecError(f"{path}: [weights]: {exc}") from None
    return spec.with_options(data_path=data_path, priors=priors, sampler=sampler)


def _section(path: Path, key: str, raw: dict, read):
    """Read the [priors] or [sampler] table; any failure names the file and the table."""
    if key not in raw:
        return None
    try:
        return read(raw[key])
    except BayesmixError as exc:
        raise SpecError(f"{path}: {exc}") from None
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise SpecError(f"{path}: [{key}]: a value has the wrong type or form ({exc})") from None
