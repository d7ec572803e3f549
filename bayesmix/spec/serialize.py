"""A Spec as plain data (JSON), and back: how a saved fit stores its model."""

from __future__ import annotations

from typing import Any

from bayesmix.spec.model import Coefficient, Gamma, RandomTerm, Spec


def spec_to_dict(spec: Spec) -> dict[str, Any]:
    """Every field of the model (not the data path, priors or sampler settings)."""
    return {
        "outcome": spec.outcome,
        "cluster": spec.cluster,
        "coefficients": [
            {"name": c.name, "variables": list(c.variables), "random": c.random,
             "gammas": [{"name": g.name, "variables": list(g.variables)} for g in c.gammas]}
            for c in spec.coefficients
        ],
        "random": [
            {"factor": list(t.factor), "terms": [list(x) for x in t.terms],
             "names": list(t.names), "structure": t.structure}
            for t in spec.random
        ],
        "variable_levels": [[v, int(k)] for v, k in spec.variable_levels],
        "reference": dict(spec.reference),
        "categorical": list(spec.categorical),
        "family": spec.family.name,
        "trials": spec.trials,
        "exposure": spec.exposure,
        "name": spec.name,
        "weights": None if spec.weights is None else {
            "level1": spec.weights.level1, "level2": spec.weights.level2,
            "scale": spec.weights.scale},
        "sigma_by": spec.sigma_by,
    }


def spec_from_dict(values: dict[str, Any]) -> Spec:
    """Inverse of :func:`spec_to_dict` (the Spec's own checks run again)."""
    coefficients = tuple(
        Coefficient(
            name=c["name"],
            variables=tuple(c["variables"]),
            gammas=tuple(Gamma(g["name"], tuple(g["variables"])) for g in c["gammas"]),
            random=c["random"],
        )
        for c in values["coefficients"]
    )
    random = tuple(
        RandomTerm(factor=tuple(t["factor"]), terms=tuple(tuple(x) for x in t["terms"]),
                   names=tuple(t["names"]), structure=t["structure"])
        for t in values["random"]
    )
    return Spec(
        outcome=values["outcome"],
        cluster=values["cluster"],
        coefficients=coefficients,
        random=random,
        variable_levels=tuple((v, int(k)) for v, k in values.get("variable_levels", ())),
        reference=tuple((str(k), str(v)) for k, v in dict(values.get("reference", {})).items()),
        categorical=tuple(values.get("categorical", ())),
        family=values.get("family", "gaussian"),
        trials=values.get("trials"),
        exposure=values.get("exposure"),
        name=values.get("name"),
        weights=values.get("weights"),
        sigma_by=values.get("sigma_by"),
    )
