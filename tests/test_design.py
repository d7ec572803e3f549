"""build_design(): X and Z against the seeds, by property against the L1/L2 equations, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesmix import DataError, Spec, build_design

# The seed tutorial's X (R's print of cbind(1, dung$flies)) and Z (its for-loop indicator).
SEED_FLIES = [223, 0, 100, 97, 130, 169, 183, 77, 0, 51, 49, 81, 45, 98, 168, 22, 4, 98]
SEED_BLOCK = [1] * 7 + [2] * 5 + [3] * 6


def test_dung_X_and_Z_equal_the_seed(dung_spec, dung_data):
    d = build_design(dung_spec, dung_data)
    seed_X = np.column_stack([np.ones(18), SEED_FLIES])
    seed_Z = np.zeros((18, 3))
    seed_Z[np.arange(18), np.array(SEED_BLOCK) - 1] = 1
    np.testing.assert_array_equal(d.X, seed_X)
    assert isinstance(d.Z, sp.csr_array)
    np.testing.assert_array_equal(d.Z.toarray(), seed_Z)
    assert d.fixed_names == ("g00 (Intercept)", "g10 (flies)")
    assert d.clusters == ("1", "2", "3")
    assert list(d.Z_frame().columns) == ["U0[1]", "U0[2]", "U0[3]"]
    assert d.level2["n"].tolist() == [7, 5, 6]


def test_cross_level_design_matches_seed_question_per_cluster():
    # The seed question: X_j = [1 X M M·X], Z_j = [1 X]; Z block-diagonal across clusters.
    df = pd.DataFrame({"y": [1.0, 2, 3, 4, 5, 6], "X": [0.5, 1.5, -1, 2, 3, 4],
                       "M": [2.0, 2, 2, -1, -1, -1], "g": ["a", "a", "a", "b", "b", "b"]})
    spec = Spec.from_equations("y = b0 + b1*X + e\nb0 = g00 + g01*M + U0\n"
                               "b1 = g10 + g11*M + U1", "g")
    d = build_design(spec, df)
    np.testing.assert_array_equal(d.X, np.column_stack([np.ones(6), df.X, df.M, df.M * df.X]))
    Z = d.Z.toarray()
    np.testing.assert_array_equal(Z[:3, :2], np.column_stack([np.ones(3), df.X[:3]]))
    np.testing.assert_array_equal(Z[3:, 2:], np.column_stack([np.ones(3), df.X[3:]]))
    assert not Z[:3, 2:].any() and not Z[3:, :2].any()
    assert d.fixed_names == ("g00 (Intercept)", "g10 (X)", "g01 (M)", "g11 (X:M)")
    assert d.z_columns["U1 (X)"].tolist() == [1, 3]


def _evaluate_by_hand(spec: Spec, df: pd.DataFrame, gammas: dict, U: dict) -> np.ndarray:
    """y_ij without ε, from the L1/L2 equations, cluster by cluster, as the seed does."""
    out = np.zeros(len(df))
    for label, rows in df.groupby("g", sort=True).groups.items():
        first = df.loc[rows[0]]
        for coef in spec.coefficients:
            beta_j = sum(
                gammas[g.name] * np.prod([first[v] for v in g.variables]) for g in coef.gammas
            )
            if coef.random is not None:
                beta_j += U[coef.random][label]
            level1 = np.prod([df.loc[rows, v].to_numpy() for v in coef.variables], axis=0) \
                if coef.variables else 1.0
            out[df.index.get_indexer(rows)] += beta_j * level1
    return out


@st.composite
def specs_and_data(draw):
    n_l1, n_l2 = draw(st.integers(0, 3)), draw(st.integers(0, 2))
    J = draw(st.integers(4, 7))  # at least n_l2 + 2 clusters, or X is rank deficient
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    sizes = rng.integers(5, 9, size=J)  # n > J*q, or the design is refused
    labels = [f"c{j}" for j in range(J)]
    df = pd.DataFrame({"g": np.repeat(labels, sizes)})
    for i in range(n_l1):
        df[f"X{i}"] = rng.normal(size=len(df))
    for i in range(n_l2):
        df[f"M{i}"] = np.repeat(rng.normal(size=J), sizes)
    df["y"] = rng.normal(size=len(df))
    df = df.sample(frac=1.0, random_state=seed % 1000).reset_index(drop=True)  # any row order
    l1 = ["b0"] + [f"b{i + 1}*X{i}" for i in range(n_l1)]
    lines = ["y = " + " + ".join(l1) + " + e"]
    for q in range(n_l1 + 1):
        terms = [f"g{q}0"] + [f"g{q}{s + 1}*M{s}" for s in range(n_l2) if draw(st.booleans())]
        if q == 0 or draw(st.booleans()):
            terms.append(f"U{q}")
        lines.append(f"b{q} = " + " + ".join(terms))
    return Spec.from_equations("\n".join(lines), "g"), df, seed


@settings(max_examples=60, deadline=None)
@given(specs_and_data())
def test_equations_by_hand_equal_X_gamma_plus_Z_u(case):
    spec, df, seed = case
    d = build_design(spec, df)
    rng = np.random.default_rng(seed + 1)
    gamma = rng.normal(size=d.p)
    u = rng.normal(size=(d.J, d.q))
    by_name = dict(zip(d.gamma_names, gamma, strict=True))
    U = {r.split(" ")[0]: dict(zip(d.clusters, u[:, k], strict=True))
         for k, r in enumerate(d.random_names)}
    expected = _evaluate_by_hand(spec, df, by_name, U)
    np.testing.assert_allclose(d.X @ gamma + d.Z @ u.reshape(-1), expected, atol=1e-12)
    np.testing.assert_allclose(d.linear_predictor(gamma, u), expected, atol=1e-12)
    # The cluster coefficients β_qj reproduce the same fitted values through level 1.
    coef = d.cluster_coefficients(gamma, u)
    np.testing.assert_allclose((d.L1 * coef[d.cluster_index]).sum(axis=1), expected,
                               atol=1e-12)


def test_categorical_treatment_coding_with_reference():
    df = pd.DataFrame({
        "y": np.arange(12.0) ** 1.3, "g": np.repeat(["s1", "s2", "s3", "s4"], 3),
        "Sector": np.repeat(["Public", "Catholic", "Public", "Catholic"], 3),
        "Sex": ["F", "M", "F"] * 4, "X": np.linspace(-1, 1, 12),
    })
    spec = Spec.from_equations("y = b0 + b1*X + b2*Sex + e\nb0 = g00 + g01*Sector + U0\n"
                               "b1 = g10 + g11*Sector\nb2 = g20", "g",
                               reference={"Sector": "Public"})
    d = build_design(spec, df)
    assert d.fixed_names == ("g00 (Intercept)", "g10 (X)", "g20 (Sex[M])",
                             "g01 (Sector[Catholic])", "g11 (X:Sector[Catholic])")
    np.testing.assert_array_equal(d.X[:, 3], (df.Sector == "Catholic").astype(float))
    np.testing.assert_array_equal(d.X[:, 4], df.X * (df.Sector == "Catholic"))
    # Alphabetical order would make Catholic the reference; without the option it is.
    d2 = build_design(spec.with_options(reference={}), df)
    assert "g01 (Sector[Public])" in d2.fixed_names


def test_three_level_factor_gets_two_columns_named_by_level():
    df = pd.DataFrame({"y": np.arange(12.0) % 5, "g": np.repeat(["a", "b", "c", "d"], 3),
                       "F": ["x", "y", "z"] * 4})
    spec = Spec.from_equations("y = b0 + b1*F + e\nb0 = g00 + U0\nb1 = g10 + U1", "g")
    with pytest.raises(DataError, match="not larger than the number of random effects"):
        build_design(spec, df)
    spec = Spec.from_equations("y = b0 + b1*F + e\nb0 = g00 + U0\nb1 = g10", "g")
    d = build_design(spec, df)
    assert d.fixed_names[1:] == ("g10[y] (F[y])", "g10[z] (F[z])")


# ----------------------------------------------------------------------------- bad input
def test_unknown_column_names_closest_and_lists_columns(dung_data):
    spec = Spec.from_equations("pr_dung = b0 + b1*flys + e\nb0 = g00 + U0\nb1 = g10",
                               "oven_block")
    with pytest.raises(DataError, match=r"column 'flys' is not in the data; did you mean "
                                        r"'flies'\?\nThe data has: 'pr_dung', 'flies'"):
        build_design(spec, dung_data)


def test_level2_predictor_varying_inside_a_cluster_is_named(dung_data):
    spec = Spec.from_equations("pr_dung = b0 + e\nb0 = g00 + g01*flies + U0", "oven_block")
    with pytest.raises(DataError, match=r"'flies' is a level-2 predictor but varies inside "
                                        r"oven_block '1' \(values 223, 0, 100"):
        build_design(spec, dung_data)


def test_missing_values_refused_then_dropped_with_count(dung_spec, dung_data):
    df = dung_data.copy()
    df.loc[[2, 9], "flies"] = np.nan
    with pytest.raises(DataError, match=r"'flies': 2 missing, at rows 2, 9") as info:
        build_design(dung_spec, df)
    assert "missing='drop'" in str(info.value)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d = build_design(dung_spec, df, missing="drop")
    assert d.n == 16
    assert any("dropped 2 of 18 rows" in str(w.message) for w in caught)


def test_fewer_than_two_clusters(dung_spec, dung_data):
    with pytest.raises(DataError, match="has 1 unit; a random effect needs at least two"):
        build_design(dung_spec, dung_data[dung_data.oven_block == 2])


def test_collinear_columns_are_named(dung_data):
    df = dung_data.assign(flies2=2 * dung_data.flies)
    spec = Spec.from_equations("pr_dung = b0 + b1*flies + b2*flies2 + e\nb0 = g00 + U0\n"
                               "b1 = g10\nb2 = g20", "oven_block")
    with pytest.raises(DataError, match=r"columns 'g10 \(flies\)', 'g20 \(flies2\)' are "
                                        "collinear"):
        build_design(spec, df)


def test_constant_and_non_numeric_outcome(dung_spec, dung_data):
    with pytest.raises(DataError, match="is constant"):
        build_design(dung_spec, dung_data.assign(pr_dung=0.5))
    with pytest.raises(DataError, match="must be numeric"):
        build_design(dung_spec, dung_data.assign(pr_dung="high"))


def test_reference_level_not_present(dung_data):
    df = dung_data.assign(kind=np.where(dung_data.flies > 90, "many", "few"))
    spec = Spec.from_equations("pr_dung = b0 + b1*kind + e\nb0 = g00 + U0\nb1 = g10",
                               "oven_block", reference={"kind": "none"})
    with pytest.raises(DataError, match=r"reference level 'none' of 'kind' is not among its "
                                        r"levels \('few', 'many'\)"):
        build_design(spec, df)


def test_rows_keep_data_order_and_labels(dung_spec, dung_data):
    shuffled = dung_data.sample(frac=1.0, random_state=3)
    d = build_design(dung_spec, shuffled)
    assert list(d.row_labels) == list(shuffled.index)
    np.testing.assert_array_equal(d.y, shuffled.pr_dung.to_numpy())
