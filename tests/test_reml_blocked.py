"""The profiled REML / ML of several random-effects blocks (bayesmix.reml.blocked) against
(a) the one-factor path (bayesmix.reml.profiled), (b) the exact Gaussian likelihood computed
densely, and (c) lme4 fits pinned in tests/reference/multi/ (nested, crossed, ``||``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import stats

from bayesmix.reml import optimize as reml_optimize
from bayesmix.reml import profiled
from bayesmix.reml.blocked import BlockArrays, BlockedProblem, fit_blocked
from bayesmix.stats import ClusterStats

ROOT = Path(__file__).resolve().parents[1]
MULTI = ROOT / "tests" / "reference" / "multi"
LOG_2PI = np.log(2 * np.pi)


# --------------------------------------------------------------------------- helpers
def z_block(labels, cols: np.ndarray) -> tuple[sp.csr_array, list[str]]:
    """Z of one factor (level-major: column j q + r = term r of level j) and its levels.

    Levels are the labels as text, sorted as text (R's factor order of a character column).
    """
    cat = pd.Categorical(np.asarray(labels).astype(str))
    n, q = cols.shape
    rows = np.repeat(np.arange(n), q)
    c = (cat.codes[:, None] * q + np.arange(q)).ravel()
    z = sp.csr_array((cols.ravel(), (rows, c)), shape=(n, len(cat.categories) * q))
    return z, [str(v) for v in cat.categories]


def block(labels, cols, *, diagonal=False, name="") -> tuple[BlockArrays, list[str]]:
    cols = np.asarray(cols, dtype=float).reshape(len(labels), -1)
    z, levels = z_block(labels, cols)
    return BlockArrays(z, len(levels), cols.shape[1], diagonal=diagonal, name=name), levels


def dense_criterion(theta, X, y, blocks, method):
    """−2 log L (ML) or −2 log L_R (REML) at θ, β̂ (GLS) and σ̂, from V = σ²(I + ZΛΛᵀZᵀ)."""
    n, p = X.shape
    z = sp.hstack([b.Z for b in blocks]).toarray()
    lams, off = [], 0
    for b in blocks:
        lams.append(sp.coo_array(np.kron(np.eye(b.J), b.lam(theta[off: off + b.n_theta]))))
        off += b.n_theta
    zl = z @ sp.block_diag(lams).toarray()
    v0 = np.eye(n) + zl @ zl.T
    vi = np.linalg.inv(v0)
    beta = np.linalg.solve(X.T @ vi @ X, X.T @ vi @ y)
    r = y - X @ beta
    dof = n - p if method == "REML" else n
    s2 = r @ vi @ r / dof
    ll = stats.multivariate_normal(X @ beta, s2 * v0).logpdf(y)
    if method == "ML":
        return -2 * ll, beta, s2
    _, logdet = np.linalg.slogdet(X.T @ np.linalg.inv(s2 * v0) @ X)
    return -2 * ll + logdet - p * LOG_2PI, beta, s2


def simulated(kind: str, seed: int = 1):
    """Small data sets: crossed (slope + intercept), nested (3 levels) and a `||` block."""
    rng = np.random.default_rng(seed)
    n = 150
    x = rng.normal(size=n)
    X = np.column_stack([np.ones(n), x, rng.normal(size=n)])
    y = X @ [1.0, 0.5, -0.3] + rng.normal(size=n)
    if kind == "crossed":
        subj, item = rng.integers(0, 12, n), rng.integers(0, 7, n)
        y += rng.normal(size=12)[subj] + 0.4 * rng.normal(size=12)[subj] * x
        y += 0.8 * rng.normal(size=7)[item]
        blocks = [block(item, np.ones(n))[0],
                  block(subj, np.column_stack([np.ones(n), x]))[0]]
        theta = np.array([0.7, 1.1, 0.2, 0.45])
    elif kind == "nested":
        school = rng.integers(0, 5, n)
        klass = np.char.add(school.astype(str), np.char.add(":", rng.integers(0, 4, n).astype(str)))
        y += rng.normal(size=5)[school] + 0.5 * pd.factorize(klass)[0] % 3
        blocks = [block(school, np.column_stack([np.ones(n), x]))[0],
                  block(klass, np.ones(n))[0]]
        theta = np.array([0.9, -0.3, 0.4, 0.6])
    else:  # an uncorrelated block plus a crossed intercept
        g, h = rng.integers(0, 10, n), rng.integers(0, 6, n)
        y += rng.normal(size=10)[g] + 0.3 * rng.normal(size=10)[g] * x + rng.normal(size=6)[h]
        blocks = [block(g, np.column_stack([np.ones(n), x]), diagonal=True)[0],
                  block(h, np.ones(n))[0]]
        theta = np.array([0.8, 0.35, 0.9])
    return X, y, blocks, theta


# --------------------------------------------------------------------------- (b) dense
@pytest.mark.parametrize("kind", ["crossed", "nested", "diagonal"])
@pytest.mark.parametrize("method", ["ML", "REML"])
def test_criterion_equals_dense_likelihood(kind, method):
    X, y, blocks, theta = simulated(kind)
    prob = BlockedProblem(X, y, blocks)
    for th in (theta, 0.3 * theta, prob.start):
        sol = prob.solve(th)
        dense, beta, s2 = dense_criterion(th, X, y, blocks, method)
        np.testing.assert_allclose(sol.criterion(method), dense, rtol=1e-10, atol=1e-8)
        np.testing.assert_allclose(sol.beta, beta, rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(sol.sigma(method) ** 2, s2, rtol=1e-10)


@pytest.mark.parametrize("kind", ["crossed", "nested", "diagonal"])
def test_modes_and_vcov_equal_dense_formulas(kind):
    X, y, blocks, theta = simulated(kind)
    sol = BlockedProblem(X, y, blocks).solve(theta)
    z = sp.hstack([b.Z for b in blocks]).toarray()
    lam = sp.block_diag([sp.coo_array(np.kron(np.eye(b.J), l_)) for b, l_ in
                         zip(blocks, sol.lams, strict=True)]).toarray()
    v0 = np.eye(len(y)) + z @ lam @ lam.T @ z.T
    vi = np.linalg.inv(v0)
    # b̂ = ΛΛᵀZᵀV₀⁻¹(y − Xβ̂),  Cov(β̂) = σ̂² (XᵀV₀⁻¹X)⁻¹
    b = lam @ lam.T @ z.T @ vi @ (y - X @ sol.beta)
    np.testing.assert_allclose(np.concatenate([m.ravel() for m in sol.b]), b, atol=1e-10)
    np.testing.assert_allclose(sol.vcov_beta("REML"),
                               sol.sigma("REML") ** 2 * np.linalg.inv(X.T @ vi @ X), rtol=1e-9)


def test_block_order_and_split_diagonal_block_are_equivalent():
    X, y, blocks, theta = simulated("crossed")
    a = BlockedProblem(X, y, blocks).criterion(theta)
    b = BlockedProblem(X, y, blocks[::-1]).criterion(np.r_[theta[1:], theta[:1]])
    np.testing.assert_allclose(a, b, rtol=1e-12)
    # A `||` block of q terms is q intercept-like blocks on the same factor.
    X, y, blocks, theta = simulated("diagonal")
    g = blocks[0]
    zc = g.Z.tocsc()
    parts = [BlockArrays(zc[:, r::2], g.J, 1) for r in range(2)]
    c = BlockedProblem(X, y, [*parts, blocks[1]]).criterion(theta)
    np.testing.assert_allclose(BlockedProblem(X, y, blocks).criterion(theta), c, rtol=1e-12)


def test_fit_reaches_the_dense_minimum():
    X, y, blocks, _ = simulated("crossed", seed=3)
    fit = fit_blocked(X, y, blocks, "REML")
    assert fit.converged and not fit.is_singular
    rng = np.random.default_rng(0)
    for _ in range(5):
        th = fit.theta * np.exp(rng.normal(scale=0.05, size=fit.theta.size))
        assert dense_criterion(th, X, y, blocks, "REML")[0] > fit.criterion
    np.testing.assert_allclose(dense_criterion(fit.theta, X, y, blocks, "REML")[0],
                               fit.criterion, rtol=1e-10)


def test_singular_block_is_flagged():
    X, y, blocks, _ = simulated("crossed", seed=5)
    item = pd.Series(blocks[0].Z @ np.arange(blocks[0].J, dtype=float))
    y = y - pd.Series(y).groupby(item).transform("mean").to_numpy() + y.mean()
    fit = fit_blocked(X, y, [BlockArrays(b.Z, b.J, b.q, name=n) for b, n in
                             zip(blocks, ["item", "subject"], strict=True)])
    assert fit.converged
    assert fit.singular == (True, False) and fit.theta[0] == 0.0 and fit.sd[0][0] == 0.0
    assert any("item" in m and "Singular" in m for m in fit.messages)
    np.testing.assert_array_equal(fit.modes[0], 0.0)


def test_bad_blocks_are_refused():
    X, y, blocks, _ = simulated("crossed")
    z = blocks[0].Z.tolil()
    level = int(z.rows[0][0])
    z[0, (level + 1) % blocks[0].J] = 1.0
    with pytest.raises(ValueError, match="more than one level"):
        BlockedProblem(X, y, [BlockArrays(sp.csr_array(z), blocks[0].J, 1)])
    with pytest.raises(ValueError, match="'REML' or 'ML'"):
        fit_blocked(X, y, blocks, "reml")
    with pytest.raises(ValueError, match="Z must be"):
        BlockedProblem(X, y, [BlockArrays(blocks[0].Z, blocks[0].J + 1, 1)])


# --------------------------------------------------------------------------- (a) one factor
@pytest.fixture(scope="module")
def sleep():
    d = pd.read_csv(ROOT / "data" / "sleepstudy.csv", dtype={"Subject": str})
    X = np.column_stack([np.ones(len(d)), d["Days"]])
    return d, X, d["Reaction"].to_numpy(float)


def cluster_stats_raw(X, y, zcols, codes, J):
    w = np.column_stack([X, zcols, y])
    M = np.zeros((J, w.shape[1], w.shape[1]))
    np.add.at(M, codes, w[:, :, None] * w[:, None, :])
    return ClusterStats(n=np.bincount(codes, minlength=J), M=M, p=X.shape[1],
                        q=zcols.shape[1], scaling=None)


@pytest.mark.parametrize("method", ["ML", "REML"])
def test_one_unstructured_block_equals_profiled(sleep, method):
    d, X, y = sleep
    zcols = X.copy()
    blk, _ = block(d["Subject"], zcols)
    codes = pd.Categorical(d["Subject"]).codes
    st = cluster_stats_raw(X, y, zcols, codes, blk.J)
    prob = BlockedProblem(X, y, [blk])
    for th in ([0.97, 0.015, 0.23], [0.3, -0.2, 0.05], [1.0, 0.0, 1.0], [0.5, 0.1, 0.0]):
        th = np.array(th)
        np.testing.assert_allclose(prob.criterion(th, method),
                                   profiled.profiled_criterion(th, st, method), rtol=1e-10)
        a, b = prob.solve(th), profiled.solve_pls(th, st)
        np.testing.assert_allclose(a.b[0], b.b, rtol=1e-8, atol=1e-9)
        np.testing.assert_allclose(a.beta, b.beta, rtol=1e-10)
    ref = json.loads((ROOT / "tests" / "reference" /
                      f"sleepstudy_lmer_{method.lower()}.json").read_text())
    fit = fit_blocked(X, y, [blk], method)
    np.testing.assert_allclose(fit.criterion, ref["criterion"], rtol=1e-9)
    np.testing.assert_allclose(fit.theta, ref["theta"], rtol=1e-4, atol=1e-5)


def test_generic_optimiser_keeps_the_one_factor_path(sleep):
    d, X, y = sleep
    codes = pd.Categorical(d["Subject"]).codes
    st = cluster_stats_raw(X, y, X, codes, codes.max() + 1)
    a = profiled.optimize_theta(st)
    b = reml_optimize.minimize_criterion(lambda th: profiled.profiled_criterion(th, st),
                                    profiled.theta_lower_bounds(2), profiled.theta_start(2))
    np.testing.assert_array_equal(a.theta, b.theta)
    assert a.evaluations == b.evaluations and a.converged


# --------------------------------------------------------------------------- (c) lme4
def reference_problem(ref: dict, *, split_diagonal: bool = False):
    """X, y and blocks (in the reference's θ order) built from the data with pandas."""
    groups = {g for r in ref["random"] for g in r["group"].split(":")}
    data = pd.read_csv(ROOT / ref["data"], dtype=dict.fromkeys(groups, str))

    def column(term):
        if term == "(Intercept)":
            return np.ones(len(data))
        return np.prod([data[t].to_numpy(float) for t in term.split(":")], axis=0)

    X = np.column_stack([column(f["term"]) for f in ref["fixed"]])
    y = data[ref["outcome"]].to_numpy(float)
    by_group: dict[str, list] = {}
    for r in ref["random"]:
        by_group.setdefault(r["group"], []).append(r)
    blocks, levels, spec = [], {}, []
    for g, rs in by_group.items():
        labels = data[g.split(":")[0]]
        for part in g.split(":")[1:]:  # "outer:inner" labels, as in the references
            labels = labels + ":" + data[part]
        if len(rs) > 1 and not split_diagonal:  # `||`: one diagonal block on the group
            terms = [t for r in rs for t in r["terms"]]
            b, lv = block(labels, np.column_stack([column(t) for t in terms]), diagonal=True)
            blocks.append(b)
            spec.append((g, terms))
        else:
            for r in rs:
                b, lv = block(labels, np.column_stack([column(t) for t in r["terms"]]))
                blocks.append(b)
                spec.append((g, r["terms"]))
        levels[g] = lv
    return X, y, blocks, levels, spec


REFS = sorted(p.name for p in MULTI.glob("*.json")) if MULTI.exists() else []
FAST_REFS = [r for r in REFS if not r.startswith("insteval")]  # InstEval: ~100 s to fit


@pytest.mark.parametrize("name", REFS)
def test_criterion_at_lme4_theta(name):
    ref = json.loads((MULTI / name).read_text())
    X, y, blocks, _, _ = reference_problem(ref)
    prob = BlockedProblem(X, y, blocks)
    np.testing.assert_allclose(prob.criterion(np.array(ref["theta"]), ref["method"]),
                               ref["criterion"], rtol=1e-10)
    if any(b.diagonal for b in blocks):
        X, y, split, _, _ = reference_problem(ref, split_diagonal=True)
        np.testing.assert_allclose(BlockedProblem(X, y, split).criterion(
            np.array(ref["theta"]), ref["method"]), ref["criterion"], rtol=1e-10)


@pytest.mark.parametrize("name", FAST_REFS)
def test_fit_equals_lme4(name):
    ref = json.loads((MULTI / name).read_text())
    X, y, blocks, levels, spec = reference_problem(ref)
    fit = fit_blocked(X, y, blocks, ref["method"])
    assert fit.converged
    assert not fit.is_singular
    assert fit.criterion <= ref["criterion"] + 1e-7
    np.testing.assert_allclose(fit.criterion, ref["criterion"], rtol=1e-9)
    np.testing.assert_allclose(fit.beta, [f["estimate"] for f in ref["fixed"]], rtol=1e-5)
    np.testing.assert_allclose(fit.se, [f["se"] for f in ref["fixed"]], rtol=1e-5)
    se = np.array([f["se"] for f in ref["fixed"]])  # vcov on the correlation scale
    np.testing.assert_allclose(fit.vcov / np.outer(se, se), np.array(ref["vcov"]) /
                               np.outer(se, se), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fit.sigma, ref["sigma"], rtol=1e-6)
    np.testing.assert_allclose(fit.theta, ref["theta"], rtol=1e-4, atol=1e-5)
    sd = np.concatenate(fit.sd)
    np.testing.assert_allclose(sd, [s for r in ref["random"] for s in r["sd"]], rtol=1e-5)
    for (g, terms), b, corr in zip(spec, blocks, fit.corr, strict=True):
        if b.diagonal:
            np.testing.assert_array_equal(corr, np.eye(b.q))
        else:
            r = next(r for r in ref["random"] if r["group"] == g and r["terms"] == terms)
            np.testing.assert_allclose(corr, r["corr"], atol=1e-5)
    # Conditional modes, matched by level label and term name.
    for m in ref["modes"]:
        got = pd.DataFrame(np.column_stack([fit.modes[k] for k, (g, _) in enumerate(spec)
                                            if g == m["group"]]),
                           index=levels[m["group"]],
                           columns=[t for g, ts in spec if g == m["group"] for t in ts])
        want = pd.DataFrame(m["values"], index=m["levels"], columns=m["terms"])
        got = got.loc[want.index, want.columns]
        for t in m["terms"]:  # relative to the term's largest mode
            np.testing.assert_allclose(got[t], want[t], rtol=1e-4,
                                       atol=1e-5 * np.abs(want[t]).max(), err_msg=t)
