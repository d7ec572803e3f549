"""The reparametrisations of bayesmix.glmm_params and build_factors.centred_effects.

Both must be exact: the zero-sum map an isometry onto the zero-sum subspace (so the centred
effects keep the iid N(0, T) prior), the shear a linear map of unit Jacobian built from an
exact representation of Z̃'s columns in X̃'s span.  SBC (tests/test_families_sbc.py) checks
the whole posterior; these check the pieces.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytensor
import pytensor.tensor as pt
import pytest

import bayesmix as bm
from bayesmix.build_factors import zero_sum_extend
from bayesmix.glmm_params import centred_factors, shear_matrix, unit_information


def _extend_matrix(J: int) -> np.ndarray:
    w = pt.matrix("w")
    f = pytensor.function([w], zero_sum_extend(w))
    return f(np.eye(J - 1))  # column k: the image of the k-th basis vector, shape (J, J - 1)


@pytest.mark.parametrize("J", [2, 3, 17])
def test_zero_sum_extend_is_an_isometry_onto_the_zero_sum_vectors(J):
    M = _extend_matrix(J)
    np.testing.assert_allclose(M.sum(axis=0), 0.0, atol=1e-12)          # zero-sum images
    np.testing.assert_allclose(M.T @ M, np.eye(J - 1), atol=1e-12)      # isometry
    # M Mᵀ is the projection onto the zero-sum subspace: iid rows stay iid after projecting
    np.testing.assert_allclose(M @ M.T, np.eye(J) - 1.0 / J, atol=1e-12)


def test_shear_matrix_represents_columns_in_the_span_and_zeroes_the_rest():
    rng = np.random.default_rng(3)
    n = 200
    x = rng.normal(size=n)
    X = np.column_stack([np.ones(n), (x - 0.3) / 1.7])
    Z = np.column_stack([np.ones(n), (x - 1.1) / 0.4, rng.normal(size=n)])
    A = shear_matrix(X, Z)
    np.testing.assert_allclose(X @ A[:, :2], Z[:, :2], atol=1e-12)
    np.testing.assert_allclose(A[:, 0], [1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(A[:, 1], [(0.3 - 1.1) / 0.4, 1.7 / 0.4], rtol=1e-12)
    assert not A[:, 2].any()  # a variable with no fixed column: nothing to shear


def test_centring_follows_the_units_information():
    rng = np.random.default_rng(4)
    rows = []
    for g, n_j in enumerate([60] * 20):
        rows.append(pd.DataFrame({"g": g, "h": rng.integers(0, 3, n_j),
                                  "x": rng.normal(size=n_j)}))
    data = pd.concat(rows, ignore_index=True)
    data["y"] = rng.poisson(3.0, len(data))
    design = bm.build_design(bm.Spec.from_formula("y ~ x + (1 | g)", family="poisson"), data)
    assert unit_information(design)["g"] > 100 and centred_factors(design) == {"g"}
    few = data.groupby("g").head(1)
    design = bm.build_design(bm.Spec.from_formula("y ~ x + (1 | g)", family="poisson"), few)
    assert centred_factors(design) == frozenset()
    assert centred_factors(design, "centred") == {"g"}
    with pytest.raises(bm.SpecError, match="parametrization"):
        centred_factors(design, "half")
