"""lme4 formulas: parsing, the split into level-1 and level-2 parts, and round trips."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesmix import Spec, SpecError, build_design


def test_dung_formula_from_issue():
    spec = Spec.from_equations("pr_dung = b0 + b1*flies + e\nb0 = g00 + U0\nb1 = g10",
                               cluster="oven_block")
    assert spec.to_formula() == "pr_dung ~ 1 + flies + (1 | oven_block)"
    assert Spec.from_formula(spec.to_formula()) == spec


def test_cross_level_formula_with_level2_names():
    spec = Spec.from_formula("y ~ X*M + (1 + X | g)", level2=["M"])
    assert spec.to_equations() == (
        "y = b0 + b1*X + e\nb0 = g00 + g01*M + U0\nb1 = g10 + g11*M + U1"
    )
    assert spec.to_formula() == "y ~ 1 + X + M + X:M + (1 + X | g)"


def test_level2_found_from_data():
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"g": np.repeat(np.arange(6), 4), "X": rng.normal(size=24),
                       "y": rng.normal(size=24)})
    df["M"] = np.repeat(rng.normal(size=6), 4)
    spec = Spec.from_formula("y ~ X * M + (X | g)", data=df)
    assert spec.level2_variables == ("M",)
    assert spec.coefficients[1].random == "U1"


def test_distribution_no_intercept_and_removal():
    spec = Spec.from_formula("y ~ 0 + X:(A + B) + (0 + X | g)")
    assert spec.to_formula() == "y ~ 0 + X:A + X:B + (0 + X | g)"
    spec = Spec.from_formula("y ~ X*M - M + (1 | g)")
    assert [t.term for t in spec.fixed_terms] == ["(Intercept)", "X", "X:M"]
    spec = Spec.from_formula("y ~ X - 1 + (1 | g)")
    assert spec.coefficients[0].name == "b0" and spec.coefficients[0].gammas == ()


@pytest.mark.parametrize(
    ("formula", "fragment"),
    [
            ("y ~ X + (1 | g) + (1 | g)", "the intercept has a random effect over g twice"),
        ("y ~ X", "no random part"),
        ("y ~ logit(X) + (1 | g)", r"unknown function logit\(\)"),
        ("y ~ X ~ Z + (1|g)", "exactly one '~'"),
        ("y ~ X + 3 + (1 | g)", "0 or 1"),
        ("y ~ X + (1 | g", "formula ends"),
    ],
)
def test_bad_formulas(formula, fragment):
    with pytest.raises(SpecError, match=fragment):
        Spec.from_formula(formula)


def test_random_term_on_level2_variable_is_refused():
    with pytest.raises(SpecError, match="'M' is a level-2 variable"):
        Spec.from_formula("y ~ M + (1 + M | g)", level2=["M"])


def _random_data(seed: int, n_l1: int, n_l2: int, J: int = 7, nj: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"g": np.repeat([f"k{j}" for j in range(J)], nj)})
    for i in range(n_l1):
        df[f"X{i}"] = rng.normal(size=len(df))
    for i in range(n_l2):
        df[f"M{i}"] = np.repeat(rng.normal(size=J), nj)
    df["y"] = rng.normal(size=len(df))
    return df


@st.composite
def random_specs(draw):
    n_l1 = draw(st.integers(0, 2))
    n_l2 = draw(st.integers(0, 2))
    lines, l1 = [], ["b0"]
    for i in range(n_l1):
        l1.append(f"b{i + 1}*X{i}")
    lines.append("y = " + " + ".join(l1) + " + e")
    any_random = False
    for q in range(n_l1 + 1):
        terms = [f"g{q}0"] if draw(st.booleans()) or q == 0 else []
        for s in range(n_l2):
            if draw(st.booleans()):
                terms.append(f"g{q}{s + 1}*M{s}")
        rand = q == 0 or draw(st.booleans())
        if rand:
            terms.append(f"U{q}")
            any_random = True
        if not terms:
            terms = [f"g{q}0"]
        lines.append(f"b{q} = " + " + ".join(terms))
    assert any_random
    return "\n".join(lines), n_l1, n_l2, draw(st.integers(0, 10_000))


@settings(max_examples=40, deadline=None)
@given(random_specs())
def test_spec_formula_spec_gives_the_same_design(case):
    text, n_l1, n_l2, seed = case
    df = _random_data(seed, n_l1, n_l2)
    spec = Spec.from_equations(text, cluster="g")
    again = Spec.from_formula(spec.to_formula(), data=df)
    d1, d2 = build_design(spec, df), build_design(again, df)
    # The same columns, matched by term; a coefficient that enters the formula only through
    # the random part may come back with another index (b1 <-> b2), so the order can differ.
    assert sorted(d1.fixed_terms) == sorted(d2.fixed_terms)
    for k, term in enumerate(d1.fixed_terms):
        np.testing.assert_array_equal(d1.X[:, k], d2.X[:, d2.fixed_terms.index(term)])
    assert sorted(d1.random_terms) == sorted(d2.random_terms)
    perm = [d2.random_terms.index(t) for t in d1.random_terms]
    np.testing.assert_array_equal(d1.Zq, d2.Zq[:, perm])
    q = d1.q
    cols = [j * q + perm[r] for j in range(d1.J) for r in range(q)]
    np.testing.assert_array_equal(d1.Z.toarray(), d2.Z.toarray()[:, cols])
