"""The cluster-marginal forms of a one-factor GLMM: U integrated out, NUTS samples (γ, T) only.

For a Bernoulli, binomial or Poisson model with one grouping factor, each cluster's effects
are integrated out of the likelihood numerically, inside the PyMC graph, on the standardised
scale of :mod:`bayesmix.build_glmm` (ũ_j = L̃ v_j, v_j ~ N(0, I_q), B_i = Z̃_i L̃, (q,))::

    h_j(v) = Σ_{i∈j} log p(y_i | η⁰_i + B_i·v) − ½‖v‖²       η⁰ = m + X̃β̃ (+ log t)
    H_j(v) = I + Σ_{i∈j} W_i B_i B_iᵀ = C_j C_jᵀ                W_i = Var(y_i | η_i)
    ℓ_j ≈ −(q/2) log π − log|C_j| + log Σ_k w_k exp(‖x_k‖² + h_j(v̂_j + √2 C_j⁻ᵀ x_k))

with the K^q product Gauss–Hermite rule (x_k, w_k) around the mode v̂_j.  ``"laplace"`` is
K = 1 (ℓ_j = h_j(v̂_j) − log|C_j|, lme4's nAGQ = 1); ``"agq"`` takes :data:`AGQ_NODES`
per dimension (exact to many digits for q = 1).  The posterior of (β̃, T̃) that NUTS samples
is then low-dimensional and nearly Gaussian (no funnel); U is drawn afterwards from its exact
conditional, cluster by cluster (:func:`draw_effects`).

``"laplace"`` is one compiled operation (:mod:`bayesmix.glmm_laplace`): Newton steps per
cluster in Numba, and the exact gradient of the approximation (the mode's implicit derivative
and the log-determinant's included) from the same pass's by-products.  ``"agq"`` is written
in PyTensor (:class:`ClusterIntegral`): the mode is found inside the graph by damped Newton
steps from v = 0 (a ``scan`` that stops when every step is below :data:`TOLERANCE`, at most
:data:`NEWTON_STEPS`; each step clipped to ±:data:`MAX_STEP` per coordinate, and a step that
lowers h_j refused and shortened for that cluster), through which no gradient flows; one more,
differentiable Newton step from that mode, v̂ = v̂ₛ + H⁻¹∇h(v̂ₛ), gives the exact implicit
derivative dv̂/dθ = H⁻¹ ∂∇h/∂θ (∇h(v̂ₛ) = 0 at convergence).  With K = 1 the same class is the
independent reference the Laplace operation is tested against (tests/test_glmm_laplace.py).

Cost per gradient: the Newton steps (4–6 typically) + one or two passes over the rows,
against one for the joint forms (K^q more for AGQ); the rows are aggregated into cells first
where that is exact (:func:`bayesmix.build_glmm.make_cells`).  Measured at 100k Bernoulli rows
and 1,000 clusters (q = 2, Numba; ``python benchmarks/glmm_gradient.py``): the Laplace
operation 19.6 ms per log density and gradient, its former scan 268 ms, the joint form 5.3 ms;
NUTS then needs about 4.6 leapfrog steps per draw for (γ, T) against about 40 for the joint
posterior.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
from pytensor.gradient import disconnected_grad
from pytensor.scan.utils import until

from bayesmix.design import Design
from bayesmix.errors import SpecError
from bayesmix.priors import ResolvedPriors

MARGINAL_FORMS = ("laplace", "agq")
AGQ_NODES = {1: 9, 2: 5}
"""Gauss–Hermite nodes per dimension of ``"agq"`` by q (effects per cluster)."""
NEWTON_STEPS = 40
"""Most Newton steps (without gradient) to the mode of each cluster's h_j, from v = 0."""
TOLERANCE = 1e-8
"""The Newton steps stop when no coordinate of any cluster's step exceeds this; the last,
differentiable step then moves v̂ by O(1e-16)."""
CONVERGED = 1e-6
"""A cluster whose last (differentiable) Newton step is larger than this did not converge in
:data:`NEWTON_STEPS`: its ℓ_j is −∞, so NUTS rejects the point rather than use a wrong value."""
MAX_STEP = 3.0
"""Largest Newton step per coordinate of v (prior SD units), a guard against overshooting."""


def check_marginal(design: Design, form: str) -> None:
    """Refuse what the marginal forms do not cover, saying what to use instead."""
    if design.family.is_gaussian:
        raise SpecError(f"likelihood={form!r} integrates a GLMM's effects numerically; the "
                        "Gaussian family's 'collapsed' form does it exactly")
    if not design.single_factor:
        raise SpecError(f"likelihood={form!r} takes one grouping factor; this model has "
                        f"{len(design.effects)} ({', '.join(fe.name for fe in design.effects)})"
                        ": use likelihood='rows' or 'cells' (the joint posterior)")
    if form == "agq" and design.q not in AGQ_NODES:
        raise SpecError(f"likelihood='agq' takes 1 or 2 effects per cluster (here q = "
                        f"{design.q}: the nodes grow as K^q); use likelihood='laplace'")


def nodes_of(form: str, q: int) -> int:
    """Gauss–Hermite nodes per dimension of a marginal form (1: Laplace)."""
    return 1 if form == "laplace" else AGQ_NODES[q]


# ---------------------------------------------------------------- small batched linear algebra
def _chol(H: list[list[Any]]) -> list[list[Any]]:
    """Lower Cholesky factor of a batch of small SPD matrices, entry by entry ((J,) tensors)."""
    q = len(H)
    c: list[list[Any]] = [[None] * q for _ in range(q)]
    for i in range(q):
        for k in range(i + 1):
            acc = H[i][k]
            for m in range(k):
                acc = acc - c[i][m] * c[k][m]
            c[i][k] = pt.sqrt(acc) if i == k else acc / c[k][k]
    return c


def _solve(c: list[list[Any]], b: list[Any]) -> list[Any]:
    """(C Cᵀ)⁻¹ b for the batch, by forward and back substitution."""
    q = len(b)
    w: list[Any] = []
    for i in range(q):
        acc = b[i]
        for k in range(i):
            acc = acc - c[i][k] * w[k]
        w.append(acc / c[i][i])
    return _back(c, w)


def _back(c: list[list[Any]], w: list[Any]) -> list[Any]:
    """C⁻ᵀ w for the batch."""
    q = len(w)
    x: list[Any] = [None] * q
    for i in reversed(range(q)):
        acc = w[i]
        for k in range(i + 1, q):
            acc = acc - c[k][i] * x[k]
        x[i] = acc / c[i][i]
    return x


# ---------------------------------------------------------------- the family on the graph
def _family_terms(name: str, y, n, eta):
    """Per row: log p(y | η) without its constant, E(y | η) and W = Var(y | η)."""
    if name == "poisson":
        mu = pt.exp(eta)
        return y * eta - mu, mu, mu
    p = pt.sigmoid(eta)
    return y * eta - n * pt.softplus(eta), n * p, n * p * (1 - p)


class ClusterIntegral:
    """The per-cluster integral of the module docstring, as PyTensor expressions.

    Parameters
    ----------
    family : str
    y, n : ndarray, shape (r,)
        Outcome and trials (ones for Poisson) of the rows or cells.
    idx : ndarray of int, shape (r,)
        Cluster of each row.
    J : int
    """

    def __init__(self, family: str, y: np.ndarray, n: np.ndarray, idx: np.ndarray, J: int):
        self.family = family
        self.y = pt.as_tensor_variable(np.asarray(y, dtype=float))
        self.n = pt.as_tensor_variable(np.asarray(n, dtype=float))
        self.idx = pt.as_tensor_variable(np.asarray(idx, dtype=np.int64))
        self.J = J

    def _sum(self, columns: list[Any]) -> Any:
        """Per-cluster sums of row columns, shape (J, len(columns))."""
        stacked = pt.stack(columns, axis=1)
        return pt.inc_subtensor(pt.zeros((self.J, len(columns)))[self.idx], stacked)

    def _eta(self, eta0, B, v: list[Any]):
        eta = eta0
        for r, vr in enumerate(v):
            eta = eta + B[:, r] * vr[self.idx]
        return eta

    def gradient_hessian(self, eta0, B, v: list[Any]) -> tuple[list[Any], list[list[Any]]]:
        """∇h_j(v) (q entries of (J,)) and H_j(v) (q × q entries of (J,))."""
        q = len(v)
        _, mean, weight = _family_terms(self.family, self.y, self.n, self._eta(eta0, B, v))
        resid = self.y - mean
        cols = [B[:, r] * resid for r in range(q)]
        pairs = [(r, s) for r in range(q) for s in range(r + 1)]
        cols += [weight * B[:, r] * B[:, s] for r, s in pairs]
        sums = self._sum(cols)
        grad = [sums[:, r] - v[r] for r in range(q)]
        H: list[list[Any]] = [[None] * q for _ in range(q)]
        for k, (r, s) in enumerate(pairs):
            H[r][s] = H[s][r] = sums[:, q + k] + (1.0 if r == s else 0.0)
        return grad, H

    def h(self, eta0, B, v: list[Any]):
        """h_j(v) without the family constant, shape (J,)."""
        ll, _, _ = _family_terms(self.family, self.y, self.n, self._eta(eta0, B, v))
        return self._sum([ll])[:, 0] - 0.5 * sum(vr * vr for vr in v)

    def mode(self, eta0, B, q: int) -> tuple[list[Any], Any]:
        """v̂ with its implicit derivative (module docstring), q entries of (J,).

        Also returns the size of the differentiable step per cluster, (J,): it is ~0 where
        the Newton steps converged.
        """
        def newton(*args):
            v, value, t = list(args[:q]), args[q], args[q + 1]
            eta0_s, B_s = args[q + 2 :]
            grad, H = self.gradient_hessian(eta0_s, B_s, v)
            step = [pt.clip(st, -MAX_STEP, MAX_STEP) * t for st in _solve(_chol(H), grad)]
            new = [vr + st for vr, st in zip(v, step, strict=True)]
            new_value = self.h(eta0_s, B_s, new)
            # Damped: a step that lowers h_j is refused and the cluster's step shrinks.
            ok = new_value >= value - 1e-10 * (1.0 + pt.abs(value))
            size = pt.max(pt.stack([pt.max(pt.abs(st)) for st in step]))
            return ([pt.switch(ok, nr, vr) for nr, vr in zip(new, v, strict=True)]
                    + [pt.switch(ok, new_value, value),
                       pt.switch(ok, pt.minimum(1.0, 2.0 * t), 0.25 * t)],
                    until(pt.all(ok) & (size < TOLERANCE)))

        # A scan, not an unrolled loop: the graph (and its compile time) stays small, and it
        # stops once every cluster's step is below TOLERANCE.
        eta0_s, B_s = disconnected_grad(eta0), disconnected_grad(B)
        start = [pt.zeros((self.J,)) for _ in range(q)]
        steps = pytensor.scan(newton,
                              outputs_info=[*start, self.h(eta0_s, B_s, start),
                                            pt.ones((self.J,))],
                              non_sequences=[eta0_s, B_s], n_steps=NEWTON_STEPS,
                              return_list=True, return_updates=False)
        v = [disconnected_grad(seq[-1]) for seq in steps[:q]]
        grad, H = self.gradient_hessian(eta0, B, v)
        step = _solve(_chol(H), grad)
        size = pt.max(pt.stack([pt.abs(disconnected_grad(st)) for st in step]), axis=0)
        return [vr + st for vr, st in zip(v, step, strict=True)], size

    def loglik(self, eta0, B, q: int, nodes: int):
        """ℓ_j for every cluster, shape (J,), without the family constant."""
        v_hat, unconverged = self.mode(eta0, B, q)
        _, H = self.gradient_hessian(eta0, B, v_hat)
        c = _chol(H)
        logdet_c = sum(pt.log(c[r][r]) for r in range(q))
        if nodes == 1:
            return self._guard(self.h(eta0, B, v_hat) - logdet_c, unconverged)
        x1, w1 = np.polynomial.hermite.hermgauss(nodes)
        grid = np.stack(np.meshgrid(*([x1] * q), indexing="ij"), axis=-1).reshape(-1, q)
        log_w = np.log(np.stack(np.meshgrid(*([w1] * q), indexing="ij"), axis=-1)
                       .reshape(-1, q)).sum(axis=1)
        # All K^q nodes at once: entries of shape (K^q, 1) broadcast against the (J,) batch.
        shift = _back(c, [pt.as_tensor_variable(np.sqrt(2.0) * grid[:, [r]]) for r in range(q)])
        v = [vr[None, :] + sr for vr, sr in zip(v_hat, shift, strict=True)]  # (K^q, J) each
        eta = eta0[None, :]
        for r, vr in enumerate(v):
            eta = eta + B[:, r][None, :] * vr[:, self.idx]
        ll, _, _ = _family_terms(self.family, self.y, self.n, eta)             # (K^q, rows)
        sums = pt.inc_subtensor(pt.zeros((self.J, grid.shape[0]))[self.idx], ll.T).T
        terms = (sums - 0.5 * sum(vr * vr for vr in v)
                 + pt.as_tensor_variable((log_w + (grid * grid).sum(axis=1))[:, None]))
        top = disconnected_grad(pt.max(terms, axis=0))
        log_sum = top + pt.log(pt.sum(pt.exp(terms - top), axis=0))
        return self._guard(-0.5 * q * np.log(np.pi) - logdet_c + log_sum, unconverged)

    @staticmethod
    def _guard(value, unconverged):
        """−∞ for a cluster whose mode was not found (the sampler rejects the point)."""
        return pt.switch(unconverged < CONVERGED, value, -np.inf)


def _laplace(family: str, eta0, B, y: np.ndarray, n: np.ndarray, idx: np.ndarray, J: int):
    """ℓ_j (J,) of the Laplace form by the compiled :class:`bayesmix.glmm_laplace.ClusterLaplace`.

    The same approximation as ``ClusterIntegral.loglik(..., nodes=1)`` (tested equal, value
    and gradient), computed cluster by cluster in Numba instead of a batched ``scan``.
    """
    from bayesmix.glmm_laplace import ClusterLaplace, cluster_starts

    starts = cluster_starts(idx, J)
    ll, *_ = ClusterLaplace(family)(eta0, B, np.asarray(y, dtype=float),
                                   np.asarray(n, dtype=float), starts)
    return ll


def cells_by_cluster(cells: Any, idx: np.ndarray) -> Any:
    """``cells`` reordered so that each cluster's cells are contiguous.

    ``idx`` is the cluster of each cell; the cells and the log-likelihood are unchanged.
    """
    from dataclasses import replace

    order = np.argsort(idx, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return replace(cells, rows=cells.rows[order], cell_of_row=rank[cells.cell_of_row],
                   y=cells.y[order],
                   trials=None if cells.trials is None else cells.trials[order],
                   offset=None if cells.offset is None else cells.offset[order])


def build_glmm_marginal(design: Design, rp: ResolvedPriors, form: str,
                        nodes: int | None = None) -> Any:
    """The PyMC model of a one-factor GLMM in the ``"laplace"`` or ``"agq"`` form.

    ``nodes`` overrides the Gauss–Hermite nodes per dimension of ``"agq"``.

    Returns
    -------
    BuiltModel
        ``graph`` holds ``beta_std``, ``chol_u_std``, ``loglik`` (the approximate marginal
        log-likelihood of y, constants included), ``cells`` and ``nodes``.
    """
    from bayesmix import notation as nt
    from bayesmix.build import BuiltModel, _covariance, _fixed_effects
    from bayesmix.build_glmm import family_constant, make_cells

    check_marginal(design, form)
    sc = rp.scaling
    q = design.q
    nodes = nodes_of(form, q) if nodes is None or form == "laplace" else int(nodes)
    cells = make_cells(design)
    cells = cells_by_cluster(cells, design.cluster_index[cells.rows])
    X_all, Z_all = sc.standardize(design.atoms, design.y)[:2]
    X, Z = X_all[cells.rows], np.ascontiguousarray(Z_all[cells.rows])
    idx = design.cluster_index[cells.rows]
    fam = design.family.name
    n = cells.trials if cells.trials is not None else np.ones(cells.c)
    constant = family_constant(fam, cells.y, n) + cells.constant
    with pm.Model(coords=dict(design.coords)) as model:
        beta_std = _fixed_effects(rp, design.p)
        chol, init = _covariance(rp, design)
        eta0 = sc.y_center + (pt.dot(pt.as_tensor_variable(X), beta_std) if design.p
                              else pt.zeros(cells.c))
        if cells.offset is not None:
            eta0 = eta0 + pt.as_tensor_variable(cells.offset)
        B = pt.dot(pt.as_tensor_variable(Z), chol)  # B_i = Z̃_i L̃
        if nodes == 1:
            loglik = pt.sum(_laplace(fam, eta0, B, cells.y, n, idx, design.J)) + constant
        else:
            integral = ClusterIntegral(fam, cells.y, n, idx, design.J)
            loglik = pt.sum(integral.loglik(eta0, B, q, nodes)) + constant
        pm.Potential("loglik_marginal", loglik)
    graph = {nt.BETA_STD: beta_std, nt.CHOL_STD: chol, "loglik": loglik, "initvals": init,
             "cells": cells, "nodes": nodes}
    return BuiltModel(model, design, rp, form, None, graph)
