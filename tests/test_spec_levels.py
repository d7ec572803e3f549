"""Level equations of three or more levels, crossed factors and ``||``: parsing, printing,
agreement with the formulas, round trips and errors that point at the line."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bayesmix import Spec, SpecError
from bayesmix.spec import Coefficient, Gamma
from bayesmix.spec.levels_print import equation_arguments
from bayesmix.spec.model import RandomTerm

ISSUE = """\
math = p0 + p1*year + e
p0 = b00 + b01*black + r0
p1 = b10 + b11*black + r1
b00 = g000 + g001*lowinc + u00
b01 = g010
b10 = g100 + g101*lowinc + u10
b11 = g110"""
LEVELS = ["childid", "schoolid"]
ISSUE_FORMULA = ("math ~ 1 + year + black + lowinc + year:black + year:lowinc "
                 "+ (1 + year | schoolid) + (1 + year | schoolid:childid)")


def nested_data(columns: list[str], levels: dict[str, int], outcome: str = "y",
                seed: int = 0, per: int = 3) -> pd.DataFrame:
    """``per`` units within each unit of the next level (ids repeat across parents); each
    variable constant within the units of its level."""
    rng = np.random.default_rng(seed)
    depth = len(columns) + 1
    n = per ** depth
    idx = np.arange(n)
    df = pd.DataFrame({col: (idx // per ** (k + 1)) % per for k, col in enumerate(columns)})
    for var, level in levels.items():
        unit = idx // per ** (level - 1)
        df[var] = rng.normal(size=n)[unit]
    df[outcome] = rng.normal(size=n)
    return df


def reread(spec: Spec) -> Spec:
    return Spec.from_equations(spec.to_equations(), **equation_arguments(spec))


def shape(spec: Spec) -> tuple:
    """Fixed terms and random blocks, independent of names and order."""
    fixed = sorted(tuple(sorted(t.variables)) for t in spec.fixed_terms)
    blocks = sorted((b.factor, tuple(sorted(tuple(sorted(t)) for t in b.terms)), b.structure)
                    for b in spec.random)
    return fixed, blocks


# ------------------------------------------------------------------ three levels


def test_three_level_example_gives_the_formula_spec():
    spec = Spec.from_equations(ISSUE, levels=LEVELS)
    assert spec.cluster == "schoolid:childid"
    assert spec.coefficients == (
        Coefficient("p0", (), (Gamma("g000"), Gamma("g010", ("black",)),
                               Gamma("g001", ("lowinc",))), "r0"),
        Coefficient("p1", ("year",), (Gamma("g100"), Gamma("g110", ("black",)),
                                      Gamma("g101", ("lowinc",))), "r1"),
    )
    assert spec.random == (
        RandomTerm(("schoolid",), ((), ("year",)), ("u00", "u10")),
        RandomTerm(("schoolid", "childid"), ((), ("year",)), ("r0", "r1")),
    )
    assert spec.variable_levels == (("year", 1), ("black", 2), ("lowinc", 3))
    assert spec.to_formula() == ISSUE_FORMULA
    data = nested_data(LEVELS, {"year": 1, "black": 2, "lowinc": 3}, "math")
    for formula in (ISSUE_FORMULA,
                    "math ~ year*black + year*lowinc + (1 + year | schoolid/childid)"):
        other = Spec.from_formula(formula, data)
        assert (other.cluster, other.random, other.variable_levels) == (
            spec.cluster, spec.random, spec.variable_levels)
        assert shape(other) == shape(spec)


def test_three_level_printing_and_round_trips():
    spec = Spec.from_equations(ISSUE, levels=LEVELS)
    assert spec.to_equations() == ISSUE
    assert equation_arguments(spec) == {"levels": LEVELS}
    assert reread(spec) == spec
    data = nested_data(LEVELS, {"year": 1, "black": 2, "lowinc": 3}, "math")
    made = Spec.from_formula("math ~ year*black + year*lowinc + (1 + year | schoolid/childid)",
                             data)
    assert made.to_equations().splitlines()[1:4] == [
        "b0 = b00 + b01*black + r0", "b1 = b10 + b11*black + r1",
        "b00 = g00 + g02*lowinc + u00"]
    assert reread(made) == made


def test_notation_variants_and_a_random_slope_of_a_level2_variable():
    text = """
    math[tij] = π0[ij] + pi1ij·year[tij] + e[tij]
    π0 = β00 + beta01*black + r0ij     # β01 varies over schools: u01 multiplies black
    p1 = b10 + r1
    b00 = γ000 + gamma001 × lowinc + u00j
    b01 = g010 + u01
    b10 = g100
    """
    spec = Spec.from_equations(text, levels=LEVELS)
    assert spec.random[0] == RandomTerm(("schoolid",), ((), ("black",)), ("u00", "u01"))
    assert spec.coefficients[1] == Coefficient("p1", ("year",), (Gamma("g100"),), "r1")
    assert reread(spec) == spec
    data = nested_data(LEVELS, {"year": 1, "black": 2, "lowinc": 3}, "math")
    assert shape(Spec.from_formula(spec.to_formula(), data)) == shape(spec)


def test_two_level_style_names_and_levels_with_one_entry():
    text = "y = b0 + b1*X + e\nb0 = g00 + g01*M + U0\nb1 = g10 + U1"
    assert Spec.from_equations(text, levels=["g"]) == Spec.from_equations(text, "g")
    three = "y = b0 + e\nb0 = b00 + b01*M + r0\nb00 = g00 + g01*W + u00\nb01 = g10"
    spec = Spec.from_equations(three, levels=["pupil", "school"])
    assert spec.coefficients[0].gammas == (Gamma("g00"), Gamma("g10", ("M",)),
                                           Gamma("g01", ("W",)))
    assert reread(spec) == spec


FOUR = """\
y = p0 + p1*t + e
p0 = b00 + b01*x2 + r0
p1 = b10 + r1
b00 = g000 + g001*x3 + u00
b01 = g010
b10 = g100
g000 = g0000 + g0001*x4 + v000
g001 = g0010
g010 = g0100
g100 = g1000"""


def test_four_levels():
    columns = ["child", "class", "school"]
    spec = Spec.from_equations(FOUR, levels=columns)
    assert spec.cluster == "school:class:child"
    assert [g.name for g in spec.coefficients[0].gammas] == ["g0000", "g0100", "g0010",
                                                             "g0001"]
    assert [(b.grouping, b.names) for b in spec.random] == [
        ("school", ("v000",)), ("school:class", ("u00",)),
        ("school:class:child", ("r0", "r1"))]
    assert spec.variable_levels == (("t", 1), ("x2", 2), ("x3", 3), ("x4", 4))
    assert spec.to_formula() == ("y ~ 1 + t + x2 + x3 + x4 + (1 | school) + (1 | school:class)"
                                 " + (1 + t | school:class:child)")
    assert spec.to_equations() == FOUR
    data = nested_data(columns, {"t": 1, "x2": 2, "x3": 3, "x4": 4})
    made = Spec.from_formula(spec.to_formula(), data)
    assert (made.random, made.variable_levels) == (spec.random, spec.variable_levels)
    assert shape(made) == shape(spec)
    assert reread(made) == made
    assert equation_arguments(made) == {"levels": columns}


# ------------------------------------------------------------------ crossed, ||


def test_crossed_factors():
    text = "y = b0 + b1*x + e\nb0 = g00 + U0 + V0\nb1 = g10"
    spec = Spec.from_equations(text, crossed=["plate", "sample"])
    assert spec == Spec.from_formula("y ~ x + (1 | plate) + (1 | sample)")
    assert spec.to_equations() == text
    assert equation_arguments(spec) == {"crossed": ["plate", "sample"]}
    slopes = Spec.from_equations("y = b0 + b1*x + e\nb0 = g00 + U0 + V0\nb1 = g10 + V1 + U1",
                                 crossed=["plate", "sample"])
    assert slopes == Spec.from_formula("y ~ x + (1 + x | plate) + (1 + x | sample)")
    three = Spec.from_formula("y ~ x + (1 | a) + (0 + x | b) + (1 | c)")
    assert equation_arguments(three) == {"crossed": ["a", "b", "c"]}
    assert three.to_equations() == "y = b0 + b1*x + e\nb0 = g00 + U0 + W0\nb1 = g10 + V1"
    assert reread(three) == three and reread(slopes) == slopes
    # U varies over the factor with the most columns, as lme4's cluster; V over the others.
    composite = Spec.from_equations(text, crossed=["a", "b:c"])
    assert composite == Spec.from_formula("y ~ x + (1 | a) + (1 | b:c)")
    assert composite.cluster == "b:c" and composite.random[0].names == ("V0",)
    assert reread(composite) == composite


def test_diagonal_is_lme4s_double_bar():
    text = "y = b0 + b1*x + e\nb0 = g00 + U0\nb1 = g10 + U1"
    spec = Spec.from_equations(text, "g", diagonal=True)
    assert spec == Spec.from_formula("y ~ x + (x || g)")
    assert equation_arguments(spec) == {"cluster": "g", "diagonal": ["g"]}
    nested = Spec.from_equations(ISSUE, levels=LEVELS, diagonal=["schoolid"])
    assert [b.structure for b in nested.random] == ["diagonal", "unstructured"]
    assert nested.to_formula().endswith("(1 + year || schoolid) + (1 + year | schoolid:childid)")
    assert Spec.from_equations(ISSUE, levels=LEVELS, diagonal=["schoolid:childid"]).random[
        1].structure == "diagonal"
    assert reread(nested) == nested


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("text", "kwargs", "line", "fragment"),
    [
        (ISSUE + "\nb01 = g011", {"levels": LEVELS}, 8, "b01 has a second equation"),
        ("y = p0 + e\np0 = b00 + r0\nb00 = p0 + u00", {"levels": LEVELS}, 3,
         "a cycle: p0 -> b00 -> p0"),
        ("y = p0 + e\np0 = b00 + u00\nb00 = g000 + u01", {"levels": LEVELS}, 2,
         "u00 is a level-3 random effect"),
        ("y = p0 + e\np0 = b00 + r0\nb00 = g000 + r1", {"levels": LEVELS}, 3,
         "where random effects are u"),
        ("y = p0 + e\np0 = b00 + U0\nb00 = g000", {"levels": LEVELS}, 2,
         "U is the letter of two-level models"),
        (ISSUE, {"cluster": "childid"}, 4, "pass levels=[...]"),
        (ISSUE, {"levels": ["childid", "classid", "schoolid"]}, 4,
         "drop the extra columns from `levels`"),
        (ISSUE.replace("b11 = g110", ""), {"levels": LEVELS}, 3,
         "b11 is a level-2 coefficient without an equation"),
        ("y = p0 + p1*x + e\np0 = b00 + b01*x + r0\np1 = b10\nb00 = g000 + u00\nb01 = g010"
         "\nb10 = g100", {"levels": LEVELS}, 2, "x is a level-1 variable"),
        ("y = p0 + e\np0 = b00 + b00*w + r0\nb00 = g000 + u00", {"levels": LEVELS}, 2,
         "appears twice in this equation"),
        ("y = p0 + e\np0 = b00 + r0\nb00 = g000 + u00\nb01 = g010", {"levels": LEVELS}, 4,
         "b01 has an equation but no other equation uses it"),
        ("y = b0 + e\nb0 = g00 + U0 + W0", {"crossed": ["a", "b"]}, 2,
         "W effects vary over crossed factor 3"),
        ("y = b0 + e\nb0 = g00 + U0 + U1", {"crossed": ["a", "b"]}, 2, "at most one U"),
        ("y = p0 + p1*x + e\np0 = b00 + r0\np1 = b10\nb00 = g000 + u00\nb10 = u10",
         {"levels": LEVELS}, 3, "p1 has neither a fixed effect"),
    ],
)
def test_bad_equations_name_the_line(text, kwargs, line, fragment):
    with pytest.raises(SpecError, match=fragment.replace("[", r"\[").replace("]", r"\]")
                       .replace(".", r"\.")) as info:
        Spec.from_equations(text, **kwargs)
    assert info.value.line == line
    assert "^" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({}, "name the grouping of the equations once"),
        ({"cluster": "g", "levels": ["a", "b"]}, "got cluster and levels"),
        ({"cluster": ["a", "b"]}, "pass levels=.* or crossed="),
        ({"levels": ["a", "b", "c", "d", "e"]}, "levels 2 to 5 at most"),
        ({"levels": ["a", "a"]}, "names 'a' twice"),
        ({"levels": [1, 2]}, "`levels` is a list of grouping columns"),
        ({"crossed": ["a"]}, "`crossed` lists 2 to 5"),
        ({"crossed": ["a", "a:b"]}, "a:b is nested in a"),
        ({"cluster": "g", "diagonal": ["h"]}, "`diagonal` names 'h'"),
        ({"crossed": ["a", "b"], "diagonal": 3}, "`diagonal` is True, False"),
    ],
)
def test_bad_grouping_arguments(kwargs, fragment):
    with pytest.raises(SpecError, match=fragment):
        Spec.from_equations("y = b0 + e\nb0 = g00 + U0", **kwargs)


def test_models_without_a_level2_effect_or_an_empty_top_level_are_refused():
    with pytest.raises(SpecError, match="no random effect varies over schoolid:childid"):
        Spec.from_equations("y = p0 + e\np0 = b00\nb00 = g000 + u00", levels=LEVELS)
    with pytest.raises(SpecError, match="no random effect varies over a"):
        Spec.from_equations("y = b0 + e\nb0 = g00 + V0", crossed=["a", "b"])
    with pytest.raises(SpecError, match="level 3 \\(schoolid\\) has no variable and no random"):
        Spec.from_equations("y = p0 + e\np0 = b00 + b01*w + r0\nb00 = g000\nb01 = g010",
                            levels=LEVELS)


def test_specs_that_cannot_be_written_as_level_equations():
    no_data = Spec.from_formula("y ~ x*w + (1 | a/b)")
    with pytest.raises(SpecError, match=r"pass the data to Spec\.from_formula"):
        no_data.to_equations()
    two_blocks = Spec.from_formula("y ~ x + (0 + x | g) + (1 | g)")
    with pytest.raises(SpecError, match="several random-effect blocks over g"):
        two_blocks.to_equations()
    data = nested_data(["b", "a"], {"x": 1, "w": 3})
    off_path = Spec.from_formula("y ~ 1 + (1 + x | a) + (1 | a:b)", data)
    with pytest.raises(SpecError, match="not the path of a level-1 coefficient"):
        off_path.to_equations()


# ------------------------------------------------------------------ property: round trips

LETTERS = {2: ("b", "g"), 3: ("p", "b", "g"), 4: ("p", "b", "g", "g")}
RANDOM = {2: "U", 3: "r", 4: "u", 5: "v"}


@st.composite
def nested_models(draw):
    """Equations of 2-4 levels: 1-3 variables at random levels, random effects at random."""
    depth = draw(st.integers(2, 4))
    n_vars = draw(st.integers(1, 3))
    levels = {f"x{i}": draw(st.integers(1, depth)) for i in range(1, n_vars + 1)}
    by_level = {k: [v for v, lvl in levels.items() if lvl == k] for k in range(1, depth + 1)}
    letters = LETTERS[depth]
    lines: list[str] = []
    deeper: list[str] = []
    l1 = [()] + [(v,) for v in draw(st.permutations(by_level[1]))]
    top_effect = False  # the top level has a random effect or a variable

    def equation(name: str, sub: str, level: int) -> None:
        nonlocal top_effect
        own = draw(st.lists(st.sampled_from(by_level[level + 1]), unique=True)
                   ) if by_level[level + 1] else []
        parts = [letters[level] + sub + "0"] + [
            f"{letters[level]}{sub}{i}*{v}" for i, v in enumerate(own, start=1)]
        top_effect = top_effect or bool(own and level + 1 == depth)
        effect = (sub == "0" and level == 1) or draw(st.booleans())
        if effect:
            letter = "U" if depth == 2 else RANDOM[level + 2]
            parts.append(f"{letter}{sub}")
            top_effect = top_effect or level + 1 == depth
        (lines if level == 1 else deeper).append(f"{name} = {' + '.join(parts)}")
        if level + 1 < depth:
            for part in parts:
                if not part.startswith(letters[level]):
                    continue
                child = part.split("*")[0]
                equation(child, child[1:], level + 1)

    for q, _ in enumerate(l1):
        equation(f"{letters[0]}{q}", str(q), 1)
    assume(depth == 2 or top_effect)
    outcome = "y = " + " + ".join(
        "*".join([f"{letters[0]}{q}", *t]) for q, t in enumerate(l1)) + " + e"
    text = "\n".join([outcome, *lines, *deeper])
    columns = [f"l{k}" for k in range(2, depth + 1)]
    diagonal = draw(st.lists(st.sampled_from(columns), unique=True))
    return text, columns, levels, diagonal


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nested_models(), st.integers(0, 1000))
def test_nested_round_trips(case, seed):
    text, columns, levels, diagonal = case
    spec = Spec.from_equations(text, levels=columns, diagonal=diagonal)
    assert reread(spec) == spec
    data = nested_data(columns, levels, seed=seed)
    made = Spec.from_formula(spec.to_formula(), data)
    assert shape(made) == shape(spec)
    assert reread(made) == made
    if len(spec.random) == len(columns) and len(columns) > 1:
        assert made.variable_levels == spec.variable_levels
        # The formula names an effect of a level-2 variable otherwise (v100 for v010).
        assert [(b.factor, b.terms, b.structure) for b in made.random] == [
            (b.factor, b.terms, b.structure) for b in spec.random]


@st.composite
def crossed_models(draw):
    """Two or three crossed factors, each with random effects on a subset of coefficients."""
    n_slopes = draw(st.integers(0, 2))
    factors = ["f1", "f2", "f3"][: draw(st.integers(2, 3))]
    qs = list(range(n_slopes + 1))
    effects = {f: draw(st.lists(st.sampled_from(qs), min_size=1, unique=True).map(sorted))
               for f in factors}
    letters = dict(zip(factors, "UVW", strict=False))
    lines = ["y = " + " + ".join(["b0", *(f"b{q}*x{q}" for q in qs[1:])]) + " + e"]
    for q in qs:
        lines.append(f"b{q} = " + " + ".join(
            [f"g{q}0", *(f"{letters[f]}{q}" for f in factors if q in effects[f])]))
    term = {0: "1"} | {q: f"x{q}" for q in qs[1:]}
    diagonal = draw(st.lists(st.sampled_from(factors), unique=True))
    parts = {f: " + ".join(([] if 0 in effects[f] else ["0"]) + [term[q] for q in effects[f]])
             for f in factors}
    bars = " + ".join(f"({parts[f]} {'||' if f in diagonal else '|'} {f})" for f in factors)
    formula = "y ~ " + " + ".join(["1", *(f"x{q}" for q in qs[1:])]) + " + " + bars
    return "\n".join(lines), factors, diagonal, formula


@settings(max_examples=40, deadline=None)
@given(crossed_models())
def test_crossed_equations_are_the_formula_spec(case):
    text, factors, diagonal, formula = case
    spec = Spec.from_equations(text, crossed=factors, diagonal=diagonal)
    assert spec == Spec.from_formula(formula)
    assert spec.to_equations() == text
    assert reread(spec) == spec


_ALPHABET = ["y", "p0", "p1", "b00", "b01", "g000", "g010", "r0", "u00", "v000", "U0", "V0",
             "x", "w", "e", " = ", " + ", "*", "\n", "#", "`", "[j]", "π0", "β00"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(_ALPHABET), max_size=30).map("".join),
       st.sampled_from([{"levels": LEVELS}, {"levels": ["a", "b", "c"]},
                        {"crossed": ["a", "b"]}, {"cluster": "g"}]))
def test_level_parser_raises_only_spec_errors(text, kwargs):
    for attempt in (text, "y = p0 + " + text, "y = p0 + e\np0 = b00 + r0\n" + text):
        try:
            spec = Spec.from_equations(attempt, **kwargs)
        except SpecError:
            continue
        assert reread(spec) == spec
