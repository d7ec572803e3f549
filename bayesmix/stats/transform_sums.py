"""The constants of transformed variables from sums, for statistics streamed from a file.

:func:`bayesmix.stats.stream.scan_levels` reads a file once, chunk by chunk, to find the cluster
labels and categorical levels; it also folds into :class:`TransformSums` what the calls of
:mod:`bayesmix.spec.transforms` need, so that :func:`bayesmix.stats.stream.stream_cluster_stats`
codes every chunk with the constants of the whole data, as :func:`bayesmix.build_design` does
on a DataFrame, without another pass over the rows:

=====================  ========================================================================
call                   sums kept
=====================  ========================================================================
``group``, ``mean``,   per cluster: Σx, n_j, min x and max x (whether x is constant within
``grand``              clusters, i.e. a level-2 variable whose grand mean is over clusters)
``scale``              n, Σ(x − c), Σ(x − c)² about a shift c (the first chunk's mean)
``poly(x, k)``         the power sums Σ(x − c)^m, m ≤ 2k; the recurrence of R's poly() is run on
                       them (:func:`poly_from_moments`)
=====================  ========================================================================

The argument of such a call must itself be free of them (``group(log(x))`` is fine,
``group(scale(x))`` is refused), and centring is within the file's clusters.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayesmix.design.derive import CentreFit, Deriver, PolyFit, ScaleFit
from bayesmix.errors import DataError
from bayesmix.spec.model import Spec
from bayesmix.spec.transforms import Centre, Node, Poly, Scale, to_text, walk

_STATEFUL = (Centre, Scale, Poly)


def stateful_nodes(spec: Spec) -> list[Node]:
    """The calls whose constants come from the whole data, each once; refusing nested ones."""
    out: dict[str, Node] = {}
    for t in spec.transforms.values():
        for node in walk(t.expr):
            if not isinstance(node, _STATEFUL):
                continue
            inner = [n for n in walk(node.arg) if isinstance(n, _STATEFUL)]
            if inner:
                raise DataError(f"{t.name}: {to_text(node)} holds {to_text(inner[0])}; "
                                "statistics streamed from a file take one such call per term")
            if isinstance(node, Centre) and node.by not in (None, spec.cluster):
                raise DataError(f"{t.name}: statistics streamed from a file centre within "
                                f"{spec.cluster}; read the file into a DataFrame for by="
                                f"{node.by!r}")
            if t.name == spec.outcome:
                raise DataError(f"the outcome {t.name} needs the whole data; add it as a "
                                "column of the file")
            out.setdefault(to_text(node), node)
    return list(out.values())


class TransformSums:
    """Sums of the stateful calls' arguments, folded chunk by chunk."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.nodes = stateful_nodes(spec)
        self.by_cluster: dict[str, pd.DataFrame] = {}
        self.moments: dict[str, np.ndarray] = {}
        self.shift: dict[str, float] = {}
        self.distinct: dict[str, set] = {}

    def add(self, chunk: pd.DataFrame) -> None:
        """Fold one chunk (the rows used, the cluster column among its columns)."""
        if not self.nodes or len(chunk) == 0:
            return
        deriver = Deriver(self.spec, chunk)
        labels = chunk[self.spec.cluster].astype(str).to_numpy()
        for node in self.nodes:
            key = to_text(node)
            x = deriver.evaluate(node.arg)
            if not np.isfinite(x).all():
                raise DataError(f"{to_text(node.arg)} is not a finite number in some rows of "
                                "the file; drop them or choose a transformation defined there")
            if isinstance(node, Centre):
                part = pd.DataFrame({"x": x, "label": labels}).groupby("label")["x"].agg(
                    ["sum", "count", "min", "max"])
                self.by_cluster[key] = _merge_cluster_sums(self.by_cluster.get(key), part)
                continue
            degree = 2 * node.degree if isinstance(node, Poly) else 2
            c = self.shift.setdefault(key, float(np.mean(x)))
            t = x - c
            sums = np.array([np.sum(t**m) for m in range(degree + 1)])
            self.moments[key] = self.moments.get(key, 0) + sums
            if isinstance(node, Poly):
                seen = self.distinct.setdefault(key, set())
                if len(seen) <= node.degree:
                    seen.update(np.unique(x)[: node.degree + 1].tolist())

    def merge(self, other: TransformSums) -> TransformSums:
        """The sums of this object's pieces and of ``other``'s, as a new object.

        Per-cluster sums add (min and max combine); power sums about different shifts are
        re-expressed about this object's shift (:func:`bayesmix.stats.levels.shift_moments`).
        """
        from bayesmix.stats.levels import shift_moments

        out = TransformSums(self.spec)
        keys = set(self.by_cluster) | set(other.by_cluster)
        out.by_cluster = {k: _merge_cluster_sums(self.by_cluster.get(k),
                                                 other.by_cluster.get(k)) for k in keys}
        for key in set(self.moments) | set(other.moments):
            if key not in other.moments or key not in self.moments:
                src = self if key in self.moments else other
                out.moments[key], out.shift[key] = src.moments[key], src.shift[key]
                continue
            c = self.shift[key]
            out.shift[key] = c
            out.moments[key] = self.moments[key] + shift_moments(other.moments[key],
                                                                 other.shift[key], c)
        for key in set(self.distinct) | set(other.distinct):
            out.distinct[key] = self.distinct.get(key, set()) | other.distinct.get(key, set())
        return out

    def fitted(self, clusters: tuple[str, ...]) -> dict:
        """The constants (``Design.fitted``'s entries) of every stateful call."""
        out: dict = {}
        for node in self.nodes:
            key = to_text(node)
            if isinstance(node, Centre):
                out[key] = self._centre(node, key, clusters)
            elif isinstance(node, Scale):
                n, s1, s2 = self.moments[key][:3]
                c = self.shift[key]
                mean = c + s1 / n
                center = mean if node.center else 0.0
                scale = 1.0
                if node.scale:  # Σ(x − centre)² from the sums about the shift c
                    d = c - center
                    scale = float(np.sqrt((s2 + 2 * d * s1 + n * d**2) / max(n - 1, 1)))
                    if not scale > 0:
                        raise DataError(f"{key}: the variable is constant in the file, so it "
                                        "cannot be scaled")
                out[key] = ScaleFit(float(center), scale)
            else:
                if node.raw:
                    continue
                if len(self.distinct.get(key, ())) <= node.degree:
                    raise DataError(f"{key}: the degree must be less than the number of "
                                    f"distinct values of {to_text(node.arg)}")
                out[key] = poly_from_moments(self.moments[key], self.shift[key], node.degree)
        return out

    def _centre(self, node: Centre, key: str, clusters: tuple[str, ...]) -> CentreFit:
        sums = self.by_cluster[key].reindex(list(clusters))
        constant = bool((sums["min"] == sums["max"]).all())
        arg = to_text(node.arg)
        per_cluster = (sums["sum"] / sums["count"]).to_numpy()
        if node.kind == "grand":
            if constant:  # a level-2 variable: each cluster once
                return CentreFit(self.spec.cluster, None, float(np.mean(per_cluster)))
            return CentreFit(None, None, float(sums["sum"].sum() / sums["count"].sum()))
        if constant:
            raise DataError(f"{key}: {arg} is constant within each unit of {self.spec.cluster}; "
                            f"use grand({arg}) or {arg} itself")
        return CentreFit(None, self.spec.cluster, float(sums["sum"].sum() / sums["count"].sum()),
                         tuple(clusters), per_cluster)


def _merge_cluster_sums(old: pd.DataFrame | None, part: pd.DataFrame | None) -> pd.DataFrame:
    """Per-cluster sum, count, min and max of two sets of pieces, as one."""
    if old is None or part is None:
        return part if old is None else old
    both = old.index.union(part.index)
    old, part = old.reindex(both), part.reindex(both)
    return pd.DataFrame({
        "sum": old["sum"].fillna(0) + part["sum"].fillna(0),
        "count": old["count"].fillna(0) + part["count"].fillna(0),
        "min": np.fmin(old["min"], part["min"]),
        "max": np.fmax(old["max"], part["max"])})


def poly_from_moments(sums: np.ndarray, shift: float, degree: int) -> PolyFit:
    """R's poly() recurrence constants from the power sums S_m = Σ(x − c)^m, m ≤ 2·degree.

    The monic orthogonal polynomials are carried as coefficient vectors in t = x − c, with the
    inner product ⟨p, q⟩ = Σ_ab p_a q_b S_{a+b}; α_i = ⟨tP_i, P_i⟩/⟨P_i, P_i⟩ + c and
    ‖P_i‖² = ⟨P_i, P_i⟩, as :func:`bayesmix.design.derive._poly_fit` computes them on the rows.
    """
    def inner(p: np.ndarray, q: np.ndarray) -> float:
        return float(sum(p[a] * q[b] * sums[a + b] for a in range(len(p)) for b in range(len(q))
                         if p[a] and q[b]))

    alpha = np.zeros(degree)
    norm2 = np.zeros(degree + 2)
    norm2[0], norm2[1] = 1.0, float(sums[0])
    prev, cur = np.zeros(degree + 1), np.zeros(degree + 1)
    cur[0] = 1.0
    for i in range(degree):
        t_cur = np.roll(cur, 1)  # t · P_i (degree i + 1 < len)
        a = inner(t_cur, cur) / norm2[i + 1]
        alpha[i] = a + shift
        nxt = t_cur - a * cur - (norm2[i + 1] / norm2[i]) * prev * (i > 0)
        prev, cur = cur, nxt
        norm2[i + 2] = inner(cur, cur)
    return PolyFit(alpha, norm2)
