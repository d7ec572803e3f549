"""The compiled Laplace operation (bayesmix.glmm_laplace, bayesmix.glmm_laplace_kernels).

Its value and gradient are checked against the independent PyTensor ``scan`` of the same
approximation (``ClusterIntegral.loglik(..., nodes=1)``, whose gradient PyTensor derives
itself), against finite differences, and under both back ends (Python ``perform`` and the
Numba dispatch nutpie compiles); its agreement with glmer's Laplace log-likelihood is in
tests/test_glmm_marginal.py and its calibration (SBC) in tests/test_families_sbc.py.
"""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from bayesmix.glmm_laplace import ClusterLaplace, cluster_starts
from bayesmix.glmm_laplace_kernels import FAMILY_CODES, laplace_forward
from bayesmix.glmm_marginal import ClusterIntegral, _laplace


def _problem(family: str, q: int, seed: int, J: int = 25, m: int = 9):
    """Rows of J clusters (sizes m ± 3) with q effects each, y simulated from the family."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(m - 3, m + 4, J)
    idx = np.repeat(np.arange(J), sizes)
    r = idx.size
    Z = np.column_stack([np.ones(r), *(rng.normal(size=r) for _ in range(q - 1))])
    n = rng.integers(1, 7, r).astype(float) if family == "binomial" else np.ones(r)
    eta = -0.3 + (Z * rng.normal(scale=0.7, size=(J, q))[idx]).sum(axis=1)
    if family == "poisson":
        y = rng.poisson(np.exp(eta)).astype(float)
    else:
        y = rng.binomial(n.astype(int), 1 / (1 + np.exp(-eta))).astype(float)
    return idx, Z, y, n, rng


def _functions(family, idx, Z, y, n, mode=None, scan: bool = True):
    """ℓ and its gradient in (η⁰, L) by the operation, then (``scan``) by the scan."""
    J, q = int(idx.max()) + 1, Z.shape[1]
    eta0, L = pt.dvector("eta0"), pt.dmatrix("L")
    B = pt.dot(pt.as_tensor_variable(Z), L)
    mine = pt.sum(_laplace(family, eta0, B, y, n, idx, J))
    outs = [mine, *pytensor.grad(mine, [eta0, L])]
    if scan:
        scan_ll = pt.sum(ClusterIntegral(family, y, n, idx, J).loglik(eta0, B, q, 1))
        outs += [scan_ll, *pytensor.grad(scan_ll, [eta0, L])]
    return pytensor.function([eta0, L], outs, mode=mode)


def _point(rng, r: int, q: int, Z: np.ndarray):
    eta0 = -0.2 + 0.4 * rng.normal(size=r) + 0.3 * Z[:, -1]
    L = np.tril(rng.normal(scale=0.6, size=(q, q)))
    L[np.diag_indices(q)] = np.abs(L.diagonal()) + 0.3
    return eta0, L


@pytest.mark.parametrize(("family", "q"), [("bernoulli", 1), ("bernoulli", 2), ("bernoulli", 3),
                                           ("binomial", 2), ("poisson", 1), ("poisson", 3)])
def test_value_and_gradient_equal_the_scan(family, q):
    """q = 1 and 2 run the specialised passes, q = 3 the general one."""
    idx, Z, y, n, rng = _problem(family, q, seed=10 * q + len(family))
    fn = _functions(family, idx, Z, y, n)
    for _ in range(3):
        mine, g_eta, g_L, scan, s_eta, s_L = fn(*_point(rng, len(y), q, Z))
        np.testing.assert_allclose(mine, scan, rtol=1e-10)
        np.testing.assert_allclose(g_eta, s_eta, rtol=1e-6, atol=1e-8 * np.abs(s_eta).max())
        np.testing.assert_allclose(g_L, s_L, rtol=1e-6, atol=1e-8 * np.abs(s_L).max())


@pytest.mark.parametrize("family", ["bernoulli", "poisson"])
def test_gradient_equals_finite_differences(family):
    idx, Z, y, n, rng = _problem(family, 2, seed=3, J=8)
    starts = cluster_starts(idx, 8)
    eta0, L = _point(rng, len(y), 2, Z)

    def total(e, B):
        return ClusterLaplace(family)(e, B, y, n, starts)[0].sum()

    pytensor.gradient.verify_grad(total, [eta0, Z @ L], rng=rng, abs_tol=1e-6, rel_tol=1e-6)


def test_numba_dispatch_equals_perform():
    """The kernels compiled into a Numba graph (nutpie's back end) equal ``perform``."""
    idx, Z, y, n, rng = _problem("binomial", 2, seed=5)
    point = _point(rng, len(y), 2, Z)
    numba_out = _functions("binomial", idx, Z, y, n, mode="NUMBA", scan=False)(*point)
    python_out = _functions("binomial", idx, Z, y, n, mode="FAST_COMPILE", scan=False)(*point)
    for a, b in zip(numba_out, python_out, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-13)


def test_extreme_linear_predictors_give_numbers_not_nan():
    """η⁰ of ±800 (exp overflows) still gives a finite ℓ: the prior N(0, I) holds v̂."""
    idx, Z, y, n, _ = _problem("bernoulli", 2, seed=7, J=6)
    starts = cluster_starts(idx, 6)
    eta0 = np.where(np.arange(len(y)) % 2 == 0, 800.0, -800.0)
    ll, v_hat, terms, chol = laplace_forward(FAMILY_CODES["bernoulli"], eta0, Z * 0.5, y, n,
                                             starts)
    assert np.all(np.isfinite(ll)) and np.all(np.isfinite(v_hat))
    assert np.all(np.isfinite(terms)) and np.all(np.isfinite(chol))


def test_rows_must_be_sorted_by_cluster():
    idx, _, y, n, _ = _problem("bernoulli", 1, seed=1, J=4)
    with pytest.raises(ValueError, match="sorted by cluster"):
        _laplace("bernoulli", pt.dvector(), pt.dmatrix(), y, n, idx[::-1].copy(), 4)


def test_numpyro_is_refused_with_what_to_use_instead():
    """JAX cannot run the Numba operation: the refusal names the samplers and forms that can."""
    import pandas as pd

    import bayesmix as bm
    from bayesmix.errors import SpecError

    idx, _, y, _, _ = _problem("bernoulli", 1, seed=2, J=6)
    data = pd.DataFrame({"y": y, "g": idx})
    spec = bm.Spec.from_formula("y ~ 1 + (1 | g)", family="bernoulli")
    with pytest.raises(SpecError, match=r"sampler='nutpie'.*likelihood='agq'"):
        bm.fit(spec, data, sampler="numpyro", likelihood="laplace")
