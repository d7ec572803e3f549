"""Per-cluster cross-products against a loop over clusters, on the standardised scale."""

from __future__ import annotations

import numpy as np
import pandas as pd
from conftest import DATA, MODELS

import bayesmix as bm
from bayesmix import build_design, cluster_stats
from bayesmix.scaling import Scaling
from bayesmix.stats import cross_products


def _by_hand(d):
    """Centre and scale X's slope column and y by hand (dung: X = [1, flies], Zq = 1)."""
    X = d.X.copy()
    X[:, 1] = (X[:, 1] - X[:, 1].mean()) / X[:, 1].std()
    y = (d.y - d.y.mean()) / d.y.std()
    return X, d.Zq.copy(), y


def test_cross_products_equal_a_loop_over_clusters(dung_spec, dung_data):
    d = build_design(dung_spec, dung_data)
    st = cluster_stats(d)
    Xs, Zs, ys = _by_hand(d)
    for j in range(d.J):
        rows = d.cluster_index == j
        X, Z, y = Xs[rows], Zs[rows], ys[rows]
        np.testing.assert_allclose(st.XX[j], X.T @ X, atol=1e-12)
        np.testing.assert_allclose(st.XZ[j], X.T @ Z, atol=1e-12)
        np.testing.assert_allclose(st.ZZ[j], Z.T @ Z, atol=1e-12)
        np.testing.assert_allclose(st.Xy[j], X.T @ y, atol=1e-12)
        np.testing.assert_allclose(st.Zy[j], Z.T @ y, atol=1e-12)
        np.testing.assert_allclose(st.yy[j], y @ y)
        assert st.n[j] == rows.sum()
        # The raw cross-products are the standardised ones mapped back.
        W = np.column_stack([d.X[rows], d.Zq[rows], d.y[rows]])
        np.testing.assert_allclose(st.raw_M()[j], W.T @ W, rtol=1e-10)


def test_standardised_stats_do_not_see_a_shift_or_a_scale():
    # Days + 1e6 and Reaction * 1e-4 + 1e7: raw cross-products of these lose every digit of
    # the within-cluster variation; the standardised ones equal those of the original data.
    s = pd.read_csv(DATA / "sleepstudy.csv")
    f = "Reaction ~ Days + (Days | Subject)"
    shifted = s.assign(Days=s.Days + 1e6, Reaction=s.Reaction * 1e-4 + 1e7)
    a = cluster_stats(build_design(bm.Spec.from_formula(f, s), s))
    b = cluster_stats(build_design(bm.Spec.from_formula(f, shifted), shifted))
    np.testing.assert_allclose(b.M, a.M, atol=1e-6 * np.abs(a.M).max())


def test_chunking_does_not_change_the_result():
    rng = np.random.default_rng(0)
    n, J = 1000, 37
    X, Z, y = rng.normal(size=(n, 3)), rng.normal(size=(n, 2)), rng.normal(size=n)
    idx = rng.integers(0, J, size=n)
    atoms = np.column_stack([X, Z])  # each column its own atom, no intercept
    sc = Scaling.from_arrays(atoms, y, ((0,), (1,), (2,)), ((3,), (4,)))
    a = cross_products(atoms, y, idx, J, scaling=sc, chunk_rows=64)
    b = cross_products(atoms, y, idx, J, scaling=sc, chunk_rows=n)
    np.testing.assert_allclose(a.M, b.M, rtol=1e-12)
    W = np.column_stack([X, Z, y])
    np.testing.assert_allclose(a.raw_M().sum(axis=0), W.T @ W, rtol=1e-10)


def test_to_scaling_is_the_exact_linear_map():
    s = pd.read_csv(DATA / "sleepstudy.csv")
    d = build_design(bm.Spec.from_formula("Reaction ~ Days + (Days | Subject)"), s)
    a = cluster_stats(d)
    other = Scaling.from_arrays(d.atoms[:20], d.y[:20], d.fixed_factors, d.random_factors)
    b = cluster_stats(d, scaling=other)
    np.testing.assert_allclose(a.to_scaling(other).M, b.M, atol=1e-9 * np.abs(b.M).max())


def test_products_are_formed_from_centred_variables():
    # HSB's cses:MEANSES with cses shifted by 1e5: column-wise centring would leave the product
    # nearly collinear with MEANSES; centring the variables first gives the same standardised
    # columns as the unshifted data.
    spec = bm.Spec.from_file(MODELS / "hsb.toml")
    data = bm.api.load_data(spec)
    d0 = build_design(spec, data)
    d1 = build_design(spec, data.assign(cses=data.cses + 1e5))
    a, b = cluster_stats(d0), cluster_stats(d1)
    np.testing.assert_allclose(b.M, a.M, atol=1e-8 * np.abs(a.M).max())
    # X = X̃ A_x exactly, and A_x A_x⁻¹ = I.
    sc = b.scaling
    Xs, _, _ = sc.standardize(d1.atoms, d1.y)
    np.testing.assert_allclose(Xs @ sc.A_x, d1.X, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(sc.A_x @ sc.A_x_inv, np.eye(d1.p), atol=1e-9)  # entries ~1e5
