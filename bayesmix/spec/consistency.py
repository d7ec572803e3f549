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
    _check_random(spec)
    used = set(spec.predictors)
    if spec.outcome in used:
        raise SpecError(f"the outcome {spec.outcome!r} is also used as a predictor")
    for column in spec.factor_columns:
        if column in used:
            raise SpecError(
                f"the grouping column {column!r} is also used as a predictor; a predictor that "
                "identifies the units is collinear with their random intercepts"
            )
        if column == spec.outcome:
            raise SpecError(f"the grouping column {column!r} is also the outcome")


def _check_random(spec: Spec) -> None:
    """The random blocks: some exist, names unique, ``cluster``'s agree with the U terms."""
    from bayesmix.spec.model import RandomTerm

    if not spec.random:
        raise SpecError(
            "no coefficient has a random effect, so this is not a multilevel model; add a U "
            "term to a level-2 equation, e.g. `b0 = g00 + U0` for a random intercept"
        )
    names: set[str] = set()
    on_factor: dict[str, dict[tuple[str, ...], str]] = {}
    for block in spec.random:
        if not isinstance(block, RandomTerm):
            raise SpecError(f"`random` holds RandomTerm blocks, not {type(block).__name__}")
        seen = on_factor.setdefault(block.grouping, {})
        for name, term in zip(block.names, block.terms, strict=True):
            _check_product(name, term)
            if name in names:
                raise SpecError(f"random effect {name} is used twice")
            names.add(name)
            key = tuple(sorted(term))
            if key in seen:
                label = ":".join(term) or "the intercept"
                raise SpecError(
                    f"{seen[key]} and {name} are both random effects of {label} over "
                    f"{block.grouping}; keep one (their variances cannot be told apart)"
                )
            seen[key] = name
    if spec.cluster not in on_factor:
        raise SpecError(
            f"the cluster {spec.cluster!r} is not the grouping factor of any random block "
            f"({', '.join(on_factor)})"
        )
    u_terms = {tuple(sorted(c.variables)): c.random for c in spec.coefficients
               if c.random is not None}
    block_terms = on_factor[spec.cluster]
    if u_terms != block_terms:
        raise SpecError(
            f"the coefficients' U terms ({', '.join(sorted(filter(None, u_terms.values())))}) "
            f"are not the random effects over {spec.cluster} "
            f"({', '.join(sorted(block_terms.values()))})"
        )


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
