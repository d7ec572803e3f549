"""L1/L2 equation parsing: the seeds' notation, variants, and errors that point at the fault."""

from __future__ import annotations

import pytest

from bayesmix import Spec, SpecError
from bayesmix.spec import Coefficient, Gamma

CROSS = """
y = b0 + b1*X + e
b0 = g00 + g01*M + U0
b1 = g10 + g11*M + U1
"""


def test_seed_cross_level_model():
    spec = Spec.from_equations(CROSS, cluster="g")
    assert spec.outcome == "y"
    assert spec.coefficients == (
        Coefficient("b0", (), (Gamma("g00"), Gamma("g01", ("M",))), "U0"),
        Coefficient("b1", ("X",), (Gamma("g10"), Gamma("g11", ("M",))), "U1"),
    )
    assert spec.level1_variables == ("X",)
    assert spec.level2_variables == ("M",)
    assert [t.term for t in spec.fixed_terms] == ["(Intercept)", "X", "M", "X:M"]


def test_subscripts_and_middle_dot_are_accepted():
    text = """
    y[ij] = b0[j] + b1[j]·X[ij] + e[ij]
    b0[j] = g00 + g01·M[j] + U0[j]
    b1[j] = γ10 + g11 × M[j] + U1j
    """
    assert Spec.from_equations(text, cluster="g").coefficients == Spec.from_equations(
        CROSS, cluster="g"
    ).coefficients


def test_fixed_slope_with_level2_predictor_and_comments():
    spec = Spec.from_equations(
        """
        # a fixed slope that still depends on M
        y = b0 + b1*X + b2*W + e
        b0 = g00 + U0
        b1 = g10 + g11*M   # no U1: fixed
        b2 = g20
        """,
        cluster="g",
    )
    assert [c.random for c in spec.coefficients] == ["U0", None, None]
    assert spec.coefficients[1].gammas[1].variables == ("M",)


def test_any_number_of_predictors_and_order_of_factors():
    spec = Spec.from_equations(
        "y = b0 + X1*b1 + b2*X2 + b3*X1*X2\nb0 = g00 + g01*M1 + g02*M2 + U0\n"
        "b1 = g10 + U1\nb2 = g20\nb3 = g30 + g31*M1",
        cluster="g",
    )
    assert spec.coefficients[3].variables == ("X1", "X2")
    assert len(spec.fixed_terms) == 7


def test_backquoted_names_and_round_trip():
    spec = Spec.from_equations("`my y` = b0 + b1*`x 1` + e\nb0 = g00 + U0\nb1 = g10", "g")
    assert spec.outcome == "my y"
    again = Spec.from_equations(spec.to_equations(), "g")
    assert again == spec


@pytest.mark.parametrize(
    ("text", "line", "position", "fragment"),
    [
        ("y = b0 + b1*X + e\nb0 = g00 + M + U0\nb1 = g10", 2, 12,
         "exactly one γ"),
        ("y = b0 + b1*X + e\nb0 = g00 + U0\nb1 = g10 + + U1", 3, 12, "expected a term"),
        ("y = b0 + b1*X + e\nb0 = g00 + U0\nb1 = g10 - g11*M", 3, 10, "subtraction"),
        ("y = b0 + b1*X + e\nb0 = g00 + U0\nb1 = g10*", 3, 10, "ends where a term"),
        ("y = b0 + b1*X + e\nb0 = g00 + U0 + U9\nb1 = g10", 2, 17, "at most one U"),
        ("y = b0 + b1*X*U1 + e\nb0 = g00 + U0\nb1 = g10", 1, 15, "level-2 equation"),
        ("y = b0 + b1*X + e\nb0 = g00 + U0*X\nb1 = g10", 2, 12, "term of its own"),
        ("y = b0 + b1*X + e\nb0 = g00 + U0\nb1 = g10 $ g11", 3, 10, "unexpected character"),
        ("y = b0 + 2*X + e\nb0 = g00 + U0", 1, 10, "a number"),
    ],
)
def test_malformed_equations_name_line_and_position(text, line, position, fragment):
    with pytest.raises(SpecError) as info:
        Spec.from_equations(text, cluster="g")
    err = info.value
    assert err.line == line
    assert err.position == position
    assert fragment in str(err)
    assert "^" in str(err)  # a caret under the fault


def test_level2_line_for_unknown_coefficient():
    with pytest.raises(SpecError, match=r"b2 has a level-2 equation but the level-1 equation "
                                        r"has no b2") as info:
        Spec.from_equations("y = b0 + b1*X + e\nb0 = g00 + U0\nb1 = g10\nb2 = g20", "g")
    assert info.value.line == 4


def test_level1_coefficient_without_level2_line():
    with pytest.raises(SpecError, match="b1 has no level-2 equation; add a line such as"):
        Spec.from_equations("y = b0 + b1*X + e\nb0 = g00 + U0", "g")


def test_duplicate_gamma_and_no_random_effect():
    with pytest.raises(SpecError, match="g00 is used twice"):
        Spec.from_equations("y = b0 + b1*X + e\nb0 = g00 + U0\nb1 = g00", "g")
    with pytest.raises(SpecError, match="not a multilevel model"):
        Spec.from_equations("y = b0 + b1*X + e\nb0 = g00\nb1 = g10", "g")


def test_second_level1_equation_and_missing_level1():
    with pytest.raises(SpecError, match="second level-1 equation") as info:
        Spec.from_equations("y = b0 + e\nz = b0 + e\nb0 = g00 + U0", "g")
    assert info.value.line == 2
    with pytest.raises(SpecError, match="no level-1 equation"):
        Spec.from_equations("b0 = g00 + U0", "g")


def test_cluster_used_as_predictor_is_refused():
    with pytest.raises(SpecError, match="grouping column 'g' is also used"):
        Spec.from_equations("y = b0 + e\nb0 = g00 + g01*g + U0", "g")
