"""Values of transformed variables on data, and the constants fitted on the fit's data.

A :class:`~bayesmix.spec.transforms.Transform` is evaluated bottom-up on a DataFrame.  The
calls whose value depends on the data as a whole keep what they computed, keyed by the
canonical text of the call, so that ``predict`` applies the *fitted* constants to new rows:

=================  ==========================================================================
call               kept (:class:`CentreFit`, :class:`ScaleFit`, :class:`PolyFit`)
=================  ==========================================================================
``grand(x)``       x̄_·· over x's units (each unit once; the rows for a level-1 variable)
``group(x, g)``    x̄_·j per unit j of g (over x's units in j); new units: their rows' mean
``mean(x, g)``     the same means; the value is x̄_·j itself
``scale(x)``       the mean and the standard deviation (n − 1) over the rows, as R's scale()
``poly(x, k)``     the recurrence constants α and ‖P‖² of R's poly() (``predict.poly``)
=================  ==========================================================================

*x's units*: the units of the level x belongs to, i.e. of the coarsest grouping factor within
which x is constant (a school variable: the schools), or the rows when x varies within every
factor; a level-2 variable's means weight each level-2 unit once, as HLM's level-2 file
does.  ``group``/``mean`` without a grouping centre within the level just above x's units: the
innermost factor for a level-1 variable, its parent factor (nested designs) for a level-2 one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayesmix.design import validate
from bayesmix.design.terms import Grouping, make_grouping
from bayesmix.errors import DataError
from bayesmix.spec.model import Spec
from bayesmix.spec.transforms import (
    Arith,
    Categorical,
    Centre,
    Column,
    Elementwise,
    Node,
    Number,
    Poly,
    Scale,
    Transform,
    to_text,
)

_FUNCTIONS = {"log": np.log, "log2": np.log2, "log10": np.log10, "log1p": np.log1p,
              "exp": np.exp, "expm1": np.expm1, "sqrt": np.sqrt, "abs": np.abs,
              "I": lambda x: x}


@dataclass(frozen=True)
class CentreFit:
    """The means of a centring call, as fitted.

    Attributes
    ----------
    units : str or None
        The grouping factor whose units are averaged, each once; None: the rows.
    by : str or None
        The grouping factor of the group means; None for ``grand``.
    grand : float
        The grand mean (``grand``) over the units.
    labels : tuple of str
        The units of ``by`` in the fit's data.
    means : ndarray, shape (len(labels),)
        Their means.
    """

    units: str | None
    by: str | None
    grand: float
    labels: tuple[str, ...] = ()
    means: np.ndarray | None = None


@dataclass(frozen=True)
class ScaleFit:
    """``scale()``'s centre and scale (0 and 1 where not asked for)."""

    center: float
    scale: float


@dataclass(frozen=True)
class PolyFit:
    """``poly()``'s recurrence constants: α_0..α_{k-1} and ‖P_0‖²..‖P_k‖² (R's alpha, norm2)."""

    alpha: np.ndarray
    norm2: np.ndarray


Fitted = dict[str, CentreFit | ScaleFit | PolyFit]


class Deriver:
    """Evaluates transformed variables on ``data``.

    Parameters
    ----------
    spec : Spec
    data : DataFrame
    groupings : tuple of Grouping, optional
        The spec's grouping factors on ``data`` (with parents), innermost first or in any
        order; made from ``data`` when None.
    fitted : dict, optional
        A fit's constants (``Design.fitted``): applied instead of computed from ``data``.
    """

    def __init__(self, spec: Spec, data: pd.DataFrame,
                 groupings: tuple[Grouping, ...] | None = None,
                 fitted: Fitted | None = None) -> None:
        self.spec, self.data = spec, data
        self.predicting = fitted is not None
        self.fitted: Fitted = dict(fitted) if fitted is not None else {}
        self._groupings = {g.name: g for g in groupings} if groupings else None
        self._cache: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ groupings
    def grouping(self, name: str) -> Grouping:
        """The units of a grouping factor (a spec's, or any column) on these data."""
        if self._groupings is None:
            self._groupings = {}
        if name not in self._groupings:
            columns = tuple(name.split(":"))
            missing = [c for c in columns if c not in self.data.columns]
            if missing:
                raise DataError(f"the grouping {name!r} of a centring call is not a column of "
                                f"the data ({missing[0]!r} is missing)")
            self._groupings[name] = make_grouping(columns, self.data)
        return self._groupings[name]

    def _units_of(self, x: np.ndarray) -> str | None:
        """The coarsest grouping factor (fewest units) within which x is constant.

        That is the level x belongs to; None (the rows) for a variable that varies within
        every factor.
        """
        for name in sorted(self.spec.groupings, key=lambda g: self.grouping(g).J):
            g = self.grouping(name)
            if _constant_within(x, g.index, g.J):
                return name
        return None

    def _parent(self, name: str) -> str | None:
        g = self.grouping(name)
        if g.parent is not None:
            return g.parent
        others = [self.grouping(h) for h in self.spec.groupings if h != name]
        best = None
        for h in others:
            if h.J < g.J and _constant_within(h.index.astype(float), g.index, g.J) and (
                    best is None or h.J > best.J):
                best = h
        return None if best is None else best.name

    # ------------------------------------------------------------------ evaluation
    def values(self, transform: Transform) -> np.ndarray:
        """The values (n,), or (n, k) for ``poly``; ``C(x)`` gives the column itself."""
        if transform.name in self._cache:
            return self._cache[transform.name]
        if isinstance(transform.expr, Categorical):
            return self.data[transform.expr.column].to_numpy()
        out = self._eval(transform.expr)
        bad = ~np.isfinite(out).all(axis=1) if out.ndim == 2 else ~np.isfinite(out)
        if bad.any():
            rows = self.data.index[bad]
            src = {c: self.data[c].to_numpy()[bad][:3].tolist() for c in transform.columns
                   if pd.api.types.is_numeric_dtype(self.data[c])}
            raise DataError(
                f"{transform.name} is not a finite number in {int(bad.sum())} rows (at rows "
                f"{validate._show(rows)}; there {', '.join(f'{k} = {v}' for k, v in src.items())}"
                "). Drop those rows or choose a transformation defined there (log1p, sqrt of "
                "a shifted variable, ...)"
            )
        self._cache[transform.name] = out
        return out

    def evaluate(self, node: Node) -> np.ndarray:
        """The values (n,) of one node of an expression (its calls fitted or applied)."""
        return self._eval(node)

    def _eval(self, node: Node) -> np.ndarray:
        if isinstance(node, Column):
            return validate.numeric_column(node.name, self.data[node.name], self.data.index)
        if isinstance(node, Number):
            return np.full(len(self.data), node.value)
        if isinstance(node, Arith):
            args = [self._eval(a) for a in node.args]
            with np.errstate(all="ignore"):
                if node.op == "neg":
                    return -args[0]
                a, b = args
                return {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide,
                        "^": np.power}[node.op](a, b)
        if isinstance(node, Elementwise):
            with np.errstate(all="ignore"):
                return _FUNCTIONS[node.fn](self._eval(node.arg))
        if isinstance(node, Scale):
            return self._scale(node, self._eval(node.arg))
        if isinstance(node, Centre):
            return self._centre(node, self._eval(node.arg))
        if isinstance(node, Poly):
            return self._poly(node, self._eval(node.arg))
        raise DataError(f"C() cannot be part of an expression ({to_text(node)})")

    def _scale(self, node: Scale, x: np.ndarray) -> np.ndarray:
        key = to_text(node)
        if key not in self.fitted:
            center = float(np.mean(x)) if node.center else 0.0
            scale = 1.0
            if node.scale:
                scale = float(np.sqrt(np.sum((x - center) ** 2) / max(len(x) - 1, 1)))
                if not scale > 0:
                    raise DataError(f"{key}: the variable is constant in the data, so it "
                                    "cannot be scaled")
            self.fitted[key] = ScaleFit(center, scale)
        fit = self.fitted[key]
        return (x - fit.center) / fit.scale

    def _centre(self, node: Centre, x: np.ndarray) -> np.ndarray:
        key = to_text(node)
        fit = self.fitted.get(key)
        if fit is None:
            fit = self._fit_centre(node, key, x)
            self.fitted[key] = fit
        if node.kind == "grand":
            return x - fit.grand
        means = self._group_means(fit, x, key)
        return x - means if node.kind == "group" else means

    def _fit_centre(self, node: Centre, key: str, x: np.ndarray) -> CentreFit:
        units = self._units_of(x)
        if node.kind == "grand":
            return CentreFit(units, None, float(np.mean(self._unit_values(x, units)[0])))
        by = node.by
        if by is None:
            by = self.spec.cluster if units is None else self._parent(units)
            if by is None:
                arg = to_text(node.arg)
                what = ("centring it at its mean there gives 0 everywhere" if node.kind ==
                        "group" else f"its mean there is {arg} itself")
                raise DataError(
                    f"{key}: {arg} is constant within each unit of {units}, so {what}; use "
                    f"grand({arg}) or {arg} itself, or name a coarser grouping "
                    f"({node.kind}({arg}, <column>))")
        g = self.grouping(by)
        if node.kind == "group" and _constant_within(x, g.index, g.J):
            raise DataError(
                f"{key}: {to_text(node.arg)} is constant within each unit of {by}, so centring "
                f"it at its {by} mean gives 0 everywhere; use grand({to_text(node.arg)}) or "
                f"{to_text(node.arg)} itself")
        if units is not None and not _constant_within(
                g.index.astype(float), self.grouping(units).index, self.grouping(units).J):
            units = None  # x's units are not nested in `by`: average the rows
        means = self._means_by(x, units, g)
        return CentreFit(units, by, float(np.mean(self._unit_values(x, units)[0])), g.levels,
                         means)

    def _unit_values(self, x: np.ndarray, units: str | None) -> tuple[np.ndarray, np.ndarray]:
        """X once per unit of ``units`` (rows when None) and each unit's first row."""
        if units is None:
            return x, np.arange(len(x))
        g = self.grouping(units)
        first = np.full(g.J, -1)
        first[g.index[::-1]] = np.arange(len(x))[::-1]
        return x[first], first

    def _means_by(self, x: np.ndarray, units: str | None, g: Grouping) -> np.ndarray:
        values, rows = self._unit_values(x, units)
        codes = g.index[rows]
        return np.bincount(codes, values, g.J) / np.bincount(codes, minlength=g.J)

    def _group_means(self, fit: CentreFit, x: np.ndarray, key: str) -> np.ndarray:
        g = self.grouping(fit.by)
        if not self.predicting:
            return fit.means[g.index]
        pos = pd.Index(fit.labels).get_indexer(list(g.levels))
        new = pos < 0
        per_unit = np.where(new, np.nan, fit.means[np.maximum(pos, 0)] if len(fit.labels)
                            else np.nan)
        if new.any():  # units the fit has not seen: the mean over their rows here
            units = fit.units if fit.units in self.spec.groupings and all(
                c in self.data.columns for c in fit.units.split(":")) else None
            per_unit[new] = self._means_by(x, units, g)[new]
        return per_unit[g.index]

    def _poly(self, node: Poly, x: np.ndarray) -> np.ndarray:
        key = to_text(node)
        if node.raw:
            return np.column_stack([x ** d for d in range(1, node.degree + 1)])
        if key not in self.fitted:
            unique = len(np.unique(x))
            if node.degree >= unique:
                raise DataError(f"{key}: the degree must be less than the number of distinct "
                                f"values of {to_text(node.arg)} ({unique})")
            self.fitted[key] = _poly_fit(x, node.degree)
        return poly_values(x, self.fitted[key])


def range_by(x: np.ndarray, index: np.ndarray, J: int) -> tuple[np.ndarray, np.ndarray]:
    """The smallest and largest x in each unit 0..J-1 of ``index``, two arrays (J,)."""
    lo = np.full(J, np.inf)
    hi = np.full(J, -np.inf)
    np.minimum.at(lo, index, x)
    np.maximum.at(hi, index, x)
    return lo, hi


def _constant_within(x: np.ndarray, index: np.ndarray, J: int) -> bool:
    lo, hi = range_by(x, index, J)
    return bool(np.all(lo == hi))


def _poly_fit(x: np.ndarray, degree: int) -> PolyFit:
    """α and ‖P‖² of the monic orthogonal polynomials on x (Stieltjes), as R's poly()."""
    n = len(x)
    alpha = np.zeros(degree)
    norm2 = np.zeros(degree + 2)
    norm2[0], norm2[1] = 1.0, float(n)
    prev, cur = np.zeros(n), np.ones(n)
    for i in range(degree):
        alpha[i] = float(np.sum(x * cur ** 2) / norm2[i + 1])
        nxt = (x - alpha[i]) * cur - (norm2[i + 1] / norm2[i]) * prev * (i > 0)
        prev, cur = cur, nxt
        norm2[i + 2] = float(np.sum(cur ** 2))
    return PolyFit(alpha, norm2)


def poly_values(x: np.ndarray, fit: PolyFit) -> np.ndarray:
    """R's ``predict(poly(...), x)``: the orthonormal polynomials at x, shape (n, k)."""
    degree = len(fit.alpha)
    Z = np.ones((len(x), degree + 1))
    Z[:, 1] = x - fit.alpha[0]
    for i in range(1, degree):
        Z[:, i + 1] = (x - fit.alpha[i]) * Z[:, i] - (fit.norm2[i + 1] / fit.norm2[i]) * Z[:, i - 1]
    return Z[:, 1:] / np.sqrt(fit.norm2[2:])


def contr_poly(k: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """R's ``contr.poly(k)``: (k, k − 1) orthonormal polynomial contrasts and their names."""
    scores = np.arange(1, k + 1, dtype=float)
    values = poly_values(scores, _poly_fit(scores, k - 1))
    names = tuple({1: ".L", 2: ".Q", 3: ".C"}.get(d, f"^{d}") for d in range(1, k))
    return values, names
