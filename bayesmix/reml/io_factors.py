"""Reading REML JSON version 2: fits with several grouping factors made in R.

Version 2 (``tests/reference/make_reference_multi.R`` writes it) lists the random part per
block and the conditional modes per factor::

    "random": [{"group": "batch:cask", "terms": ["(Intercept)"], "sd": [...], "corr": [[...]]}, ...]
    "modes":  [{"group": "batch:cask", "levels": ["A:a", ...], "terms": [...], "values": [[...]]}]

Groups are matched to the design's grouping factors by name (outer:inner, as lme4 writes
``batch:cask``), terms by the same rules as version 1 (lme4's ``SectorCatholic`` is bayesmix's
``Sector[Catholic]``), units by their labels as text.  Errors name what does not match.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from bayesmix.design import Design
    from bayesmix.reml.result import REMLFit


def reml_v2_from_dict(data: dict[str, Any], design: Design | None, where: str) -> REMLFit:
    """A REMLFit with ``u_factors`` from a version-2 dict, matched to ``design``."""
    from bayesmix.reml.io import REMLFormatError, _canon_term, _flag, _match_terms, _num
    from bayesmix.reml.result import REMLFit

    if design is None:
        raise REMLFormatError(
            f"{where} holds a fit with several grouping factors (version 2); read it with the "
            "model's design: read_reml(path, design=bm.build_design(spec, data))"
        )
    formula = design.spec.to_formula()
    factors = {fe.name: fe for fe in design.effects}

    def factor(group: str):
        if group not in factors:
            raise REMLFormatError(
                f"{where}: the grouping factor {group!r} is not one of the model's "
                f"({', '.join(factors)}); fit the same model in R ({formula})"
            )
        return factors[group]

    def columns(fe, terms: list[str]) -> list[int]:
        keys = [_canon_term(t) for t in fe.terms]
        out = []
        for t in terms:
            if _canon_term(t) not in keys:
                raise REMLFormatError(
                    f"{where}: the random term {t!r} over {fe.name} is not one of the model's "
                    f"({', '.join(fe.terms)})"
                )
            out.append(keys.index(_canon_term(t)))
        return out

    try:
        fixed = data["fixed"]
        ext = [str(f["term"]) for f in fixed]
        pos = _match_terms(ext, design.fixed_names, design.fixed_terms, design.gamma_names,
                           "fixed-effect", formula)
        p = design.p
        beta, se = np.full(p, np.nan), np.full(p, np.nan)
        for k, f in zip(pos, fixed, strict=True):
            beta[k], se[k] = _num(f["estimate"]), _num(f.get("se"))
        vcov = np.diag(se**2)
        if data.get("vcov") is not None:
            raw = np.array([[_num(x) for x in row] for row in data["vcov"]])
            vcov = np.empty((p, p))
            vcov[np.ix_(pos, pos)] = raw
        labels = [label for fe in design.effects for label in fe.labels]
        sd = pd.Series(np.nan, index=labels, name="sd")
        corr = pd.DataFrame(np.eye(len(labels)), index=labels, columns=labels)
        for block in data["random"]:
            fe = factor(str(block["group"]))
            cols = columns(fe, [str(t) for t in block["terms"]])
            names = [fe.labels[c] for c in cols]
            sd[names] = [_num(x) for x in block["sd"]]
            corr.loc[names, names] = np.array([[_num(x) for x in r] for r in block["corr"]])
        u_factors = {}
        for modes in data["modes"]:
            fe = factor(str(modes["group"]))
            cols = columns(fe, [str(t) for t in modes["terms"]])
            units = [str(v) for v in modes["levels"]]
            unknown = sorted(set(units) - set(fe.grouping.levels))
            if unknown:
                raise REMLFormatError(f"{where}: units {unknown[:5]} of {fe.name} are not in "
                                      "the data")
            frame = pd.DataFrame(np.nan, index=pd.Index(fe.grouping.levels, name=fe.name),
                                 columns=list(fe.labels))
            frame.loc[units, [fe.labels[c] for c in cols]] = np.array(
                [[_num(x) for x in r] for r in modes["values"]])
            u_factors[fe.name] = frame
        sigma, criterion = _num(data["sigma"]), _num(data["criterion"])
    except (KeyError, TypeError, ValueError) as exc:
        raise REMLFormatError(f"{where} lacks or garbles an entry ({exc}); see "
                              "bayesmix.reml.io_factors") from exc
    missing = [name for name in factors if name not in u_factors] + list(sd.index[sd.isna()])
    if missing:
        raise REMLFormatError(f"{where}: no estimates for {', '.join(missing)}")
    fixed_names = list(design.fixed_names)
    single = design.single_factor
    method = str(data.get("method", "REML")).upper()
    if data.get("family") not in (None, "gaussian"):  # a glmer fit: no σ; glmer's deviance
        nagq = int(data.get("nAGQ") or 1)
        method, sigma = ("Laplace" if nagq == 1 else f"AGQ({nagq})"), None
    return REMLFit(
        design=design,
        method=method,  # type: ignore[arg-type]
        beta=pd.Series(beta, index=fixed_names, name="estimate"),
        se=pd.Series(se, index=fixed_names, name="se"),
        vcov=pd.DataFrame(vcov, index=fixed_names, columns=fixed_names),
        u=(u_factors[design.effects[0].name].rename_axis(design.spec.cluster) if single
           else pd.DataFrame()),
        sd_u=sd,
        corr_u=corr,
        sigma=sigma,
        theta=None if data.get("theta") is None else np.array(data["theta"], dtype=float),
        criterion=criterion,
        loglik=-0.5 * criterion if data.get("loglik") is None else _num(data["loglik"]),
        converged=_flag(data, "converged", True, where),
        singular=_flag(data, "singular", False, where),
        messages=tuple(str(m) for m in data.get("messages") or []),
        source="imported",
        formula=str(data.get("formula", "")),
        nobs=int(data.get("nobs") or 0),
        origin=str(data.get("source", "imported")),
        u_factors=u_factors,
    )
