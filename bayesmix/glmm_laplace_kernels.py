"""Numba kernels of the Laplace form's per-cluster integral and its gradient.

For cluster j with rows a..b−1 (rows sorted by cluster), v ∈ R^q, η_i = η⁰_i + B_i·v and
f_i(η) = log p(y_i | η) without its constant (:mod:`bayesmix.glmm_laplace`)::

    h_j(v) = Σ f_i(η_i) − ½‖v‖²,   ∇h_j = Σ f'_i B_i − v,   H_j = I + Σ W_i B_i B_iᵀ = C_j C_jᵀ

with f' = y − E(y | η), W = Var(y | η), W' = dW/dη:  logit-binomial (n trials) p = σ(η),
E y = n p, W = n p (1 − p), W' = W (1 − 2p);  log-Poisson E y = W = W' = e^η.

:func:`laplace_forward` finds v̂_j by Newton's method from v = 0 and returns
ℓ_j = h_j(v̂_j) − log|C_j|, v̂, the per-row (f', W, W') at v̂ and C_j, which
:func:`laplace_backward` reuses: its gradient needs no ``exp`` of its own.

Cost: one ``exp`` per row per Newton step, and a ``log1p`` per row only in the last step
(h itself is not needed before: a full step is taken when it provably goes up, see
:func:`_mode`).  The passes for one or two effects per cluster (random intercept; intercept
and slope) keep their sums in registers (:func:`_pass_1`, :func:`_pass_2`); measured about
twice as fast as the general loop.  All kernels are cached on disk (``cache=True``).
"""

from __future__ import annotations

import numba
import numpy as np

FAMILY_CODES = {"bernoulli": 0, "binomial": 0, "poisson": 1}
"""Kernel code of each family: 0 logit-binomial (n_i trials), 1 log-Poisson."""
NEWTON_STEPS = 100
"""Most Newton steps per cluster."""
TOLERANCE = 1e-9
"""Newton stops when no coordinate of the step exceeds this (v̂ is then exact to ~1e-18 in
h_j and to ~1e-9 in log|C_j|)."""
PREDICT_LAST = 1e-4
"""A Newton step below this is followed (quadratic convergence) by one below
:data:`TOLERANCE`: the pass after it computes h_j and keeps the rows' terms."""
MAX_STEP = 3.0
"""Largest Newton step per coordinate of v (prior SD units)."""
HALVINGS = 60
"""Most step halvings before a cluster is declared unconverged."""


@numba.njit(cache=True, nogil=True)
def _row(code, y, n, eta, want_f):
    """f(η) (0 unless ``want_f``), f'(η), W, W' of one row (module docstring)."""
    if code == 1:
        mu = np.exp(eta)
        return (y * eta - mu if want_f else 0.0), y - mu, mu, mu
    ex = np.exp(-eta)  # inf for η < −709: p = 0 and 1/ex = 0, no NaN
    p = 1.0 / (1.0 + ex)
    f = 0.0
    if want_f:  # softplus(η) = log(1 + e^η), with log (not log1p: twice as fast, same sum)
        f = y * eta - n * (eta + np.log(1.0 + ex) if eta > 0.0 else np.log(1.0 + 1.0 / ex))
    w = n * p * (1.0 - p)
    return f, y - n * p, w, w * (1.0 - 2.0 * p)


@numba.njit(cache=True, nogil=True)
def _keep(terms, i, fp, w, wp):
    terms[i, 0] = fp
    terms[i, 1] = w
    terms[i, 2] = wp


@numba.njit(cache=True, nogil=True)
def _pass_1(code, eta0, B, y, n, a, b, v, grad, H, want_h, terms):
    """:func:`_cluster_pass` for q = 1."""
    v0 = v[0]
    h, g0, h00 = -0.5 * v0 * v0, -v0, 1.0
    for i in range(a, b):
        b0 = B[i, 0]
        f, fp, w, wp = _row(code, y[i], n[i], eta0[i] + b0 * v0, want_h)
        h += f
        g0 += fp * b0
        h00 += w * b0 * b0
        if want_h:
            _keep(terms, i, fp, w, wp)
    grad[0], H[0, 0] = g0, h00
    return h


@numba.njit(cache=True, nogil=True)
def _pass_2(code, eta0, B, y, n, a, b, v, grad, H, want_h, terms):
    """:func:`_cluster_pass` for q = 2."""
    v0, v1 = v[0], v[1]
    h, g0, g1 = -0.5 * (v0 * v0 + v1 * v1), -v0, -v1
    h00, h10, h11 = 1.0, 0.0, 1.0
    for i in range(a, b):
        b0, b1 = B[i, 0], B[i, 1]
        f, fp, w, wp = _row(code, y[i], n[i], eta0[i] + b0 * v0 + b1 * v1, want_h)
        h += f
        g0 += fp * b0
        g1 += fp * b1
        h00 += w * b0 * b0
        h10 += w * b1 * b0
        h11 += w * b1 * b1
        if want_h:
            _keep(terms, i, fp, w, wp)
    grad[0], grad[1] = g0, g1
    H[0, 0], H[1, 0], H[0, 1], H[1, 1] = h00, h10, h10, h11
    return h


@numba.njit(cache=True, nogil=True)
def _cluster_pass(code, eta0, B, y, n, a, b, v, grad, H, want_h, terms):
    """h_j(v) (0 unless ``want_h``), ∇h_j(v) into ``grad`` (q,), H_j(v) into ``H`` (q, q).

    With ``want_h`` the rows' (f', W, W') are also written to ``terms`` (r, 3).
    """
    q = v.shape[0]
    if q == 1:
        return _pass_1(code, eta0, B, y, n, a, b, v, grad, H, want_h, terms)
    if q == 2:
        return _pass_2(code, eta0, B, y, n, a, b, v, grad, H, want_h, terms)
    h = 0.0
    for r in range(q):
        grad[r] = -v[r]
        h -= 0.5 * v[r] * v[r]
        for s in range(q):
            H[r, s] = 1.0 if r == s else 0.0
    for i in range(a, b):
        eta = eta0[i]
        for r in range(q):
            eta += B[i, r] * v[r]
        f, fp, w, wp = _row(code, y[i], n[i], eta, want_h)
        h += f
        for r in range(q):
            grad[r] += fp * B[i, r]
            for s in range(r + 1):
                H[r, s] += w * B[i, r] * B[i, s]
        if want_h:
            _keep(terms, i, fp, w, wp)
    for r in range(q):
        for s in range(r):
            H[s, r] = H[r, s]
    return h


@numba.njit(cache=True, nogil=True)
def _cholesky(H, C):
    """Lower Cholesky factor of the small SPD ``H`` into ``C``; False if not positive."""
    q = H.shape[0]
    for i in range(q):
        for k in range(i + 1):
            acc = H[i, k]
            for m in range(k):
                acc -= C[i, m] * C[k, m]
            if i == k:
                if not acc > 0.0:
                    return False
                C[i, i] = np.sqrt(acc)
            else:
                C[i, k] = acc / C[k, k]
        for k in range(i + 1, q):
            C[i, k] = 0.0
    return True


@numba.njit(cache=True, nogil=True)
def _solve(C, rhs, out):
    """(C Cᵀ)⁻¹ rhs into ``out`` (forward then back substitution)."""
    q = rhs.shape[0]
    for i in range(q):
        acc = rhs[i]
        for k in range(i):
            acc -= C[i, k] * out[k]
        out[i] = acc / C[i, i]
    for i in range(q - 1, -1, -1):
        acc = out[i]
        for k in range(i + 1, q):
            acc -= C[k, i] * out[k]
        out[i] = acc / C[i, i]


@numba.njit(cache=True, nogil=True)
def _dot(a, b):
    acc = 0.0
    for r in range(a.shape[0]):
        acc += a[r] * b[r]
    return acc


@numba.njit(cache=True, nogil=True)
def _newton_step(grad, H, C, step):
    """Clipped Newton step H⁻¹∇h into ``step`` (C: chol H); its largest |coordinate|."""
    if not _cholesky(H, C):
        return np.inf
    _solve(C, grad, step)
    size = 0.0
    for r in range(step.shape[0]):
        step[r] = min(max(step[r], -MAX_STEP), MAX_STEP)
        size = max(size, abs(step[r]))
    return size


@numba.njit(cache=True, nogil=True)
def _mode(code, eta0, B, y, n, a, b, work, terms):
    """Newton from v = 0 to v̂_j (in ``work[0]``); h_j(v̂), or NaN if it did not converge.

    On return ``work[5:5+q]`` (C) holds the Cholesky factor of H_j(v̂) and ``terms`` the
    rows' (f', W, W') at v̂.  A full step δ is taken when it provably goes up (h is concave,
    so ∇h(v + δ)·δ ≥ 0 means h rose all along δ) or when the Newton decrement ∇hᵀH⁻¹∇h falls
    fourfold (the quadratic phase); otherwise the step is halved until h does not fall.
    """
    q = B.shape[1]
    v, cand, step, grad, grad_c = work[0], work[1], work[2], work[3], work[4]
    C, H, H_c = work[5:5 + q], work[5 + q:5 + 2 * q], work[5 + 2 * q:5 + 3 * q]
    v[:] = 0.0
    want_h = False
    h = _cluster_pass(code, eta0, B, y, n, a, b, v, grad, H, want_h, terms)
    size = _newton_step(grad, H, C, step)
    for _ in range(NEWTON_STEPS):
        if not np.isfinite(size):
            return np.nan
        if size < TOLERANCE:
            if not want_h:  # converged before a pass that computed h
                h = _cluster_pass(code, eta0, B, y, n, a, b, v, grad, H, True, terms)
                _cholesky(H, C)
            return h
        decrement = _dot(grad, step)
        want_h = size < PREDICT_LAST
        for r in range(q):
            cand[r] = v[r] + step[r]
        h_c = _cluster_pass(code, eta0, B, y, n, a, b, cand, grad_c, H_c, want_h, terms)
        up = _dot(grad_c, step) >= 0.0
        size_c = _newton_step(grad_c, H_c, C, step)
        if not (up or _dot(grad_c, step) <= 0.25 * decrement):
            # Backtrack on h itself (both values, with their log1p).
            h = _cluster_pass(code, eta0, B, y, n, a, b, v, grad, H, True, terms)
            _newton_step(grad, H, C, step)
            t, found = 1.0, False
            for _ in range(HALVINGS):
                for r in range(q):
                    cand[r] = v[r] + t * step[r]
                h_c = _cluster_pass(code, eta0, B, y, n, a, b, cand, grad_c, H_c, True, terms)
                if h_c >= h - 1e-12 * (1.0 + abs(h)):
                    found = True
                    break
                t *= 0.5
            if not found:
                return np.nan
            want_h = True
            size_c = _newton_step(grad_c, H_c, C, step)
        v[:] = cand
        grad[:] = grad_c
        H[:, :] = H_c
        h, size = h_c, size_c
    return np.nan


@numba.njit(cache=True, nogil=True)
def laplace_forward(code, eta0, B, y, n, starts):
    """ℓ (J,), v̂ (J, q), the rows' (f', W, W') at v̂ (r, 3) and C (J, q, q).

    Rows sorted by cluster: rows starts[j]..starts[j+1]−1 are cluster j's.  ℓ_j = −∞ for a
    cluster whose mode was not found.
    """
    J, q = starts.shape[0] - 1, B.shape[1]
    ll = np.empty(J)
    v_hat = np.zeros((J, q))
    chol = np.zeros((J, q, q))
    terms = np.zeros((eta0.shape[0], 3))
    work = np.zeros((5 + 3 * q, q))
    for j in range(J):
        h = _mode(code, eta0, B, y, n, starts[j], starts[j + 1], work, terms)
        C = work[5:5 + q]
        if np.isfinite(h):
            logdet = 0.0
            for r in range(q):
                logdet += np.log(C[r, r])
            ll[j] = h - logdet
        else:
            ll[j] = -np.inf
        v_hat[j, :] = work[0]
        chol[j, :, :] = C
    return ll, v_hat, terms, chol


@numba.njit(cache=True, nogil=True)
def laplace_backward(B, starts, v_hat, ll, terms, chol, g_ll):
    """Σ_j g_ll[j] ∂ℓ_j/∂η⁰ (r,) and ∂/∂B (r, q) at the modes, from the forward's outputs.

    With a_i = B_iᵀH⁻¹B_i, c_j = Σ W'_i a_i B_i, g_j = H_j⁻¹ c_j (:mod:`bayesmix.glmm_laplace`)::

        ∂ℓ_j/∂η⁰_i = f'_i − ½ W'_i a_i + ½ W_i B_i·g_j
        ∂ℓ_j/∂B_i  = (∂ℓ_j/∂η⁰_i) v̂_j − W_i H_j⁻¹ B_i − ½ f'_i g_j
    """
    r_all, q = B.shape
    J = starts.shape[0] - 1
    d_eta0 = np.zeros(r_all)
    d_B = np.zeros((r_all, q))
    H_inv, c, g, e = np.zeros((q, q)), np.zeros(q), np.zeros(q), np.zeros(q)
    for j in range(J):
        weight = g_ll[j]
        if weight == 0.0 or not np.isfinite(ll[j]):
            continue
        a, b = starts[j], starts[j + 1]
        for r in range(q):  # H⁻¹ column by column
            e[:] = 0.0
            e[r] = 1.0
            _solve(chol[j], e, g)
            H_inv[:, r] = g
        c[:] = 0.0
        for i in range(a, b):
            lev = 0.0
            for r in range(q):
                hb = 0.0
                for s in range(q):
                    hb += H_inv[r, s] * B[i, s]
                lev += B[i, r] * hb
            for r in range(q):
                c[r] += terms[i, 2] * lev * B[i, r]
        _solve(chol[j], c, g)
        for i in range(a, b):
            fp, w, wp = terms[i, 0], terms[i, 1], terms[i, 2]
            lev, bg = 0.0, 0.0
            for r in range(q):
                hb = 0.0
                for s in range(q):
                    hb += H_inv[r, s] * B[i, s]
                e[r] = hb
                lev += B[i, r] * hb
                bg += B[i, r] * g[r]
            de = fp - 0.5 * wp * lev + 0.5 * w * bg
            d_eta0[i] = weight * de
            for r in range(q):
                d_B[i, r] = weight * (de * v_hat[j, r] - w * e[r] - 0.5 * fp * g[r])
    return d_eta0, d_B
