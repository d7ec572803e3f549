"""Internal consistency of a Spec, checked by every constructor (``Spec.__post_init__``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bayesmix.errors import SpecError

if TYPE_CHECKING:
    from bayesmix.spec.model import Spec


def validate_spec(spec: Spec) -> None:
    """Check the internal consistency every constructor relies on."""
    for what, value in (("outcome", spec.outcome), ("cluster", spec.cluster)):
        if not isinstance(value, str) or not value:
            raise SpecError(f"the {what} must be a column name (text), not {value!r}")
    if not spec.coefficients:
        raise SpecError("the model has no level-1 coefficient; write at least `y = b0 + e`")
    seen_coef: set[str] = set()
    seen_gamma: set[str] = set()
    seen_u: set[str] = set()
    seen_l1: dict[tuple[str, ...], str] = {}
    for coef in spec.coefficients:
        if coef.name in seen_coef:
            raise SpecError(f"coefficient {coef.name} appears twice at level 1")
        seen_coef.add(coef.name)
        key = tuple(sorted(coef.variables))
        if key in seen_l1:
            raise SpecError(
                f"coefficients {seen_l1[key]} and {coef.name} multiply the same level-1 term "
                f"{coef.term!r}; merge them into one coefficient"
            )
        seen_l1[key] = coef.name
        _check_product(coef.name, coef.variables)
        for gamma in coef.gammas:
            _check_product(gamma.name, gamma.variables)
        if not coef.gammas and coef.random is None:
            raise SpecError(
                f"the level-2 equation of {coef.name} has neither a γ nor a U term; "
                f"write e.g. `{coef.name} = g{coef.name[1:]}0`"
            )
        seen_terms: dict[tuple[str, ...], str] = {}
        for gamma in coef.gammas:
            if gamma.name in seen_gamma:
                raise SpecError(f"γ name {gamma.name} is used twice; give each γ its own name")
            seen_gamma.add(gamma.name)
            gkey = tuple(sorted(gamma.variables))
            if gkey in seen_terms:
                raise SpecError(
                    f"{seen_terms[gkey]} and {gamma.name} in the equation of {coef.name} "
                    "multiply the same level-2 term; keep one"
                )
            seen_terms[gkey] = gamma.name
            overlap = set(gamma.variables) & set(coef.variables)
            if overlap:
                raise SpecError(
                    f"{gamma.name} multiplies {sorted(overlap)} which {coef.name} already "
                    "multiplies at level 1"
                )
        if coef.random is not None:
            if coef.random in seen_u:
                raise SpecError(f"random effect {coef.random} is used twice")
            seen_u.add(coef.random)
    if not seen_u:
        raise SpecError(
            "no coefficient has a random effect, so this is not a two-level model; add a U term "
            "to a level-2 equation, e.g. `b0 = g00 + U0` for a random intercept"
        )
    used = set(spec.level1_variables) | set(spec.level2_variables)
    if spec.outcome in used:
        raise SpecError(f"the outcome {spec.outcome!r} is also used as a predictor")
    if spec.cluster in used:
        raise SpecError(
            f"the cluster column {spec.cluster!r} is also used as a predictor; a predictor that "
            "identifies the clusters is collinear with the random intercepts"
        )
    if spec.cluster == spec.outcome:
        raise SpecError(f"the cluster column {spec.cluster!r} is also the outcome")


def _check_product(name: str, variables: tuple[str, ...]) -> None:
    """Predictor names are text without brackets, each at most once in a product."""
    for k, var in enumerate(variables):
        if not isinstance(var, str) or not var:
            raise SpecError(f"{name} multiplies {var!r}; a variable is a column name (text)")
        if "[" in var or "]" in var:
            raise SpecError(
                f"the column name {var!r} has brackets, which bayesmix uses for the levels of "
                "categorical predictors (`Sector[Catholic]`) and for subscripts (`X[ij]`); "
                f"rename the column, e.g. data.rename(columns={{{var!r}: "
                f"{var.replace('[', '_').replace(']', '')!r}}})"
            )
        if var in variables[:k]:
            raise SpecError(
                f"{name} multiplies {var!r} twice; squares are not supported yet (`{var}:{var}` "
                f"means {var} in a formula). Add a column such as {var}_sq = {var}**2 to the "
                "data and use it instead"
            )
