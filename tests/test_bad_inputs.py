"""Inputs that used to be silently reinterpreted, or leaked a raw Python exception (issue 9 §4)."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import bayesmix as bm
from bayesmix import notation as nt
from bayesmix.design import build_design
from bayesmix.design.validate import check_cluster_labels
from bayesmix.errors import BayesmixError, DataError, SpecError
from bayesmix.spec.equations import parse_equations
from bayesmix.spec.formula import MAX_DEPTH, MAX_TERMS, parse_formula
from bayesmix.spec.model import Coefficient, Gamma, Spec

# ------------------------------------------------------------------ formulas


def test_leading_minus_one_drops_the_intercept():
    spec = Spec.from_formula("y ~ -1 + X + (1 | g)")
    assert spec == Spec.from_formula("y ~ 0 + X + (1 | g)")
    assert spec.to_formula() == "y ~ 0 + X + (1 | g)"


def test_minus_one_inside_a_subtracted_group_drops_the_intercept():
    parsed = parse_formula("y ~ X + M - (1 + M) + (1 | g)")
    assert parsed.fixed == (("X",),)


def test_subtracted_random_part_is_refused():
    with pytest.raises(SpecError, match="cannot be subtracted") as err:
        Spec.from_formula("y ~ X - (1 | g)")
    assert err.value.position == 7


@pytest.mark.parametrize("formula", ["y ~ X*X + (1 | g)", "y ~ X:X + (1 | g)",
                                     "y ~ X*M*X + (1 | g)", "y ~ X + (X:X | g)"])
def test_variable_times_itself_is_refused_in_formulas(formula):
    with pytest.raises(SpecError, match=r"multiplied by itself.*or I\(X\^2\) for a square"):
        Spec.from_formula(formula)


def test_deeply_nested_parentheses_are_a_spec_error():
    deep = "y ~ " + "(" * 5000 + "X" + ")" * 5000 + " + (1 | g)"
    with pytest.raises(SpecError, match=f"nested more than {MAX_DEPTH} deep"):
        Spec.from_formula(deep)
    ok = "y ~ " + "(" * 20 + "X" + ")" * 20 + " + (1 | g)"
    assert Spec.from_formula(ok).level1_variables == ("X",)


def test_long_products_are_refused_fast_and_long_sums_are_linear():
    thirteen = "y ~ " + "*".join(f"x{i}" for i in range(13)) + " + (1 | g)"
    start = time.perf_counter()
    with pytest.raises(SpecError, match=f"more than {MAX_TERMS} terms"):
        Spec.from_formula(thirteen)
    ten = "y ~ " + "*".join(f"x{i}" for i in range(10)) + " + (1 | g)"
    assert len(Spec.from_formula(ten).fixed_terms) == 1024
    assert time.perf_counter() - start < 2.0
    wide = "y ~ " + " + ".join(f"x{i}" for i in range(3000)) + " + (1 | g)"
    start = time.perf_counter()
    assert len(Spec.from_formula(wide).fixed_terms) == 3001
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize("bad", [None, 3, ["y ~ X + (1 | g)"]])
def test_formula_that_is_not_text(bad):
    with pytest.raises(SpecError, match="a formula is a string"):
        Spec.from_formula(bad)


@pytest.mark.parametrize("formula, message", [
    ("", "exactly one '~'"),
    ("y ~", "ends where"),
    ("y ~ (X + (1 | g)", r"expected '\)'"),
    ("y ~ X) + (1 | g)", r"unexpected '\)'"),
    ("y ~ logit(X) + (1 | g)", r"unknown function logit\(\)"),
    ("y ~ log(X + (1 | g)", "is never closed"),
    ("y ~ poly(X, 0) + (1 | g)", "whole number from 1 to 20"),
])
def test_other_malformed_formulas(formula, message):
    with pytest.raises(SpecError, match=message):
        Spec.from_formula(formula)


# ------------------------------------------------------------------ equations


def test_variable_twice_in_an_equation_product_is_refused():
    text = "y = b0 + b1*X*X + e\nb0 = g00 + U0\nb1 = g10"
    with pytest.raises(SpecError, match="X appears twice") as err:
        Spec.from_equations(text, "g")
    assert (err.value.line, err.value.position) == (1, 15)  # the second X
    with pytest.raises(SpecError, match="M appears twice"):
        Spec.from_equations("y = b0 + e\nb0 = g00 + g01*M*M + U0", "g")


def test_spec_built_directly_refuses_a_repeated_variable():
    coefs = (Coefficient("b0", (), (Gamma("g00"),), "U0"),
             Coefficient("b1", ("X", "X"), (Gamma("g10"),)))
    with pytest.raises(SpecError, match="b1 multiplies 'X' twice"):
        Spec("y", "g", coefs)


def test_equations_that_are_not_text():
    with pytest.raises(SpecError, match="the equations are a string"):
        Spec.from_equations(5, "g")


@pytest.mark.parametrize("make", [
    lambda: Spec.from_formula("y ~ `X[1]` + (1 | g)"),
    lambda: Spec.from_equations("y = b0 + b1*`X[1]` + e\nb0 = g00 + U0\nb1 = g10", "g"),
])
def test_column_named_like_a_coded_level_is_refused(make):
    with pytest.raises(SpecError, match=r"'X\[1\]' has brackets.*'X_1'"):
        make()


# ------------------------------------------------------------------ names and options


def test_a_single_string_is_one_name():
    spec = Spec.from_formula("y ~ X + Sector + (1 | g)", categorical="Sector")
    assert spec.categorical == ("Sector",)
    spec = Spec.from_equations("y = b0 + e\nb0 = g00 + U0", "g", categorical="g2")
    assert spec.categorical == ("g2",)
    assert spec.with_options(categorical="Z").categorical == ("Z",)
    spec = Spec.from_formula("y ~ X + MEANSES + (1 | g)", level2="MEANSES")
    assert spec.level2_variables == ("MEANSES",)


@pytest.mark.parametrize("bad, message", [
    (5, "not int"), ([1], "1 is a int"), ({"a": 1}, "not dict"),
])
def test_categorical_of_the_wrong_type(bad, message):
    with pytest.raises(SpecError, match=message):
        Spec.from_formula("y ~ X + (1 | g)", categorical=bad)


def test_reference_that_is_not_a_mapping():
    with pytest.raises(SpecError, match="`reference` maps"):
        Spec.from_formula("y ~ X + (1 | g)", reference=["Sector"])


def test_cluster_that_is_not_text():
    with pytest.raises(SpecError, match="the cluster must be a column name"):
        Spec.from_equations("y = b0 + e\nb0 = g00 + U0", 5)


# ------------------------------------------------------------------ model files


def _write(tmp_path, body: str, name: str = "m.toml"):
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


BASE = 'formula = "y ~ X + (1 | g)"\n'


@pytest.mark.parametrize("line, key", [
    ("cluster = 5", "`cluster` must be a string"),
    ("categorical = 5", "`categorical` must be a column name or an array"),
    ("categorical = [1, 2]", "`categorical` must be"),
    ("level2 = true", "`level2` must be"),
    ('reference = "Sector"', "`reference` must be a table"),
    ("priors = 3", "`priors` must be a table"),
    ("[reference]\nSector = 1.5", "`reference.Sector` must be a level"),
    ('[priors]\neta = "x"', r"\[priors\]"),
    ("[priors]\nbeta = 3", r"\[priors\]"),
    ('[sampler]\ndraws = "x"', "draws"),
])
def test_model_file_values_of_the_wrong_type(tmp_path, line, key):
    path = _write(tmp_path, BASE + line + "\n")
    with pytest.raises(SpecError, match=key) as err:
        Spec.from_file(path)
    assert str(path) in str(err.value)


def test_model_file_single_string_categorical(tmp_path):
    path = _write(tmp_path, BASE + 'categorical = "X"\n')
    assert Spec.from_file(path).categorical == ("X",)


def test_model_file_that_is_a_folder_or_not_utf8(tmp_path):
    with pytest.raises(SpecError, match="is a folder, not a model file"):
        Spec.from_file(tmp_path)
    path = tmp_path / "latin1.toml"
    path.write_bytes(('name = "caf\u00e9"\n' + BASE).encode("latin-1"))
    with pytest.raises(SpecError, match="not UTF-8 text"):
        Spec.from_file(path)


def test_model_file_data_that_is_a_folder(tmp_path):
    (tmp_path / "data").mkdir()
    path = _write(tmp_path, BASE + 'data = "data"\n')
    with pytest.raises(SpecError, match="`data` = 'data' is a folder"):
        Spec.from_file(path)


def test_model_file_data_not_utf8(tmp_path):
    (tmp_path / "d.csv").write_bytes("y,X,g\n1,2,caf\u00e9\n".encode("latin-1"))
    spec = Spec.from_file(_write(tmp_path, BASE + 'data = "d.csv"\n'))
    with pytest.raises(bm.errors.DataError, match=r"d\.csv cannot be read: not UTF-8"):
        bm.api.load_data(spec)


# ------------------------------------------------------------------ data values

SLEEP = pd.read_csv(Path(__file__).resolve().parents[1] / "data" / "sleepstudy.csv")
HSB = pd.read_csv(Path(__file__).resolve().parents[1] / "data" / "hsb.csv")
SLEEP_SPEC = Spec.from_formula("Reaction ~ Days + (1 | Subject)")


def test_numbers_stored_as_text_are_refused():
    data = SLEEP.assign(Days=SLEEP.Days.astype(str))
    with pytest.raises(DataError, match=r"'Days' holds numbers stored as text \(180 of 180"
                       r".*pd\.to_numeric.*`categorical`"):
        build_design(SLEEP_SPEC, data)
    # Listed under `categorical`, the text codes are categories, as asked.
    d = build_design(SLEEP_SPEC.with_options(categorical="Days"), data)
    assert d.p == 10


def test_numbers_as_text_with_a_missing_marker_name_the_marker():
    days = SLEEP.Days.astype(str).where(SLEEP.index != 5, "n/a")
    with pytest.raises(DataError, match=r"179 of 180.*'n/a'.*errors='coerce'"):
        build_design(SLEEP_SPEC, SLEEP.assign(Days=days))


def test_text_categories_are_still_categorical():
    data = SLEEP.assign(Group=np.where(SLEEP.Days < 5, "early", "late"))
    d = build_design(Spec.from_formula("Reaction ~ Group + (1 | Subject)"), data)
    assert d.fixed_terms == ("(Intercept)", "Group[late]")


def test_complex_predictor_and_outcome_are_refused():
    with pytest.raises(DataError, match="predictor 'Days' holds complex numbers"):
        build_design(SLEEP_SPEC, SLEEP.assign(Days=SLEEP.Days + 1j))
    with pytest.raises(DataError, match="outcome 'Reaction' holds complex numbers"):
        build_design(SLEEP_SPEC, SLEEP.assign(Reaction=SLEEP.Reaction + 0j))


def test_duplicate_column_names_are_refused():
    data = pd.concat([SLEEP, SLEEP[["Days"]]], axis=1)
    with pytest.raises(DataError, match="2 columns named 'Days'"):
        build_design(SLEEP_SPEC, data)


def test_non_text_column_name_is_explained():
    data = SLEEP.rename(columns={"Days": 1})
    spec = Spec.from_formula("Reaction ~ `1` + (1 | Subject)")
    with pytest.raises(DataError, match=r"name is not text.*astype\(str\)"):
        build_design(spec, data)


def _grouped(y):
    return pd.DataFrame({"y": y, "X": np.arange(len(y), dtype=float) % 7,
                         "g": np.repeat(np.arange(10), len(y) // 10)})


@pytest.mark.parametrize("y, family", [
    (np.tile([0.0, 1.0], 50), "bernoulli"),
    (np.random.default_rng(0).poisson(2.0, 100).astype(float), "poisson"),
])
def test_binary_or_count_outcome_warns_with_the_family(y, family):
    with pytest.warns(UserWarning, match=f"Gaussian.*family='{family}'"):
        build_design(Spec.from_formula("y ~ X + (1 | g)"), _grouped(y))
    with warnings.catch_warnings():  # fitted with the family it names: no warning
        warnings.simplefilter("error")
        build_design(Spec.from_formula("y ~ X + (1 | g)", family=family), _grouped(y))


def test_continuous_outcome_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_design(SLEEP_SPEC, SLEEP)


@pytest.mark.parametrize("spec", [
    Spec.from_formula("MathAch ~ MEANSES + (MEANSES | School)"),
    Spec.from_equations("MathAch = b0 + b1*MEANSES + e\nb0 = g00 + U0\nb1 = g10 + U1",
                        "School"),
    Spec.from_formula("MathAch ~ Sector + (Sector | School)"),
])
def test_random_slope_on_a_cluster_constant_variable_is_refused(spec):
    with pytest.raises(DataError, match=r"constant within every School.*confounded"):
        build_design(spec, HSB)


def test_random_slope_varying_in_some_clusters_is_kept():
    spec = Spec.from_formula("Reaction ~ Days + (Days | Subject)")
    assert build_design(spec, SLEEP).q == 2


@pytest.mark.parametrize("label", ["308.0", " 308", "308 "])
def test_cluster_label_written_differently_is_refused(label):
    clusters = ("308", "309", "x1")
    with pytest.raises(DataError, match=f"Subject '{label}'.*the fitted Subject '308'"):
        check_cluster_labels(np.array([label, "309"]), clusters, "Subject")
    with pytest.raises(DataError, match="fitted Subject 'x1'"):
        check_cluster_labels(np.array(["X1"]), clusters, "Subject")
    check_cluster_labels(np.array(["308", "999", "new"]), clusters, "Subject")  # new: allowed


def _fake_fit(spec, data):
    """Enough of a Fit for predict(): its spec, design and a posterior of zeros."""
    design = build_design(spec, data)
    shape = (1, 2)
    post = xr.Dataset({
        nt.BETA: (("chain", "draw", nt.DIM_FIXED), np.zeros((*shape, design.p))),
        nt.U: (("chain", "draw", nt.DIM_CLUSTER, nt.DIM_RANDOM),
               np.zeros((*shape, design.J, design.q))),
        nt.CHOL_U: (("chain", "draw", nt.DIM_RANDOM, nt.DIM_RANDOM2),
                    np.ones((*shape, design.q, design.q))),
        nt.SIGMA: (("chain", "draw"), np.ones(shape)),
    })
    return SimpleNamespace(spec=spec, design=design, posterior=post)


def test_predict_refuses_a_cluster_id_written_as_a_float():
    fit = _fake_fit(SLEEP_SPEC, SLEEP)
    rows = SLEEP.head(3).assign(Subject=308.0)
    with pytest.raises(DataError, match=r"Subject '308\.0'.*fitted Subject '308'"):
        bm.predict(fit, rows)
    assert bm.predict(fit, SLEEP.head(3).assign(Subject=1)).new_clusters == ("1",)


def test_formula_data_that_is_not_a_dataframe():
    with pytest.raises(DataError, match="data must be a pandas DataFrame, not dict"):
        Spec.from_formula("Reaction ~ Days + (1 | Subject)", SLEEP.to_dict())


def test_level2_naming_a_variable_the_formula_does_not_use():
    with pytest.raises(SpecError, match="`level2` names 'MEANSE'"):
        Spec.from_formula("y ~ X + MEANSES + (1 | g)", level2="MEANSE")


def test_with_options_refuses_unknown_fields_and_bad_reference():
    with pytest.raises(SpecError, match="Spec has no field 'refrence'"):
        SLEEP_SPEC.with_options(refrence={"Days": "0"})
    with pytest.raises(SpecError, match="`reference` maps"):
        SLEEP_SPEC.with_options(reference=[1])


def test_dates_as_a_predictor_are_refused():
    data = SLEEP.assign(Days=pd.to_datetime(SLEEP.Days, unit="D"))
    with pytest.raises(DataError, match=r"'Days' holds dates or times.*\.dt\.days"):
        build_design(SLEEP_SPEC, data)


def test_no_rows_and_unused_categorical():
    with pytest.raises(DataError, match="the data has no rows"):
        build_design(SLEEP_SPEC, SLEEP.iloc[:0])
    with pytest.raises(DataError, match="'Dayz' is listed under `categorical`"):
        build_design(SLEEP_SPEC.with_options(categorical="Dayz"), SLEEP)


# ------------------------------------------------------------------ fuzz

_ALPHABET = [*"yXMg01 ~+-*:()|^/`=.[]#\n", "b0", "b1", "g00", "g10", "U0", "e", "log"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(_ALPHABET), max_size=30).map("".join))
def test_formula_parser_raises_only_bayesmix_errors(text):
    for attempt in (text, "y ~ " + text, "y ~ " + text + " + (1 | g)"):
        try:
            Spec.from_formula(attempt)
        except BayesmixError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(_ALPHABET), max_size=30).map("".join))
def test_equation_parser_raises_only_bayesmix_errors(text):
    for attempt in (text, "y = " + text, "y = b0 + " + text + "\nb0 = g00 + U0"):
        try:
            parse_equations(attempt)
            Spec.from_equations(attempt, "g")
        except BayesmixError:
            pass
