"""How equations and formulas state a family, its link, trials and exposure.

Level equations state the link on the level-1 line, around the outcome column, as
Raudenbush & Bryk write ``η_ij = log(φ_ij / (1 − φ_ij))``::

    logit(use) = b0 + b1*age          # Bernoulli (binomial with trials=...)
    log(TICKS) = b0 + b1*HEIGHT       # Poisson (exposure=... adds the offset log t)
    pr_dung = b0 + b1*flies + e       # Gaussian: no link, and the residual e

Formulas state them as lme4 and brms do::

    cbind(incidence, size - incidence) ~ period + (1 | herd)      # binomial, trials = size
    incidence | trials(size) ~ period + (1 | herd)                 # the same, brms's way
    TICKS ~ YEAR + offset(log(t)) + (1 | BROOD)                    # Poisson exposure t

A family given by name (``family="bernoulli"``) must agree with a link written in the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bayesmix.errors import SpecError
from bayesmix.families import Family, get_family

LINKS = {"logit": ("bernoulli", "binomial"), "log": ("poisson",)}
_NAME = r"[A-Za-z_.][A-Za-z0-9_.]*"
_LINK_LINE = re.compile(rf"^(\s*)(logit|log|probit|cloglog|identity)\s*\(\s*({_NAME})\s*\)(\s*=)")
_CBIND = re.compile(rf"^\s*cbind\s*\(\s*({_NAME})\s*,\s*(.+?)\s*\)\s*$")
_TRIALS = re.compile(rf"^\s*({_NAME})\s*\|\s*trials\s*\(\s*({_NAME})\s*\)\s*$")
_OFFSET = re.compile(rf"\+?\s*offset\s*\(\s*log\s*\(\s*({_NAME})\s*\)\s*\)\s*")


@dataclass(frozen=True)
class FamilyParts:
    """What the text said about the family (None where it said nothing)."""

    text: str
    link: str | None = None
    trials: str | None = None
    exposure: str | None = None


def split_link_line(text: str) -> FamilyParts:
    """Take ``logit(y) =`` off the level-1 line of level equations (module docstring).

    Returns the text with ``y =`` in its place and the link named; no link for equations
    without one.  Only the logit and log links are known (canonical links of the families).
    """
    if not isinstance(text, str):
        return FamilyParts(text)  # the equations parser reports it
    lines = text.splitlines()
    link = None
    for i, line in enumerate(lines):
        m = _LINK_LINE.match(line)
        if not m:
            continue
        if m.group(2) not in LINKS:
            raise SpecError(
                f"line {i + 1}: the {m.group(2)} link is not supported; write logit(y) for a "
                "Bernoulli or binomial outcome or log(y) for a Poisson one"
            )
        if link is not None:
            raise SpecError(f"line {i + 1}: a second line with a link; only the level-1 line "
                            "states one")
        link = m.group(2)
        lines[i] = f"{m.group(1)}{m.group(3)}{m.group(4)}{line[m.end():]}"
    return FamilyParts("\n".join(lines), link=link)


def split_formula(formula: str) -> FamilyParts:
    """Take ``cbind(k, n - k)``, ``k | trials(n)`` and ``offset(log(t))`` out of a formula."""
    if not isinstance(formula, str) or formula.count("~") != 1:
        return FamilyParts(formula)  # the formula parser reports it
    left, right = formula.split("~")
    trials = exposure = link = None
    m = _CBIND.match(left)
    if m:
        k, other = m.group(1), m.group(2)
        diff = re.fullmatch(rf"({_NAME})\s*-\s*({_NAME})", other)
        if not diff or diff.group(2) != k:
            raise SpecError(
                f"cbind({k}, {other}): write the failures as `n - {k}` with n the column of "
                f"trials (cbind({k}, n - {k})), or use brms's `{k} | trials(n) ~ ...`; a "
                "column of failures is not read, to keep the trials one column of the data"
            )
        trials, link, left = diff.group(1), "logit", k
    m = _TRIALS.match(left)
    if m:
        trials, link, left = m.group(2), "logit", m.group(1)
    offsets = _OFFSET.findall(right)
    if len(offsets) > 1:
        raise SpecError("more than one offset(log(...)); give one exposure column")
    if offsets:
        exposure, link = offsets[0], "log"
        right = _OFFSET.sub("+ ", right, count=1)
        right = re.sub(r"~?\s*\+\s*\+", " +", right)
        right = re.sub(r"^\s*\+", "", right)
        right = re.sub(r"\+\s*$", "", right)
    if "offset(" in right:
        raise SpecError("offset(...) is read only as offset(log(t)), a Poisson exposure t")
    return FamilyParts(f"{left.strip()} ~ {right.strip()}", link=link, trials=trials,
                       exposure=exposure)


def resolve_family(family: str | Family | None, parts: FamilyParts,
                   trials: str | None = None, exposure: str | None = None) -> tuple:
    """The Family, trials column and exposure column from the arguments and the text.

    Returns
    -------
    (Family, str or None, str or None)

    Raises
    ------
    SpecError
        Where the argument and the text disagree, or a family lacks what it needs.
    """
    for what, given, said in (("trials", trials, parts.trials),
                              ("exposure", exposure, parts.exposure)):
        if given is not None and said is not None and given != said:
            raise SpecError(f"{what}={given!r} but the formula says {said!r}; give one")
    trials = trials if trials is not None else parts.trials
    exposure = exposure if exposure is not None else parts.exposure
    if family is None and parts.link is not None:
        fam = get_family("binomial" if trials is not None else LINKS[parts.link][0])
    elif family is None:
        fam = get_family("binomial" if trials is not None else
                         "poisson" if exposure is not None else None)
    else:
        fam = get_family(family)
    if parts.link is not None and fam.link != parts.link:
        raise SpecError(
            f"the equations state the {parts.link} link but family={fam.name!r} has the "
            f"{fam.link} link; write {fam.link}(y) on the level-1 line or drop family="
            if fam.link != "identity" else
            f"the text states the {parts.link} link, so this is not a Gaussian model; give "
            f"family={LINKS[parts.link][0]!r} (or {' / '.join(LINKS[parts.link])})"
        )
    return fam, trials, exposure


def check_family_columns(fam: Family, trials: str | None, exposure: str | None,
                         outcome: str) -> None:
    """A binomial needs trials; only a binomial takes trials, only a Poisson an exposure."""
    if fam.needs_trials and trials is None:
        raise SpecError(
            f"a binomial outcome ({outcome}) needs the column of trials: trials='n' (or "
            f"cbind({outcome}, n - {outcome}) / {outcome} | trials(n) in a formula); for 0/1 "
            "data use family='bernoulli'"
        )
    if trials is not None and not fam.needs_trials:
        raise SpecError(f"trials={trials!r} is for the binomial family, not {fam.name}")
    if exposure is not None and not fam.takes_exposure:
        raise SpecError(f"exposure={exposure!r} is for the Poisson family, not {fam.name}")
