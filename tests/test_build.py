"""The three likelihood forms: equal log densities, checked against independent computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from bayesmix import Spec, build_design, build_model, cluster_stats
from bayesmix.checks.reconstruct import cluster_blocks, explicit_loglik, loglik_function
from bayesmix.collapsed import draw_u_conditional

ROOT_DATA = __import__("pathlib").Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def sleep_design():
    data = pd.read_csv(ROOT_DATA / "sleepstudy.csv")
    return build_design(Spec.from_formula("Reaction ~ Days + (Days | Subject)"), data)


def _random_point(design, rng):
    beta = rng.normal(size=design.p) * np.array([30, 3])[: design.p] + np.array([250, 10])
    L = np.tril(rng.normal(size=(design.q, design.q)))
    L[np.diag_indices(design.q)] = np.abs(L[np.diag_indices(design.q)]) * 10 + 1
    return {"beta": beta, "sigma": float(rng.uniform(10, 40)), "chol_u": L,
            "u": rng.normal(size=(design.J, design.q)) * 10}


def test_rows_and_sufficient_model_logp_agree(sleep_design):
    rows = build_model(sleep_design, likelihood="rows").model
    suff = build_model(sleep_design, likelihood="sufficient").model
    f_rows, f_suff = rows.compile_logp(), suff.compile_logp()
    rng = np.random.default_rng(0)
    point = rows.initial_point()
    for _ in range(5):
        p = {k: v + rng.normal(size=np.shape(v)) * 0.5 for k, v in point.items()}
        a, b = f_rows(p), f_suff(p)
        assert abs(a - b) <= 1e-8 * abs(a)


def test_collapsed_equals_dense_marginal_gaussian(sleep_design):
    fn = loglik_function(build_model(sleep_design, likelihood="collapsed"))
    rng = np.random.default_rng(1)
    d = sleep_design
    Z = d.Z.toarray()
    for _ in range(3):
        pt_ = _random_point(d, rng)
        T = pt_["chol_u"] @ pt_["chol_u"].T
        V = pt_["sigma"] ** 2 * np.eye(d.n) + Z @ np.kron(np.eye(d.J), T) @ Z.T
        ref = stats.multivariate_normal(d.X @ pt_["beta"], V).logpdf(d.y)
        assert fn(**pt_) == pytest.approx(ref, rel=1e-10)


def test_collapsed_equals_rows_likelihood_integrated_over_u():
    # A tiny random-intercept model: integrate each cluster's U numerically.
    df = pd.DataFrame({"y": [1.0, 1.4, 0.7, 2.5, 2.9, 3.3, 2.2], "x": [0, 1, 2, 0, 1, 2, 3],
                       "g": ["a", "a", "a", "b", "b", "b", "b"]})
    d = build_design(Spec.from_formula("y ~ x + (1 | g)"), df)
    collapsed = loglik_function(build_model(d, likelihood="collapsed"))
    beta, sigma, tau = np.array([1.1, 0.3]), 0.45, 0.8
    total = 0.0
    for j in range(d.J):
        rows = d.cluster_index == j

        def integrand(u, rows=rows):
            mu = d.X[rows] @ beta + u
            return np.exp(stats.norm.logpdf(d.y[rows], mu, sigma).sum()) * stats.norm.pdf(
                u, 0, tau)

        total += np.log(integrate.quad(integrand, -10, 10, epsabs=1e-14, epsrel=1e-12)[0])
    got = collapsed(beta=beta, sigma=sigma, chol_u=np.array([[tau]]))
    assert got == pytest.approx(total, rel=1e-9)


def test_u_conditional_draws_have_the_blup_mean_and_covariance(sleep_design):
    d = sleep_design
    rng = np.random.default_rng(2)
    pt_ = _random_point(d, rng)
    D = 20_000
    # draw_u_conditional works on the statistics' standardised scale: map the point there
    # and the draws back (bayesmix.scaling); the reference below is on the original scale.
    st = cluster_stats(d)
    sc = st.scaling
    T = pt_["chol_u"] @ pt_["chol_u"].T
    chol_std = np.linalg.cholesky(sc.cov_to_std(T))
    u_std = draw_u_conditional(
        st, np.tile(sc.beta_to_std(pt_["beta"]), (D, 1)), np.tile(chol_std, (D, 1, 1)),
        np.full(D, pt_["sigma"] / sc.y_scale), np.random.default_rng(3),
    )
    u = sc.u_from_std(u_std)
    for j in (0, 7):
        rows = d.cluster_index == j
        Zj = d.Zq[rows]
        V = pt_["sigma"] ** 2 * np.eye(rows.sum()) + Zj @ T @ Zj.T
        r = d.y[rows] - d.X[rows] @ pt_["beta"]
        mean = T @ Zj.T @ np.linalg.solve(V, r)
        cov = T - T @ Zj.T @ np.linalg.solve(V, Zj @ T)
        se = np.sqrt(np.diag(cov) / D)
        assert np.all(np.abs(u[:, j].mean(axis=0) - mean) < 5 * se)
        np.testing.assert_allclose(np.cov(u[:, j].T), cov, rtol=0.05, atol=0.02 * cov.max())


def test_forms_share_priors_names_and_free_variables(sleep_design):
    names = {}
    for form in ("rows", "sufficient", "collapsed"):
        m = build_model(sleep_design, likelihood=form).model
        names[form] = {v.name for v in m.free_RVs}
        assert {"beta", "sigma", "sd_u", "corr_u", "chol_u"} <= set(m.named_vars)
    assert names["rows"] == names["sufficient"] == names["collapsed"] | {"u_offset"}


def test_explicit_collapsed_loglik_equals_dense_marginal(sleep_design):
    # The reconstruction's NumPy check (Woodbury over explicit Z blocks) against scipy.
    d = sleep_design
    rng = np.random.default_rng(4)
    pt_ = _random_point(d, rng)
    T = pt_["chol_u"] @ pt_["chol_u"].T
    Z = d.Z.toarray()
    V = pt_["sigma"] ** 2 * np.eye(d.n) + Z @ np.kron(np.eye(d.J), T) @ Z.T
    ref = stats.multivariate_normal(d.X @ pt_["beta"], V).logpdf(d.y)
    got = explicit_loglik(d, "collapsed", pt_["beta"], pt_["u"], pt_["chol_u"], pt_["sigma"],
                          cluster_blocks(d))
    assert got == pytest.approx(ref, rel=1e-10)
