"""Per-cluster cross-products against a loop over clusters, on the standardised scale."""

from __future__ import annotations

import numpy as np
import pandas as pd
from conftest import DATA

import bayesmix as bm
from bayesmix import build_design, cluster_stats
from bayesmix.scaling import Scaling
from bayesmix.stats import cross_products


def _by_hand(d):
    """Centre and scale X's slope column, Zq (intercept only) and y by hand (dung: X = [1, flies])."""
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
    sc = Scaling.from_arrays(X, Z, y, x_intercept=None, z_intercept=None)
    a = cross_products(X, Z, y, idx, J, scaling=sc, chunk_rows=64)
    b = cross_products(X, Z, y, idx, J, scaling=sc, chunk_rows=n)
    np.testing.assert_allclose(a.M, b.M, rtol=1e-12)
    W = np.column_stack([X, Z, y])
    np.testing.assert_allclose(a.raw_M().sum(axis=0), W.T @ W, rtol=1e-10)


def test_to_scaling_is_the_exact_linear_map():
    s = pd.read_csv(DATA / "sleepstudy.csv")
    sleep_design = build_design(bm.Spec.from_formula("Reaction ~ Days + (Days | Subject)"), s)
    a = cluster_stats(sleep_design)
    other = Scaling.from_arrays(
        sleep_design.X[:20], sleep_design.Zq[:20], sleep_design.y[:20], x_intercept=0,
        z_intercept=0,
    )
    b = cluster_stats(sleep_design, scaling=other)
    np.testing.assert_allclose(a.to_scaling(other).M, b.M, atol=1e-9 * np.abs(b.M).max())
