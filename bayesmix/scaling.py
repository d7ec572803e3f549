"""The standardised scale every numerical stage works on, and the exact maps back.

Cross-products of raw columns lose their precision to cancellation as soon as a variable is
far from 0 relative to its spread (years ≈ 2000, incomes ≈ 1e5, a shifted ``Days + 100``), and
a product column ``x·w`` of a shifted x is nearly collinear with w.  So the statistics, the REML
optimiser and the sampler all work with columns built from centred and scaled *variables*:
each coded variable column (an *atom*: a numeric variable, or a categorical indicator) is
replaced by ``ã = (a − c) / s`` before the products of the design are formed::

    X̃[:, k] = Π_{i ∈ F_k} (a_i − c_i) / s_i        (F_k: the atoms of column k; () → 1)
    Z̃[:, r] = Π_{i ∈ G_r} (a_i − d_i) / t_i
    ỹ       = (y − m) / s_y

Expanding ``a = s ã + c`` in every product gives ``X = X̃ A_x`` and ``Zq = Z̃ A_z`` exactly,
with ``A_x[col(S), k] = Π_{i∈S} s_i Π_{i∈F_k∖S} c_i`` for every sub-product S of column k.  An
atom is centred only where every sub-product this needs is itself a column (an intercept for a
main effect, w for x·w): otherwise centring would change the model, and the atom is only
scaled (c = 0, s its root mean square).  y is centred when X has an intercept.  The model
``y = Xβ + Zb + ε`` is then, on the standardised scale, ``ỹ = X̃β̃ + Z̃b̃ + ε̃`` with::

    β̃ = (A_x β − m e₀) / s_y        b̃_j = A_z b_j / s_y        ε̃ = ε / s_y
    T̃ = A_z T A_zᵀ / s_y²           σ̃ = σ / s_y

Every map is affine and exactly invertible (the inverse expansion has ``1/s`` and ``−c/s``, so
no matrix is inverted numerically), so estimates on the original scale change with a shift or
rescaling of a variable exactly as the algebra says, and the numerics never see the raw
magnitudes.  The log density of y differs from that of ỹ by the Jacobian ``−n log s_y``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

Factors = tuple[tuple[int, ...], ...]


def _subsets(factors: tuple[int, ...]):
    """(S, complement) position splits of one column's atoms, S as a sorted atom tuple."""
    positions = range(len(factors))
    for size in range(len(factors) + 1):
        for chosen in itertools.combinations(positions, size):
            rest = [factors[i] for i in positions if i not in chosen]
            yield tuple(sorted(factors[i] for i in chosen)), rest


def _centring(factors: Factors, means: np.ndarray) -> np.ndarray:
    """Which atoms can be centred: every sub-product their expansion needs is a column."""
    columns = {tuple(sorted(f)) for f in factors}
    centred = np.zeros(means.size, dtype=bool)
    for f in factors:
        centred[list(f)] = True
    centred &= means != 0
    changed = True
    while changed:
        changed = False
        for f in factors:
            for sub, rest in _subsets(f):
                if rest and all(centred[i] for i in rest) and sub not in columns:
                    centred[rest[0]] = False
                    changed = True
    return centred


def _expansion(factors: Factors, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """E with ``cols = cols̃ E``, for atoms ``a = scale · ã + center`` (k × k)."""
    index = {tuple(sorted(f)): j for j, f in enumerate(factors)}
    e = np.zeros((len(factors), len(factors)))
    for k, f in enumerate(factors):
        for sub, rest in _subsets(f):
            coef = float(np.prod([center[i] for i in rest])) if rest else 1.0
            if coef == 0.0:
                continue
            if sub in index:
                e[index[sub], k] += coef * float(np.prod([scale[i] for i in sub]))
            else:  # cannot happen for atoms chosen by _centring
                raise ValueError(f"column {sub} needed to centre column {f} is missing")
    return e


def _moments(values: np.ndarray, centred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre (the mean where centred, else 0) and spread about it (else 1) of each column."""
    k = values.shape[1]
    if values.shape[0] == 0:
        return np.zeros(k), np.ones(k)
    centre = np.where(centred, values.mean(axis=0), 0.0)
    spread = np.sqrt(np.mean((values - centre) ** 2, axis=0))
    return centre, np.where(spread > 0, spread, 1.0)


def _columns(atoms: np.ndarray, factors: Factors, center: np.ndarray,
             scale: np.ndarray) -> np.ndarray:
    """Π over each column's atoms of (a − c) / s, shape (n, len(factors))."""
    n = atoms.shape[0]
    std = (atoms - center) / scale
    out = np.ones((n, len(factors)))
    for k, f in enumerate(factors):
        for i in f:
            out[:, k] *= std[:, i]
    return out


@dataclass(frozen=True)
class Scaling:
    """Centres and scales of the atoms and of y (module docstring), and the exact maps.

    Attributes
    ----------
    x_factors, z_factors : tuple of tuple of int
        The atoms multiplied in each column of X (p) and of Zq (q); ``()`` is an intercept.
    x_center, x_scale : ndarray, shape (a,)
        c and s of each atom as X uses it (c = 0 where it is not centred).
    z_center, z_scale : ndarray, shape (a,)
        d and t of each atom as Zq uses it.
    y_center, y_scale : float
        m and s_y.
    """

    x_factors: Factors
    z_factors: Factors
    x_center: np.ndarray
    x_scale: np.ndarray
    z_center: np.ndarray
    z_scale: np.ndarray
    y_center: float
    y_scale: float

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_arrays(
        cls, atoms: np.ndarray, y: np.ndarray, x_factors: Factors, z_factors: Factors,
        *, z_centred: bool = True,
    ) -> Scaling:
        """Centres and scales from data (any rows: all of them, or a first chunk).

        Parameters
        ----------
        atoms : ndarray, shape (n, a)
            The coded variable columns.
        y : ndarray, shape (n,)
        x_factors, z_factors : tuple of tuple of int
            Each column's atoms (from the design's terms, never guessed from values).
        z_centred : bool
            Whether Zq's atoms may be centred.  False (only scaled, so A_z is diagonal) where
            the random effects are not one unstructured block: centring mixes a slope with
            the intercept, and a diagonal T would not stay diagonal.
        """
        atoms = np.asarray(atoms, dtype=float)
        y = np.asarray(y, dtype=float)
        means = atoms.mean(axis=0) if atoms.shape[0] else np.zeros(atoms.shape[1])
        xc, xs = _moments(atoms, _centring(x_factors, means))
        z_mask = (_centring(z_factors, means) if z_centred
                  else np.zeros(atoms.shape[1], dtype=bool))
        zc, zs = _moments(atoms, z_mask)
        y_centred = np.array([() in x_factors])
        yc, ys = _moments(y[:, None], y_centred)
        return cls(tuple(x_factors), tuple(z_factors), xc, xs, zc, zs, float(yc[0]),
                   float(ys[0]))

    @property
    def p(self) -> int:
        """Columns of X."""
        return len(self.x_factors)

    @property
    def q(self) -> int:
        """Random terms."""
        return len(self.z_factors)

    @property
    def x_intercept(self) -> int | None:
        """Index of X's intercept column, or None."""
        return self.x_factors.index(()) if () in self.x_factors else None

    @property
    def z_intercept(self) -> int | None:
        """Index of Zq's intercept column, or None."""
        return self.z_factors.index(()) if () in self.z_factors else None

    # ----------------------------------------------------------------- data
    def standardize(
        self, atoms: np.ndarray, y: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """X̃ (n, p), Z̃ (n, q) and ỹ (n,) of some rows, from their atoms and y."""
        atoms = np.asarray(atoms, dtype=float)
        return (
            _columns(atoms, self.x_factors, self.x_center, self.x_scale),
            _columns(atoms, self.z_factors, self.z_center, self.z_scale),
            (np.asarray(y, dtype=float) - self.y_center) / self.y_scale,
        )

    @property
    def A_x(self) -> np.ndarray:
        """``X = X̃ A_x``, shape (p, p)."""
        return _expansion(self.x_factors, self.x_center, self.x_scale)

    @property
    def A_x_inv(self) -> np.ndarray:
        """``X̃ = X A_x⁻¹``, shape (p, p) (the expansion with 1/s and −c/s)."""
        return _expansion(self.x_factors, -self.x_center / self.x_scale, 1.0 / self.x_scale)

    @property
    def A_z(self) -> np.ndarray:
        """``Zq = Z̃ A_z``, shape (q, q)."""
        return _expansion(self.z_factors, self.z_center, self.z_scale)

    @property
    def A_z_inv(self) -> np.ndarray:
        """A_z⁻¹, shape (q, q)."""
        return _expansion(self.z_factors, -self.z_center / self.z_scale, 1.0 / self.z_scale)

    def x_centring(self) -> np.ndarray:
        """``X = X_c C_x`` with X_c built from centred, unscaled atoms (p × p).

        ``δ = C_x β`` are the coefficients with every centred variable at its mean (the
        intercept α at the means, a main effect at the means of what it interacts with):
        the parameters the default priors are placed on (:mod:`bayesmix.priors`).
        """
        return _expansion(self.x_factors, self.x_center, np.ones_like(self.x_scale))

    def z_centring(self) -> np.ndarray:
        """``Zq = Z_c C_z``, the same for the random terms (q × q)."""
        return _expansion(self.z_factors, self.z_center, np.ones_like(self.z_scale))

    @property
    def x_column_scale(self) -> np.ndarray:
        """``D_x[k] = Π_{i ∈ F_k} s_i``: X_c = X̃ diag(D_x), shape (p,)."""
        return np.array([float(np.prod(self.x_scale[list(f)])) for f in self.x_factors])

    @property
    def z_column_scale(self) -> np.ndarray:
        """``D_z[r] = Π_{i ∈ G_r} t_i``, shape (q,)."""
        return np.array([float(np.prod(self.z_scale[list(f)])) for f in self.z_factors])

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
        """β̃ = (A_x β − m e₀) / s_y, shape (..., p)."""
        return (np.asarray(beta, dtype=float) @ self.A_x.T - self._e()) / self.y_scale

    def beta_from_std(self, beta_std: np.ndarray) -> np.ndarray:
        """β = A_x⁻¹ (s_y β̃ + m e₀), shape (..., p)."""
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
        likelihood carries ``log|XᵀV⁻¹X|``, which changes with the scale of X), with
        ``det A_x = Π_k D_x[k]``.
        """
        if method == "ML":
            return 2.0 * n * float(np.log(self.y_scale))
        return 2.0 * (n - self.p) * float(np.log(self.y_scale)) + 2.0 * float(
            np.sum(np.log(self.x_column_scale))
        )

    # ----------------------------------------------------------------- storage
    def same_as(self, other: Scaling) -> bool:
        """Whether two scalings are identical (so statistics need no conversion)."""
        return (
            self.x_factors == other.x_factors
            and self.z_factors == other.z_factors
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
            "x_factors": [list(f) for f in self.x_factors],
            "z_factors": [list(f) for f in self.z_factors],
            "x_center": self.x_center.tolist(),
            "x_scale": self.x_scale.tolist(),
            "z_center": self.z_center.tolist(),
            "z_scale": self.z_scale.tolist(),
            "y_center": self.y_center,
            "y_scale": self.y_scale,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Scaling:
        """Inverse of :meth:`to_dict`."""
        return cls(
            x_factors=tuple(tuple(int(i) for i in f) for f in values["x_factors"]),
            z_factors=tuple(tuple(int(i) for i in f) for f in values["z_factors"]),
            x_center=np.asarray(values["x_center"], dtype=float),
            x_scale=np.asarray(values["x_scale"], dtype=float),
            z_center=np.asarray(values["z_center"], dtype=float),
            z_scale=np.asarray(values["z_scale"], dtype=float),
            y_center=float(values["y_center"]),
            y_scale=float(values["y_scale"]),
        )


def random_column_scale(design: Any) -> np.ndarray:
    """Scale of each random effect's level-1 column (the SD priors' divisor), all factors.

    One factor: ``design.scaling.z_column_scale``.  Several: each factor's
    :class:`FactorScale` (``fe.scale``, the same rule, block by block).
    """
    if design.single_factor:
        return design.scaling.z_column_scale
    return np.concatenate([fe.scale.column_scale for fe in design.effects])


@dataclass(frozen=True)
class FactorScale:
    """One grouping factor's random columns on the standardised scale, block by block.

    Each block of the factor has its own :class:`Scaling` (an unstructured block's slope
    variables centred where the block holds the columns that needs; a diagonal block only
    scaled, which keeps T diagonal), so ``Zq = Z̃ A`` with A block-diagonal (q × q), and::

        ũ_j = A u_j / s_y      T̃ = A T Aᵀ / s_y²      (and back with A⁻¹)

    Attributes
    ----------
    blocks : tuple of (tuple of int, Scaling)
        Each block's columns among the factor's effects, and its scaling.
    A, A_inv : ndarray, shape (q, q)
    column_scale : ndarray, shape (q,)
        Product of each column's atom scales (the SD priors' divisor, as ``z_column_scale``).
    y_scale : float
    """

    blocks: tuple[tuple[tuple[int, ...], Scaling], ...]
    A: np.ndarray
    A_inv: np.ndarray
    column_scale: np.ndarray
    y_scale: float

    def standardize(self, atoms: np.ndarray, q: int) -> np.ndarray:
        """Z̃ (n, q) of some rows, from their atoms."""
        out = np.empty((atoms.shape[0], q))
        for cols, sb in self.blocks:
            out[:, list(cols)] = _columns(atoms, sb.z_factors, sb.z_center, sb.z_scale)
        return out

    def u_to_std(self, u: Any) -> Any:
        """ũ = u Aᵀ / s_y, rows of shape (..., J, q) (NumPy or PyTensor)."""
        return u @ self.A.T / self.y_scale

    def u_from_std(self, u_std: Any) -> Any:
        """Original-scale effects, s_y ũ A⁻ᵀ, rows of shape (..., J, q) (NumPy or PyTensor)."""
        return self.y_scale * (u_std @ self.A_inv.T)

    def cov_to_std(self, cov: np.ndarray) -> np.ndarray:
        """T̃ = A T Aᵀ / s_y²."""
        return self.A @ np.asarray(cov, dtype=float) @ self.A.T / self.y_scale**2

    def cov_from_std(self, cov_std: np.ndarray) -> np.ndarray:
        """T = s_y² A⁻¹ T̃ A⁻ᵀ."""
        return self.y_scale**2 * (self.A_inv @ np.asarray(cov_std, dtype=float) @ self.A_inv.T)


def factor_scale(atoms: np.ndarray, y: np.ndarray, sc: Scaling, fe: Any) -> FactorScale:
    """The :class:`FactorScale` of one grouping factor (found once, in ``build_design``).

    Parameters
    ----------
    atoms : ndarray, shape (n, a)
    y : ndarray, shape (n,)
    sc : Scaling
        The design's; its X part and s_y are shared by every block.
    fe : FactorEffects
    """
    q = fe.q
    a, a_inv, scale = np.zeros((q, q)), np.zeros((q, q)), np.ones(q)
    blocks = []
    for block in fe.blocks:
        cols = tuple(block.columns)
        sb = Scaling.from_arrays(atoms, y, sc.x_factors,
                                 tuple(fe.factors[c] for c in cols),
                                 z_centred=block.structure == "unstructured")
        ix = np.ix_(cols, cols)
        a[ix], a_inv[ix] = sb.A_z, sb.A_z_inv
        scale[list(cols)] = sb.z_column_scale
        blocks.append((cols, sb))
    return FactorScale(tuple(blocks), a, a_inv, scale, sc.y_scale)
