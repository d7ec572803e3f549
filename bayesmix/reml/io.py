"""Read and write REML fits as JSON, and match an external fit's names to a model's design.

The JSON format (``"format": "bayesmix-reml"``, version 1) is written by :func:`write_reml` and by
the R function ``write_reml_json()`` in ``scripts/write_reml_json.R`` (from an ``lme4::lmer`` or
``nlme::lme`` fit)::

    {
      "format": "bayesmix-reml", "version": 1,
      "source": "lme4::lmer (lme4 1.1.31)",        # free text: who made the fit
      "method": "REML",                            # or "ML"
      "formula": "Reaction ~ Days + (Days | Subject)",
      "outcome": "Reaction", "cluster": "Subject", "nobs": 180,
      "fixed": [{"term": "(Intercept)", "estimate": 251.4, "se": 6.82}, ...],
      "vcov": [[...], ...],                        # optional, p x p, in the order of "fixed"
      "random": {"terms": ["(Intercept)", "Days"], # random terms
                 "sd": [24.74, 5.92],              # SDs of U
                 "corr": [[1, 0.066], [0.066, 1]]},# q x q correlation matrix
      "sigma": 25.59,                              # residual SD
      "criterion": 1743.63,                        # -2 log-lik (REML criterion or ML deviance)
      "loglik": -871.81,                           # optional; -criterion / 2 if absent
      "theta": [0.967, 0.015, 0.231],              # optional (lme4's theta)
      "converged": true, "singular": false,        # optional; true / false if absent
      "messages": [],                              # optional notes
      "modes": {"clusters": ["308", ...],          # conditional modes (BLUPs, ranef()):
                "terms": ["(Intercept)", "Days"],  # one row per cluster,
                "values": [[2.26, 9.20], ...]}     # one column per random term
    }

Term names may be lme4's (``"SectorCatholic"``, ``"cses:MEANSES"`` in either order) or
bayesmix's (``"Sector[Catholic]"``, or a full label ``"g02 (Sector[Catholic])"``); cluster
labels are compared as text.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from bayesmix.design import Design
from bayesmix.errors import BayesmixError
from bayesmix.notation import INTERCEPT
from bayesmix.reml.result import REMLFit

FORMAT = "bayesmix-reml"
VERSION = 1
READ_VERSION = 2  # version 2: several grouping factors, read by bayesmix.reml.io_factors

_BRACKET = re.compile(r"^(?P<var>.+)\[(?P<level>.+)\]$")


class REMLFormatError(BayesmixError):
    """A REML JSON file is malformed, or its names do not match the model."""


def _canon_component(text: str) -> str:
    text = text.strip().replace("`", "")  # R quotes non-syntactic names: `group(SES)`
    m = _BRACKET.match(text)
    return m["var"] + m["level"] if m else text


def _canon_term(term: str) -> str | frozenset[str]:
    """Return a key under which lme4's and bayesmix's spellings of one term coincide."""
    t = term.strip()
    if t in (INTERCEPT, "Intercept", "1", "(Intercept)"):
        return INTERCEPT
    return frozenset(_canon_component(c) for c in t.split(":"))


def _match_terms(
    external: list[str], labels: tuple[str, ...], terms: tuple[str, ...], gammas: tuple[str, ...],
    what: str, formula: str,
) -> list[int]:
    """Position in ``labels`` of every external term; errors name every term that fails."""
    by_key: dict[object, int] = {}
    for k, (label, term) in enumerate(zip(labels, terms, strict=True)):
        by_key[_canon_term(term)] = k
        by_key[label] = k
        if gammas:
            by_key[gammas[k]] = k
    out: list[int] = []
    unknown = []
    for ext in external:
        k = by_key.get(ext.strip(), by_key.get(_canon_term(ext)))
        if k is None:
            unknown.append(ext)
        else:
            out.append(k)
    problems = []
    if unknown:
        problems.append(
            f"the REML fit has {what} term{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(u) for u in unknown)} that the model lacks"
        )
    missing = [labels[k] for k in range(len(labels)) if k not in out]
    if missing:
        problems.append(
            f"the model's {what} term{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(m) for m in missing)} "
            f"{'have' if len(missing) > 1 else 'has'} no estimate in the REML fit"
        )
    if len(set(out)) != len(out):
        problems.append(f"two {what} terms of the REML fit name the same model term")
    if problems:
        raise REMLFormatError(
            "; ".join(problems)
            + f". The model's {what} terms are: {', '.join(terms)}. Fit the same model in R "
            f"(lme4 formula: {formula}), with the same reference levels of categorical "
            "predictors."
        )
    return out


def align_reml(reml: REMLFit, design: Design) -> REMLFit:
    """Relabel an (imported) REML fit with a design's names and order.

    Fixed effects are matched to ``design.fixed_terms`` (lme4's ``"SectorCatholic"``,
    ``"MEANSES:cses"`` or bayesmix's ``"Sector[Catholic]"``, ``"g02 (Sector[Catholic])"``),
    random terms to ``design.random_terms``, clusters by their labels as text.

    Parameters
    ----------
    reml : REMLFit
    design : Design

    Returns
    -------
    REMLFit
        With ``design`` set, ``beta``/``se``/``vcov`` indexed by ``design.fixed_names``, ``u``
        (J × q) in ``design.clusters`` × ``design.random_names`` order.

    Raises
    ------
    REMLFormatError
        Naming each term or cluster present on one side only, and how to fix it.
    """
    formula = design.spec.to_formula()
    fi = _match_terms([str(x) for x in reml.beta.index], design.fixed_names, design.fixed_terms,
                      design.gamma_names, "fixed-effect", formula)
    ri = _match_terms([str(x) for x in reml.sd_u.index], design.random_names,
                      design.random_terms, tuple(n.split(" ")[0] for n in design.random_names),
                      "random", formula)
    ext_clusters = [str(c) for c in reml.u.index]
    ours = set(design.clusters)
    extra = [c for c in ext_clusters if c not in ours]
    lacking = [c for c in design.clusters if c not in set(ext_clusters)]
    if extra or lacking:
        parts = []
        if extra:
            parts.append(f"clusters in the REML fit but not in the data: {_few(extra)}")
        if lacking:
            parts.append(f"clusters in the data without a conditional mode: {_few(lacking)}")
        raise REMLFormatError(
            "; ".join(parts) + f". Fit both on the same rows (cluster column "
            f"{design.spec.cluster!r})."
        )
    if reml.nobs and reml.nobs != design.n:
        raise REMLFormatError(
            f"the REML fit used {reml.nobs} observations but the design has {design.n}; fit "
            "both on the same rows (same missing-value handling)"
        )
    fixed = list(design.fixed_names)
    rnames = list(design.random_names)
    forder = np.argsort(fi)
    rorder = np.argsort(ri)

    def fix(s: pd.Series) -> pd.Series:
        return pd.Series(s.to_numpy()[forder], index=fixed, name=s.name)

    v = reml.vcov.to_numpy()[np.ix_(forder, forder)]
    u = reml.u.copy()
    u.index = pd.Index(ext_clusters, name=design.spec.cluster)
    u = u.loc[list(design.clusters)]
    u = pd.DataFrame(u.to_numpy()[:, rorder], index=pd.Index(design.clusters,
                     name=design.spec.cluster), columns=rnames)
    corr = reml.corr_u.to_numpy()[np.ix_(rorder, rorder)]
    return replace(
        reml,
        design=design,
        beta=fix(reml.beta),
        se=fix(reml.se),
        vcov=pd.DataFrame(v, index=fixed, columns=fixed),
        u=u,
        sd_u=pd.Series(reml.sd_u.to_numpy()[rorder], index=rnames, name=reml.sd_u.name),
        corr_u=pd.DataFrame(corr, index=rnames, columns=rnames),
    )


def _few(items: list[str], k: int = 8) -> str:
    shown = ", ".join(repr(x) for x in items[:k])
    return shown + (f" and {len(items) - k} more" if len(items) > k else "")


def _num(x: object) -> float:
    """A JSON number (null: NaN); text such as "1.5" and booleans are refused."""
    if x is None:
        return float("nan")
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(f"{x!r} is not a number")
    return float(x)


def _flag(data: dict, key: str, default: bool, where: str) -> bool:
    """A JSON boolean: "false", 0 or [false] would silently read as the opposite or as true."""
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise REMLFormatError(
            f"{where}: \"{key}\" must be true or false (a JSON boolean), not {value!r}"
        )
    return value


def _listify(x: object) -> list:
    return x if isinstance(x, list) else [x]


def reml_to_dict(reml: REMLFit) -> dict:
    """Return the JSON-ready dict of a REML fit (format: the module docstring)."""
    d = reml.design
    fixed_terms = list(d.fixed_terms) if d is not None else [str(i) for i in reml.beta.index]
    random_terms = list(d.random_terms) if d is not None else [str(i) for i in reml.sd_u.index]

    def clean(v: float) -> float | None:
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)

    def mat(a: np.ndarray) -> list[list[float | None]]:
        return [[clean(float(x)) for x in row] for row in np.asarray(a, dtype=float)]

    out = {
        "format": FORMAT,
        "version": VERSION,
        "source": reml.origin,
        "method": reml.method,
        "formula": reml.formula,
        "outcome": d.spec.outcome if d is not None else None,
        "cluster": d.spec.cluster if d is not None else reml.u.index.name,
        "nobs": int(reml.nobs),
        "fixed": [
            {"term": t, "name": str(name), "estimate": clean(float(b)), "se": clean(float(s))}
            for t, name, b, s in zip(fixed_terms, reml.beta.index, reml.beta, reml.se,
                                     strict=True)
        ],
        "vcov": mat(reml.vcov.to_numpy()),
        "random": {
            "terms": random_terms,
            "sd": [clean(float(x)) for x in reml.sd_u],
            "corr": mat(reml.corr_u.to_numpy()),
        },
        "sigma": float(reml.sigma),
        "criterion": float(reml.criterion),
        "loglik": float(reml.loglik),
        "theta": None if reml.theta is None else [float(x) for x in reml.theta],
        "converged": bool(reml.converged),
        "singular": bool(reml.singular),
        "messages": list(reml.messages),
        "modes": {
            "clusters": [str(c) for c in reml.u.index],
            "terms": random_terms,
            "values": mat(reml.u.to_numpy()),
        },
    }
    return out


def write_reml(reml: REMLFit, path: str | Path) -> Path:
    """Write a REML fit as JSON (format: module docstring); returns the path.

    Numbers are written with full double precision, so :func:`read_reml` gives back equal
    values.
    """
    if getattr(reml, "sigma_by", None) is not None:
        raise REMLFormatError("the REML JSON format holds one residual SD; a fit with sigma_by "
                              "(an SD per group) cannot be written to it yet")
    path = Path(path)
    path.write_text(json.dumps(reml_to_dict(reml), indent=2, allow_nan=False) + "\n")
    return path


def reml_from_dict(data: dict, *, design: Design | None = None, where: str = "") -> REMLFit:
    """Build a REMLFit from the JSON dict; see :func:`read_reml`."""
    where = where or "the REML JSON"
    if data.get("format") != FORMAT:
        raise REMLFormatError(
            f"{where} is not a bayesmix REML file (its \"format\" is {data.get('format')!r}, "
            f"expected {FORMAT!r}); write it with write_reml() or scripts/write_reml_json.R"
        )
    if int(data.get("version", 0)) > READ_VERSION:
        raise REMLFormatError(f"{where} has format version {data['version']}; this bayesmix "
                              f"reads versions up to {READ_VERSION}. Update bayesmix.")
    if int(data.get("version", 0)) == 2:  # several grouping factors (reml/io_factors.py)
        from bayesmix.reml.io_factors import reml_v2_from_dict

        return reml_v2_from_dict(data, design, where)
    try:
        fixed = data["fixed"]
        random = data["random"]
        modes = data["modes"]
        terms = [str(f["term"]) for f in fixed]
        beta = pd.Series([_num(f["estimate"]) for f in fixed], index=terms, name="estimate")
        se = pd.Series([_num(f.get("se")) for f in fixed], index=terms, name="se")
        rterms = [str(t) for t in _listify(random["terms"])]
        sd = pd.Series([_num(x) for x in _listify(random["sd"])], index=rterms, name="sd")
        corr_raw = random.get("corr")
        q = len(rterms)
        corr = (np.eye(q) if corr_raw is None
                else np.array([[_num(x) for x in _listify(r)] for r in _listify(corr_raw)]))
        vcov_raw = data.get("vcov")
        vcov = (np.diag(se.to_numpy() ** 2) if vcov_raw is None
                else np.array([[_num(x) for x in _listify(r)] for r in _listify(vcov_raw)]))
        mterms = [str(t) for t in _listify(modes["terms"])]
        values = np.array([[_num(x) for x in _listify(r)] for r in _listify(modes["values"])])
        clusters = [str(c) for c in _listify(modes["clusters"])]
        sigma = _num(data["sigma"])
        criterion = _num(data["criterion"])
        loglik = _num(data["loglik"]) if data.get("loglik") is not None else -0.5 * criterion
    except (KeyError, TypeError, ValueError) as exc:
        raise REMLFormatError(f"{where} lacks or garbles an entry ({exc}); see the format in "
                              "bayesmix.reml.io") from exc
    if corr.shape != (q, q) or vcov.shape != (len(terms), len(terms)):
        raise REMLFormatError(f"{where}: \"corr\" must be {q} x {q} and \"vcov\" "
                              f"{len(terms)} x {len(terms)}")
    if values.shape != (len(clusters), len(mterms)):
        raise REMLFormatError(f"{where}: \"modes.values\" must have one row per cluster "
                              f"({len(clusters)}) and one column per term ({len(mterms)})")
    if [_canon_term(t) for t in mterms] != [_canon_term(t) for t in rterms]:
        raise REMLFormatError(f"{where}: \"modes.terms\" {mterms} differ from \"random.terms\" "
                              f"{rterms}")
    method = str(data.get("method", "REML")).upper()
    if method not in ("REML", "ML"):
        raise REMLFormatError(f"{where}: \"method\" must be \"REML\" or \"ML\", not {method!r}")
    try:
        theta = data.get("theta")
        theta = None if theta is None else np.array([_num(x) for x in _listify(theta)])
    except TypeError as exc:
        raise REMLFormatError(f"{where}: \"theta\" must be a list of numbers ({exc})") from None
    cluster_name = data.get("cluster")
    messages = tuple(str(m) for m in _listify(data.get("messages") or []))
    converged = _flag(data, "converged", True, where)
    singular = _flag(data, "singular", False, where)
    nobs = data.get("nobs") or 0
    if isinstance(nobs, bool) or not isinstance(nobs, int) or nobs < 0:
        raise REMLFormatError(f"{where}: \"nobs\" must be a whole number, not {nobs!r}")
    for key in ("method", "formula", "source"):
        if key in data and not isinstance(data[key], str):
            raise REMLFormatError(f"{where}: \"{key}\" must be text, not {data[key]!r}")
    reml = REMLFit(
        design=None,
        method=method,  # type: ignore[arg-type]
        beta=beta,
        se=se,
        vcov=pd.DataFrame(vcov, index=terms, columns=terms),
        u=pd.DataFrame(values, index=pd.Index(clusters, name=cluster_name), columns=rterms),
        sd_u=sd,
        corr_u=pd.DataFrame(corr, index=rterms, columns=rterms),
        sigma=sigma,
        theta=theta,
        criterion=criterion,
        loglik=loglik,
        converged=converged,
        singular=singular,
        messages=messages,
        source="imported",
        formula=str(data.get("formula", "")),
        nobs=nobs,
        origin=str(data.get("source", "imported")),
    )
    return reml if design is None else align_reml(reml, design)


def read_reml(path: str | Path, *, design: Design | None = None) -> REMLFit:
    """Read a REML fit written by :func:`write_reml` or ``scripts/write_reml_json.R``.

    Parameters
    ----------
    path : str or Path
        The JSON file.
    design : Design, optional
        Match the fit's names to this design (see :func:`align_reml`); without it the fit keeps
        the file's term and cluster names and ``design`` is None (``compare`` matches it to the
        Bayesian fit's design).

    Returns
    -------
    REMLFit
        ``source="imported"``.

    Raises
    ------
    REMLFormatError
        A malformed file, or (with ``design``) a term or cluster the model lacks.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise REMLFormatError(f"{path} is not valid JSON: {exc}") from exc
    return reml_from_dict(data, design=design, where=str(path))
