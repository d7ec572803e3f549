"""Per-cluster cross-products against a loop over clusters."""

from __future__ import annotations

import numpy as np

from bayesmix import build_design, cluster_stats
from bayesmix.stats import cross_products


def test_cross_products_equal_a_loop_over_clusters(dung_spec, dung_data):
    d = build_design(dung_spec, dung_data)
    st = cluster_stats(d)
    for j in range(d.J):
        rows = d.cluster_index == j
        X, Z, y = d.X[rows], d.Zq[rows], d.y[rows]
        np.testing.assert_allclose(st.XX[j], X.T @ X)
        np.testing.assert_allclose(st.XZ[j], X.T @ Z)
        np.testing.assert_allclose(st.ZZ[j], Z.T @ Z)
        np.testing.assert_allclose(st.Xy[j], X.T @ y)
        np.testing.assert_allclose(st.Zy[j], Z.T @ y)
        np.testing.assert_allclose(st.yy[j], y @ y)
        assert st.n[j] == rows.sum()


def test_chunking_does_not_change_the_result():
    rng = np.random.default_rng(0)
    n, J = 1000, 37
    X, Z, y = rng.normal(size=(n, 3)), rng.normal(size=(n, 2)), rng.normal(size=n)
    idx = rng.integers(0, J, size=n)
    a = cross_products(X, Z, y, idx, J, chunk_rows=64)
    b = cross_products(X, Z, y, idx, J, chunk_rows=n)
    np.testing.assert_allclose(a.M, b.M, rtol=1e-12)
    W = np.column_stack([X, Z, y])
    np.testing.assert_allclose(a.M.sum(axis=0), W.T @ W, rtol=1e-10)
