"""The standardised scale every numerical stage works on, and the exact maps back.

Cross-products of raw columns lose their precision to cancellation as soon as a column is far
from 0 relative to its spread (years ≈ 2000, incomes ≈ 1e5, a shifted ``Days + 100``).  So the
statistics, the REML optimiser and the sampler all work with centred and scaled columns::

    X̃[:, k] = (X[:, k] − c_k) / s_k      k ≠ k₀ (the intercept column, left as 1)
    Z̃[:, r] = (Zq[:, r] − d_r) / t_r      r ≠ r₀ (the random intercept, left as 1)
    ỹ       = (y − m) / s_y

Columns are centred only when the model has the matching intercept (a centred column without
it would change the model); otherwise ``c = 0`` (``d = 0``, ``m = 0``) and only the scale
changes.  In matrix form ``X = X̃ A_x`` and ``Zq = Z̃ A_z`` with ``A = diag(s) + e_{k₀} cᵀ``, so
the model ``y = Xβ + Zb + ε`` is, on the standardised scale, ``ỹ = X̃β̃ + Z̃b̃ + ε̃`` with::

    β̃ = (A_x β − m e_{k₀}) / s_y        b̃_j = A_z b_j / s_y        ε̃ = ε / s_y
    T̃ = A_z T A_zᵀ / s_y²               σ̃ = σ / s_y

Every map is affine and exactly invertible (:meth:`Scaling.beta_from_std` and friends), so the
estimates on the original scale change with a shift or rescaling of a column exactly as the
algebra says, and the numerics never see the raw magnitudes.  The log density of y differs
from that of ỹ by the Jacobian ``−n log s_y``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def _moments(values: np.ndarray, center: bool, intercept: int | None) -> tuple:
    """Centre (0 where not centring) and scale (spread about it, else 1) of each column."""
    k = values.shape[1]
    if values.shape[0] == 0:
        return np.zeros(k), np.ones(k)
    centre = values.mean(axis=0) if center else np.zeros(k)
    # Spread about the centre actually used: the SD, or the root mean square when the column
    # cannot be centred, so that every standardised column is of order 1.
    spread = np.sqrt(np.mean((values - centre) ** 2, axis=0))
    scale = np.where(spread > 0, spread, 1.0)
    if intercept is not None:
        centre[intercept] = 0.0
        scale[intercept] = 1.0
    return centre, scale


def _affine(center: np.ndarray, scale: np.ndarray, intercept: int | None) -> np.ndarray:
    """``A = diag(scale) + e_{k₀} centerᵀ`` (k × k), so that ``W = W̃ A``."""
    a = np.diag(scale.astype(float))
    if intercept is not None:
        a[intercept, :] += center
        a[intercept, intercept] = 1.0
    return a


def _affine_inverse(center: np.ndarray, scale: np.ndarray, intercept: int | None) -> np.ndarray:
    """``A⁻¹ = diag(1/scale) − e_{k₀} (center/scale)ᵀ``, exactly (``center[k₀] = 0``)."""
    inv = np.diag(1.0 / scale)
    if intercept is not None:
        inv[intercept, :] -= center / scale
        inv[intercept, intercept] = 1.0
    return inv


@dataclass(frozen=True)
class Scaling:
    """Centres and scales of [X, Zq, y] (module docstring), and the exact maps between scales.

    Attributes
    ----------
    x_center, x_scale : ndarray, shape (p,)
        c and s of the columns of X (0 and 1 for the intercept column).
    z_center, z_scale : ndarray, shape (q,)
        d and t of the random terms' level-1 columns Zq.
    y_center, y_scale : float
        m and s_y.
    x_intercept, z_intercept : int or None
        Index of the intercept column of X / of Zq, when the model has one.
    """

    x_center: np.ndarray
    x_scale: np.ndarray
    z_center: np.ndarray
    z_scale: np.ndarray
    y_center: float
    y_scale: float
    x_intercept: int | None
    z_intercept: int | None

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_arrays(
        cls,
        X: np.ndarray,
        Zq: np.ndarray,
        y: np.ndarray,
        *,
        x_intercept: int | None,
        z_intercept: int | None,
    ) -> Scaling:
        """Centres and scales from data (any rows: all of them, or a first chunk).

        Parameters
        ----------
        X : ndarray, shape (n, p)
        Zq : ndarray, shape (n, q)
        y : ndarray, shape (n,)
        x_intercept, z_intercept : int or None
            Which column is the intercept (known from the terms, never guessed from values).
        """
        xc, xs = _moments(np.asarray(X, dtype=float), x_intercept is not None, x_intercept)
        zc, zs = _moments(np.asarray(Zq, dtype=float), z_intercept is not None, z_intercept)
        yc, ys = _moments(np.asarray(y, dtype=float)[:, None], x_intercept is not None, None)
        return cls(xc, xs, zc, zs, float(yc[0]), float(ys[0]), x_intercept, z_intercept)

    @classmethod
    def identity(cls, p: int, q: int) -> Scaling:
        """No centring, unit scales (the raw scale)."""
        return cls(np.zeros(p), np.ones(p), np.zeros(q), np.ones(q), 0.0, 1.0, None, None)

    @property
    def p(self) -> int:
        """Columns of X."""
        return int(self.x_center.size)

    @property
    def q(self) -> int:
        """Random terms."""
        return int(self.z_center.size)

    # ----------------------------------------------------------------- data
    def standardize(
        self, X: np.ndarray, Zq: np.ndarray, y: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """X̃, Z̃, ỹ of some rows (shapes as given)."""
        return (
            (np.asarray(X, dtype=float) - self.x_center) / self.x_scale,
            (np.asarray(Zq, dtype=float) - self.z_center) / self.z_scale,
            (np.asarray(y, dtype=float) - self.y_center) / self.y_scale,
        )

    @property
    def A_x(self) -> np.ndarray:
        """``X = X̃ A_x``, shape (p, p)."""
        return _affine(self.x_center, self.x_scale, self.x_intercept)

    @property
    def A_z(self) -> np.ndarray:
        """``Zq = Z̃ A_z``, shape (q, q)."""
        return _affine(self.z_center, self.z_scale, self.z_intercept)

    @property
    def A_z_inv(self) -> np.ndarray:
        """A_z⁻¹, shape (q, q)."""
        return _affine_inverse(self.z_center, self.z_scale, self.z_intercept)

    @property
    def A_x_inv(self) -> np.ndarray:
        """A_x⁻¹, shape (p, p)."""
        return _affine_inverse(self.x_center, self.x_scale, self.x_intercept)

    def full_matrix(self) -> np.ndarray:
        """``W = W̃ A`` for ``W = [X, Zq, y]``, shape (d, d), d = p + q + 1."""
        p, q = self.p, self.q
        a = np.zeros((p + q + 1, p + q + 1))
        a[:p, :p] = self.A_x
        a[p : p + q, p : p + q] = self.A_z
        a[-1, -1] = self.y_scale
        if self.x_intercept is not None:
            a[self.x_intercept, -1] = self.y_center
        return a

    # ----------------------------------------------------------------- parameters
    def _e(self) -> np.ndarray:
        e = np.zeros(self.p)
        if self.x_intercept is not None:
            e[self.x_intercept] = self.y_center
        return e

    def beta_to_std(self, beta: np.ndarray) -> np.ndarray:
        """β̃ = (A_x β − m e_{k₀}) / s_y, shape (..., p)."""
        return (np.asarray(beta, dtype=float) @ self.A_x.T - self._e()) / self.y_scale

    def beta_from_std(self, beta_std: np.ndarray) -> np.ndarray:
        """β = A_x⁻¹ (s_y β̃ + m e_{k₀}), shape (..., p)."""
        return (np.asarray(beta_std, dtype=float) * self.y_scale + self._e()) @ self.A_x_inv.T

    def vcov_from_std(self, vcov_std: np.ndarray) -> np.ndarray:
        """Cov(β) = s_y² A_x⁻¹ Cov(β̃) A_x⁻ᵀ, shape (p, p)."""
        a = self.A_x_inv
        return self.y_scale**2 * a @ vcov_std @ a.T

    def u_to_std(self, u: np.ndarray) -> np.ndarray:
        """ũ_j = A_z u_j / s_y, rows of shape (..., J, q)."""
        return np.asarray(u, dtype=float) @ self.A_z.T / self.y_scale

    def u_from_std(self, u_std: np.ndarray) -> np.ndarray:
        """u_j = s_y A_z⁻¹ ũ_j, rows of shape (..., J, q)."""
        return self.y_scale * (np.asarray(u_std, dtype=float) @ self.A_z_inv.T)

    def cov_to_std(self, cov: np.ndarray) -> np.ndarray:
        """T̃ = A_z T A_zᵀ / s_y², shape (..., q, q)."""
        a = self.A_z
        return a @ np.asarray(cov, dtype=float) @ a.T / self.y_scale**2

    def cov_from_std(self, cov_std: np.ndarray) -> np.ndarray:
        """T = s_y² A_z⁻¹ T̃ A_z⁻ᵀ, shape (..., q, q)."""
        a = self.A_z_inv
        return self.y_scale**2 * (a @ np.asarray(cov_std, dtype=float) @ a.T)

    def chol_from_std(self, chol_std: np.ndarray) -> np.ndarray:
        """Lower Cholesky factor of T from that of T̃, shape (..., q, q).

        ``s_y A_z⁻¹ L̃`` is a factor of T but not triangular; its QR decomposition
        ``(s_y A_z⁻¹ L̃)ᵀ = Q R`` gives ``T = RᵀR`` with no squaring of the condition number.
        """
        factor = self.y_scale * (self.A_z_inv @ np.asarray(chol_std, dtype=float))
        r = np.linalg.qr(np.swapaxes(factor, -1, -2), mode="r")
        lower = np.swapaxes(r, -1, -2)
        signs = np.sign(np.diagonal(lower, axis1=-2, axis2=-1))
        signs = np.where(signs == 0, 1.0, signs)
        return lower * signs[..., None, :]

    def log_jacobian(self, n: int) -> float:
        """``log p(y) − log p(ỹ) = −n log s_y``."""
        return -float(n) * float(np.log(self.y_scale))

    def criterion_offset(self, n: int, method: str) -> float:
        """REML criterion / ML deviance on the original scale minus that on the standardised.

        ``ML: 2 n log s_y``; ``REML: 2 (n − p) log s_y + 2 log|det A_x|`` (the restricted
        likelihood carries ``log|XᵀV⁻¹X|``, which changes with the scale of X).
        """
        if method == "ML":
            return 2.0 * n * float(np.log(self.y_scale))
        return 2.0 * (n - self.p) * float(np.log(self.y_scale)) + 2.0 * float(
            np.sum(np.log(self.x_scale))
        )

    # ----------------------------------------------------------------- storage
    def same_as(self, other: Scaling) -> bool:
        """Whether two scalings are identical (so statistics need no conversion)."""
        return (
            self.x_intercept == other.x_intercept
            and self.z_intercept == other.z_intercept
            and self.y_center == other.y_center
            and self.y_scale == other.y_scale
            and all(
                np.array_equal(getattr(self, f), getattr(other, f))
                for f in ("x_center", "x_scale", "z_center", "z_scale")
            )
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON), the inverse of :meth:`from_dict`."""
        return {
            "x_center": self.x_center.tolist(),
            "x_scale": self.x_scale.tolist(),
            "z_center": self.z_center.tolist(),
            "z_scale": self.z_scale.tolist(),
            "y_center": self.y_center,
            "y_scale": self.y_scale,
            "x_intercept": self.x_intercept,
            "z_intercept": self.z_intercept,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Scaling:
        """Inverse of :meth:`to_dict`."""
        return cls(
            x_center=np.asarray(values["x_center"], dtype=float),
            x_scale=np.asarray(values["x_scale"], dtype=float),
            z_center=np.asarray(values["z_center"], dtype=float),
            z_scale=np.asarray(values["z_scale"], dtype=float),
            y_center=float(values["y_center"]),
            y_scale=float(values["y_scale"]),
            x_intercept=None if values["x_intercept"] is None else int(values["x_intercept"]),
            z_intercept=None if values["z_intercept"] is None else int(values["z_intercept"]),
        )


def intercept_index(terms: tuple[str, ...]) -> int | None:
    """Position of the intercept term ``"(Intercept)"`` among term names, or None."""
    from bayesmix.notation import INTERCEPT

    hits = [k for k, t in enumerate(terms) if t == INTERCEPT]
    return hits[0] if hits else None


def design_scaling(design: Any) -> Scaling:
    """The scaling of a design's own columns: their means and SDs (module docstring)."""
    return Scaling.from_arrays(
        design.X,
        design.Zq,
        design.y,
        x_intercept=intercept_index(design.fixed_terms),
        z_intercept=intercept_index(design.random_terms),
    )
