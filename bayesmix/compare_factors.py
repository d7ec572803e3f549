"""compare(fit, reml) for designs with several grouping factors: per factor SDs, BLUPs.

The table has the γ's, the SDs of every factor's effects (``sd U0 (Intercept) [plate]``), the
free correlations within each factor's unstructured blocks and σ; the random-effects table has
one row per factor, unit and effect (BLUP beside the posterior).  A unit's own least-squares
estimate (and so the shrinkage) is not defined when its rows also carry other factors' effects,
so those columns are left empty.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bayesmix.notation import BETA, CORR_U, DIM_FIXED, SD_U, SIGMA, U


def compare_factors(fit: Any, reml: Any, post: Any) -> Any:
    """The Comparison of a several-factor fit with its REML fit (see :func:`compare`)."""
    from bayesmix.build_factors import factor_dims
    from bayesmix.compare import U_COLUMNS, Comparison, _draws, _notes, _Rows, _summ, _verdicts
    from bayesmix.errors import BayesmixError

    design = fit.design
    if reml.u_factors is None or set(reml.u_factors) != {fe.name for fe in design.effects}:
        raise BayesmixError(
            "compare() needs a REML fit of the same model with estimates per grouping factor "
            f"({', '.join(fe.name for fe in design.effects)}): fit it with "
            "bm.fit_reml(spec, data)"
        )
    rows = _Rows(reml.converged)
    add = rows.add
    fixed = list(design.fixed_names)
    add(BETA, fixed, _draws(post[BETA].sel({DIM_FIXED: fixed})).to_numpy(),
        reml.beta.to_numpy(), reml.se.to_numpy())
    u_rows = []
    for fe in design.effects:
        unit, eff, eff2 = factor_dims(fe)
        labels = list(fe.labels)
        sd = _draws(post[f"{SD_U}_{fe.name}"].sel({eff: labels})).to_numpy()
        add(SD_U, [f"sd {lab} [{fe.name}]" for lab in labels], sd,
            reml.sd_u[labels].to_numpy(), np.full(fe.q, np.nan))
        free = fe.covariance_pattern()
        pairs = [(i, k) for i in range(fe.q) for k in range(i) if free[i, k]]
        if pairs:
            corr = _draws(post[f"{CORR_U}_{fe.name}"].transpose(..., eff, eff2)).to_numpy()
            add(CORR_U, [f"corr {labels[i]}, {labels[k]} [{fe.name}]" for i, k in pairs],
                np.stack([corr[i, k] for i, k in pairs]),
                np.array([reml.corr_u.loc[labels[i], labels[k]] for i, k in pairs]),
                np.full(len(pairs), np.nan))
        u = _draws(post[f"{U}_{fe.name}"].transpose(..., unit, eff)).to_numpy()  # (J, q, S)
        su = _summ(u)
        blup = reml.u_factors[fe.name].loc[list(fe.grouping.levels), labels].to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            zu = (su["mean"] - blup) / su["sd"]
        verdict = np.array(_verdicts(zu.ravel(), blup.ravel(), reml.converged))
        n = fe.J * fe.q
        u_rows.append(pd.DataFrame({
            "factor": np.repeat(fe.name, n),
            "cluster": np.repeat(np.asarray(fe.grouping.levels, dtype=object), fe.q),
            "term": np.tile(np.asarray(labels, dtype=object), fe.J),
            "BLUP": blup.ravel(), "own estimate": np.full(n, np.nan),
            "shrinkage": np.full(n, np.nan), "mean": su["mean"].ravel(),
            "sd": su["sd"].ravel(), "2.5%": su["2.5%"].ravel(), "97.5%": su["97.5%"].ravel(),
            "posterior shrinkage": np.full(n, np.nan), "z": zu.ravel(), "verdict": verdict,
        }, columns=["factor", *U_COLUMNS]))
    if SIGMA in post:  # the Gaussian family's σ
        add(SIGMA, ["sigma"], _draws(post[SIGMA]).to_numpy()[None, :],
            np.array([reml.sigma]), np.array([np.nan]))
    table = rows.table()
    u_table = pd.concat(u_rows, ignore_index=True)
    notes = _notes(table, u_table, reml, design)
    return Comparison(table=table, u_table=u_table, notes=tuple(notes), reml=reml,
                      design=design)
