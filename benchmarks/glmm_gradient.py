"""Cost of one log density and gradient of each GLMM form, and of the U draws, at bern100k.

    python benchmarks/glmm_gradient.py [--forms cells,laplace] [--repeat 50] [--draws 64]

Compiles each form's log density and gradient with Numba (as nutpie does), calls it at the
model's initial point and prints JSON: compile seconds, milliseconds per call (mean of
``--repeat``), and for ``"laplace"`` the milliseconds per posterior draw of U
(:func:`bayesmix.glmm_draws.draw_effects`, all cores).  The data are benchmarks/glmm.py's
bern100k (100k Bernoulli rows, 1,000 clusters, correlated intercept and slope).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytensor
from glmm import BERN, simulate_bern100k

import bayesmix as bm


def gradient_cost(built, repeat: int) -> dict:
    model = built.model
    values = model.value_vars
    logp = model.logp()
    start = time.perf_counter()
    fn = pytensor.function(values, [logp, *pytensor.grad(logp, values)], mode="NUMBA")
    point = model.initial_point()
    args = [point[v.name] for v in values]
    fn(*args)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(repeat):
        fn(*args)
    return {"compile_s": compile_s, "ms_per_gradient": (time.perf_counter() - start) / repeat * 1e3}


def draw_cost(built, draws: int) -> dict:
    from bayesmix.glmm_draws import draw_effects

    sc = built.priors.scaling
    beta = sc.beta_to_std(np.array([-0.5, 0.8, 0.4, 0.3]))
    chol = np.linalg.cholesky(sc.cov_to_std(np.array([[0.64, 0.096], [0.096, 0.16]])))
    rng = np.random.default_rng(1)
    draw_effects(built, beta[None], chol[None], rng)  # compile / load the kernel
    start = time.perf_counter()
    _, rate = draw_effects(built, np.tile(beta, (draws, 1)), np.tile(chol, (draws, 1, 1)), rng)
    return {"ms_per_u_draw": (time.perf_counter() - start) / draws * 1e3, "u_acceptance": rate}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--forms", default="cells,laplace")
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--draws", type=int, default=64)
    args = ap.parse_args()
    path = Path(tempfile.mkdtemp()) / "bern100k.csv"
    simulate_bern100k(path)
    design = bm.build_design(bm.Spec.from_formula(BERN, family="bernoulli"), pd.read_csv(path))
    for form in args.forms.split(","):
        built = bm.build_model(design, likelihood=form)
        row = {"case": "bern100k", "form": form, **gradient_cost(built, args.repeat)}
        if form == "laplace":
            row.update(draw_cost(built, args.draws))
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
