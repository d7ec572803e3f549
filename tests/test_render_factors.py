"""equations() of models with several grouping factors (nested, crossed) and of ``||`` blocks.

The checks are properties of the forms against the design, not golden files: the level
equations' symbols and subscripts, one Z partition per factor, the whole-data matrices'
numbers equal to rows of design.y, design.X and each factor's Z (in the cells shown), the
estimates equal to the fit's posterior means.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from render_support import ROOT
from test_render_katex import _items, _render_all, katex  # noqa: F401

from bayesmix import Spec, build_design
from bayesmix.errors import BayesmixError
from bayesmix.render import equations, ir
from bayesmix.render.equations import FORMATS

MODELS = {
    "pastes": ("strength ~ 1 + (1 | batch/cask)", "pastes.csv"),
    "penicillin": ("diameter ~ 1 + (1 | plate) + (1 | sample)", "penicillin.csv"),
    "egsingle": ("math ~ year*black + year*lowinc + (1 + year | schoolid) "
                 "+ (1 + year | schoolid:childid)", "egsingle.csv"),
    "sleepstudy": ("Reaction ~ Days + (Days || Subject)", "sleepstudy.csv"),
}


@dataclass(frozen=True)
class Case:
    spec: Spec
    data: pd.DataFrame
    design: Any


_CACHE: dict[str, Case] = {}


def case(name: str) -> Case:
    if name not in _CACHE:
        formula, file = MODELS[name]
        data = pd.read_csv(ROOT / "data" / file)
        spec = Spec.from_formula(formula, data)
        _CACHE[name] = Case(spec, data, build_design(spec, data))
    return _CACHE[name]


def _texts(form) -> list[str]:
    """Each equation of a form as one line of text."""
    from bayesmix.render import text

    return ["".join(text.equation_box(eq)[0].lines) + "".join(text.equation_box(eq)[1].lines)
            for eq in form.equations]


def _notes(form) -> str:
    from bayesmix.render import text

    out = [text.note(b) for b in form.ir.blocks if isinstance(b, ir.Note)]
    out += [text.note(n) for eq in form.equations for n in eq.notes]
    return "\n".join(out)


# ---------------------------------------------------------------------------- levels
def test_three_levels_in_raudenbush_bryk_notation():
    c = case("egsingle")
    assert dict(c.spec.variable_levels) == {"year": 1, "black": 2, "lowinc": 3}
    form = equations(c.spec, c.data).levels
    lines = _texts(form)
    assert lines[0] == "y_ijk = π_0jk + π_1jk·year_ijk + e_ijk"
    assert lines[1:] == [
        "π_0jk = β_00k + β_01k·black_jk + r_0jk",
        "π_1jk = β_10k + β_11k·black_jk + r_1jk",
        "β_00k = γ_000 + γ_001·lowinc_k + u_00k",
        "β_01k = γ_010",
        "β_10k = γ_100 + γ_101·lowinc_k + u_10k",
        "β_11k = γ_110",
    ]
    labels = [eq.label for eq in form.equations]
    assert labels == ["Level 1", "Level 2", None, "Level 3", None, None, None]
    notes = _notes(form)
    # the subscripts' meaning, and the formula's γ names (g02 is γ_001: lowinc, level 3)
    assert "j: childid within schoolid" in notes and "k: schoolid (60 units)" in notes
    assert "γ_001 = g02" in notes and "γ_010 = g01" in notes


def test_gamma_names_with_one_digit_per_level_are_kept():
    c = case("egsingle")
    names = {"g00": "g000", "g10": "g100", "g01": "g010", "g02": "g001", "g11": "g110",
             "g12": "g101"}
    coefs = tuple(dataclasses.replace(
        co, gammas=tuple(dataclasses.replace(g, name=names[g.name]) for g in co.gammas))
        for co in c.spec.coefficients)
    spec = dataclasses.replace(c.spec, coefficients=coefs)
    form = equations(spec).levels
    assert "β_00k = γ_000 + γ_001·lowinc_k + u_00k" in _texts(form)
    assert "names in the fit" not in _notes(form)  # the shown names are the fit's
    # names that contradict the levels (g001 on a level-2 variable) fall back to positions
    names.update({"g01": "g001", "g02": "g010"})
    coefs = tuple(dataclasses.replace(
        co, gammas=tuple(dataclasses.replace(g, name=names[g.name]) for g in co.gammas))
        for co in c.spec.coefficients)
    form = equations(dataclasses.replace(c.spec, coefficients=coefs)).levels
    lines = _texts(form)
    assert "β_00k = γ_000 + γ_001·lowinc_k + u_00k" in lines and "β_01k = γ_010" in lines
    assert len(set(lines)) == len(lines)
    assert "γ_010 = g001" in _notes(form)


def test_levels_found_in_the_data_when_the_spec_has_none():
    c = case("egsingle")
    spec = Spec.from_formula(MODELS["egsingle"][0])  # no data: every predictor at level 1
    assert not spec.variable_levels
    symbols = _texts(equations(spec).levels)
    assert symbols[0].startswith("y_ijk = π_0jk + π_1jk·year_ijk + π_2jk·black_ijk")
    with_data = equations(spec, c.data).levels
    assert _texts(with_data) == _texts(equations(c.spec, c.data).levels)
    assert "γ_001 = g40" in _notes(with_data)  # this spec's name of the lowinc column


def test_uncorrelated_block_in_a_nested_model():
    c = case("egsingle")
    spec = Spec.from_formula(
        "math ~ year + (year || schoolid) + (1 + year | schoolid:childid)", c.data)
    eq = equations(spec, c.data)
    assert "u_00k, u_10k independent (T of schoolid diagonal)" in _notes(eq.levels)
    corr = [e for e in eq.distributions.equations
            if isinstance(e.lhs, ir.Call) and e.lhs.name == "corr"]
    assert len(corr) == 1  # the children's block only
    assert "diagonal" in _notes(eq.distributions)


def test_pastes_nested_intercepts():
    c = case("pastes")
    lines = _texts(equations(c.spec, c.data).levels)
    assert lines == ["y_ijk = π_0jk + e_ijk", "π_0jk = β_00k + r_0jk", "β_00k = γ_000 + u_00k"]


def test_four_levels_generalise():
    data = pd.read_csv(ROOT / "data" / "four_level.csv")
    spec = Spec.from_formula("y ~ x + (1 | region/district/school)", data)
    form = equations(spec, data).levels
    lines = _texts(form)
    assert lines[0] == "y_ijkl = π_0jkl + π_1jkl·x_ijkl + e_ijkl"
    assert "π_0jkl = β_00kl + r_0jkl" in lines
    assert "β_00kl = θ_000l + u_00kl" in lines
    assert "θ_000l = γ_0000 + v_000l" in lines
    assert [eq.label for eq in form.equations if eq.label] == [f"Level {k}" for k in range(1, 5)]


def test_crossed_factors_one_index_each():
    c = case("penicillin")
    eq = equations(c.spec, c.data)
    assert _texts(eq.levels) == ["y_ijk = β_0jk + ε_ijk", "β_0jk = γ_00 + U_0j + V_0k"]
    notes = _notes(eq.levels)
    assert "j: plate (24 units)" in notes and "k: sample (6 units)" in notes
    assert "crossed" in notes
    assert _texts(eq.combined)[0] == "y_ijk = γ_00 + U_0j + V_0k + ε_ijk"


def test_crossed_random_slope():
    data = pd.read_csv(ROOT / "data" / "crossed_slope.csv")
    spec = Spec.from_formula("y ~ x + (1 + x | subject) + (1 | item)", data)
    eq = equations(spec, data)
    assert _texts(eq.levels)[1:] == ["β_0jk = γ_00 + U_0j + V_0k", "β_1jk = γ_10 + U_1j"]
    corr = [e for e in eq.distributions.equations if "corr" in "".join(_texts_one(e))]
    assert len(corr) == 1


def _texts_one(eq: ir.Equation) -> list[str]:
    from bayesmix.render import text

    return ["".join(b.lines) for b in text.equation_box(eq)]


def test_uncorrelated_block_is_noted_and_has_no_lkj():
    c = case("sleepstudy")
    assert c.design.single_factor
    eq = equations(c.spec, c.data)
    assert "U_0j, U_1j independent (T diagonal)" in _notes(eq.levels)
    dist = eq.distributions
    assert "LKJ" not in dist.text and "corr" not in dist.text
    assert "diagonal" in _notes(dist)
    sd = [e for e in dist.equations if isinstance(e.lhs, ir.Call) and e.lhs.name == "sd"]
    assert len(sd) == 2
    # the correlated model keeps its LKJ prior and no independence note
    spec = Spec.from_formula("Reaction ~ Days + (Days | Subject)", c.data)
    eq = equations(spec, c.data)
    assert "independent (T" not in _notes(eq.levels) and "LKJ" in eq.distributions.text


def test_two_blocks_over_one_factor_block_diagonal():
    c = case("sleepstudy")
    spec = Spec.from_formula("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", c.data)
    eq = equations(spec)
    assert "U_0j, U_1j independent (T diagonal)" in _notes(eq.levels)
    assert "LKJ" not in eq.distributions.text


# ---------------------------------------------------------------------------- combined
def test_combined_has_every_term_random_part_by_factor():
    c = case("egsingle")
    eq = equations(c.spec, c.data).combined.equations[0]
    terms = [t for t in (_texts_one(ir.Equation(x, x))[0] for x in eq.rhs.terms)]
    assert terms == [
        "γ_000", "γ_100·year_ijk", "γ_010·black_jk", "γ_001·lowinc_k",
        "γ_110·black_jk·year_ijk", "γ_101·lowinc_k·year_ijk",
        "r_0jk", "r_1jk·year_ijk", "u_00k", "u_10k·year_ijk", "e_ijk",
    ]
    # every column of X appears once, as the product of its variables
    fixed = eq.rhs.terms[: c.design.p]
    for term, name in zip(fixed, c.design.fixed_terms, strict=True):
        factors = term.factors[1:] if isinstance(term, ir.Product) else ()
        got = sorted(f.name for f in factors)
        assert got == sorted(name.split(":")) if name != "(Intercept)" else got == []


# ---------------------------------------------------------------------------- matrices
def _label(sym: ir.Symbol) -> str:
    last = sym.sub[-1]
    return last.text  # type: ignore[attr-defined]


def _factor_of(design, label: str):
    return next(fe for fe in design.effects if fe.name == label or fe.name.endswith(":" + label))


def _value(node: ir.Node) -> float | None:
    return node.value if isinstance(node, ir.Num) else None


def _partitions(form, design) -> list[tuple[Any, ir.Matrix, ir.Matrix]]:
    compact, full = form.equations[0], form.equations[1]
    labels = [t.factors[0].sub[0].text.strip("()") for t in compact.rhs.terms[1:-1]]
    parts = full.rhs.terms[1:-1]
    assert len(parts) == len(labels)
    return [(_factor_of(design, lab), p.factors[0], p.factors[1])
            for lab, p in zip(labels, parts, strict=True)]


def _columns(fe, u: ir.Matrix, labels: ir.Matrix | None = None) -> list[int | None]:
    """Design column of Z_g for each displayed column (None: an elision column)."""
    src = labels if labels is not None else u
    out: list[int | None] = []
    run: list[str] = []
    for (cell,) in src.rows:
        if isinstance(cell, ir.Dots):
            out.append(None)
            run = []
            continue
        lab = _label(cell)
        run = run if run and run[0] == lab else []
        run.append(lab)
        out.append(fe.grouping.levels.index(lab) * fe.q + len(run) - 1)
    return out


def check_whole_data(form, design, *, all_rows: bool = False, labels=None) -> list[int]:
    """The numbers of the whole-data form are rows of y, X and every Z_g; returns the rows.

    ``labels``: the same display in symbols, whose u_g name the units (when ``form`` has
    estimates in place of the symbols).
    """
    full = form.equations[1]
    ys = [r[0] for r in full.lhs.rows]
    x_mat, beta = full.rhs.terms[0].factors
    assert beta.shape == (design.p, 1)
    parts = _partitions(form, design)
    if labels is not None:
        parts = [(fe, z, u) for (fe, z, _), (_, _, u) in
                 zip(parts, _partitions(labels, design), strict=True)]
    assert len(parts) == len(design.effects)
    signatures: dict[tuple, list[int]] = {}
    shown: dict[tuple, int] = {}
    for k, y in enumerate(ys):
        if isinstance(y, ir.Dots):
            assert all(isinstance(c, ir.Dots) for c in x_mat.rows[k])
            continue
        sig = [_value(y), *(_value(c) for c in x_mat.rows[k])]
        cand = (design.y == sig[0]) & np.all(design.X == np.array(sig[1:]), axis=1)
        for fe, z, u in parts:
            cols = _columns(fe, u)
            assert len(cols) == z.shape[1]
            keep = [c for c in cols if c is not None]
            cells = np.array([_value(z.rows[k][i]) for i, c in enumerate(cols) if c is not None])
            assert all(isinstance(z.rows[k][i], ir.Dots) for i, c in enumerate(cols) if c is None)
            zg = fe.Z[:, keep].toarray()
            cand &= np.all(zg == cells, axis=1)
            # nothing of the row's own unit is hidden: its whole Zq row is among the cells
            cand &= np.isclose(np.abs(fe.Zq).sum(axis=1), np.abs(cells).sum())
            sig += list(cells)
        rows = np.flatnonzero(cand)
        assert len(rows), f"displayed row {k} is no row of the design"
        signatures[tuple(sig)] = list(rows)
        shown[tuple(sig)] = shown.get(tuple(sig), 0) + 1
    for sig, count in shown.items():
        assert count <= len(signatures[sig])  # distinct rows of the design
    n_shown = sum(shown.values())
    if all_rows:
        assert n_shown == design.n
        assert not any(isinstance(y, ir.Dots) for y in ys)
    else:
        assert 2 <= n_shown <= max(design.n, 1)
    return [r for rows in signatures.values() for r in rows]


@pytest.mark.parametrize("name", list(MODELS))
def test_whole_data_reproduces_design(name):
    c = case(name)
    form = equations(c.spec, c.data).matrix
    if c.design.single_factor:  # sleepstudy ||: the one-factor form, unchanged
        assert "Z_(" not in form.text
        return
    compact = form.equations[0]
    assert len(compact.rhs.terms) == 2 + len(c.design.effects)  # Xβ, Z_g u_g ..., e
    check_whole_data(form, c.design)


def test_whole_data_all_rows_when_short():
    c = case("pastes")
    form = equations(c.spec, c.data, max_rows=100).matrix
    check_whole_data(form, c.design, all_rows=True)
    for fe, z, _u in _partitions(form, c.design):
        assert not any(isinstance(cell, ir.Dots) for row in z.rows for cell in row)
        assert z.shape == (c.design.n, fe.J * fe.q)
    text = form.text
    assert "Z_(cask)u_(cask)" in text and "Z_(batch)u_(batch)" in text


def test_whole_data_notes_answer_why_x_is_in_z():
    c = case("egsingle")
    form = equations(c.spec, c.data).matrix
    compact = _texts(form)[0]
    assert compact == "Y = Xβ + Z_(childid)u_(childid) + Z_(schoolid)u_(schoolid) + e"
    notes = _notes(form)
    assert "appear again in" in notes
    assert "column year: in Z_(childid) (r_1jk), Z_(schoolid) (u_10k)" in notes
    assert "column 1: in Z_(childid) (r_0jk), Z_(schoolid) (u_00k)" in notes
    assert "design.Z holds the blocks in the order schoolid, schoolid:childid" in notes


def test_crossed_whole_data_sorted_by_first_factor():
    c = case("penicillin")
    form = equations(c.spec, c.data).matrix
    (plate, z1, _), (sample, _, _) = _partitions(form, c.design)
    assert (plate.name, sample.name) == ("plate", "sample")
    rows = [r for r in z1.rows if not isinstance(r[0], ir.Dots)]
    first = [next(i for i, x in enumerate(r) if _value(x) == 1) for r in rows]
    assert first == sorted(first)  # Z_(plate) block-diagonal
    assert "crossed" in _notes(form)


def test_per_unit_matrices():
    c = case("egsingle")
    form = equations(c.spec, c.data).matrix_cluster
    assert _texts(form)[0] == ("Y_k = X_kβ + Z_{(childid),k}u_{(childid),k} "
                               "+ Z_{(schoolid),k}u_{(schoolid),k} + e_k")
    full = form.equations[1]
    _, (z_child, r_vec), (z_school, u_vec) = [t.factors for t in full.rhs.terms[:-1]]
    # Z of the children: block-diagonal, one block of (1, year) per child j = 1 .. J_k
    first = [_texts_one(ir.Equation(x, x))[0] for x in z_child.rows[0]]
    assert first == ["1", "year_11k", "⋯", "0", "0"]
    last = [_texts_one(ir.Equation(x, x))[0] for x in z_child.rows[-1]]
    assert last[:3] == ["0", "0", "⋯"] and last[3] == "1"
    assert [_texts_one(ir.Equation(x, x))[0] for (x,) in u_vec.rows] == ["u_00k", "u_10k"]
    assert len(r_vec.rows) == 5  # r_01k, r_11k, ⋮, r_0J_kk, r_1J_kk
    # the school's Z repeats the same level-1 columns on every row
    assert [_texts_one(ir.Equation(x, x))[0] for x in z_school.rows[0]] == ["1", "year_11k"]
    assert "block-diagonal" in _notes(form)
    crossed = equations(case("penicillin").spec).matrix_cluster
    assert _texts(crossed)[0] == ("Y_j = X_jβ + Z_{(plate),j}u_{(plate),j} "
                                  "+ Z_{(sample),j}u_(sample) + ε_j")


# ---------------------------------------------------------------------------- distributions
@pytest.mark.parametrize("name", ["pastes", "penicillin", "egsingle"])
def test_distributions_per_factor(name):
    c = case(name)
    dist = equations(c.spec, c.data).distributions
    ranef = [e for e in dist.equations if e.rel == "~" and isinstance(e.rhs, ir.Call)
             and e.rhs.name == "N" and isinstance(e.rhs.args[1], ir.Symbol)
             and e.rhs.args[1].base == "T"]
    assert len(ranef) == len(c.design.effects)
    sd = [e for e in dist.equations if isinstance(e.lhs, ir.Call) and e.lhs.name == "sd"]
    assert len(sd) == sum(fe.q for fe in c.design.effects)
    corr = [e for e in dist.equations if isinstance(e.lhs, ir.Call) and e.lhs.name == "corr"]
    assert len(corr) == sum(fe.q > 1 for fe in c.design.effects)
    # the SD priors are resolve_priors' vector, factor by factor in the design's order
    from bayesmix.priors import resolve_priors

    rp = resolve_priors(c.design)
    sigmas = dict(rp.sd_u.params)["sigma"]
    shown = [dict((k.key.base, k.value.value) for k in e.rhs.args)["sigma"] for e in sd]
    assert sorted(np.round(shown, 3)) == sorted(np.round(np.asarray(sigmas), 3))


# ---------------------------------------------------------------------------- estimates
def _fake_factor_fit(design, seed: int = 3):
    rng = np.random.default_rng(seed)
    chains, draws = 2, 20
    data: dict[str, Any] = {
        "beta": (("chain", "draw", "fixed"), rng.normal(size=(chains, draws, design.p))),
        "sigma": (("chain", "draw"), np.abs(rng.normal(1, 0.1, (chains, draws)))),
    }
    coords: dict[str, Any] = {"chain": np.arange(chains), "draw": np.arange(draws),
                              "fixed": list(design.fixed_names)}
    for fe in design.effects:
        eff, eff2 = f"random_{fe.name}", f"random2_{fe.name}"
        coords.update({fe.name: list(fe.grouping.levels), eff: list(fe.labels),
                       eff2: list(fe.labels)})
        data[f"u_{fe.name}"] = (("chain", "draw", fe.name, eff),
                                rng.normal(size=(chains, draws, fe.J, fe.q)))
        data[f"sd_u_{fe.name}"] = (("chain", "draw", eff),
                                   np.abs(rng.normal(1, 0.1, (chains, draws, fe.q))))
        if fe.q > 1:
            corr = np.broadcast_to(np.eye(fe.q), (chains, draws, fe.q, fe.q)).copy()
            corr[..., 0, 1] = corr[..., 1, 0] = 0.25
            data[f"corr_u_{fe.name}"] = (("chain", "draw", eff, eff2), corr)

    @dataclass(frozen=True)
    class FakeFit:
        spec: Spec
        design: Any
        posterior: Any

    return FakeFit(design.spec, design, xr.DataTree(dataset=xr.Dataset(data, coords=coords)))


def check_estimates(eq_sym, eq_fit, fit) -> None:
    """Numbers substituted are the posterior means; Y = Xβ + Σ Z_g u_g + e on every row."""
    design = fit.design
    post = fit.posterior
    beta = post["beta"].mean(("chain", "draw")).to_numpy()
    u = {fe.name: post[f"u_{fe.name}"].mean(("chain", "draw")).to_numpy()
         for fe in design.effects}
    resid = design.y - design.X @ beta - sum(fe.Z @ u[fe.name].ravel() for fe in design.effects)
    form = eq_fit.matrix
    full = form.equations[1]
    got_beta = [_value(c) for (c,) in full.rhs.terms[0].factors[1].rows]
    np.testing.assert_allclose(got_beta, beta)
    sym_parts = _partitions(eq_sym.matrix, design)
    for (fe, _, u_sym), (fe2, _, u_num) in zip(sym_parts, _partitions(form, design),
                                              strict=True):
        assert fe.name == fe2.name
        for col, (cell,) in zip(_columns(fe, u_sym), u_num.rows, strict=True):
            if col is not None:
                assert _value(cell) == pytest.approx(u[fe.name].ravel()[col])
    rows = check_whole_data(form, design, labels=eq_sym.matrix)
    e_shown = [_value(c) for (c,) in full.rhs.terms[-1].rows if not isinstance(c, ir.Dots)]
    assert all(np.any(np.isclose(resid[rows], e)) for e in e_shown)
    columns = form.equations[2]  # y = Xβ + Z_1 u_1 + ... + e, numbers
    for k, (y,) in enumerate(columns.lhs.rows):
        if not isinstance(y, ir.Dots):
            total = sum(_value(t.rows[k][0]) for t in columns.rhs.terms)
            assert total == pytest.approx(_value(y), abs=1e-9)
    dist = eq_fit.distributions
    t_hats = [e for e in dist.equations if isinstance(e.lhs, ir.Symbol) and e.lhs.hat
              and e.lhs.base == "T"]
    assert len(t_hats) == len(design.effects)
    sd = {fe.name: post[f"sd_u_{fe.name}"].mean(("chain", "draw")).to_numpy()
          for fe in design.effects}
    for e in t_hats:
        fe = _factor_of(design, e.lhs.sub[0].text.strip("()"))
        first = e.rhs.rows[0][0] if isinstance(e.rhs, ir.Matrix) else e.rhs
        assert _value(first) == pytest.approx(sd[fe.name][0] ** 2)
    assert "posterior means" in eq_fit.levels.text


def test_estimates_from_a_factor_posterior():
    c = case("egsingle")
    fit = _fake_factor_fit(c.design)
    check_estimates(equations(c.spec, c.data), equations(fit=fit), fit)


@pytest.fixture(scope="module")
def pastes_fit():
    from bayesmix import fit

    c = case("pastes")
    return fit(c.spec, c.data, draws=200, tune=200, chains=2, random_seed=1, progressbar=False)


def test_estimates_from_a_bayesian_fit(pastes_fit):
    c = case("pastes")
    eq = equations(fit=pastes_fit)
    check_estimates(equations(c.spec, c.data), eq, pastes_fit)
    beta = float(pastes_fit.posterior["beta"].mean())
    level3 = eq.levels.equations[2]
    assert level3.rhs.terms[0].value == pytest.approx(beta)
    assert _texts_one(ir.Equation(level3.rhs.terms[1], level3.rhs.terms[1]))[0] == "u_00k"


@pytest.mark.parametrize("name", ["pastes", "penicillin"])
def test_estimates_from_reml_per_factor(name):
    from bayesmix import fit_reml

    c = case(name)
    reml = fit_reml(c.spec, c.data)
    eq = equations(reml=reml)
    est = eq.estimates
    assert est is not None and est.source == "REML estimates"
    assert [f.name for f in est.factors] == [fe.name for fe in c.design.effects]
    for fe, f in zip(c.design.effects, est.factors, strict=True):
        np.testing.assert_array_equal(f.u, reml.u_factors[fe.name].to_numpy())
        np.testing.assert_array_equal(f.sd_u, reml.sd_u[list(fe.labels)].to_numpy())
    np.testing.assert_allclose(est.residuals, c.design.y - reml.fitted, atol=1e-9)
    symbols = equations(c.spec, c.data).matrix
    check_whole_data(eq.matrix, c.design, labels=symbols)
    for fe, _, u in _partitions(eq.matrix, c.design):
        cols = _columns(fe, next(p[2] for p in _partitions(symbols, c.design)
                                 if p[0].name == fe.name))
        modes = reml.u_factors[fe.name].to_numpy().ravel()
        for col, (cell,) in zip(cols, u.rows, strict=True):
            if col is not None:
                assert _value(cell) == modes[col]
    t_hats = [e for e in eq.distributions.equations if isinstance(e.lhs, ir.Symbol)
              and e.lhs.hat and e.lhs.base == "T"]
    for e in t_hats:
        fe = _factor_of(c.design, e.lhs.sub[0].text.strip("()"))
        assert _value(e.rhs) == pytest.approx(reml.sd_u[fe.labels[0]] ** 2)


def test_reml_without_factor_modes_is_refused():
    c = case("pastes")

    @dataclass(frozen=True)
    class REML:
        design: Any
        beta: pd.Series
        sd_u: pd.Series
        sigma: float
        u: Any = None

    beta = pd.Series([60.05], index=list(c.design.fixed_names))
    sd = pd.Series([1.0, 2.0], index=[lab for fe in c.design.effects for lab in fe.labels])
    with pytest.raises(BayesmixError, match=r"several grouping factors.*u_factors"):
        equations(reml=REML(c.design, beta, sd, 0.8))


# ---------------------------------------------------------------------------- all formats
def _all_cases() -> list[tuple[str, Any]]:
    out = []
    for name in MODELS:
        c = case(name)
        out.append((f"{name}/symbols", equations(c.spec)))
        out.append((f"{name}/data", equations(c.spec, c.data)))
        if not c.design.single_factor:
            out.append((f"{name}/fit", equations(fit=_fake_factor_fit(c.design))))
    data = pd.read_csv(ROOT / "data" / "four_level.csv")
    spec = Spec.from_formula("y ~ x + (1 + x | region/district/school)", data)
    out.append(("four/data", equations(spec, data)))
    return out


def test_every_form_renders_in_every_format():
    for name, eq in _all_cases():
        for form in eq.forms:
            for fmt in FORMATS:
                assert form.render(fmt), (name, form.name, fmt)
        assert repr(eq)


def test_multi_factor_latex_renders_in_katex(katex):  # noqa: F811
    items = [item for name, eq in _all_cases() for item in _items(name, eq)]
    results = _render_all(katex, items)
    failures = {r["id"]: r["error"] for r in results if r["error"] is not None}
    assert not failures, failures
