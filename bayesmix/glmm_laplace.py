"""The Laplace form's per-cluster integral as one compiled operation (Numba), with its gradient.

:mod:`bayesmix.glmm_marginal` writes the cluster-marginal log-likelihood of a one-factor GLMM
(U integrated out) on the standardised scale, ũ_j = L̃ v_j, v_j ~ N(0, I_q), B_i = Z̃_i L̃::

    h_j(v) = Σ_{i∈j} f_i(η⁰_i + B_i·v) − ½‖v‖²       f_i(η) = log p(y_i | η), no constant
    H_j(v) = I + Σ_{i∈j} W_i B_i B_iᵀ = C_j C_jᵀ        W_i = −f_i''(η_i) = Var(y_i | η_i)
    ℓ_j = h_j(v̂_j) − log|C_j|                           ∇h_j(v̂_j) = 0   (lme4's nAGQ = 1)

:class:`ClusterLaplace` computes ℓ (J,) and v̂ (J, q) from η⁰ (r,) and B (r, q), cluster by
cluster: Newton steps from v = 0, each clipped to ±``MAX_STEP`` per coordinate, taken whole
when they provably raise h_j and halved on h_j otherwise, stopped when no coordinate moves by
more than ``TOLERANCE`` (:func:`bayesmix.glmm_laplace_kernels._mode`).  A cluster that does not
converge gets ℓ_j = −∞, so the sampler rejects the point rather than use a wrong value.

Its gradient (:class:`ClusterLaplaceGrad`) is the exact derivative of the approximation,
v̂'s dependence included.  With f'_i = y_i − E(y_i | η_i), W'_i = dW_i/dη_i,
a_i = B_iᵀ H_j⁻¹ B_i, c_j = Σ_{i∈j} W'_i a_i B_i and g_j = H_j⁻¹ c_j (all at v̂_j)::

    ∂ℓ_j/∂η⁰_i = f'_i − ½ W'_i a_i + ½ W_i B_i·g_j
    ∂ℓ_j/∂B_i  = (∂ℓ_j/∂η⁰_i) v̂_j − W_i H_j⁻¹ B_i − ½ f'_i g_j

(the envelope theorem for h_j, tr(H⁻¹ dH) for the log-determinant, and dv̂ = H⁻¹ ∂∇h from
∇h_j(v̂_j) = 0).  The forward pass costs one ``exp`` per row per Newton step (and a ``log`` in
the last); it leaves the rows' f', W, W' and each C_j behind, so the gradient is two
arithmetic passes with no ``exp`` at all.  The rows must be sorted by cluster (``starts``
marks them).  Under nutpie's Numba back end both are compiled into the log density (no
Python, no GIL); under the C back end and elsewhere :meth:`ClusterLaplace.perform` calls the
same kernels.  The kernels are cached on disk (``cache=True``), compiled once per machine.

Measured on the 100k-row, 1,000-cluster Bernoulli benchmark (q = 2; ``python
benchmarks/glmm_gradient.py``): 19.6 ms per log density and gradient, against 268 ms for the
PyTensor ``scan`` of the same Newton steps and 5.3 ms for the joint form, whose posterior
needs about nine times the leapfrog steps per draw.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.link.numba.dispatch.basic import (
    numba_njit,
    register_funcify_default_op_cache_key,
)

from bayesmix.glmm_laplace_kernels import FAMILY_CODES, laplace_backward, laplace_forward


# ---------------------------------------------------------------- the PyTensor operations
class ClusterLaplace(Op):
    """ℓ (J,) and its by-products from η⁰ (r,), B (r, q), y (r,), n (r,), starts (J + 1,).

    The rows are sorted by cluster; rows starts[j]..starts[j+1]−1 are cluster j's.  n holds
    the trials (ones for Bernoulli and Poisson).  Outputs: ℓ (J,), v̂ (J, q), the rows'
    (f', W, W') at v̂ (r, 3) and the Cholesky factors of H_j(v̂) (J, q, q)
    (:func:`bayesmix.glmm_laplace_kernels.laplace_forward`).  Only ℓ is differentiable; the
    others are what its gradient reuses.
    """

    __props__ = ("code",)

    def __init__(self, family: str):
        self.code = FAMILY_CODES[family]

    def make_node(self, eta0, B, y, n, starts):
        """The node: inputs as tensors, the four outputs typed."""
        inputs = [pt.as_tensor_variable(x) for x in (eta0, B, y, n, starts)]
        outputs = [pt.dvector(), pt.dmatrix(), pt.dmatrix(), pt.dtensor3()]
        return Apply(self, inputs, outputs)

    def perform(self, node, inputs, output_storage):
        """Run the kernel (outside a Numba graph)."""
        for storage, value in zip(output_storage, laplace_forward(self.code, *inputs),
                                  strict=True):
            storage[0] = value

    def connection_pattern(self, node):
        """Every output depends on η⁰ and B only (y, n and starts are data)."""
        return [[x < 2, False, False, False] for x in range(5)]

    def pullback(self, inputs, outputs, cotangents):
        """The gradient through ℓ, from the forward's by-products (:class:`ClusterLaplaceGrad`)."""
        _, B, *_ = inputs
        if not all(isinstance(c.type, DisconnectedType) for c in cotangents[1:]):
            raise NotImplementedError("the gradient of ClusterLaplace is taken through ℓ only")
        ll, v_hat, terms, chol = outputs
        d_eta0, d_B = ClusterLaplaceGrad()(B, inputs[4], v_hat, ll, terms, chol, cotangents[0])
        return [d_eta0, d_B, *(DisconnectedType()() for _ in range(3))]


class ClusterLaplaceGrad(Op):
    """∂(g·ℓ)/∂η⁰ (r,) and ∂(g·ℓ)/∂B (r, q) from the forward's outputs and g (J,).

    :func:`bayesmix.glmm_laplace_kernels.laplace_backward`.
    """

    __props__ = ()

    def make_node(self, B, starts, v_hat, ll, terms, chol, g_ll):
        """The node: inputs as tensors, outputs ∂/∂η⁰ and ∂/∂B."""
        inputs = [pt.as_tensor_variable(x) for x in (B, starts, v_hat, ll, terms, chol, g_ll)]
        return Apply(self, inputs, [pt.dvector(), pt.dmatrix()])

    def perform(self, node, inputs, output_storage):
        """Run the kernel (outside a Numba graph)."""
        d_eta0, d_B = laplace_backward(*inputs)
        output_storage[0][0] = d_eta0
        output_storage[1][0] = d_B


def _kernels_version() -> int:
    """A number that changes with the kernels' source.

    PyTensor's on-disk Numba cache keys an operation by its class and props only, so a changed
    kernel must change the key.
    """
    from bayesmix import glmm_laplace_kernels

    source = Path(glmm_laplace_kernels.__file__).read_bytes()
    return int(hashlib.sha256(source).hexdigest()[:12], 16)


@register_funcify_default_op_cache_key(ClusterLaplace)
def _numba_cluster_laplace(op, **kwargs):
    code = op.code

    @numba_njit
    def cluster_laplace(eta0, B, y, n, starts):
        return laplace_forward(code, eta0, B, y, n, starts)

    return cluster_laplace, _kernels_version()


@register_funcify_default_op_cache_key(ClusterLaplaceGrad)
def _numba_cluster_laplace_grad(op, **kwargs):
    @numba_njit
    def cluster_laplace_grad(B, starts, v_hat, ll, terms, chol, g_ll):
        return laplace_backward(B, starts, v_hat, ll, terms, chol, g_ll)

    return cluster_laplace_grad, _kernels_version()


def cluster_starts(idx: np.ndarray, J: int) -> np.ndarray:
    """The J + 1 segment starts of rows sorted by cluster (``idx``: cluster of each row).

    Raises ValueError if the rows are not sorted by cluster.
    """
    if np.any(np.diff(idx) < 0):
        raise ValueError("the Laplace operation takes rows sorted by cluster")
    return np.searchsorted(idx, np.arange(J + 1)).astype(np.int64)
