"""Simulation-based calibration of the nested collapsed form (three levels).

Data sets are drawn from the model's own prior (γ ~ N(0, 1), SDs ~ HalfNormal(1), σ ~
HalfNormal(1)) on one fixed three-level structure and predictor, and all go through ONE
compiled model (shared statistics, ``pm.set_data``).  The rank of each true value among the
posterior draws must be uniform (Talts et al. 2018); a form that integrates the innermost
level out wrongly fails this by far.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pymc as pm
import pytest
import scipy.stats as sps

import bayesmix as bm
from bayesmix.nested import nested_data
from bayesmix.sampling import compile_model

DATASETS = 40
KEEP = 99
OUTER, INNER, ROWS = 6, 4, 3  # 6 schools x 4 classes x 3 pupils
PRIORS = bm.Priors(
    beta={"g00": bm.Prior("Normal", mu=0, sigma=1), "g10": bm.Prior("Normal", mu=0, sigma=1)},
    sd_u=bm.Prior("HalfNormal", sigma=1),
    sigma=bm.Prior("HalfNormal", sigma=1),
)


def _structure(rng):
    school = np.repeat(np.arange(OUTER), INNER * ROWS)
    klass = np.tile(np.repeat(np.arange(INNER), ROWS), OUTER)
    return pd.DataFrame({"school": school, "class": klass, "x": rng.normal(size=school.size)})


def _draw(rng, frame):
    beta = rng.normal(0, 1, size=2)
    sd = np.abs(rng.normal(0, 1, size=2))  # school, school:class
    sigma = abs(rng.normal(0, 1))
    u_s = rng.normal(0, sd[0], size=OUTER)
    u_c = rng.normal(0, sd[1], size=OUTER * INNER)
    cls = frame["school"].to_numpy() * INNER + frame["class"].to_numpy()
    y = (beta[0] + beta[1] * frame["x"].to_numpy() + u_s[frame["school"].to_numpy()]
         + u_c[cls] + rng.normal(0, sigma, size=len(frame)))
    truth = {"g00": beta[0], "g10": beta[1], "sd_school": sd[0], "sd_class": sd[1],
             "sigma": sigma}
    return frame.assign(y=y), truth


@pytest.mark.slow
def test_nested_collapsed_form_is_calibrated_sbc():
    rng = np.random.default_rng(20260101)
    frame = _structure(rng)
    spec = bm.Spec.from_formula("y ~ x + (1 | school/class)")
    data0, _ = _draw(rng, frame)
    design0 = bm.build_design(spec, data0)
    built = bm.build_model(design0, PRIORS, likelihood="collapsed", shared_data=True)
    settings = bm.SamplerSettings(draws=200, tune=300, chains=2, progressbar=False,
                                  backend="c", target_accept=0.9)
    compiled = compile_model(built, settings)
    ranks = []
    start = time.perf_counter()
    for i in range(DATASETS):
        data, truth = _draw(rng, frame)
        design = bm.build_design(spec, data)
        pm.set_data(nested_data(built, design), model=built.model)
        stats = bm.build_model(design, built.priors, likelihood="collapsed").stats
        b = bm.BuiltModel(built.model, design, built.priors, built.likelihood, stats,
                          built.graph)
        fit = bm.sample(b, settings.updated(random_seed=1000 + i), compiled=compiled)
        post = fit.posterior
        draws = {"g00": post["beta"].isel(fixed=0), "g10": post["beta"].isel(fixed=1),
                 "sd_school": post["sd_u_school"], "sd_class": post["sd_u_school:class"],
                 "sigma": post["sigma"]}
        row = []
        for key, da in draws.items():
            flat = da.to_numpy().reshape(-1)
            thin = flat[np.linspace(0, flat.size - 1, KEEP).astype(int)]
            row.append(int(np.sum(thin < truth[key])))
        ranks.append(row)
    ranks = np.array(ranks)
    for k, name in enumerate(["g00", "g10", "sd_school", "sd_class", "sigma"]):
        counts = np.bincount(ranks[:, k] * 5 // (KEEP + 1), minlength=5)
        p_chi2 = sps.chisquare(counts).pvalue
        p_ks = sps.kstest((ranks[:, k] + 0.5) / (KEEP + 1), "uniform").pvalue
        assert p_chi2 > 1e-3 and p_ks > 1e-3, (name, counts, p_chi2, p_ks)
    print(f"nested SBC: {DATASETS} data sets in {time.perf_counter() - start:.1f} s")
