"""``equations()``: a model as level-1 / level-2, combined and matrix equations.

One intermediate representation (:mod:`bayesmix.render.ir`) is built from the Spec (and the
design and estimates when given); :mod:`~bayesmix.render.latex`,
:mod:`~bayesmix.render.markdown` and :mod:`~bayesmix.render.text` each render it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bayesmix.errors import BayesmixError
from bayesmix.render import forms, ir, latex, markdown, text
from bayesmix.render.estimates import Estimates, from_fit, from_reml

if TYPE_CHECKING:
    import pandas as pd

    from bayesmix.design import Design
    from bayesmix.spec.model import Spec

FORMS = ("levels", "combined", "matrix_cluster", "matrix", "distributions")
"""Names of the forms, in display order."""

FORMATS = ("latex", "markdown", "text")
"""Output formats."""


@dataclass(frozen=True)
class Form:
    """One display of a model's equations, renderable to every format.

    Attributes
    ----------
    ir : FormIR
        The intermediate representation (title and blocks).

    Notes
    -----
    ``.latex`` is math-mode LaTeX (one ``aligned`` environment, no delimiters);
    ``.markdown`` is Markdown with ``$$`` math; ``.text`` is plain unicode text.  In a
    notebook the form displays as typeset math.
    """

    ir: ir.FormIR

    @property
    def name(self) -> str:
        """Name of the form: one of :data:`FORMS`."""
        return self.ir.name

    @property
    def title(self) -> str:
        """A short heading."""
        return self.ir.title

    @property
    def latex(self) -> str:
        """Math-mode LaTeX: one ``aligned`` environment."""
        return latex.form(self.ir)

    @property
    def markdown(self) -> str:
        """Markdown with ``$$`` display math."""
        return markdown.form(self.ir)

    @property
    def text(self) -> str:
        """Plain unicode text."""
        return text.form(self.ir)

    @property
    def equations(self) -> tuple[ir.Equation, ...]:
        """The equations of this form (the IR), without the notes."""
        return tuple(b for b in self.ir.blocks if isinstance(b, ir.Equation))

    def render(self, fmt: str) -> str:
        """Return the form in ``fmt`` (``"latex"``, ``"markdown"`` or ``"text"``)."""
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
        return getattr(self, fmt)

    def _repr_latex_(self) -> str:
        return "$$\n" + self.latex + "\n$$"

    def _repr_markdown_(self) -> str:
        return self.markdown

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Equations:
    """Every form of a model's equations.

    Attributes
    ----------
    levels : Form
        Level 1 ``y_ij = β_0j + β_1j · X_ij + ε_ij`` and level 2 ``β_qj = γ_q0 + ... + U_qj``.
    combined : Form
        One equation for y_ij: fixed part, random part, ε_ij; cross-level interactions named.
    matrix_cluster : Form
        One cluster: ``Y_j = X_j β + Z_j U_j + ε_j`` with the matrices written out.
    matrix : Form
        The whole data, ``Y = Xβ + Zu + e``: the design's numbers (rows in cluster order,
        elided past ``max_rows``) when data is given, the block form in symbols otherwise.
    distributions : Form
        ``U_j ~ N(0, T)``, ``ε_ij ~ N(0, σ²)``, and the priors.
    spec : Spec
    design : Design or None
    estimates : Estimates or None

    Notes
    -----
    With several grouping factors (:mod:`bayesmix.render.factors`) the levels are written in
    Raudenbush & Bryk's notation when the factors are nested (π, β, γ; r, u, v), with one
    index per factor when crossed; ``matrix_cluster`` shows one unit of the level-3 (or first
    crossed) factor with the inner factor's units, and ``matrix`` partitions Z by factor,
    ``Y = Xβ + Σ_g Z_(g) u_(g) + e``; the distributions give one T_(g) per factor.
    """

    levels: Form
    combined: Form
    matrix_cluster: Form
    matrix: Form
    distributions: Form
    spec: Spec
    design: Design | None = None
    estimates: Estimates | None = None

    @property
    def forms(self) -> tuple[Form, ...]:
        """All forms, in display order."""
        return tuple(getattr(self, name) for name in FORMS)

    def __getitem__(self, name: str) -> Form:
        if name not in FORMS:
            raise KeyError(f"unknown form {name!r}; choose one of {', '.join(FORMS)}")
        return getattr(self, name)

    @property
    def latex(self) -> str:
        """Every form's LaTeX, each in an ``equation*`` environment under a comment title."""
        return "\n\n".join(
            f"% {f.title}\n\\begin{{equation*}}\n{f.latex}\n\\end{{equation*}}"
            for f in self.forms
        )

    @property
    def markdown(self) -> str:
        """Every form, as Markdown with math."""
        return "\n\n".join(f.markdown for f in self.forms)

    @property
    def text(self) -> str:
        """Every form, as plain text under its title."""
        return "\n\n".join(f"{f.title}\n{'-' * len(f.title)}\n{f.text}" for f in self.forms)

    def render(self, fmt: str) -> str:
        """All forms in ``fmt``."""
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
        return getattr(self, fmt)

    def _repr_markdown_(self) -> str:
        return self.markdown

    def _repr_latex_(self) -> str:
        body = " \\\\[2ex]\n".join(f.latex for f in self.forms)
        return "$$\n\\begin{gathered}\n" + body + "\n\\end{gathered}\n$$"

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        filled = ("with the data's numbers" if self.design is not None else "in symbols")
        if self.estimates is not None:
            filled += " and estimates"
        return (
            f"Equations ({filled}) of {self.spec.to_formula()}\n{self.levels.text}\n"
            f"Forms {', '.join('.' + f.name for f in self.forms)}\n"
            "  (each has .latex, .markdown and .text; print() shows them all)"
        )


def equations(
    spec: Spec | None = None,
    data: pd.DataFrame | Design | None = None,
    *,
    fit: Any = None,
    reml: Any = None,
    max_rows: int = 20,
    max_clusters: int = 4,
    digits: int = 7,
    grouping: forms.Grouping = "fixed-random",
) -> Equations:
    """Write a model's equations: L1/L2, combined and matrix forms, with symbols or numbers.

    Parameters
    ----------
    spec : Spec, optional
        The model; defaults to ``fit.spec`` / the spec of ``reml``'s design.
    data : DataFrame or Design, optional
        With data, categorical predictors show their coded columns, the whole-data matrix
        form shows the design's X (n, p) and Z (n, J·q; one part per grouping factor) with
        numbers and the priors are the autoscaled ones; without, everything is symbolic.
    fit : Fit, optional
        Substitute posterior means (γ, U, T, σ; T from the means of ``sd_u``, ``corr_u``, or
        of ``u_<factor>``, ``sd_u_<factor>``, ``corr_u_<factor>`` with several factors).
    reml : REMLFit, optional
        Substitute REML estimates instead (with several factors, its ``u_factors``).
    max_rows : int
        The whole-data matrices show every row up to this many; past it, the first
        ``max_clusters - 1`` clusters and the last, each shortened with ⋮.
    max_clusters : int
        Clusters shown when the rows are elided.
    digits : int
        Significant digits of the numbers (7, as R prints).
    grouping : {"fixed-random", "coefficient"}
        Order of the combined form: the fixed part then the random part (default), or each
        β's expansion in turn (the seed answer's equations (1) and (3)).

    Returns
    -------
    Equations

    Raises
    ------
    BayesmixError
        When both ``fit`` and ``reml`` are given, or nothing defines the model.
    """
    if fit is not None and reml is not None:
        raise BayesmixError("give either fit= or reml=, not both")
    est: Estimates | None = None
    if fit is not None:
        est = from_fit(fit)
    elif reml is not None:
        est = from_reml(reml)
    design = est.design if est is not None else None
    if design is None and data is not None:
        design = _as_design(spec, data)
    if spec is None:
        if design is None:
            raise BayesmixError("equations() needs a spec (or a fit / reml with a design)")
        spec = design.spec
    if max_rows < 2:
        raise ValueError(f"max_rows must be at least 2, not {max_rows}")
    if grouping not in ("fixed-random", "coefficient"):
        raise ValueError(f"grouping must be 'fixed-random' or 'coefficient', not {grouping!r}")
    ctx = forms.Context(
        spec=spec,
        design=design,
        estimates=est,
        structure=forms.structure(spec, design),
        digits=int(digits),
        max_rows=int(max_rows),
        max_clusters=int(max_clusters),
        grouping=grouping,
    )
    if len(spec.groupings) > 1:
        from bayesmix.render import factors, factors_dist, factors_matrix

        builders = (factors.levels, factors.combined, factors_matrix.matrix_unit,
                    factors_matrix.matrix, factors_dist.distributions)
    else:
        builders = (forms.levels, forms.combined, forms.matrix_cluster, forms.matrix,
                    forms.distributions)
    from bayesmix.render.family_forms import glmm_form

    exposure = spec.exposure is not None
    built = [Form(glmm_form(build(ctx), spec.family, exposure)) for build in builders]
    return Equations(
        *built,
        spec=spec,
        design=design,
        estimates=est,
    )


def _as_design(spec: Spec | None, data: Any) -> Design:
    from bayesmix.design import Design, build_design

    if isinstance(data, Design):
        return data
    if spec is None:
        raise BayesmixError("equations(spec, data): a spec is needed to build the design")
    return build_design(spec, data)
