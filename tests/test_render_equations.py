"""equations(): the seeds' models, the dung matrix display, estimates, categorical and fixed
slopes, elision."""

from __future__ import annotations

import json
import math
import os
import re
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from render_support import (
    GOLDEN,
    ROOT,
    SEED_CROSS_LEVEL,
    SEED_RANDOM_SLOPE,
    dung_data,
    dung_spec,
    fake_fit,
    seed_dung_reml,
    seed_spec,
)

from bayesmix import Spec, build_design
from bayesmix.errors import BayesmixError
from bayesmix.render import equations, ir, latex
from bayesmix.render.equations import FORMS

UPDATE = os.environ.get("BAYESMIX_UPDATE_GOLDEN") == "1"


def _norm(s: str) -> str:
    return re.sub(r"\s+", "", s)


def _terms(eq_latex: str) -> tuple[str, list[str]]:
    lhs, rhs = eq_latex.split("=", 1)
    return _norm(lhs), [_norm(t) for t in rhs.split("+")]


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE or not path.exists():
        path.write_text(text + "\n", encoding="utf-8")
    assert text + "\n" == path.read_text(encoding="utf-8"), f"differs from golden {name}"


# ---------------------------------------------------------------------------- seeds
@pytest.mark.parametrize(
    ("model", "golden"), [(SEED_RANDOM_SLOPE, "seed_eq1.tex"), (SEED_CROSS_LEVEL, "seed_eq3.tex")]
)
def test_combined_equals_seed_answer_term_by_term(model, golden):
    seed_lhs, seed_terms = _terms((GOLDEN / golden).read_text())
    spec = seed_spec(model)
    # grouping="coefficient": the seed answer's own order, term by term
    eq = equations(spec, grouping="coefficient").combined.equations[0]
    lhs, terms = _terms(latex.equation(eq))
    assert lhs == seed_lhs
    assert terms == seed_terms
    # default: the same terms, fixed part first, then random part, then ε
    lhs, terms = _terms(latex.equation(equations(spec).combined.equations[0]))
    assert lhs == seed_lhs
    assert sorted(terms) == sorted(seed_terms)
    kinds = ["U" if t.startswith("U_") else "e" if t.startswith(r"\epsilon") else "g"
             for t in terms]
    assert kinds == sorted(kinds, key="gUe".index)


def test_cross_level_interaction_is_named():
    eq = equations(seed_spec(SEED_CROSS_LEVEL))
    assert r"\gamma_{11} \text{: cross-level interaction } X \times M" in eq.combined.latex
    assert "γ_11: cross-level interaction X × M" in eq.combined.text
    assert "cross-level interaction $X \\times M$" in eq.combined.markdown
    assert "cross-level" not in equations(seed_spec(SEED_RANDOM_SLOPE)).combined.text


def test_levels_of_seed_model():
    eq = equations(seed_spec(SEED_CROSS_LEVEL)).levels
    rendered = [latex.equation(e) for e in eq.equations]
    assert rendered == [
        r"y_{ij} = \beta_{0j} + \beta_{1j} \cdot X_{ij} + \epsilon_{ij}",
        r"\beta_{0j} = \gamma_{00} + \gamma_{01} \cdot M_{j} + U_{0j}",
        r"\beta_{1j} = \gamma_{10} + \gamma_{11} \cdot M_{j} + U_{1j}",
    ]
    assert eq.text.splitlines()[0] == "Level 1: y_ij = β_0j + β_1j·X_ij + ε_ij"


def test_matrix_cluster_as_the_seed_question():
    form = equations(seed_spec(SEED_CROSS_LEVEL)).matrix_cluster
    full = latex.equation(form.equations[1])
    # X_j: [1 X M MX], γ in X's column order, Z_j: [1 X], as the seed question writes them
    assert r"\begin{bmatrix} 1 & X_{1j} & M_{j} & M_{j} \cdot X_{1j} \\" in full
    gammas = r"\gamma_{00} \\ \gamma_{10} \\ \gamma_{01} \\ \gamma_{11}"
    assert r"\begin{bmatrix} " + gammas + r" \end{bmatrix}" in full
    assert r"\begin{bmatrix} 1 & X_{1j} \\" in full
    assert r"\begin{bmatrix} U_{0j} \\ U_{1j} \end{bmatrix}" in full
    assert r"\begin{bmatrix} y_{1j} \\ \vdots \\ y_{n_{j}j} \end{bmatrix}" in full
    assert r"\begin{bmatrix} \epsilon_{1j} \\ \vdots \\ \epsilon_{n_{j}j} \end{bmatrix}" in full


@pytest.mark.parametrize(
    ("name", "model"), [("seed_random_slope", SEED_RANDOM_SLOPE),
                        ("seed_cross_level", SEED_CROSS_LEVEL)]
)
def test_golden_symbolic(name, model):
    eq = equations(seed_spec(model))
    _golden(f"{name}.tex", eq.latex)
    _golden(f"{name}.md", eq.markdown)
    _golden(f"{name}.txt", eq.text)


# ---------------------------------------------------------------------------- dung
def _matrices(eq: ir.Equation) -> list[ir.Matrix]:
    out: list[ir.Matrix] = []

    def walk(n):
        if isinstance(n, ir.Matrix):
            out.append(n)
        elif isinstance(n, ir.Sum):
            for t in n.terms:
                walk(t)
        elif isinstance(n, ir.Product):
            for f in n.factors:
                walk(f)

    walk(eq.lhs)
    walk(eq.rhs)
    return out


def _cells(m: ir.Matrix) -> list[list[str]]:
    return [[latex.node(c) for c in row] for row in m.rows]


def _value(rendered: str) -> float:
    m = re.fullmatch(r"(-?[\d.]+)(?: \\times 10\^\{(-?\d+)\})?", rendered)
    assert m, rendered
    return float(m.group(1)) * (10 ** int(m.group(2)) if m.group(2) else 1)


def _half_unit(shown: str) -> float:
    """Half a unit in the last printed digit of a number as printed."""
    mant, _, exp = shown.replace(r" \times 10^{", "e").rstrip("}").partition("e")
    places = -Decimal(mant).as_tuple().exponent
    return 0.5 * 10.0 ** (-places + (int(exp) if exp else 0))


def _close(mine: str, seed: str) -> bool:
    seed_tex = seed if "e" not in seed else seed.replace("e", r" \times 10^{") + "}"
    tol = _half_unit(mine) + _half_unit(seed_tex) + 1e-15
    return abs(_value(mine) - _value(seed_tex)) <= tol


SEED = json.loads((GOLDEN / "dung_seed_display.json").read_text())


def test_dung_matrix_with_data_has_the_seeds_X_Z_and_y():
    eq = equations(dung_spec(), dung_data())
    y, x, beta, z, u, e = _matrices(eq.matrix.equations[1])
    assert [r[0] for r in _cells(y)] == SEED["Y"]
    assert _cells(x) == SEED["X"]
    assert _cells(z) == SEED["Z"]
    assert _cells(beta) == [[r"\gamma_{00}"], [r"\gamma_{10}"]]
    assert _cells(u) == [["U_{0,1}"], ["U_{0,2}"], ["U_{0,3}"]]
    assert len(_cells(e)) == 18
    tex = eq.matrix.latex
    assert r"\begin{bmatrix} 1 & 223 \\ 1 & 0 \\ 1 & 100 \\" in tex
    assert r"\begin{bmatrix} 1 & 0 & 0 \\ 1 & 0 & 0 \\" in tex
    assert r"\vdots" not in tex  # 18 rows <= max_rows: nothing elided


def _check_seed_numbers(eq):
    _y, x, beta, z, u, e = _matrices(eq.matrix.equations[1])
    assert _cells(x) == SEED["X"] and _cells(z) == SEED["Z"]
    for name, m in (("beta", beta), ("u", u), ("e", e)):
        mine = [r[0] for r in _cells(m)]
        bad = [(a, b) for a, b in zip(mine, SEED[name], strict=True) if not _close(a, b)]
        assert not bad, (name, bad)
    y2, xb, zu, _e2 = _matrices(eq.matrix.equations[2])
    for name, m in (("Xbeta", xb), ("Zu", zu), ("Y", y2)):
        mine = [r[0] for r in _cells(m)]
        bad = [(a, b) for a, b in zip(mine, SEED[name], strict=True) if not _close(a, b)]
        assert not bad, (name, bad)


def test_dung_reml_reproduces_the_seed_display():
    eq = equations(dung_spec(), reml=seed_dung_reml())
    _check_seed_numbers(eq)
    _golden("dung_reml.tex", eq.latex)
    _golden("dung_reml.md", eq.markdown)
    _golden("dung_reml.txt", eq.text)


def test_dung_real_reml_fit_reproduces_the_seed_display():
    reml_mod = pytest.importorskip("bayesmix.reml")
    reml = reml_mod.fit_reml(build_design(dung_spec(), dung_data()))
    # an optimiser's estimates agree with nlme's to ~3e-6 relative, so compare at 4 digits
    _check_seed_numbers(equations(dung_spec(), reml=reml, digits=4))


def _printed_matches(shown: str, value: float) -> bool:
    return abs(_value(shown) - value) <= _half_unit(shown) * (1 + 1e-9) + 1e-300


def test_reml_estimates_substituted_to_printed_precision():
    reml = seed_dung_reml()
    eq = equations(dung_spec(), reml=reml)
    combined = latex.equation(eq.combined.equations[0])
    assert combined.startswith(r"y_{ij} = 0.1662317 - 3.466743 \times 10^{-5} \cdot ")
    levels = [latex.equation(e) for e in eq.levels.equations]
    assert levels[1] == r"\beta_{0j} = 0.1662317 + U_{0j}"
    assert levels[2] == r"\beta_{1j} = -3.466743 \times 10^{-5}"
    _, _, _, _, u, e = _matrices(eq.matrix.equations[1])
    for shown, value in zip([r[0] for r in _cells(u)], reml.u.iloc[:, 0], strict=True):
        assert _printed_matches(shown, value)
    for shown, value in zip([r[0] for r in _cells(e)], reml.residuals, strict=True):
        assert _printed_matches(shown, value)
    dist = [latex.equation(x) for x in eq.distributions.equations]
    t_hat = next(d for d in dist if d.startswith(r"\hat{T}"))
    assert _printed_matches(t_hat.split("= ")[1], 0.01448387**2)
    sigma_hat = next(d for d in dist if d.startswith(r"\hat{\sigma}"))
    assert _printed_matches(sigma_hat.split("= ")[1], 0.007951288)


@pytest.mark.parametrize("digits", [3, 7])
def test_fit_posterior_means_substituted(digits):
    spec = seed_spec(SEED_CROSS_LEVEL)
    rng = np.random.default_rng(3)
    data = pd.DataFrame({"cluster": np.repeat(["a", "b", "c", "d"], 5),
                         "X": rng.normal(size=20), "M": np.repeat(rng.normal(size=4), 5)})
    data["y"] = rng.normal(size=20)
    fit = fake_fit(build_design(spec, data))
    eq = equations(spec, fit=fit, digits=digits)
    means = fit.posterior["beta"].mean(("chain", "draw"))
    # γ's in the level-2 equations and in the combined equation
    g00 = float(means.sel(fixed="g00 (Intercept)"))
    b0 = latex.equation(eq.levels.equations[1])
    assert _printed_matches(b0.split("= ")[1].split(" ")[0], g00)
    combined = eq.combined.equations[0].rhs
    first = combined.terms[0]
    assert isinstance(first, ir.Num) and _printed_matches(latex.node(first), g00)
    # β and u in the whole-data matrix form, in X's column order and cluster order
    _, _, beta, _, u, _ = _matrices(eq.matrix.equations[1])
    for shown, name in zip([r[0] for r in _cells(beta)], fit.design.fixed_names, strict=True):
        assert _printed_matches(shown, float(means.sel(fixed=name)))
    u_mean = fit.posterior["u"].mean(("chain", "draw")).to_numpy()
    for shown, value in zip([r[0] for r in _cells(u)], u_mean.ravel(), strict=True):
        assert _printed_matches(shown, float(value))
    sigma = float(fit.posterior["sigma"].mean())
    dist = [latex.equation(x) for x in eq.distributions.equations]
    assert _printed_matches(next(d for d in dist if d.startswith(r"\hat{\sigma}")).split("= ")[1],
                            sigma)
    assert "posterior means" in eq.combined.text


def test_fit_and_reml_together_is_an_error():
    with pytest.raises(BayesmixError, match="not both"):
        equations(dung_spec(), fit=object(), reml=object())


# ---------------------------------------------------------------------------- coefficients
def test_fixed_slope_written_with_j():
    eq = equations(dung_spec())
    lv = [latex.equation(e) for e in eq.levels.equations]
    assert lv[2] == r"\beta_{1j} = \gamma_{10}"
    assert "no U: β_1j is the same in every cluster" in eq.levels.text
    assert latex.equation(eq.combined.equations[0]) == (
        r"y_{ij} = \gamma_{00} + \gamma_{10} \cdot \text{flies}_{ij} + U_{0j} + \epsilon_{ij}"
    )
    # Z_j is the intercept column only
    z = _matrices(eq.matrix_cluster.equations[1])[3]
    assert _cells(z) == [["1"], [r"\vdots"], ["1"]]


def test_slope_with_level2_predictor_but_no_u():
    spec = Spec.from_equations(
        "y = b0 + b1*X + e\nb0 = g00 + g01*M + U0\nb1 = g10 + g11*M", cluster="g"
    )
    eq = equations(spec)
    lv = [latex.equation(e) for e in eq.levels.equations]
    assert lv[2] == r"\beta_{1j} = \gamma_{10} + \gamma_{11} \cdot M_{j}"
    combined = latex.equation(eq.combined.equations[0])
    assert combined == (r"y_{ij} = \gamma_{00} + \gamma_{01} \cdot M_{j} + \gamma_{10} \cdot "
                        r"X_{ij} + \gamma_{11} \cdot M_{j} \cdot X_{ij} + U_{0j} + \epsilon_{ij}")
    assert "varies with level-2 predictors only" in eq.levels.text
    assert "cross-level interaction X × M" in eq.combined.text
    _, x, _, z, u, _ = _matrices(eq.matrix_cluster.equations[1])
    assert _cells(z)[0] == ["1"] and _cells(u) == [["U_{0j}"]]
    assert _cells(x)[0] == ["1", "X_{1j}", "M_{j}", r"M_{j} \cdot X_{1j}"]


def _hsb() -> pd.DataFrame:
    return pd.read_csv(ROOT / "data" / "hsb.csv")


def test_categorical_level2_predictor_as_indicator():
    spec = Spec.from_equations(
        "MathAch = b0 + b1*SES + e\nb0 = g00 + g01*Sector + U0\nb1 = g10 + g11*Sector + U1",
        cluster="School", reference={"Sector": "Public"},
    )
    symbolic = latex.equation(equations(spec).combined.equations[0])
    assert r"\gamma_{01} \cdot \text{Sector}_{j}" in symbolic
    eq = equations(spec, _hsb())
    combined = latex.equation(eq.combined.equations[0])
    ind = r"\left[\text{Sector}_{j} = \text{Catholic}\right]"
    assert rf"\gamma_{{01}} \cdot {ind} + " in combined
    assert rf"\gamma_{{11}} \cdot {ind} \cdot \text{{SES}}_{{ij}}" in combined
    assert "γ_11: cross-level interaction SES × [Sector = Catholic]" in eq.combined.text
    assert "[Sector_j = Catholic]" in eq.levels.text
    # the coded column in X holds 0/1
    x = _matrices(eq.matrix.equations[1])[1]
    col = list(eq.design.fixed_names).index("g01 (Sector[Catholic])")
    assert {r[col] for r in _cells(x) if r[col] != r"\vdots"} <= {"0", "1"}


def test_categorical_level1_predictor_with_three_levels():
    rng = np.random.default_rng(0)
    n = 40
    data = pd.DataFrame({
        "g": np.repeat(list("abcd"), 10),
        "grp": rng.choice(["A", "B", "C"], size=n),
        "y": rng.normal(size=n),
    })
    spec = Spec.from_equations("y = b0 + b1*grp + e\nb0 = g00 + U0\nb1 = g10", cluster="g")
    eq = equations(spec, data)
    lv = [latex.equation(e) for e in eq.levels.equations]
    assert lv[0] == (
        r"y_{ij} = \beta_{0j} + \beta_{1\text{[B]}j} \cdot \left[\text{grp}_{ij} = \text{B}\right]"
        r" + \beta_{1\text{[C]}j} \cdot \left[\text{grp}_{ij} = \text{C}\right] + \epsilon_{ij}"
    )
    assert r"\beta_{1\text{[B]}j} = \gamma_{10\text{[B]}}" in lv
    assert "β_1[B]j" in eq.levels.text or "β_{1 [B] j}" in eq.levels.text


def test_variable_names_are_escaped():
    spec = Spec.from_equations(
        "`score%` = b0 + b1*x_1 + b2*`a&b` + e\nb0 = g00 + g01*`größe` + U0\nb1 = g10\nb2 = g20",
        cluster="g",
    )
    tex = equations(spec).latex
    assert r"\text{x\_1}_{ij}" in tex
    assert r"\text{a\&b}_{ij}" in tex
    assert r"\text{größe}_{j}" in tex
    assert "x_1_ij" in equations(spec).levels.text


# ---------------------------------------------------------------------------- whole data
def test_rows_sorted_by_cluster_so_z_is_block_diagonal():
    data = dung_data().sample(frac=1.0, random_state=4)
    eq = equations(dung_spec(), data)
    z = _matrices(eq.matrix.equations[1])[3]
    assert _cells(z) == SEED["Z"]
    assert "rows sorted by oven_block" in eq.matrix.text


def _sleep() -> tuple[Spec, pd.DataFrame]:
    spec = Spec.from_equations(
        "Reaction = b0 + b1*Days + e\nb0 = g00 + U0\nb1 = g10 + U1", cluster="Subject"
    )
    return spec, pd.read_csv(ROOT / "data" / "sleepstudy.csv")


def test_long_matrices_are_elided_past_max_rows():
    spec, data = _sleep()
    eq = equations(spec, data, max_rows=12, max_clusters=3)
    y, _x, _beta, z, u, _e = _matrices(eq.matrix.equations[1])
    data_rows = [r for r in _cells(y) if r[0] != r"\vdots"]
    assert len(data_rows) == 12  # 3 clusters x (3 first rows + last)
    assert z.shape[1] == 3 * 2 + 1  # two shown clusters, ⋯, the last cluster
    assert any(c == r"\ddots" for row in _cells(z) for c in row)
    assert any(c == r"\cdots" for row in _cells(z) for c in row)
    assert len(_cells(u)) == 3 * 2 + 1
    assert "showing 12 of 180 rows and 3 of 18 clusters" in eq.matrix.text
    # block structure: the first shown rows have their values in the first block only
    first = _cells(z)[0]
    assert first[:2] == ["1", "0"] and set(first[2:4]) == {"0"}
    full = equations(spec, data, max_rows=1000)
    y = _matrices(full.matrix.equations[1])[0]
    assert y.shape == (180, 1)
    assert r"\vdots" not in latex.node(y)


def test_symbolic_whole_data_form_without_data():
    form = equations(seed_spec(SEED_CROSS_LEVEL)).matrix
    tex = form.latex
    assert r"\mathbf{Y} &= \mathbf{X}\boldsymbol{\beta} + \mathbf{Z}\mathbf{u} + \mathbf{e}" in tex
    assert (r"\begin{bmatrix} \mathbf{Z}_{1} & 0 & \cdots & 0 \\ 0 & \mathbf{Z}_{2} & \cdots & 0"
            in tex)


def test_distributions_symbolic_and_with_priors():
    spec = dung_spec()
    sym = equations(spec).distributions
    assert "U_0j ~ N(0, T)" in sym.text
    assert "ε_ij ~ N(0, σ²)" in sym.text
    assert "HalfStudentT(ν = 3, σ = s_y)" in sym.text
    from bayesmix import resolve_priors

    data = dung_data()
    eq = equations(spec, data)
    table = dict(resolve_priors(eq.design).table())
    mu = float(re.search(r"mu=([-\d.e]+)",
                         table["g00 (Intercept) at the predictors' means (α)"]).group(1))
    line = next(x for x in eq.distributions.text.splitlines() if "α ~" in x)
    shown = re.search(r"μ = ([-\d.e]+)", line).group(1)
    assert math.isclose(float(shown), mu, rel_tol=1e-3)


def test_every_form_every_format_and_notebook_reprs():
    eq = equations(seed_spec(SEED_CROSS_LEVEL))
    assert [f.name for f in eq.forms] == list(FORMS)
    for f in eq.forms:
        assert f.latex.startswith(r"\begin{aligned}")
        assert f._repr_latex_().startswith("$$")
        assert f._repr_markdown_().startswith("**")
        assert str(f) == f.text
        assert eq[f.name] is f
    assert eq._repr_latex_().startswith("$$\n\\begin{gathered}")
    assert eq.markdown.count("$$") == 2 * len(FORMS)
    with pytest.raises(KeyError):
        eq["nope"]
