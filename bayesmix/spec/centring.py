"""Centring chosen per variable, as HLM's dialog offers it: ``{"SES": "group"}``.

``spec.with_centring({"SES": "group", "MEANSES": "grand"})`` (and a model file's
``[center]`` table) writes every use of the variable as the call of
:mod:`bayesmix.spec.transforms`: ``SES`` becomes ``group(SES)`` in the level equations, the
γ's and the random terms alike; ``"none"`` (HLM's "uncentered") leaves it as it is.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from bayesmix.errors import SpecError
from bayesmix.spec.terms import Coefficient, Gamma, RandomTerm

if TYPE_CHECKING:
    from bayesmix.spec.model import Spec

KINDS = {"group": "group", "grand": "grand", "none": None, "uncentered": None,
         "uncentred": None}


def with_centring(spec: Spec, centring: dict[str, str]) -> Spec:
    """The spec with each named variable replaced by its centred version.

    Raises
    ------
    SpecError
        An unknown kind, a variable the model does not use, the outcome, a grouping column
        or a categorical variable.
    """
    if not isinstance(centring, dict):
        raise SpecError("centring maps variables to 'group', 'grand' or 'none', e.g. "
                        "{'SES': 'group'}")
    rename: dict[str, str] = {}
    for var, kind in centring.items():
        if kind not in KINDS:
            raise SpecError(f"the centring of {var!r} is one of group, grand or none, not "
                            f"{kind!r}")
        if var not in spec.predictors:
            raise SpecError(f"{var!r} is centred but the model does not use it as a predictor "
                            f"(its predictors: {', '.join(spec.predictors)})")
        if var in spec.categorical or var in spec.reference_levels:
            raise SpecError(f"{var!r} is categorical; only numeric predictors are centred")
        if KINDS[kind] is not None:
            rename[var] = f"{KINDS[kind]}({var})"
    if not rename:
        return spec

    def names(variables: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(rename.get(v, v) for v in variables)

    coefficients = tuple(
        Coefficient(c.name, names(c.variables),
                    tuple(Gamma(g.name, names(g.variables)) for g in c.gammas), c.random)
        for c in spec.coefficients)
    random = tuple(RandomTerm(t.factor, tuple(names(term) for term in t.terms), t.names,
                              t.structure) for t in spec.random)
    levels = tuple((rename.get(v, v), k) for v, k in spec.variable_levels)
    return replace(spec, coefficients=coefficients, random=random, variable_levels=levels)
