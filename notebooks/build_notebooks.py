"""Build the notebooks in this folder from the cells written below, and optionally run them.

The notebooks are generated, so edit this file rather than the ``.ipynb`` files, then::

    python notebooks/build_notebooks.py              # write the notebooks, no outputs
    python notebooks/build_notebooks.py --execute    # ... and execute them (outputs committed)
    python notebooks/build_notebooks.py --execute 03 # only the notebooks whose name has "03"

Execution uses nbclient with the ``python3`` kernel from the current environment, with this
folder as the working directory (the notebooks read ``../data`` and ``../models``), as
``tests/test_notebooks.py`` does in CI.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

Cells = list[nbformat.NotebookNode]
NOTEBOOKS: dict[str, Callable[[], Cells]] = {}


def md(text: str) -> nbformat.NotebookNode:
    """A Markdown cell from an indented triple-quoted string."""
    return new_markdown_cell(textwrap.dedent(text).strip())


def code(*parts: str) -> nbformat.NotebookNode:
    """A code cell from indented triple-quoted strings, each dedented on its own."""
    return new_code_cell("\n\n".join(textwrap.dedent(p).strip() for p in parts))


def notebook(name: str) -> Callable[[Callable[[], Cells]], Callable[[], Cells]]:
    """Register a function that returns the cells of ``notebooks/<name>.ipynb``."""

    def register(func: Callable[[], Cells]) -> Callable[[], Cells]:
        NOTEBOOKS[name] = func
        return func

    return register


SETUP = """
    import warnings

    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd
    from IPython.display import Math, display

    import bayesmix as bm

    # PyTensor says once that it found no optimised BLAS; that only affects its speed.
    warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
    pd.set_option("display.width", 120)
    plt.rcParams.update({"figure.dpi": 100, "axes.spines.top": False,
                         "axes.spines.right": False})
"""


# --------------------------------------------------------------------------------------------
# 01: the seed tutorial
# --------------------------------------------------------------------------------------------
@notebook("01_dung_mixed_model_maths")
def dung_notebook() -> Cells:
    """The seed tutorial redone: six-point regression, then the dung mixed model."""
    return [
        md(r"""
            # The mathematics of a mixed model, with bayesmix

            This notebook redoes Brad Duthie's tutorial *Introduction to the mathematics of
            mixed models* (2024) with bayesmix. It first writes a plain regression on six
            points as the matrix equation $\mathbf{Y} = \mathbf{X}\beta + \mathbf{e}$, then
            fits the tutorial's dung data as a mixed model,
            $\mathbf{Y} = \mathbf{X}\beta + \mathbf{Z}\mathbf{u} + \mathbf{e}$, twice: by REML
            (the numbers R's `nlme::lme` prints) and by Bayesian sampling. Both fits are
            checked the way the tutorial checks them: put $\beta$, $\mathbf{u}$ and
            $\mathbf{e}$ back into the equation and get $\mathbf{Y}$ again.

            Only the public API is used: `import bayesmix as bm`.
            """),
        code(SETUP, """
            from scipy import stats
            """),
        md(r"""
            ## 1. A linear model on six points

            The tutorial starts with six made-up points and the model
            $y_i = \beta_0 + \beta_1 x_i + \epsilon_i$. Least squares finds $\beta_0$ and
            $\beta_1$; the residual $\epsilon_i$ is what is left of $y_i$ once the line is
            taken off. In matrix form the column of ones in $\mathbf{X}$ carries the intercept
            and the second column carries $x_i$.
            """),
        code("""
            six = pd.read_csv("../data/six_points.csv")
            y6 = six["Y"].to_numpy()
            X6 = np.column_stack([np.ones(len(six)), six["X"].to_numpy()])   # design matrix
            b6, *_ = np.linalg.lstsq(X6, y6, rcond=None)                      # least squares
            e6 = y6 - X6 @ b6                                                 # residuals

            print(f"intercept beta_0 = {b6[0]:.7f}   slope beta_1 = {b6[1]:.6f}")
            assert np.allclose(b6, [7.3824167, 0.600529], atol=1e-6)  # the tutorial's numbers
            pd.DataFrame(
                {"y_i": y6, "beta_0": b6[0], "beta_1": b6[1], "x_i": X6[:, 1], "epsilon_i": e6},
                index=pd.RangeIndex(1, 7, name="i"),
            ).round(7)
            """),
        md(r"""
            Each row reads as one equation; the first is
            $11.05 = 7.3824167 + 0.600529 \times 4.9 + 0.7249912$. All six together are the
            matrix equation $\mathbf{Y} = \mathbf{X}\beta + \mathbf{e}$. Multiplying out
            $\mathbf{X}\beta$ (row of $\mathbf{X}$ times the column $\beta$) gives the fitted
            values, and adding the residuals gives $\mathbf{Y}$ back exactly.
            """),
        code(r"""
            def bmatrix(a, digits=8):
                # LaTeX for a matrix; a 1-d array is shown as a column.
                a = np.asarray(a, dtype=float)
                a = a[:, None] if a.ndim == 1 else a
                rows = (" & ".join(f"{v:.{digits}g}" for v in row) for row in a)
                return r"\begin{bmatrix}" + r" \\ ".join(rows) + r"\end{bmatrix}"


            display(Math(rf"{bmatrix(y6)} = {bmatrix(X6)} {bmatrix(b6)} + {bmatrix(e6, 7)}"))
            display(Math(rf"{bmatrix(y6)} = {bmatrix(X6 @ b6, 9)} + {bmatrix(e6, 7)}"
                         rf" = {bmatrix(X6 @ b6 + e6)}"))
            print("max |Y - (X beta + e)| =", np.abs(y6 - (X6 @ b6 + e6)).max())
            """),
        md(r"""
            ## 2. The dung data: adding $\mathbf{Z}\mathbf{u}$

            Each of the 18 rows is a container of wet cow dung: `flies` is the number of
            offspring that emerged from it and `pr_dung` the proportion of its mass left after
            drying. The containers were dried in three oven blocks (`oven_block`), and a block
            may shift `pr_dung` up or down as a whole. The mixed model gives each block its own
            intercept: a common intercept $\gamma_{00}$ plus a block deviation $U_{0j}$ drawn
            from $N(0, \tau_0^2)$. In bayesmix the model is written as level-1 (container) and
            level-2 (oven block) equations; `b1 = g10` has no `U`, so the slope of `flies` is
            the same in every block.
            """),
        code("""
            dung = pd.read_csv("../data/dung.csv")
            spec = bm.Spec.from_equations(
                '''
                pr_dung = b0 + b1*flies + e
                b0 = g00 + U0
                b1 = g10
                ''',
                cluster="oven_block",
            )
            print("lme4 formula:", spec.to_formula())
            eq = bm.equations(spec)
            display(eq.levels, eq.combined)
            """),
        md(r"""
            `bm.build_design` turns the equations and the data into the matrices of
            $\mathbf{Y} = \mathbf{X}\beta + \mathbf{Z}\mathbf{u} + \mathbf{e}$. $\mathbf{X}$
            has a column per $\gamma$ (labelled with the $\gamma$'s name and its term), exactly
            the tutorial's `cbind(1, dung$flies)`:
            """),
        code("""
            design = bm.build_design(spec, dung)
            design.X_frame
            """),
        md(r"""
            $\mathbf{Z}$ has a column per oven block: a 1 where the container went into that
            block, 0 elsewhere: the tutorial's `Z[i, dung$oven_block[i]] <- 1` loop. (bayesmix
            keeps $\mathbf{Z}$ sparse, `design.Z`; `Z_frame()` is the dense, labelled view.)
            """),
        code("""
            design.Z_frame()
            """),
        md(r"""
            ## 3. The REML fit

            `bm.fit_reml` maximises the restricted likelihood, as `nlme::lme` and `lme4::lmer`
            do. It gives $\hat\beta$ (the $\gamma$'s), the predicted block deviations
            $\hat{\mathbf{u}}$ (BLUPs, the tutorial's `random.effects(mod)`), the residuals
            $\hat{\mathbf{e}} = \mathbf{Y} - \mathbf{X}\hat\beta - \mathbf{Z}\hat{\mathbf{u}}$,
            and the two SDs: between blocks ($\tau_0$) and within blocks ($\sigma$).
            """),
        code("""
            reml = bm.fit_reml(spec, dung)
            print(reml)
            """),
        md("Printed the way the tutorial prints `beta`, `uu` and `ee`:"),
        code("""
            beta = reml.beta.to_frame("beta")
            uu = reml.u
            ee = pd.DataFrame({"e": reml.residuals}, index=dung["oven_block"])
            print(beta.to_string(float_format="{:.6e}".format), end="\\n\\n")
            print(uu.to_string(float_format="{:.9f}".format), end="\\n\\n")
            print(ee.to_string(float_format="{:.10f}".format))
            print("sum of u:", f"{uu.to_numpy().sum():.2e}")
            """),
        md(r"""
            These are the tutorial's numbers (it prints $\beta$ = (0.1662317, −3.466743e−05)
            and $\mathbf{u}$ = (−0.016207919, 0.007158668, 0.009049251)). The pinned `nlme`
            fit in `tests/reference/` agrees to many more digits:
            """),
        code("""
            nlme = bm.read_reml("../tests/reference/dung_lme.json", design=design)
            nlme_e = pd.read_csv("../tests/reference/dung_lme_residuals.csv")["residual"]
            seed = {"beta": [0.1662317, -3.466743e-05],
                    "u": [-0.016207919, 0.007158668, 0.009049251]}
            pd.DataFrame({
                "max |bayesmix - nlme|": [
                    np.abs(reml.beta - nlme.beta).max(),
                    np.abs(reml.u - nlme.u).to_numpy().max(),
                    np.abs(reml.residuals - nlme_e.to_numpy()).max(),
                    abs(reml.sd_u.iloc[0] - nlme.sd_u.iloc[0]),
                    abs(reml.sigma - nlme.sigma),
                ],
                "max |bayesmix - tutorial print|": [
                    np.abs(reml.beta.to_numpy() - seed["beta"]).max(),
                    np.abs(reml.u.to_numpy().ravel() - seed["u"]).max(),
                    np.nan, np.nan, np.nan,
                ],
            }, index=["beta", "u", "e", "SD of U0", "sigma"])
            """),
        md(r"""
            The tutorial's big matrix equation, numbers filled in (`bm.equations` with
            `reml=`): first $\mathbf{Y} = \mathbf{X}\hat\beta + \mathbf{Z}\hat{\mathbf{u}} +
            \hat{\mathbf{e}}$, then the same after the multiplications. $\mathbf{Z}$ is
            block-diagonal because the rows are in oven-block order.
            """),
        code("""
            bm.equations(spec, dung, reml=reml).matrix
            """),
        md(r"""
            And the tutorial's last step, `cbind(X %*% beta + Z %*% uu + ee, dung$pr_dung)`:
            `bm.reconstruct` recomputes $\mathbf{X}\hat\beta$, $\mathbf{Z}\hat{\mathbf{u}}$ and
            $\hat{\mathbf{e}}$ from the explicit matrices and adds them up.
            """),
        code("""
            rec_reml = bm.reconstruct(reml)
            rec_reml
            """),
        md(r"""
            ## 4. The Bayesian fit

            `bm.fit` samples the posterior of $\gamma_{00}$, $\gamma_{10}$, $\tau_0$ (the SD of
            $U_0$) and $\sigma$ with NUTS (nutpie), then draws $\mathbf{u}$ for every draw.
            The priors are scaled from the data (`bm.resolve_priors`); they are weak for the
            $\gamma$'s but, as section 5 shows, not irrelevant for $\tau_0$.
            """),
        code("""
            pd.DataFrame(bm.resolve_priors(design).table(), columns=["parameter", "prior"])
            """),
        code("""
            fit = bm.fit(spec, dung, draws=1000, tune=1000, chains=4, random_seed=1,
                         progressbar=False)
            bm.summarize(fit)
            """),
        md(r"""
            The Bayesian fit in the tutorial's form: the same equation with posterior means of
            $\beta$ and $\mathbf{u}$, and $\bar{\mathbf{e}} = \mathbf{Y} - \mathbf{X}\bar\beta
            - \mathbf{Z}\bar{\mathbf{u}}$. `bm.reconstruct(fit)` also recomputes the
            log-likelihood inside the PyMC model at a few posterior draws and checks it
            against one computed from these explicit $\mathbf{X}$ and $\mathbf{Z}$.
            """),
        code("""
            bm.equations(spec, dung, fit=fit).levels
            """),
        code("""
            rec_bayes = bm.reconstruct(fit)
            print(rec_bayes)
            """),
        md(r"""
            Both decompositions add up to $\mathbf{Y}$ exactly: that is how $\mathbf{e}$ is
            defined. What differs is how $\mathbf{Y}$ is split between the three parts:
            """),
        code("""
            parts = ["Xb", "Zu", "e"]
            side = pd.concat(
                {"y": rec_reml.table[["cluster", "y"]],
                 "REML": rec_reml.table[parts],
                 "posterior mean": rec_bayes.table[parts],
                 "difference": rec_bayes.table[parts] - rec_reml.table[parts]},
                axis=1,
            )
            side.round(6)
            """),
        md("## 5. What changes between REML and the posterior"),
        code("""
            cmp = bm.compare(fit, reml)
            display(cmp.table.round(6), cmp.u_table.round(6))
            for note in cmp.notes:
                print("-", note)
            """),
        md(r"""
            * **The $\gamma$'s** agree: same centre, and a posterior sd close to the REML
              standard error. The intercept's posterior sd is somewhat larger, because the
              posterior also carries the uncertainty about how far apart the blocks are,
              which REML's standard error treats as known.
            * **The block deviations $\mathbf{u}$**: posterior means sit next to the BLUPs,
              but each has a posterior sd (about 0.013) as large as the deviations themselves.
            * **The SD between oven blocks, $\tau_0$**, is where the two differ. REML gives one
              number, 0.0145. The posterior's 95% interval runs from about 0.007 to 0.04, a
              factor of six. The reason is that $\tau_0$ is the SD of the block effects, and
              there are only **three** of them. However many containers each block holds,
              the data contain three draws of $U_{0j}$, and an SD estimated from three values
              has about two degrees of freedom. $\sigma$, by contrast, is the SD of 18
              residuals (15 degrees of freedom after the fixed effects and the blocks) and is
              pinned down far better.
            """),
        code("""
            # Classical yardstick: the 95% confidence interval of an SD estimated from k normal
            # values is s * sqrt((k-1) / chi2 quantiles); its width depends only on k.
            for k in (3, 18, 160):
                lo, hi = np.sqrt((k - 1) / stats.chi2.ppf([0.975, 0.025], k - 1))
                print(f"k = {k:3d} values: 95% interval = {lo:.2f} x s to {hi:.2f} x s")
            """),
        md(r"""
            With so little information, the prior shapes the posterior of $\tau_0$, and its
            mean sits above its median (the distribution has a long right tail, since an SD
            cannot go below 0). The figure puts the prior (dashed) next to the posterior
            (histogram) and the REML estimate (red line).
            """),
        code("""
            def half_t_pdf(x, nu, scale):
                return 2 * stats.t.pdf(x / scale, nu) / scale


            priors = bm.resolve_priors(design)
            post = fit.posterior
            panels = [
                ("SD between oven blocks, sd of U0 (Intercept)",
                 post["sd_u"].sel(random="U0 (Intercept)").values.ravel(),
                 priors.sd_u.kwargs, reml.sd_u.iloc[0]),
                ("SD within blocks (residual), sigma",
                 post["sigma"].values.ravel(), priors.sigma.kwargs, reml.sigma),
            ]
            # the same x axis for both, to compare their widths
            fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), layout="constrained", sharex=True)
            for ax, (title, draws, prior, est) in zip(axes, panels):
                nu, scale = (float(np.ravel(prior[k])[0]) for k in ("nu", "sigma"))
                upper = np.quantile(panels[0][1], 0.995)
                ax.hist(draws[draws < upper], bins=60, density=True, color="#9ecae1",
                        label="posterior")
                x = np.linspace(0, upper, 400)
                ax.plot(x, half_t_pdf(x, nu, scale), "k--", lw=1.2,
                        label=f"prior HalfStudentT({nu:g}, {scale:.3g})")
                ax.axvline(est, color="#c0392b", lw=2, label=f"REML {est:.4f}")
                lo, hi = np.quantile(draws, [0.025, 0.975])
                ax.axvspan(lo, hi, color="0.85", zorder=0, label="95% posterior interval")
                ax.set(title=title, xlabel="pr_dung units", ylabel="density")
                ax.legend(fontsize=8)
            plt.show()
            """),
        md(r"""
            If the prior matters, changing it should move the posterior of $\tau_0$. Refitting
            with an SD prior six times wider (scale 0.1 instead of 0.0154, the SD of
            `pr_dung`) leaves $\sigma$ and $\gamma_{10}$ alone but stretches the upper tail of
            $\tau_0$ and, with it, the uncertainty of the intercept $\gamma_{00}$:
            """),
        code("""
            wide = bm.Priors(sd_u=bm.Prior("HalfStudentT", nu=3, sigma=0.1))
            fit_wide = bm.fit(spec, dung, priors=wide, draws=1000, tune=1000, chains=4,
                              random_seed=1, progressbar=False)


            def describe(f):
                p = f.posterior
                rows = {
                    "sd of U0 (Intercept)": p["sd_u"].sel(random="U0 (Intercept)"),
                    "sigma": p["sigma"],
                    "g00 (Intercept)": p["beta"].sel(fixed="g00 (Intercept)"),
                    "g10 (flies)": p["beta"].sel(fixed="g10 (flies)"),
                }
                return pd.DataFrame({
                    k: {"median": float(v.median()), "2.5%": float(v.quantile(0.025)),
                        "97.5%": float(v.quantile(0.975)), "sd": float(v.std())}
                    for k, v in rows.items()
                }).T


            pd.concat({"default prior (scale 0.0154)": describe(fit),
                       "wide prior (scale 0.1)": describe(fit_wide)}, axis=1).round(6)
            """),
        md(r"""
            **In short.** The matrices are the same for both fits, and both reproduce
            $\mathbf{Y}$ exactly. REML reports one value for each parameter; the posterior
            reports how sure we can be. For the $\gamma$'s and $\sigma$ the two agree. For the
            SD between oven blocks three blocks cannot say much: the posterior is wide and
            leans on the prior. More blocks would help; more containers per block would not.
            """),
    ]


# --------------------------------------------------------------------------------------------
# 02: the seed question
# --------------------------------------------------------------------------------------------
@notebook("02_level_equations_to_mixed_form")
def levels_notebook() -> Cells:
    """The seed question: from L1/L2 equations to Y = Xβ + Zu + e, and why X reappears in Z."""
    return [
        md(r"""
            # From level-1 / level-2 equations to the mixed form

            $$\mathbf{Y} = \mathbf{X}\beta + \mathbf{Z}\mathbf{u} + \mathbf{e}$$

            A question often asked (here in the form of a Cross Validated question): multilevel
            textbooks write a model as level-1 and level-2 equations, while mixed-model
            software writes $\mathbf{Y}_j = \mathbf{X}_j\beta + \mathbf{Z}_j\mathbf{b}_j +
            \epsilon_j$. How do the two relate, what is $\mathbf{Z}$, and **why do the columns
            of $\mathbf{X}$ appear again in $\mathbf{Z}$?**

            This notebook answers it for the question's two models, the random-slope model and
            the cross-level model, on simulated data (`data/cross_level.csv`: 60 clusters,
            1,282 rows, level-1 predictor `X`, level-2 predictor `M`), using `bm.equations`
            to write each model in every form.

            A note on notation: the question writes the level-1 slope as $\beta_{10}$, but its
            level-2 equation gives it a $U_{1j}$, so the slope differs between clusters; it is
            $\beta_{1j}$. bayesmix writes $\gamma$ for the fixed effects (the question's
            $\beta$ vector) and $U_{qj}$ for the random effects (the question's
            $\mathbf{b}_j$).
            """),
        code(SETUP, """
            import json

            data = pd.read_csv("../data/cross_level.csv")
            truth = json.load(open("../data/cross_level_truth.json"))
            print(data.shape, "rows x columns;", data["cluster"].nunique(), "clusters;",
                  "rows per cluster from", data.groupby("cluster").size().min(), "to",
                  data.groupby("cluster").size().max())
            data.head()
            """),
        md(r"""
            ## 1. The random-slope model

            Level 1 says how $y$ depends on $X$ inside cluster $j$; level 2 says how the
            cluster's intercept and slope vary around their averages $\gamma_{00}$ and
            $\gamma_{10}$. The model file `models/random_slope.toml` holds exactly these lines.
            """),
        code("""
            spec_rs = bm.Spec.from_file("../models/random_slope.toml")
            print(spec_rs.to_equations())
            print("lme4 formula:", spec_rs.to_formula())
            eq_rs = bm.equations(spec_rs)
            eq_rs.levels
            """),
        md(r"""
            Substituting the level-2 equations into level 1 gives **one combined equation**
            (the question's answer, equation (1)):
            """),
        code("""
            eq_rs.combined
            """),
        md(r"""
            Now sort the terms by what they multiply. A term with a $\gamma$ is a fixed effect:
            its $\gamma$ goes into $\beta$ and the thing it multiplies (1 or $X_{ij}$) into
            the row of $\mathbf{X}$. A term with a $U$ is a random effect: the $U$ goes into
            $\mathbf{u}$ and the thing it multiplies into the row of $\mathbf{Z}$. Written for
            the $n_j$ rows of one cluster:
            """),
        code("""
            eq_rs.matrix_cluster
            """),
        md(r"""
            ### Why $X$ appears again in $\mathbf{Z}$

            Because the slope of $X$ appears twice in the combined equation. The level-2
            equation $\beta_{1j} = \gamma_{10} + U_{1j}$ splits the cluster's slope into an
            average and a deviation, and **both parts multiply the same $X_{ij}$**:

            $$\beta_{1j} X_{ij} = (\gamma_{10} + U_{1j}) X_{ij}
              = \gamma_{10} X_{ij} + U_{1j} X_{ij}.$$

            $\gamma_{10}$ takes $X_{ij}$ into $\mathbf{X}$; $U_{1j}$ takes the same $X_{ij}$
            into $\mathbf{Z}$. Likewise $\beta_{0j} = \gamma_{00} + U_{0j}$ puts a column of
            ones in both. So **a column of $\mathbf{Z}_j$ is the level-1 column of a
            coefficient that has a $U$.** In this model every coefficient has one, so
            $\mathbf{Z}_j = \mathbf{X}_j$. That is not redundant: $\mathbf{X}_j\beta$ is the
            average line, the same in every cluster, and $\mathbf{Z}_j\mathbf{U}_j$ is cluster
            $j$'s own departure from it. Checked on the data, for cluster `c01`:
            """),
        code("""
            design_rs = bm.build_design(spec_rs, data)
            rows = np.flatnonzero(design_rs.cluster_index == 0)              # cluster c01
            cols = design_rs.z_columns["U0 (Intercept)"][0], design_rs.z_columns["U1 (X)"][0]
            X_1 = design_rs.X_frame.iloc[rows]
            Z_1 = design_rs.Z_frame().iloc[rows, list(cols)]
            display(pd.concat({"X_j": X_1, "Z_j": Z_1}, axis=1).head(6))
            print("Z_j equals X_j in every cluster:",
                  all(np.array_equal(design_rs.X[design_rs.cluster_index == j],
                                     design_rs.Z[design_rs.cluster_index == j][:, [2*j, 2*j + 1]]
                                     .toarray())
                      for j in range(design_rs.J)))
            """),
        md(r"""
            ## 2. The cross-level model

            The question's second model adds a level-2 predictor $M_j$ to both level-2
            equations (`models/cross_level.toml`, the model the data were simulated from):
            """),
        code("""
            spec_cl = bm.Spec.from_file("../models/cross_level.toml")
            print("lme4 formula:", spec_cl.to_formula())
            eq_cl = bm.equations(spec_cl)
            display(eq_cl.levels, eq_cl.combined)
            """),
        md(r"""
            $M_j$ enters the slope's equation, so $\gamma_{11}$ multiplies $M_j \cdot X_{ij}$:
            the **cross-level interaction**. $\mathbf{X}_j$ now has four columns, one per
            $\gamma$ ($1$, $X_{ij}$, $M_j$, $M_j X_{ij}$), but $\mathbf{Z}_j$ keeps two. The
            $U$'s belong to the level-1 coefficients $\beta_{0j}$ and $\beta_{1j}$, not to the
            $\gamma$'s, so $\mathbf{Z}_j$ still holds the level-1 columns $1$ and $X_{ij}$:
            $\mathbf{Z}_j$ is a subset of the columns of $\mathbf{X}_j$, which is what the
            question wrote.
            """),
        code("""
            eq_cl.matrix_cluster
            """),
        code("""
            design = bm.build_design(spec_cl, data)
            print("X:", design.X.shape, "columns", list(design.fixed_names))
            print("Z:", design.Z.shape, f"= n x (J*q) = {design.n} x ({design.J}*{design.q})")
            rows = design.cluster_index == 0
            Z_1 = design.Z[rows][:, design.z_columns["U0 (Intercept)"][:1].tolist()
                                 + design.z_columns["U1 (X)"][:1].tolist()].toarray()
            print("Z_j = columns (Intercept) and X of X_j:",
                  np.array_equal(Z_1, design.X[rows][:, :2]))
            """),
        md(r"""
            ### Checking one row, as the question's answer does

            The answer checks the matrix form against the combined equation for one person
            (its equation (4)). Here with the REML estimates (`bm.fit_reml`) for the first row
            of cluster `c01`: every term of the combined equation, then the row of
            $\mathbf{X}\beta + \mathbf{Z}\mathbf{u} + \mathbf{e}$.
            """),
        code("""
            reml = bm.fit_reml(spec_cl, data)
            i = 0
            j = design.cluster_index[i]
            x, m = data.loc[i, "X"], data.loc[i, "M"]
            g = reml.beta.set_axis(design.gamma_names)
            U = reml.u.iloc[j].set_axis(["U0", "U1"])
            e_i = reml.residuals[i]
            terms = {
                "g00": g["g00"], "g01*M": g["g01"] * m, "g10*X": g["g10"] * x,
                "g11*M*X": g["g11"] * m * x, "U0j": U["U0"], "U1j*X": U["U1"] * x, "e": e_i,
            }
            display(pd.Series(terms, name=f"row {i}, cluster {design.clusters[j]}").to_frame().T)
            u_vec = reml.u.to_numpy().ravel()             # cluster-major, like the columns of Z
            matrix_row = design.X[i] @ reml.beta.to_numpy() + design.Z[[i]] @ u_vec
            print(f"sum of terms = {sum(terms.values()):.6f}")
            print(f"X[i] beta + Z[i] u + e[i] = {matrix_row[0] + e_i:.6f}")
            print(f"y[i] = {data.loc[i, 'y']:.6f}")
            """),
        md(r"""
            The data were simulated with known values, so the estimates can be checked too:
            """),
        code("""
            pd.DataFrame({
                "truth": [truth[k] for k in ("g00", "g10", "g01", "g11")]
                + [truth["sd_U0"], truth["sd_U1"], truth["corr_U0_U1"], truth["sigma"]],
                "REML": list(reml.beta) + list(reml.sd_u)
                + [reml.corr_u.iloc[0, 1], reml.sigma],
                "REML SE": list(reml.se) + [np.nan] * 4,
            }, index=list(design.fixed_names) + ["sd U0", "sd U1", "corr(U0, U1)", "sigma"]
            ).round(3)
            """),
        md(r"""
            The $\gamma$'s lie within about two standard errors of the values the data were
            simulated from, and the SDs, the correlation and $\sigma$ are near theirs; one
            simulated data set of 60 clusters is not expected to reproduce them exactly.
            """),
        md(r"""
            ## 3. The whole data: $\mathbf{Z}$ is block-diagonal

            Stacking the clusters' equations one under the other gives the whole-data form.
            $\mathbf{X}$ stacks the $\mathbf{X}_j$; $\mathbf{u}$ stacks the $\mathbf{U}_j$
            ($J \times q = 60 \times 2 = 120$ values); and $\mathbf{Z}$ puts each
            $\mathbf{Z}_j$ **on the diagonal**, because $U_{0j}$ and $U_{1j}$ act on cluster
            $j$'s rows only. In symbols:
            """),
        code("""
            eq_cl.matrix
            """),
        md(r"""
            With the data's numbers (rows in cluster order; `⋮` and `⋯` mark rows and columns
            left out). Note how each pair of columns of $\mathbf{Z}$ repeats the columns `1`
            and `X` of $\mathbf{X}$ for one cluster and is zero elsewhere:
            """),
        code("""
            bm.equations(spec_cl, data).matrix
            """),
        md(r"""
            The picture of $\mathbf{Z}$ (1,282 × 120) makes the block shape plain: each dot is
            a non-zero entry. Left, the rows sorted by cluster, as in the file; middle, the
            first three clusters up close (two columns per cluster: `U0`'s column of ones and
            `U1`'s column of $X$); right, the same model with the rows shuffled. Shuffling
            the rows does not change the model, only the picture: block-diagonal is a matter
            of row order.
            """),
        code("""
            order = np.argsort(design.cluster_index, kind="stable")   # rows sorted by cluster
            Z_sorted = design.Z[order]
            shuffled = data.sample(frac=1, random_state=1).reset_index(drop=True)
            Z_shuffled = bm.build_design(spec_cl, shuffled).Z
            starts = np.searchsorted(design.cluster_index[order], np.arange(design.J))
            n3 = starts[3]

            fig, axes = plt.subplots(1, 3, figsize=(13, 5.2), layout="constrained",
                                     gridspec_kw={"width_ratios": [1, 1, 1]})
            axes[0].spy(Z_sorted, markersize=0.6, aspect="auto", color="#1f4e79")
            axes[0].set(title="Z (1,282 x 120), rows sorted by cluster",
                        xlabel="column of Z (U0, U1 per cluster)", ylabel="row (observation)")
            ticks = np.arange(0, design.J, 10)
            axes[0].set_xticks(2 * ticks, [design.clusters[t] for t in ticks])
            axes[0].set_yticks(starts[ticks], [design.clusters[t] for t in ticks])
            axes[1].spy(Z_sorted[:n3, :6], markersize=3, aspect="auto", color="#1f4e79")
            axes[1].set_xticks(range(6), design.z_names[:6], rotation=45)
            axes[1].set_yticks(starts[:3], [f"first row of {c}" for c in design.clusters[:3]])
            axes[1].set(title="first three clusters (6 columns)", xlabel="column of Z")
            axes[2].spy(Z_shuffled, markersize=0.6, aspect="auto", color="0.4")
            axes[2].set(title="Z, rows shuffled: same model", xlabel="column of Z",
                        ylabel="row (observation)")
            for ax in axes:
                ax.xaxis.set_ticks_position("bottom")
                ax.xaxis.set_label_position("bottom")
            plt.show()
            """),
        md(r"""
            ## Summary: the recipe

            1. Substitute the level-2 equations into level 1 to get one combined equation.
            2. Each term with a $\gamma$ gives a column of $\mathbf{X}$: the level-1 variable
               (or 1) times the level-2 variable (or 1) that $\gamma$ multiplies, e.g.
               $M_j X_{ij}$ for the cross-level interaction $\gamma_{11}$.
            3. Each level-1 coefficient with a $U$ gives $\mathbf{Z}_j$ a column: its level-1
               variable (or 1). That is why $\mathbf{Z}_j$ repeats columns of
               $\mathbf{X}_j$: the same variable carries both the average effect ($\gamma$)
               and the cluster's deviation from it ($U$).
            4. For the whole data, $\mathbf{Z} = \operatorname{diag}(\mathbf{Z}_1, \dots,
               \mathbf{Z}_J)$, block-diagonal when the rows are sorted by cluster, and
               $\mathbf{u} = (\mathbf{U}_1, \dots, \mathbf{U}_J)$ with
               $\mathbf{U}_j \sim N(0, \mathbf{T})$.

            The assumptions of the model, written out:
            """),
        code("""
            bm.equations(spec_cl, data).distributions
            """),
    ]


# --------------------------------------------------------------------------------------------
# 03: High School and Beyond
# --------------------------------------------------------------------------------------------
TIDY_POSTERIOR = """
    def tidy(fit):
        # One variable per scalar parameter, named as in the model (for labelled plots).
        post, d = fit.posterior, fit.design
        out = {name: post["beta"].sel(fixed=name) for name in d.fixed_names}
        out.update({f"sd {r}": post["sd_u"].sel(random=r) for r in d.random_names})
        for a in range(d.q):
            for b in range(a):
                name = f"corr({d.random_names[a].split()[0]}, {d.random_names[b].split()[0]})"
                out[name] = post["corr_u"].isel(random=a, random2=b)
        out["sigma"] = post["sigma"]
        return xr.Dataset({k: v.reset_coords(drop=True) for k, v in out.items()})
"""


@notebook("03_hsb_cross_level")
def hsb_notebook() -> Cells:
    """A full posterior analysis of the High School and Beyond cross-level model."""
    return [
        md(r"""
            # High School and Beyond: a cross-level model, from priors to REML

            The High School and Beyond data (Raudenbush & Bryk, *Hierarchical Linear Models*,
            2002) hold the maths achievement (`MathAch`) of 7,185 students in 160 schools.
            The classic model lets each school have its own intercept and its own slope of
            school-centred socio-economic status (`cses`), and explains both by two school
            characteristics: the school's mean SES (`MEANSES`) and its `Sector` (Public or
            Catholic, Public the reference). `cses` is centred within each school, so a school's
            intercept is the achievement of a student of that school's average SES, and its
            slope says how strongly achievement follows SES *within* the school.

            This notebook goes through a full posterior analysis: the model and its priors,
            sampling diagnostics, the posterior of the $\gamma$'s, of $\mathbf{T}$ (the
            covariance of the school effects) and of $\sigma$, the schools' own coefficients, a
            posterior predictive check, a comparison with a random-intercept model by
            leave-one-school-out cross-validation (and the variance partition), and the
            comparison with lme4's REML fit.
            """),
        code(SETUP, """
            import arviz_plots as azp
            import xarray as xr
            """),
        md("## 1. Data and model"),
        code("""
            spec = bm.Spec.from_file("../models/hsb.toml")
            data = bm.load_data(spec)
            design = bm.build_design(spec, data)
            print(f"{design.n} students in {design.J} schools "
                  f"({design.level2['n'].min()} to {design.level2['n'].max()} per school)")
            display(design.level2.groupby("Sector").agg(
                schools=("n", "size"), students=("n", "sum"), mean_MEANSES=("MEANSES", "mean")))
            eq = bm.equations(spec, design)
            display(eq.levels, eq.combined)
            """),
        md(r"""
            $\gamma_{11}$ and $\gamma_{12}$ are cross-level interactions: school
            characteristics that change the within-school SES slope.

            ## 2. Priors

            bayesmix scales its default priors from the data: the $\gamma$'s get normal priors
            2.5 times as wide as the outcome's SD divided by their column's SD (weak: they
            allow effects far larger than any plausible one), the SDs of $U$ and $\sigma$ get
            half-Student-t priors on the outcome's scale, and the correlation of $U_0$ and
            $U_1$ an LKJ prior with $\eta = 2$, which mildly favours correlations near 0.
            The priors of the intercept, of the main effects that the cross-level interactions
            contain and of the random intercept are placed at the means of the other
            variables (the table says which), so that the posterior does not depend on where
            each variable's 0 lies.
            """),
        code("""
            pd.DataFrame(bm.resolve_priors(design).table(), columns=["parameter", "prior"])
            """),
        md(r"""
            ## 3. Sampling and diagnostics

            The model file sets `target_accept = 0.95` (the SD of the slopes sits near zero,
            where the sampler needs smaller steps). bayesmix integrates $\mathbf{u}$ out while
            sampling ($\gamma$, $\mathbf{T}$, $\sigma$ only) and draws the 320 school effects
            afterwards from their exact conditional distribution.
            """),
        code("""
            fit = bm.fit(spec, data, draws=1000, tune=1000, chains=4, random_seed=5,
                         progressbar=False)
            print(fit)
            print(f"sampling took {fit.timings['sample']:.1f} s")
            summary = bm.summarize(fit)
            summary
            """),
        md(r"""
            R-hat near 1 says the four chains agree with each other; bulk and tail ESS (well
            above 400) say how many independent draws the 4,000 are worth; no divergent
            transitions says the sampler had no trouble with the geometry. The trace plots
            show the same: each chain (colour) wanders over the same range with no trends,
            and the four densities on the left coincide.
            """),
        code(TIDY_POSTERIOR, """

            params = tidy(fit)
            names = list(params.data_vars)
            colors = plt.cm.tab10.colors
            fig, axes = plt.subplots(len(names), 2, figsize=(11, 1.3 * len(names)), dpi=72,
                                     layout="constrained", gridspec_kw={"width_ratios": [1, 2]})
            for (ax_d, ax_t), name in zip(axes, names):
                v = params[name]
                lo, hi = np.quantile(v, [0.001, 0.999])
                for c in range(v.sizes["chain"]):
                    draws = v.isel(chain=c).values
                    ax_d.hist(draws, bins=40, range=(lo, hi), histtype="step", density=True,
                              color=colors[c], lw=1)
                    ax_t.plot(np.arange(0, draws.size, 2), draws[::2], color=colors[c], lw=0.4,
                              alpha=0.8)                          # every 2nd draw
                ax_d.set_yticks([])
                ax_d.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
                ax_t.set_ylim(lo, hi)
                ax_t.tick_params(labelsize=8)
                ax_d.tick_params(labelsize=8)
            axes[0, 0].set_title("posterior density per chain", fontsize=10)
            axes[0, 1].set_title("trace per chain (after warm-up)", fontsize=10)
            axes[-1, 1].set_xlabel("draw")
            plt.show()
            """),
        md(r"""
            A rank plot is a sharper check: pool the draws of all chains, rank them, and
            histogram each chain's ranks. If the chains sample the same distribution, every
            histogram is flat (within the grey band of chance variation).
            """),
        code("""
            from scipy import stats

            n_bins = 20
            total = params.sizes["chain"] * params.sizes["draw"]
            band = stats.binom.ppf([0.005, 0.995], params.sizes["draw"], 1 / n_bins)
            fig, axes = plt.subplots(2, 5, figsize=(13, 4.6), layout="constrained",
                                     sharey=True)
            for ax, name in zip(axes.flat, names):
                v = params[name].values                             # (chain, draw)
                ranks = stats.rankdata(v.ravel()).reshape(v.shape)
                for c in range(v.shape[0]):
                    counts, edges = np.histogram(ranks[c], bins=n_bins, range=(0, total))
                    ax.stairs(counts, edges / total, color=colors[c], lw=1.2, baseline=None)
                ax.axhspan(*band, color="0.88", zorder=0)
                ax.set_title(name, fontsize=9)
                ax.set_xticks([0, 0.5, 1])
                ax.tick_params(labelsize=8)
            axes[0, 0].set_ylabel("draws per rank bin")
            axes[1, 0].set_ylabel("draws per rank bin")
            fig.supxlabel("rank of the draw among all chains (fraction)", fontsize=9)
            plt.show()
            """),
        md(r"""
            ## 4. The fixed effects $\gamma$

            The forest plot shows each $\gamma$'s posterior mean and 94% (thin) and 50% (thick)
            intervals (ArviZ's defaults).
            """),
        code("""
            pc = azp.plot_forest(fit.idata, var_names=["beta"], combined=True,
                                 figure_kwargs={"figsize": (9, 3.6)})
            pc.add_title("Fixed effects γ (MathAch points per unit of the term)")
            plt.show()
            """),
        code("""
            beta = fit.posterior["beta"]
            gamma_table = pd.DataFrame({
                "mean": beta.mean(("chain", "draw")).values,
                "sd": beta.std(("chain", "draw")).values,
                "2.5%": beta.quantile(0.025, ("chain", "draw")).values,
                "97.5%": beta.quantile(0.975, ("chain", "draw")).values,
                "P(> 0)": (beta > 0).mean(("chain", "draw")).values,
            }, index=design.fixed_names)
            gamma_table.round(3)
            """),
        md(r"""
            In words (posterior means; all intervals exclude 0):

            * $\gamma_{00}$ ≈ 12.1: a student of average SES for their school, in a Public
              school of average mean SES (`MEANSES` = 0), scores about 12.1.
            * $\gamma_{01}$ ≈ 5.3: a school whose mean SES is one unit higher has a school
              average about 5.3 points higher, **on top of** the student's own SES.
            * $\gamma_{02}$ ≈ 1.2: Catholic schools score about 1.2 points higher than Public
              schools of the same mean SES.
            * $\gamma_{10}$ ≈ 2.9: within a Public school of average mean SES, each unit of a
              student's SES (relative to the school mean) adds about 2.9 points.
            * $\gamma_{11}$ ≈ 1.0: that within-school SES slope is steeper in richer schools.
            * $\gamma_{12}$ ≈ −1.6: and flatter in Catholic schools, about 1.3 instead of 2.9
              points per SES unit: achievement depends less on family background there.

            ## 5. $\mathbf{T}$ and $\sigma$

            $\mathbf{T}$ is the covariance of the school effects $(U_{0j}, U_{1j})$: how much
            intercepts and slopes still vary between schools once `MEANSES` and `Sector` are
            taken into account. $\sigma$ is the SD of students around their school's line.
            """),
        code("""
            post = fit.posterior
            sd, corr = post["sd_u"].values, post["corr_u"].values      # (chain, draw, q[, q])
            T_draws = sd[..., :, None] * corr * sd[..., None, :]
            labels = list(design.random_names)
            display(pd.DataFrame(T_draws.mean(axis=(0, 1)), index=labels, columns=labels)
                    .round(3).rename_axis("posterior mean of T"))
            display(summary.table.loc[[i for i in summary.table.index
                                       if not i.startswith("beta")]].round(3))
            """),
        code("""
            reml = bm.read_reml("../tests/reference/hsb_crosslevel_lmer.json", design=design)
            shown = ["sd U0 (Intercept)", "sd U1 (cses)", "corr(U1, U0)", "sigma"]
            reml_values = [reml.sd_u.iloc[0], reml.sd_u.iloc[1], reml.corr_u.iloc[1, 0],
                           reml.sigma]
            fig, axes = plt.subplots(1, 4, figsize=(13, 3), layout="constrained")
            for ax, name, est in zip(axes, shown, reml_values):
                draws = params[name].values.ravel()
                ax.hist(draws, bins=50, density=True, color="#9ecae1")
                ax.axvline(est, color="#c0392b", lw=2, label="REML (lme4)")
                ax.axvline(np.median(draws), color="#1f4e79", lw=1.5, ls="--",
                           label="posterior median")
                ax.set(title=name, yticks=[])
            axes[0].legend(fontsize=8)
            plt.show()
            """),
        md(r"""
            * The **intercepts** still vary between schools with an SD of about 1.5 points
              after `MEANSES` and `Sector`, well determined.
            * The **SES slopes** vary little once `MEANSES` and `Sector` are accounted for:
              the posterior of their SD piles up near 0 and reaches about 0.7. The data do
              not rule out that the two school characteristics explain all the slope
              variation. lme4's REML estimate, 0.32, is one point in that range.
            * With so little slope variation, the **correlation** of $U_0$ and $U_1$ is barely
              identified: its posterior covers most of (−1, 1) and the LKJ prior pulls its
              centre towards 0 (REML: 0.39).
            * $\sigma$ ≈ 6.06: most of the variation is between students within a school.

            ## 6. The schools' own coefficients

            Each school's intercept and slope, $\beta_{0j}$ and $\beta_{1j}$, combine the
            level-2 equation and the school's $U$'s: `fit.posterior["coef"]`, one draw per
            posterior draw. The figure shows every school's SES slope against its mean SES,
            with the lines the level-2 equation predicts for each sector.
            """),
        code("""
            coef = post["coef"]                            # (chain, draw, cluster, level1)
            slope = coef.sel(level1="b1 (cses)")
            slope_mean = slope.mean(("chain", "draw")).values
            slope_lo, slope_hi = slope.quantile([0.025, 0.975], ("chain", "draw")).values
            lvl2 = design.level2.loc[list(design.clusters)]
            g = post["beta"].mean(("chain", "draw")).to_series()

            fig, ax = plt.subplots(figsize=(9, 5), layout="constrained")
            sector_colors = {"Public": "#1f77b4", "Catholic": "#d62728"}
            grid = np.linspace(lvl2["MEANSES"].min(), lvl2["MEANSES"].max(), 50)
            for sector, color in sector_colors.items():
                s = (lvl2["Sector"] == sector).to_numpy()
                ax.errorbar(lvl2["MEANSES"][s], slope_mean[s],
                            yerr=[slope_mean[s] - slope_lo[s], slope_hi[s] - slope_mean[s]],
                            fmt="o", ms=3.5, color=color, elinewidth=0.6, alpha=0.7,
                            label=f"{sector} school: posterior mean and 95% interval")
                line = g["g10 (cses)"] + g["g11 (cses:MEANSES)"] * grid
                if sector == "Catholic":
                    line = line + g["g12 (cses:Sector[Catholic])"]
                ax.plot(grid, line, color=color, lw=2.5,
                        label=f"{sector}: g10 + g11·MEANSES" + (" + g12" if sector == "Catholic"
                                                                else ""))
            ax.set(xlabel="MEANSES (school mean SES)",
                   ylabel="b1 (cses): school's SES slope\\n(MathAch points per SES unit)",
                   title="School SES slopes β1j by mean SES and sector (160 schools)")
            ax.legend(fontsize=8, loc="upper left")
            plt.show()
            """),
        md(r"""
            The schools hug their sector's line: with the SD of the slopes' $U$ small, each
            school's slope is pulled (shrunk) almost all the way to what `MEANSES` and
            `Sector` predict. A school's own least-squares slope, from its 14 to 67 students
            alone, is much noisier; the table lists the five schools whose own slope differs
            most from the posterior.
            """),
        code("""
            cmp = bm.compare(fit, reml)
            u_slopes = cmp.u_table[cmp.u_table["term"] == "U1 (cses)"].copy()
            u_slopes["gap"] = (u_slopes["own estimate"] - u_slopes["mean"]).abs()
            (u_slopes.nlargest(5, "gap")
             .merge(lvl2, left_on="cluster", right_index=True)
             [["cluster", "n", "Sector", "MEANSES", "own estimate", "BLUP", "mean", "2.5%",
               "97.5%"]]
             .rename(columns={"cluster": "School", "own estimate": "own LS estimate of U1",
                              "mean": "posterior mean of U1"})
             .round(3))
            """),
        md(r"""
            ## 7. Posterior predictive check

            Does data simulated from the fitted model look like the real data?
            `bm.posterior_predictive(fit)` draws one replicated data set per posterior draw
            (here 400 draws, 100 per chain),
            $\mathbf{y}^{rep} = \mathbf{X}\beta + \mathbf{Z}\mathbf{u} + \mathbf{e}^{rep}$,
            $\mathbf{e}^{rep} \sim N(0, \sigma^2)$, with each draw's $\beta$, $\mathbf{u}$ and
            $\sigma$ and the design's explicit matrices. `bm.plot_ppc` compares three
            quantities, observed (black) against 100 of the replicated data sets (blue): the
            distribution of `MathAch` itself (panel `y`), and, across the 160 schools, the
            distribution of the school means and of the school SDs.
            """),
        code("""
            fit_rep = bm.posterior_predictive(fit, max_draws=400, random_seed=2024)
            bm.plot_ppc(fit_rep, num_samples=100, figure_kwargs={"figsize": (12, 3.4)})
            plt.show()
            y_rep = fit_rep.idata["posterior_predictive"]["y"]          # (chain, draw, obs)
            print(f"observed MathAch range: {design.y.min():.2f} to {design.y.max():.2f}; "
                  f"replicated: {float(y_rep.min('obs').median()):.1f} to "
                  f"{float(y_rep.max('obs').median()):.1f} (medians over draws)")
            """),
        md(r"""
            * **`MathAch`** (left): the centre and spread are right, but the shape is not:
              `MathAch` is a test score bounded between about −3 and 25 with a flat top, while
              the model's normal errors spill beyond both ends.
            * **School means** (middle): the school-level structure is the part the model is
              built for, and the observed distribution of the 160 school means lies among the
              replicated ones. (This check is lenient: each school's $U_{0j}$ was estimated
              from the same students, so its replicated mean is drawn towards the observed one.)
            * **School SDs** (right): here the model falls short. It gives every school the
              same $\sigma$, so the replicated school SDs scatter only as much as sampling
              allows, while the observed ones are more spread out: some schools are more
              homogeneous than $\sigma$ says and others more varied. A model with a school- or
              sector-specific residual SD would be the next step; the $\gamma$'s, which
              describe averages, are little affected.

            ## 8. Does the random slope pay its way? Leave-one-school-out comparison

            Section 5 found the SD of the slopes' $U_{1j}$ close to 0. A simpler model drops
            $U_{1j}$ and keeps the same fixed part (the cross-level interactions stay): every
            school's SES slope is then exactly what `MEANSES` and `Sector` predict. Below it is
            written as a `Spec`, fitted to the same data, and compared with the random-slope
            model by PSIS-LOO with `bm.compare_models`.
            """),
        code('''
            spec_ri = bm.Spec.from_equations("""
                MathAch = b0 + b1*cses + e
                b0 = g00 + g01*MEANSES + g02*Sector + U0
                b1 = g10 + g11*MEANSES + g12*Sector
                """, "School", reference={"Sector": "Public"}, name="hsb_intercept")
            fit_ri = bm.fit(spec_ri, data, draws=1000, tune=1000, chains=4, random_seed=5,
                            progressbar=False)
            models = {"random slope (hsb.toml)": fit, "random intercept": fit_ri}
            by_school = bm.compare_models(models, unit="cluster")
            display(by_school)
            by_school.plot(figure_kwargs={"figsize": (9, 2.6)})
            plt.show()
            '''),
        md(r"""
            **What leave-one-school-out measures.** With `unit="cluster"` each school is left
            out in turn, and the model fitted to the other 159 schools predicts all of its
            students together: the score is the school's marginal likelihood
            $p(\mathbf{y}_j \mid \gamma, \mathbf{T}, \sigma)$, with the school's own
            $U_{0j}, U_{1j}$ integrated out over $N(\mathbf{0}, \mathbf{T})$, averaged over the
            posterior (PSIS approximates the 160 refits from the one fit). It answers "how
            well would the model predict a *new school*?", the question for a population of
            schools. `unit="observation"` leaves out one student at a time and keeps the
            school's estimated $U$'s: it asks how well a new student of one of *these* 160
            schools is predicted, so the school effects count as parameters (`p` of 120 to 130
            below, against about 9 by school). The two ELPDs are sums over different
            units (160 schools, 7,185 students) and are never compared with each other, only
            models on the same unit.
            """),
        code("""
            by_student = bm.compare_models(models, unit="observation")
            by_student.table[["rank", "elpd", "se", "p", "elpd_diff", "dse", "weight"]].round(2)
            """),
        md(r"""
            By school the random slope brings nothing: the random-intercept model's ELPD is as
            high or a little higher (the difference, under one log-score unit, is smaller than
            its SE `dse`), with about one effective parameter fewer. With two models this close,
            stacking puts nearly all the weight on one of them; the weights are not posterior
            probabilities. By student the verdict is the same. This is the posterior
            of sd($U_1$) of section 5 seen from prediction: once `MEANSES` and `Sector` are in
            the slope equation, what is left of the school-to-school variation of the SES
            slopes is too small to help predict new schools or new students.

            `bm.variance` says the same in variance shares (each per posterior draw; a few
            rows of `.to_frame()` are shown): the school effects hold about 6% of the
            variance that the fixed effects leave (adjusted ICC), the fixed part explains
            about 18% of the variance of `MathAch` (marginal $R^2$), and the slope deviations
            $U_{1j}$ add a tiny share (Rights & Sterba's `v`).
            """),
        code("""
            vp = bm.variance(fit)
            rows = ["icc_adjusted", "r2_marginal", "r2_conditional",
                    "var_effect[School: U0 (Intercept)]", "var_effect[School: U1 (cses)]",
                    "rs_share[m]", "rs_share[v]"]
            vp.to_frame().loc[rows].round(4)
            """),
        md(r"""
            ## 9. Comparison with REML

            lme4's fit of the same model (`MathAch ~ cses * (MEANSES + Sector) + (cses | School)`,
            pinned in `tests/reference/hsb_crosslevel_lmer.json`) and bayesmix's own REML fit
            agree to many digits; the posterior is compared with lme4's.
            """),
        code("""
            own = bm.fit_reml(spec, data)
            print("max |bayesmix REML - lme4|:",
                  f"gamma {np.abs(own.beta - reml.beta).max():.1e},",
                  f"SDs {np.abs(own.sd_u - reml.sd_u).max():.1e},",
                  f"sigma {abs(own.sigma - reml.sigma):.1e}")
            display(cmp.table.round(4))
            for note in cmp.notes:
                print("-", note)
            """),
        code("""
            bm.plot_compare(cmp)
            """),
        md(r"""
            **Summary.** The posterior and REML tell the same story about the fixed effects:
            same estimates, posterior sds within a few percent of the REML standard errors
            (7,185 students and 160 schools swamp the weak priors). They differ where the data
            are thin: the SD of the slope deviations and their correlation with the
            intercepts, where REML gives a point on a nearly flat likelihood and the posterior
            shows the whole range, shaped in part by the prior. The predictive check confirms
            the school-level part of the model and flags two things it leaves out: the score's
            bounded range and school-to-school differences in spread. Leave-one-school-out
            cross-validation finds that the random slope does not improve the prediction of
            new schools: the random-intercept model with the same cross-level interactions
            predicts as well.
            """),
    ]


# --------------------------------------------------------------------------------------------
# 04: sleepstudy
# --------------------------------------------------------------------------------------------
@notebook("04_sleepstudy_correlated_slopes")
def sleep_notebook() -> Cells:
    """Correlated random intercepts and slopes with the LKJ prior, compared with lme4."""
    return [
        md(r"""
            # Sleep deprivation: correlated random intercepts and slopes

            lme4's `sleepstudy` (Belenky et al. 2003): the average reaction time (`Reaction`,
            ms) of 18 subjects (`Subject`) on each of 10 days (`Days` 0 to 9) of sleep
            restricted to 3 hours a night. Each subject gets an own intercept (reaction time
            at day 0) and an own slope (ms added per day of deprivation), and the two
            subject effects may be **correlated**: do the subjects who start slow also
            deteriorate fast?

            In bayesmix the correlation matrix of the random effects gets an **LKJ prior**
            with shape $\eta$. This notebook fits the model with $\eta$ = 1, 2 (the default)
            and 10, shows how $\eta$ moves the correlation's posterior, and compares with
            lme4's REML fit and the published numbers (Bates et al. 2015, *J. Stat. Softw.*
            67(1)).
            """),
        code(SETUP, """
            from scipy import stats
            """),
        code("""
            spec = bm.Spec.from_file("../models/sleepstudy.toml")
            data = bm.load_data(spec)
            design = bm.build_design(spec, data)
            print("lme4 formula:", spec.to_formula())
            eq = bm.equations(spec)
            display(eq.levels, eq.distributions)
            """),
        md(r"""
            ## 1. The LKJ prior and $\eta$

            For two random effects the LKJ($\eta$) prior on their correlation $\rho$ has
            density proportional to $(1-\rho^2)^{\eta-1}$: $(\rho + 1)/2$ follows a
            Beta($\eta$, $\eta$) distribution. $\eta = 1$ is uniform on $(-1, 1)$; larger
            $\eta$ concentrates the prior around 0.
            """),
        code("""
            etas = [1, 2, 10]
            eta_colors = {1: "#1b9e77", 2: "#7570b3", 10: "#d95f02"}
            rho = np.linspace(-1, 1, 401)


            def lkj_marginal(eta):
                # the LKJ prior of the correlation of two random effects: (rho+1)/2 ~ Beta(eta, eta)
                return stats.beta(eta, eta, loc=-1, scale=2)


            fig, ax = plt.subplots(figsize=(7, 3.2), layout="constrained")
            for eta in etas:
                ax.plot(rho, lkj_marginal(eta).pdf(rho), color=eta_colors[eta], lw=2,
                        label=f"η = {eta}: 95% of prior mass in "
                              f"({lkj_marginal(eta).ppf(0.025):.2f}, "
                              f"{lkj_marginal(eta).ppf(0.975):.2f})")
            ax.set(xlabel="corr(U0, U1): correlation of subject intercepts and slopes",
                   ylabel="prior density", title="LKJ prior on the correlation")
            ax.legend(fontsize=8)
            plt.show()
            """),
        md(r"""
            ## 2. REML: lme4 and the published numbers

            Bates et al. (2015) print, for `lmer(Reaction ~ Days + (Days | Subject))`: fixed
            effects 251.405 (SE 6.825) and 10.467 (SE 1.546); SDs 24.741 and 5.922;
            correlation 0.066; residual SD 25.592. `bm.fit_reml` reproduces them, as does the
            pinned lme4 fit (run to full convergence, hence 24.7404 for the intercept SD
            against the published 24.741, which stops slightly early).
            """),
        code("""
            reml = bm.fit_reml(spec, data)
            lme4 = bm.read_reml("../tests/reference/sleepstudy_lmer_reml.json", design=design)
            published = [251.405, 10.467, 6.825, 1.546, 24.741, 5.922, 0.066, 25.592]


            def numbers(r):
                return [*r.beta, *r.se, *r.sd_u, r.corr_u.iloc[0, 1], r.sigma]


            rows = ["g00 (Intercept)", "g10 (Days)", "SE g00", "SE g10", "sd U0 (Intercept)",
                    "sd U1 (Days)", "corr(U0, U1)", "sigma"]
            reml_table = pd.DataFrame({"published (Bates et al. 2015)": published,
                                       "lme4 1.1-31 (pinned)": numbers(lme4),
                                       "bayesmix fit_reml": numbers(reml)}, index=rows)
            print(f"REML criterion: bayesmix {reml.criterion:.3f}, lme4 {lme4.criterion:.3f}")
            reml_table.round(4)
            """),
        md(r"""
            ## 3. Three fits: $\eta$ = 1, 2, 10

            Same data, same seed, same priors for everything else; only $\eta$ changes.
            """),
        code("""
            fits = {}
            for eta in etas:
                fits[eta] = bm.fit(spec, data, priors=bm.Priors(eta=eta), draws=1000, tune=1000,
                                   chains=4, random_seed=4, progressbar=False)
                s = bm.summarize(fits[eta])
                print(f"eta = {eta:2d}: max R-hat {s.max_rhat:.3f}, min bulk ESS "
                      f"{s.min_ess_bulk:.0f}, {s.divergences} divergences, "
                      f"{fits[eta].timings['sample']:.1f} s")
            bm.summarize(fits[2])
            """),
        code("""
            def corr_draws(f):
                return f.posterior["corr_u"].isel(random=0, random2=1).values.ravel()


            fig, ax = plt.subplots(figsize=(9, 4), layout="constrained")
            bins = np.linspace(-1, 1, 61)
            for eta in etas:
                c = eta_colors[eta]
                ax.hist(corr_draws(fits[eta]), bins=bins, density=True, histtype="step",
                        color=c, lw=2, label=f"posterior, η = {eta}")
                ax.plot(rho, lkj_marginal(eta).pdf(rho), color=c, lw=1, ls="--",
                        label=f"prior, η = {eta}")
            ax.axvline(lme4.corr_u.iloc[0, 1], color="#c0392b", lw=2,
                       label=f"REML (lme4) {lme4.corr_u.iloc[0, 1]:.3f}")
            ax.set(xlabel="corr(U0 (Intercept), U1 (Days)) between subjects",
                   ylabel="density", title="Correlation of subject intercepts and slopes")
            ax.legend(fontsize=8, ncol=2, loc="upper left")
            plt.show()
            """),
        code("""
            def corr_row(f, eta):
                r = corr_draws(f)
                sd = f.posterior["sd_u"]
                return {
                    "prior 95%": "({:.2f}, {:.2f})".format(*lkj_marginal(eta).ppf([0.025, 0.975])),
                    "posterior mean": r.mean(), "median": np.median(r),
                    "2.5%": np.quantile(r, 0.025), "97.5%": np.quantile(r, 0.975),
                    "95% width": np.diff(np.quantile(r, [0.025, 0.975]))[0],
                    "P(corr > 0)": (r > 0).mean(),
                    "sd U0 median": float(sd.sel(random="U0 (Intercept)").median()),
                    "sd U1 median": float(sd.sel(random="U1 (Days)").median()),
                }


            pd.DataFrame({f"eta = {eta}": corr_row(fits[eta], eta) for eta in etas}).T.round(3)
            """),
        md(r"""
            **How $\eta$ changes the posterior.** Eighteen subjects give eighteen
            (intercept, slope) pairs from which to learn one correlation, so the data alone
            leave it uncertain: with the flat prior ($\eta$ = 1) the 95% interval spans
            roughly −0.5 to 0.7. Its centre lies near the REML estimate, 0.07. Raising $\eta$
            adds prior weight at 0: the interval narrows (by about a third at $\eta$ = 10) and
            the centre moves a little towards 0. Because the REML value is already close to 0,
            the prior mostly changes the *width*, not the conclusion: in every fit the
            correlation is small and its sign is not determined. The SDs of the intercepts and
            slopes hardly move. Which $\eta$ to use is a modelling choice: $\eta$ = 2 (the
            default) rules out nothing but keeps the sampler away from the boundaries ±1, where
            a correlation estimated from few clusters often lands in REML fits (a *singular*
            fit).

            ## 4. Posterior ($\eta$ = 2) against lme4's REML fit
            """),
        code("""
            cmp = bm.compare(fits[2], lme4)
            display(cmp.table.round(3))
            for note in cmp.notes:
                print("-", note)
            """),
        code("""
            bm.plot_compare(cmp)
            """),
        md(r"""
            The fixed effects agree, with posterior sds a little above the REML standard
            errors (the posterior also accounts for the uncertainty in the SDs). The SDs'
            posterior medians sit near the REML values, their means a little above (right
            skew). The subject effects agree with the BLUPs subject by subject.

            ## 5. Each subject's line

            The subjects' own intercepts and slopes, $\beta_{0j} = \gamma_{00} + U_{0j}$ and
            $\beta_{1j} = \gamma_{10} + U_{1j}$ (`fit.posterior["coef"]`), drawn over their data,
            with the REML line (from lme4's estimates and BLUPs) and the population line
            $\gamma_{00} + \gamma_{10}\,\text{Days}$ for reference.
            """),
        code("""
            fit = fits[2]
            coef = fit.posterior["coef"]
            coef_mean = coef.mean(("chain", "draw")).to_pandas()          # cluster x level1
            reml_coef = design.cluster_coefficients(lme4.beta.to_numpy(), lme4.u.to_numpy())
            g = fit.posterior["beta"].mean(("chain", "draw")).values
            days = np.linspace(0, 9, 10)
            # band: 95% interval of the subject's line, day by day
            lines = (coef.sel(level1="b0 (Intercept)").values[..., None]
                     + coef.sel(level1="b1 (Days)").values[..., None] * days)  # chain,draw,J,10
            lo, hi = np.quantile(lines.reshape(-1, design.J, days.size), [0.025, 0.975], axis=0)

            fig, axes = plt.subplots(3, 6, figsize=(14, 7.5), sharex=True, sharey=True,
                                     layout="constrained")
            for j, (ax, subject) in enumerate(zip(axes.flat, design.clusters)):
                rows = data["Subject"].astype(str) == subject
                ax.fill_between(days, lo[j], hi[j], color="#9ecae1", alpha=0.6, lw=0)
                ax.plot(days, g[0] + g[1] * days, color="0.6", lw=1, ls=":")
                b0, b1 = coef_mean.loc[subject]
                ax.plot(days, b0 + b1 * days, color="#1f4e79", lw=1.8)
                ax.plot(days, reml_coef[j, 0] + reml_coef[j, 1] * days, color="#c0392b",
                        lw=1, ls="--")
                own = np.polyfit(data.loc[rows, "Days"], data.loc[rows, "Reaction"], 1)
                ax.plot(days, np.polyval(own, days), color="#2ca02c", lw=1, ls="-.")
                ax.plot(data.loc[rows, "Days"], data.loc[rows, "Reaction"], "k.", ms=4)
                ax.set_title(f"Subject {subject}", fontsize=9)
            fig.supxlabel("Days of sleep deprivation")
            fig.supylabel("Reaction (ms)")
            fig.suptitle("Blue: posterior mean line and 95% band (η = 2); red dashed: REML (lme4); "
                         "green dash-dot: the subject's own least-squares line; "
                         "grey dotted: population line", fontsize=10)
            plt.show()
            """),
        md(r"""
            The posterior and REML lines nearly coincide for every subject. Both lie between
            the subject's own least-squares line and the population line: each subject
            borrows strength from the others, most visibly where a few unusual days pull the
            subject's own line away (e.g. subjects 330 and 370). The bands show what REML
            alone does not: how sure we are of each subject's line.
            """),
    ]


# --------------------------------------------------------------------------------------------
# 05: three levels, nested and crossed factors
# --------------------------------------------------------------------------------------------
@notebook("05_three_levels_and_crossed")
def levels3_notebook() -> Cells:
    """Three-level growth model, nested ids, crossed factors and uncorrelated effects."""
    return [
        md(r"""
            # Three levels, nested and crossed factors

            Raudenbush & Bryk (2002, chapter 8) model growth in mathematics of children within
            schools: years (level 1) within children (level 2) within schools (level 3). The
            data are mlmRev's `egsingle`: 7,230 yearly scores of 1,721 children in 60
            Chicago schools. Each child has an own intercept and growth rate; each school
            shifts both; race (`black`, level 2) and the school's share of low-income pupils
            (`lowinc`, level 3) predict them.

            This notebook writes that model in HLM's notation, looks at its mixed form
            $Y = X\beta + Z_{\text{child}} u_{\text{child}} + Z_{\text{school}} u_{\text{school}} + e$,
            fits it (the posterior and REML, against lme4), and then shows a cross-classified
            model (plates × samples) and uncorrelated random effects (`||`).
            """),
        code(SETUP),
        md(r"""
            ## 1. The model as Raudenbush & Bryk write it

            π at level 1, β at level 2, γ at level 3; r are the children's random effects,
            u the schools'. `levels=` names the grouping columns from the inside out.
            """),
        code("""
            equations = '''
                math = p0 + p1*year + e
                p0 = b00 + b01*black + r0
                p1 = b10 + b11*black + r1
                b00 = g000 + g001*lowinc + u00
                b01 = g010
                b10 = g100 + g101*lowinc + u10
                b11 = g110
            '''
            spec = bm.Spec.from_equations(equations, levels=["childid", "schoolid"])
            data = pd.read_csv("../data/egsingle.csv")
            print(spec.to_formula())
            spec
            """),
        md(r"""
            The level of each coefficient follows from the line that defines it, and the
            formula is lme4's: the children's effects vary over `schoolid:childid` (a child id
            names one child within one school), the schools' over `schoolid`.

            ## 2. The design: Z partitioned by factor
            """),
        code("""
            design = bm.build_design(spec, data)
            design
            """),
        code("""
            for fe in design.effects:
                print(f"Z_{fe.name}: {fe.Z.shape[0]} x {fe.Z.shape[1]} "
                      f"({fe.J} units x {fe.q} effects: {', '.join(fe.labels)})")
            print("X:", design.X.shape, list(design.fixed_names))
            """),
        md(r"""
            Why does `year` appear again in Z? Because the growth rate varies at two levels:
            a child's year column multiplies its own $r_{1jk}$ (in $Z_{\text{child}}$) **and**
            its school's $u_{10k}$ (in $Z_{\text{school}}$). Every column of a random slope
            reappears in Z once per factor it varies over.
            """),
        code("""
            eq = bm.equations(spec, data)
            display(eq.levels, eq.combined)
            """),
        md(r"""
            ## 3. REML, against lme4

            `bm.fit_reml` fits any structure (nested, crossed, `||`) by lme4's penalised
            least squares; the pinned lme4 fit (`tests/reference/multi`) is shown beside it.
            """),
        code("""
            import json

            reml = bm.fit_reml(spec, data)
            lme4 = json.load(open("../tests/reference/multi/egsingle_3level_reml.json"))
            sd_lme4 = {f"{b['group']} {t}": s for b in lme4["random"]
                       for t, s in zip(b["terms"], b["sd"])}
            print(reml)
            print("lme4 REML criterion", lme4["criterion"], " sigma", lme4["sigma"])
            print("lme4 SDs", sd_lme4)
            """),
        md(r"""
            ## 4. The posterior

            With nested factors bayesmix integrates the children's effects out exactly, child
            by child (from per-child cross-products), samples the school effects, and draws
            the children's effects afterwards from their exact conditional.
            """),
        code("""
            fit = bm.fit(spec, data, draws=500, tune=500, chains=4, random_seed=5,
                         progressbar=False)
            print(fit.likelihood, "likelihood;",
                  {k: round(v, 1) for k, v in fit.timings.items()})
            bm.summarize(fit)
            """),
        code("""
            cmp = bm.compare(fit, reml)
            cmp.table[["REML", "mean", "2.5%", "97.5%", "z", "verdict"]].round(4)
            """),
        md(r"""
            ## 5. The seed's check: Y rebuilt from X, every Z_g and ē
            """),
        code("""
            rec = bm.reconstruct(fit)
            print(rec.table.head(6).round(4).to_string())
            print("max |Y - (Xb + Σ Zu + e)| =", rec.max_abs_error)
            print("graph vs explicit log-likelihood:", rec.graph_max_abs_error)
            """),
        md(r"""
            ## 6. Predicting new units at each level

            A new child in a known school draws only a child effect; a child in a new school
            draws both. The uncertainty grows accordingly.
            """),
        code("""
            lowinc_2020 = data.loc[data.schoolid == 2020, "lowinc"].iloc[0]
            new = pd.DataFrame({"schoolid": [2020, 2020, 9999], "childid": [273026452, 1, 1],
                                "year": [0.5, 0.5, 0.5], "black": [1, 1, 1],
                                "lowinc": [lowinc_2020, lowinc_2020, 50.0]})
            pred = bm.predict(fit, new, random_seed=1).summary()
            pred.index = ["known child, known school", "new child, known school",
                          "new child, new school"]
            pred.round(3)
            """),
        md(r"""
            ## 7. Crossed factors: plates × samples

            lme4's `Penicillin`: every one of 6 samples is tested on every one of 24 plates.
            Plates and samples are **crossed**, not nested: $y_{ijk} = \gamma_{00} + U_{0j} +
            V_{0k} + e_{ijk}$ with $U$ over plates and $V$ over samples.
            """),
        code("""
            pen = pd.read_csv("../data/penicillin.csv")
            pspec = bm.Spec.from_formula("diameter ~ 1 + (1 | plate) + (1 | sample)")
            pfit = bm.fit(pspec, pen, draws=500, tune=500, chains=4, random_seed=6,
                          target_accept=0.95, progressbar=False)
            preml = bm.fit_reml(pspec, pen)
            bm.compare(pfit, preml).table[["REML", "mean", "median", "2.5%", "97.5%"]].round(3)
            """),
        md(r"""
            With 6 samples the SD between samples is poorly determined: its posterior is wide
            and skewed to the right, and REML's estimate (1.93, as lme4) sits near its median.

            ## 8. Uncorrelated random effects

            `(Days || Subject)` gives each subject an intercept and a slope that are
            independent (T diagonal); `(Days | Subject)` estimates their correlation. On
            sleepstudy the REML criteria barely differ (1743.67 against 1743.63): the data
            say little about the correlation.
            """),
        code("""
            sleep = pd.read_csv("../data/sleepstudy.csv")
            for f in ["Reaction ~ Days + (Days || Subject)", "Reaction ~ Days + (Days | Subject)"]:
                r = bm.fit_reml(bm.Spec.from_formula(f), sleep)
                print(f"{f:40s} REML criterion {r.criterion:.3f}  SDs {r.sd_u.round(3).tolist()}")
            """),
    ]


# --------------------------------------------------------------------------------------------
# 06: multilevel logistic and Poisson models
# --------------------------------------------------------------------------------------------
@notebook("06_logistic_and_poisson")
def glmm_notebook() -> Cells:
    """A multilevel logistic model read the HLM way, then a Poisson model with exposure."""
    return [
        md(r"""
            # Multilevel logistic and Poisson models

            mlmRev's `Contraception` comes from the 1988 Bangladesh Fertility Survey: 1,934
            women in 60 districts, and whether each woman uses contraception (`use`, 0/1).
            Predictors are urban residence (`urban`, 0/1), age (centred at the sample mean,
            in years) and the number of living children (`livch`: 0, 1, 2, 3+).

            Raudenbush & Bryk (2002, ch. 10) write a hierarchical generalised linear model
            in three parts: a **level-1 sampling model** (here Bernoulli), a **link function**
            (here the logit) that maps the expected value to the real line, and a
            **structural model** at level 1 and level 2 on the scale of that link, written as
            for a Gaussian outcome. There is no level-1 residual $e_{ij}$: given $p_{ij}$,
            the variance of $y_{ij}$ is $p_{ij}(1 - p_{ij})$.

            The notebook fits `models/contraception.toml` (random intercept and random urban
            effect over districts), reads the estimates as odds ratios, an intraclass
            correlation on the latent scale and predicted probabilities per district, and
            compares the posterior with the Laplace maximum-likelihood fit (lme4's `glmer`).
            A short last part fits a Poisson model with an exposure and two crossed factors.
            """),
        code(SETUP),
        md(r"""
            ## 1. The model as HLM writes it

            The model file states the link on the level-1 line, `logit(use) = b0 + ...`, and
            has no `e`. `livch` is a category: $\beta_3$ has one element per level other than
            the reference `0`, each multiplying that level's indicator.
            """),
        code("""
            spec = bm.Spec.from_file("../models/contraception.toml")
            data = bm.load_data(spec)
            women = data.groupby("district").agg(n=("use", "size"), urban=("urban", "sum"))
            print(spec)
            print(f"\\n{len(data)} women in {len(women)} districts ({women.n.min()} to "
                  f"{women.n.max()} each); {(women.urban == 0).sum()} districts have no "
                  f"urban women in the sample, {(women.urban == women.n).sum()} only urban ones")
            eq = bm.equations(spec, data)
            display(eq.levels, eq.distributions)
            """),
        md(r"""
            In R & B's terms: the level-1 sampling model is
            $y_{ij} \mid p_{ij} \sim \operatorname{Bernoulli}(p_{ij})$, the link is
            $\eta_{ij} = \operatorname{logit}(p_{ij}) = \log\{p_{ij}/(1-p_{ij})\}$, and the
            level-1 structural model is linear in $\eta_{ij}$. At level 2 the intercept and
            the urban effect vary over districts, $(U_{0j}, U_{1j}) \sim N(\mathbf{0}, T)$;
            age and children have one coefficient for all districts.

            The priors are on the link scale: $\alpha$, the log-odds at the predictors'
            means, is centred at the logit of the pooled proportion (0.392, logit −0.437).

            ## 2. The posterior
            """),
        code("""
            fit = bm.fit(spec, data, draws=500, tune=500, chains=4, random_seed=22,
                         progressbar=False)
            print(fit.likelihood, "likelihood;",
                  {k: round(v, 1) for k, v in fit.timings.items()})
            summary = bm.summarize(fit)
            summary
            """),
        md(r"""
            All estimates are on the logit scale: $\gamma_{00}$ is the log-odds of use for a
            rural woman of mean age with no living children in a district with $U_{0j} = 0$.
            The two SDs and their correlation are the square roots and the correlation of
            $T$. The last row, `icc`, is explained in section 4.

            ## 3. Odds ratios

            $\exp(\gamma)$ multiplies the odds of use, with the district's random effects and
            the other predictors held fixed (a *unit-specific* effect in R & B's terms, not
            a population-average one). Its posterior is $\exp$ of the draws of $\gamma$; the
            quantiles of $\exp(\gamma)$ are $\exp$ of the quantiles of $\gamma$, but its mean
            is not $\exp$ of the mean, so the table gives the median.
            """),
        code("""
            beta = fit.posterior["beta"]
            odds_ratios = pd.DataFrame({
                "median": np.exp(beta.median(("chain", "draw"))),
                "2.5%": np.exp(beta.quantile(0.025, ("chain", "draw"))),
                "97.5%": np.exp(beta.quantile(0.975, ("chain", "draw"))),
                "P(OR > 1)": (beta > 0).mean(("chain", "draw")),
            }, index=beta["fixed"].to_index())
            odds_ratios.drop(index="g00 (Intercept)").round(3)
            """),
        md(r"""
            In a given district, an urban woman's odds of use are about 2.3 times a rural
            woman's (at the mean urban effect, $U_{1j} = 0$); each year of age multiplies the
            odds by about 0.97; having any living child multiplies them by about 3 to 4
            relative to none, with little difference between one, two and three or more.
            $\exp(\gamma_{00})$ is not a ratio but the odds themselves for the reference
            woman described above:
            """),
        code("""
            g00 = beta.sel(fixed="g00 (Intercept)")
            p00 = 1 / (1 + np.exp(-g00))
            print(f"odds {float(np.exp(g00.median())):.3f}, probability {float(p00.median()):.3f} "
                  f"(95% interval {float(p00.quantile(0.025)):.3f} to "
                  f"{float(p00.quantile(0.975)):.3f})")
            """),
        md(r"""
            ## 4. The intraclass correlation on the latent scale

            A Bernoulli outcome has no level-1 variance parameter, so the Gaussian ICC
            $\tau_{00} / (\tau_{00} + \sigma^2)$ has no direct analogue. The usual one
            (Snijders & Bosker; R & B, ch. 10) writes the model as a threshold model for a
            latent continuous $y^*_{ij} = \eta_{ij} + r_{ij}$ with $y_{ij} = 1$ when
            $y^*_{ij} > 0$: the logit link is the case where $r_{ij}$ has the standard
            logistic distribution, whose variance is $\pi^2/3 \approx 3.29$. The share of the
            latent variance that lies between districts is then
            $\tau_{00} / (\tau_{00} + \pi^2/3)$.

            With a random urban slope the district variance depends on `urban`:
            $\operatorname{Var}(U_{0j} + U_{1j}\,\text{urban}) = \tau_{00} + 2\tau_{01}\,
            \text{urban} + \tau_{11}\,\text{urban}^2$. The summary's `icc` row is the ICC at
            `urban` = 0, from $\tau_{00}$ alone, i.e. for rural women. Below it is recomputed
            from the draws of $T$, beside the ICC for urban women
            ($\tau_{00} + 2\tau_{01} + \tau_{11}$).
            """),
        code(r"""
            post = fit.posterior
            sd0 = post["sd_u"].sel(random="U0 (Intercept)").to_numpy()
            sd1 = post["sd_u"].sel(random="U1 (urban)").to_numpy()
            r01 = post["corr_u"].sel(random="U0 (Intercept)", random2="U1 (urban)").to_numpy()
            between = {"rural (urban = 0)": sd0**2,
                       "urban (urban = 1)": sd0**2 + 2 * r01 * sd0 * sd1 + sd1**2}
            icc = pd.DataFrame({
                name: {"between-district variance": np.median(v),
                       "ICC median": np.median(v / (v + np.pi**2 / 3)),
                       "ICC 2.5%": np.quantile(v / (v + np.pi**2 / 3), 0.025),
                       "ICC 97.5%": np.quantile(v / (v + np.pi**2 / 3), 0.975)}
                for name, v in between.items()}).T
            t00 = np.median(between["rural (urban = 0)"])
            display(Math(rf"\tau_{{00}} / (\tau_{{00}} + \pi^2/3) = {t00:.3f} / ({t00:.3f} + "
                         rf"{np.pi**2 / 3:.3f}) = {t00 / (t00 + np.pi**2 / 3):.3f}"
                         r"\quad\text{(posterior medians)}"))
            display(icc.round(3))
            print("summary's icc row: mean {mean:.3f}, 95% interval {eti95_lb:.3f} to "
                  "{eti95_ub:.3f}".format(**summary.table.loc["icc"]))
            print(f"tau01 / tau00, the regression of U1 on U0: {np.median(r01 * sd1 / sd0):.2f} "
                  "(median)")
            """),
        md(r"""
            About a tenth of the latent variance lies between districts, for rural and for
            urban women alike: the negative correlation of $U_{0j}$ and $U_{1j}$ means that
            districts with low rural use have larger urban effects, which narrows the
            differences between districts among urban women. This ICC is on the latent logit
            scale; it is not the correlation of two women's 0/1 outcomes in one district.

            ## 5. Predicted probabilities by district

            For a woman of mean age with no living children, rural and urban, in each
            district and in a district the fit never saw (`district` 99).
            `bm.predict(..., scale="response")` gives draws of
            $p = \operatorname{logit}^{-1}(X\gamma + ZU)$; a known district uses its posterior
            $U_j$, the new one draws $U_j \sim N(\mathbf{0}, T)$ for every posterior draw.
            """),
        code("""
            districts = [*sorted(data["district"].unique()), 99]
            new = pd.DataFrame({"district": np.repeat(districts, 2),
                                "urban": np.tile([0, 1], len(districts)),
                                "age": data["age"].mean(), "livch": "0"})
            pred = bm.predict(fit, new, scale="response", random_seed=1)
            print("new districts:", pred.new_clusters)
            p = new.join(pred.summary()).pivot(index="district", columns="urban",
                                              values=["mean", "lower 95%", "upper 95%"])
            short = {"mean": "mean", "lower 95%": "2.5%", "upper 95%": "97.5%"}
            p.columns = [f"{'urban' if u else 'rural'} {short[c]}" for c, u in p.columns]
            p = p[sorted(p.columns, key=lambda c: c.startswith("urban"))].join(
                women.rename(columns={"urban": "n urban"}).astype("Int64"))
            p.loc[[1, 2, 14, 60, 99]].round(3)
            """),
        md(r"""
            The new district's intervals are the widest: its $U_j$ is known only through $T$.
            Districts with few women are shrunk towards the mean and have wide intervals too.
            A district with no urban women in the sample (district 2 above; hollow points
            below) still has an urban prediction, but its own data say little about it:
            $\tau_{01}/\tau_{00} \approx -1$ (section 4), so $E(U_{1j} \mid U_{0j}) \approx
            -U_{0j}$ and the urban log-odds $\gamma_{00} + \gamma_{10} + U_{0j} + U_{1j}$ is
            expected near $\gamma_{00} + \gamma_{10}$ whatever the district's rural level.
            These predictions all lie near 0.31, as the new district's does, with intervals
            almost as wide.
            """),
        code("""
            order = [*p.drop(index=99).sort_values("rural mean").index, 99]
            x = np.arange(len(order), dtype=float)
            x[-1] += 1.5  # the new district, set apart
            no_urban = p.loc[order, "n urban"].to_numpy() == 0
            fig, ax = plt.subplots(figsize=(11, 4.2))
            for area, colour, dx in [("rural", "C0", -0.17), ("urban", "C3", 0.17)]:
                m, lo, hi = (p.loc[order, f"{area} {c}"].to_numpy()
                             for c in ["mean", "2.5%", "97.5%"])
                ax.errorbar(x + dx, m, yerr=[m - lo, hi - m], fmt="none", ecolor=colour,
                            elinewidth=0.8, alpha=0.6)
                hollow = no_urban if area == "urban" else np.zeros_like(no_urban)
                ax.plot(x[~hollow] + dx, m[~hollow], "o", ms=4, color=colour, label=area)
                if hollow.any():
                    ax.plot(x[hollow] + dx, m[hollow], "o", ms=4, mfc="white", color=colour,
                            label="urban, no urban women in the sample")
            ax.set_xticks(x, [str(d) if d != 99 else "new" for d in order], fontsize=6,
                          rotation=90)
            ax.axvline((x[-2] + x[-1]) / 2, color="0.6", lw=0.8, ls=":")
            ax.set_xlim(-1, x[-1] + 1)
            ax.set_ylim(0, 0.8)
            ax.set_xlabel("district (ordered by the rural prediction)")
            ax.set_ylabel("P(use)")
            ax.set_title("Predicted probability of contraceptive use, woman of mean age with "
                         "no living children (posterior mean, 95% interval)", fontsize=10)
            ax.legend(frameon=False, fontsize=8, loc="upper left")
            fig.tight_layout()
            plt.show()
            """),
        md(r"""
            ## 6. Laplace maximum likelihood, against lme4

            For a non-Gaussian family `bm.fit_reml` maximises the Laplace approximation to
            the marginal likelihood, as `glmer` does by default (`nAGQ = 1`); there is no
            REML for these models. The pinned `glmer` fit (`tests/reference/glmm`) is printed
            beside it.
            """),
        code("""
            import json

            ml = bm.fit_reml(spec, data)
            glmer = json.load(open("../tests/reference/glmm/contraception_laplace.json"))
            print(ml)
            print(f"\\nglmer deviance {glmer['criterion']:.3f}, SDs "
                  f"{[round(s, 6) for s in glmer['random'][0]['sd']]}, correlation "
                  f"{glmer['random'][0]['corr'][0][1]:.4f}")
            """),
        md(r"""
            `bm.compare` sets each posterior beside the ML estimate (its column is named
            `REML` for every fit; here it holds the Laplace ML values). With 60 districts the
            two agree closely. The posterior means of the SDs are a little larger than the ML
            estimates, which are modes and tend to be small; the correlation's posterior is
            wide and skewed, its mean less extreme than the ML estimate.
            """),
        code("""
            cmp = bm.compare(fit, ml)
            cmp.table[["REML", "REML SE", "mean", "2.5%", "97.5%", "z", "verdict"]].round(4)
            """),
        md(r"""
            ## 7. A Poisson model with an exposure and crossed factors

            `models/crossed_poisson.toml` holds counts simulated by
            `data/simulate_crossed_poisson.py`: 1,200 rows, each in one of 30 units of
            factor `a` and one of 20 units of factor `b`, crossed. The level-1 sampling model is
            $y_{ijk} \sim \operatorname{Poisson}(t_{ijk}\lambda_{ijk})$ with exposure
            $t_{ijk}$ (time at risk), the link is $\log$, and the structural model is
            $\log\lambda_{ijk} = \gamma_{00} + \gamma_{10} x_{ijk} + U_{0j} + V_{0k}$. In the
            formula the exposure is the offset $\log t$.
            """),
        code("""
            pspec = bm.Spec.from_file("../models/crossed_poisson.toml")
            pdata = bm.load_data(pspec)
            display(bm.equations(pspec, pdata).levels)
            pfit = bm.fit(pspec, pdata, draws=500, tune=500, chains=4, random_seed=25,
                          progressbar=False)
            bm.summarize(pfit)
            """),
        md(r"""
            $\exp(\gamma)$ is now a rate ratio: a unit more of `x` multiplies the expected
            count per unit of exposure by $\exp(\gamma_{10})$; $\exp(\gamma_{00})$ is the rate
            at $x = 0$ for units with $U_{0j} = V_{0k} = 0$. The simulation's values
            (`data/crossed_poisson_truth.json`) are shown beside them.
            """),
        code("""
            truth = json.load(open("../data/crossed_poisson_truth.json"))
            pbeta = pfit.posterior["beta"]
            pd.DataFrame({
                "median": np.exp(pbeta.median(("chain", "draw"))),
                "2.5%": np.exp(pbeta.quantile(0.025, ("chain", "draw"))),
                "97.5%": np.exp(pbeta.quantile(0.975, ("chain", "draw"))),
                "simulated": np.exp([truth["b0"], truth["b1"]]),
            }, index=pbeta["fixed"].to_index()).round(3)
            """),
        md(r"""
            `bm.reconstruct` puts the linear predictor together from the explicit $X$, each
            $Z_g$ and the posterior means: $\eta = X\bar\gamma + Z_a\bar U + Z_b\bar V +
            \log t$ and $\mu = \exp(\eta) = t\lambda$, the expected count beside $y$. (In this
            table $\eta$ includes the offset.) There is no $e$ to add back, so $y$ is not
            rebuilt exactly; the check is that the parts sum to $\eta$, and that the PyMC
            graph's log-likelihood equals one computed from $X$ and $Z$.
            """),
        code("""
            rec = bm.reconstruct(pfit)
            tab = rec.table
            print(tab.head(8).round(3).to_string())
            parts = tab["Xb"] + tab["Zu[a]"] + tab["Zu[b]"] + tab["offset"]
            print("max |eta - (Xb + Zu[a] + Zu[b] + log t)| =", (tab["eta"] - parts).abs().max())
            print("max |mu - exp(eta)| =", (tab["mu"] - np.exp(tab["eta"])).abs().max())
            print("graph vs explicit log-likelihood:", rec.graph_max_abs_error)
            """),
    ]


# --------------------------------------------------------------------------------------------
# 07: centring, transformations, sampling weights, heterogeneous σ
# --------------------------------------------------------------------------------------------
@notebook("07_centring_transformations_weights")
def centring_notebook() -> Cells:
    """R&B ch. 5 centring and contextual effects, R's transformations, weights, σ by group."""
    return [
        md(r"""
            # Centring, contextual effects, transformations, weights and σ by group

            What HLM users write after the random-intercept model, on High School and Beyond
            (7,185 students in 160 schools) and sleepstudy:

            1. **Centring** (Raudenbush & Bryk, ch. 5): SES centred at its school mean,
               `group(SES)`; the school mean of SES at level 2, `mean(SES)` (the
               **contextual effect**); MEANSES centred at its grand mean, `grand(MEANSES)`.
            2. **Transformations** in formulas and equations: `poly()`, `log()`, `I()`,
               `scale()`, ordered factors.
            3. **Sampling weights** at level 1 and level 2 (`bm.Weights`).
            4. **Heterogeneous level-1 variance**: one residual SD per sector (`sigma_by`).

            Every REML number here equals lme4's or nlme's on the same columns
            (`tests/test_transforms.py`, `tests/test_weights.py`, `tests/test_sigma_by.py`).
            """),
        code(SETUP),
        md(r"""
            ## 1. Group-mean centring and the contextual effect

            The model file `models/hsb_contextual.toml` writes the centring in the equations.
            The equations show the centred terms as R&B write them.
            """),
        code("""
            spec = bm.Spec.from_file("../models/hsb_contextual.toml")
            hsb = bm.load_data(spec)
            print(spec.to_formula())
            bm.equations(spec).levels
            """),
        code("""
            design = bm.build_design(spec, hsb)
            # the constants the fit keeps and predict re-applies to new data
            fitted = design.fitted
            print("grand mean of MEANSES over the 160 schools:",
                  round(fitted["grand(MEANSES)"].grand, 5),
                  "| over the 7,185 students:", round(hsb["MEANSES"].mean(), 5))
            design.X_frame.head()
            """),
        md(r"""
            With SES centred at the school mean, the level-1 slope $\gamma_{10}$ is the
            **within-school** effect of SES and the coefficient of the school mean,
            $\gamma_{01}$, the **between-school** effect. With SES centred at the grand mean
            instead, the coefficient of the school mean is the **contextual effect**, between
            minus within (R&B, section 5.2): the same model, another parametrisation.
            """),
        code("""
            within_between = bm.Spec.from_equations(
                "MathAch = b0 + b1*group(SES) + e\\n"
                "b0 = g00 + g01*mean(SES) + U0\\n"
                "b1 = g10", cluster="School")
            contextual = bm.Spec.from_equations(
                "MathAch = b0 + b1*grand(SES) + e\\n"
                "b0 = g00 + g01*mean(SES) + U0\\n"
                "b1 = g10", cluster="School")
            wb = bm.fit_reml(within_between, hsb)
            ctx = bm.fit_reml(contextual, hsb)
            pd.DataFrame({"group-mean centred": wb.beta.to_numpy(),
                          "grand-mean centred": ctx.beta.to_numpy()},
                         index=["γ00", "γ10 (SES)", "γ01 (school mean SES)"]).round(3)
            """),
        code("""
            between, within = wb.beta.iloc[2], wb.beta.iloc[1]
            print(f"between {between:.3f} - within {within:.3f} = {between - within:.3f}"
                  f" = contextual effect {ctx.beta.iloc[2]:.3f}")
            """),
        md(r"""
            The Bayesian fit of the model file, and a prediction for a student of school
            1224 whose SES is one unit above the school's (fitted) mean: `group(SES)` is then
            1 and `mean(SES)` the school's mean in the fitted data.
            """),
        code("""
            fit = bm.fit(spec, hsb, draws=500, tune=500, chains=2, random_seed=7,
                         progressbar=False)
            print(bm.summarize(fit, warn=False))
            school = hsb[hsb["School"] == 1224]
            new = school.iloc[[0]].assign(SES=school["SES"].mean() + 1.0)
            bm.predict(fit, new).summary()
            """),
        md(r"""
            ## 2. Transformations

            R's functions are written inline and kept in the design with their fitted
            constants: `poly(Days, 2)` holds the coefficients of R's orthogonal polynomials,
            so `predict` evaluates them at new days as R's `predict(poly(...))` does.
            """),
        code("""
            sleep = pd.read_csv("../data/sleepstudy.csv", dtype={"Subject": str})
            quad = bm.Spec.from_formula("Reaction ~ poly(Days, 2) + (Days | Subject)")
            print(bm.equations(quad).levels)
            quad_fit = bm.fit_reml(quad, sleep)
            print(quad_fit.beta.round(3))
            logs = bm.fit_reml(bm.Spec.from_formula(
                "log(Reaction) ~ log(Days + 1) + I(Days^2) + (1 | Subject)"), sleep)
            print(logs.beta.round(5))
            """),
        md(r"""
            An **ordered** pandas categorical is coded like an ordered factor in R, with
            orthogonal polynomial contrasts (`.L`, `.Q`, `.C`): linear, quadratic and cubic
            trends over the periods.
            """),
        code("""
            periods = sleep.assign(period=pd.Categorical(np.minimum(sleep["Days"] // 3, 3),
                                                         ordered=True))
            ordered_fit = bm.fit_reml(bm.Spec.from_formula("Reaction ~ period + (1 | Subject)"),
                                      periods)
            ordered_fit.beta.round(3)
            """),
        md(r"""
            ## 3. Sampling weights

            HSB has no weights, so this section makes some from its own columns (as if
            minority students and girls had been sampled at lower rates): $w_{i|j}$ = 1 +
            [minority] + 0.5 [female] at level 1, and school weights 1, 2, 3 in turn at
            level 2. Level-1 weights are scaled to sum to each school's size (the default,
            Asparouhov 2006), level-2 weights to sum to the number of schools.
            """),
        code("""
            weighted = hsb.assign(
                w_student=1 + (hsb["Minority"] == "Yes") + 0.5 * (hsb["Sex"] == "Female"),
                w_school=hsb["School"].map({s: 1 + i % 3 for i, s in
                                            enumerate(sorted(hsb["School"].unique()))}))
            rc = bm.Spec.from_formula("MathAch ~ SES + (SES | School)")
            w = bm.Weights(level1="w_student", level2="w_school")
            table = pd.DataFrame({
                "unweighted ML": bm.fit_reml(rc, weighted, method="ML").beta,
                "pseudo-ML": bm.fit_reml(rc, weighted, method="ML", weights=w).beta})
            table.round(3)
            """),
        code("""
            wfit = bm.fit(rc, weighted, weights=w, draws=500, tune=500, chains=2,
                          random_seed=8, progressbar=False)
            print(bm.summarize(wfit, warn=False))
            """),
        md(r"""
            The weighted posterior is a *pseudo-posterior*: its centre is the
            design-consistent estimate, its spread is not a design-based standard error
            (README, "Sampling weights").

            ## 4. A residual SD per sector

            HLM's heterogeneous level-1 variance and nlme's `varIdent(form = ~ 1 | Sector)`:
            `sigma_by="Sector"`.
            """),
        code("""
            het = rc.with_options(sigma_by="Sector")
            het_reml = bm.fit_reml(het, hsb)
            print(het_reml)
            print(bm.equations(het).distributions)
            """),
        code("""
            het_fit = bm.fit(het, hsb, draws=500, tune=500, chains=2, random_seed=9,
                             progressbar=False)
            het_fit.posterior["sigma"].mean(("chain", "draw")).to_series().round(3)
            """),
    ]


def build(name: str) -> nbformat.NotebookNode:
    """The notebook ``name`` with fresh, deterministic cell ids and no outputs."""
    cells = NOTEBOOKS[name]()
    prefix = name.split("_")[0]
    for i, cell in enumerate(cells):
        cell["id"] = f"nb{prefix}-{i:02d}"
    return new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)",
                           "language": "python"},
            "language_info": {"name": "python"},
        },
    )


def execute(nb: nbformat.NotebookNode, timeout: int = 900) -> nbformat.NotebookNode:
    """Run ``nb`` in place in a fresh ``python3`` kernel with this folder as working directory."""
    from nbclient import NotebookClient

    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=timeout,
        record_timing=False,
        resources={"metadata": {"path": str(HERE)}},
    )
    client.execute()
    return nb


def main(argv: list[str] | None = None) -> int:
    """Command line: write (and with ``--execute`` run) the notebooks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", help="build only notebooks whose name contains this")
    parser.add_argument("--execute", action="store_true", help="execute and keep the outputs")
    args = parser.parse_args(argv)
    names = [n for n in NOTEBOOKS if not args.only or any(s in n for s in args.only)]
    for name in names:
        nb = build(name)
        path = HERE / f"{name}.ipynb"
        if args.execute:
            start = time.perf_counter()
            execute(nb)
            print(f"{path.name}: executed in {time.perf_counter() - start:.1f} s", flush=True)
        nbformat.validate(nb)
        nbformat.write(nb, path)
        print(f"wrote {path.relative_to(HERE.parent)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
