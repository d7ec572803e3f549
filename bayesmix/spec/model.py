"""The frozen model specification shared by every stage.

A two-level model in Raudenbush–Bryk notation is a list of level-1 coefficients β_q, each
multiplying a product of level-1 variables (the empty product is the intercept), and for each
β_q a level-2 equation ``β_qj = γ_q0 + γ_q1 W_1j + ... [+ U_qj]``.  A coefficient with a ``U``
term is random; without one it is fixed (possibly still with level-2 predictors).

In the mixed form ``Y = Xβ + Zu + e`` every γ_qs gives one column of X, the product of β_q's
level-1 variables and γ_qs's level-2 variables (a cross-level interaction when both are
non-empty), and every random β_q gives one column per cluster of Z.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bayesmix.errors import SpecError
from bayesmix.families import GAUSSIAN, Family, get_family
from bayesmix.spec.consistency import validate_spec
from bayesmix.spec.family_syntax import (
    check_family_columns,
    resolve_family,
    split_formula,
    split_link_line,
)
from bayesmix.spec.terms import STRUCTURES, Coefficient, FixedTerm, Gamma, RandomTerm
from bayesmix.spec.transforms import Transform, is_call, parse_transform
from bayesmix.weights import Weights

__all__ = ["STRUCTURES", "Coefficient", "FixedTerm", "Gamma", "RandomTerm", "Spec"]

if TYPE_CHECKING:
    import pandas as pd

    from bayesmix.priors import Priors
    from bayesmix.settings import SamplerSettings


@dataclass(frozen=True)
class Spec:
    """A two-level model: outcome, cluster, level-1 coefficients and their level-2 equations.

    Build one with :meth:`from_equations`, :meth:`from_formula` or :meth:`from_file`; convert
    with :meth:`to_formula` and :meth:`to_equations`.  Instances are immutable; transforms
    such as :meth:`with_options` return a new Spec.

    Attributes
    ----------
    outcome : str
        Column of the outcome y.
    cluster : str
        The grouping factor of the level-2 units j: a column, or for a nested level the
        columns joined by ``:`` (``"schoolid:childid"``) as in :attr:`RandomTerm.grouping`.
        With several grouping factors it is the innermost one (the first one for crossed
        factors); the coefficients' U terms vary over it.
    coefficients : tuple of Coefficient
        β_0, β_1, ... in the order of the level-1 equation.
    reference : tuple of (str, str)
        Reference level of categorical predictors, e.g. ``(("Sector", "Public"),)``.
    categorical : tuple of str
        Numeric columns to code as categorical (string/boolean columns always are).
    random : tuple of RandomTerm
        The random-effect blocks, each on one grouping factor.  Derived from the
        coefficients' U terms (one unstructured block on ``cluster``) when not given; the
        constructors of models with several grouping factors, ``||`` or several blocks on one
        factor give it.  The coefficients' U terms are then the effects on ``cluster``.
    variable_levels : tuple of (str, int)
        The level each predictor belongs to (1 = varies within the innermost units), for the
        level equations of models with three or more levels; empty for two-level models (a
        variable in a level-2 equation is then level 2).
    family : Family
        The distribution of y given η = Xβ + Zu and its link (:mod:`bayesmix.families`);
        Gaussian by default.  A name (``"bernoulli"``) is turned into the Family.
    trials : str or None
        Column of the number of trials n_i of a binomial outcome.
    exposure : str or None
        Column of the exposure t_i > 0 of a Poisson outcome (η gains the offset log t_i).
    weights : Weights or None
        Sampling weights at level 1 and/or level 2 (:mod:`bayesmix.weights`; a dict such as
        ``{"level1": "w"}`` is turned into one).
    sigma_by : str or None
        A categorical column: one level-1 residual SD per level (HLM's heterogeneous σ², nlme's
        ``varIdent(form = ~ 1 | column)``); Gaussian family only.
    name : str or None
        A short model name (model files set it).
    data_path : Path or None
        Data file named by a model file, resolved against the file's folder.
    priors : Priors or None
        Prior overrides from a model file or from the user.
    sampler : SamplerSettings or None
        Sampler settings from a model file.
    """

    outcome: str
    cluster: str
    coefficients: tuple[Coefficient, ...]
    reference: tuple[tuple[str, str], ...] = ()
    categorical: tuple[str, ...] = ()
    random: tuple[RandomTerm, ...] = ()
    variable_levels: tuple[tuple[str, int], ...] = ()
    family: Family = GAUSSIAN
    trials: str | None = None
    exposure: str | None = None
    weights: Weights | None = None
    sigma_by: str | None = None
    name: str | None = None
    data_path: Path | None = field(default=None, compare=False)
    priors: Priors | None = field(default=None, compare=False)
    sampler: SamplerSettings | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        # Normalised here so that every constructor and with_options() share one rule.
        object.__setattr__(self, "categorical", _names(self.categorical, "categorical"))
        if not isinstance(self.reference, tuple):
            object.__setattr__(self, "reference", _ref_tuple(self.reference))
        if not all(isinstance(r, tuple) and len(r) == 2 for r in self.reference):
            raise SpecError("`reference` maps a categorical column to its reference level, e.g. "
                            "{'Sector': 'Public'}")
        if not self.random:
            object.__setattr__(self, "random", _random_from_coefficients(self))
        elif not isinstance(self.random, tuple):
            object.__setattr__(self, "random", tuple(self.random))
        if isinstance(self.variable_levels, dict):
            object.__setattr__(self, "variable_levels", tuple(self.variable_levels.items()))
        object.__setattr__(self, "family", get_family(self.family))
        object.__setattr__(self, "weights", Weights.coerce(self.weights))
        if self.sigma_by is not None:
            if not isinstance(self.sigma_by, str) or not self.sigma_by:
                raise SpecError(f"sigma_by names a categorical column, not {self.sigma_by!r}")
            if not self.family.is_gaussian:
                raise SpecError(f"sigma_by gives the residual SD per group; a "
                                f"{self.family.name} outcome has no residual SD")
        check_family_columns(self.family, self.trials, self.exposure, self.outcome)
        validate_spec(self)
        _ = self.transforms  # a malformed call in a programmatic Spec fails here

    def __repr__(self) -> str:
        from bayesmix.reprs import spec_text

        return spec_text(self)

    def _repr_html_(self) -> str:
        from bayesmix.reprs import spec_html

        return spec_html(self)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_equations(
        cls,
        text: str,
        cluster: str | None = None,
        *,
        levels: tuple[str, ...] | list[str] | None = None,
        crossed: tuple[str, ...] | list[str] | None = None,
        diagonal: bool | tuple[str, ...] | list[str] = False,
        reference: dict[str, str] | None = None,
        categorical: tuple[str, ...] | list[str] = (),
        family: str | Family | None = None,
        trials: str | None = None,
        exposure: str | None = None,
        name: str | None = None,
    ) -> Spec:
        """Parse level equations in Raudenbush–Bryk notation, of two or more levels.

        The syntax is described in :mod:`bayesmix.spec.equations`.  Name the grouping with
        exactly one of ``cluster``, ``levels`` or ``crossed``.

        Parameters
        ----------
        text : str
            One level-1 line ``OUTCOME = COEF + COEF*VAR + ... + e`` and one line per
            coefficient ``COEF = COEF + COEF*VAR + ... [+ RANDOM]``, e.g. ``b0 = g00 + U0``.
            Subscripts (``y[ij]``, ``b0[j]``, ``M[j]``) and ``·`` for ``*`` are accepted;
            ``#`` starts a comment.
        cluster : str, optional
            Column that identifies the clusters j of a two-level model.
        levels : sequence of str, optional
            The grouping columns of level 2, 3, ... innermost first, e.g.
            ``["childid", "schoolid"]`` (children within schools); the grouping factor of
            level 2 is then ``schoolid:childid``.  ``levels=["g"]`` is ``cluster="g"``.
        crossed : sequence of str, optional
            Crossed grouping factors of a two-level model: effects U vary over the first
            (lme4's cluster: the one with the most columns, the first of equally many), V, W,
            Q, S over the others in order.
        diagonal : bool or sequence of str, optional
            Factors (entries of ``cluster``/``levels``/``crossed``) whose random effects are
            independent, lme4's ``||``; True for all.
        reference : dict, optional
            Reference level per categorical column, e.g. ``{"Sector": "Public"}``.
        categorical : str or sequence of str, optional
            Numeric columns to treat as categorical; a single string is one column name.
        family : str or Family, optional
            ``"gaussian"`` (default), ``"bernoulli"``, ``"binomial"`` or ``"poisson"``.  The
            level-1 line may state the link instead, ``logit(use) = b0 + ...`` (Bernoulli, or
            binomial with ``trials``) or ``log(y) = ...`` (Poisson); such a line has no ``e``.
        trials : str, optional
            Column of the number of trials of a binomial outcome.
        exposure : str, optional
            Column of the exposure of a Poisson outcome (offset log t).
        name : str, optional
            Model name.

        Returns
        -------
        Spec
            The Spec :meth:`from_formula` gives for the same model, names as written.

        Raises
        ------
        SpecError
            With the line and position of the fault.
        """
        from bayesmix.spec.levels import make_layout, parse_levels

        said = split_link_line(text)
        fam, trials, exposure = resolve_family(family, said, trials, exposure)
        if not fam.is_gaussian:
            _no_residual(said.text, fam)
        parts = parse_levels(said.text, make_layout(cluster, levels, crossed, diagonal))
        return cls(
            outcome=parts.outcome,
            family=fam,
            trials=trials,
            exposure=exposure,
            cluster=parts.cluster,
            coefficients=parts.coefficients,
            random=parts.random,
            variable_levels=parts.variable_levels,
            reference=_ref_tuple(reference),
            categorical=categorical,  # type: ignore[arg-type]  # normalised in __post_init__
            name=name,
        )

    @classmethod
    def from_formula(
        cls,
        formula: str,
        data: pd.DataFrame | None = None,
        *,
        level2: tuple[str, ...] | list[str] | None = None,
        reference: dict[str, str] | None = None,
        categorical: tuple[str, ...] | list[str] = (),
        family: str | Family | None = None,
        trials: str | None = None,
        exposure: str | None = None,
        name: str | None = None,
    ) -> Spec:
        """Parse an lme4 formula, e.g. ``y ~ X*M + (1 + X | g)`` or ``y ~ X + (1 | a/b)``.

        Each fixed term is split into its level-1 part (which names the coefficient β_q) and
        its level-2 part (which names γ_qs).  Which variables are level-2 is taken from
        ``level2`` or, given ``data``, from the variables that are constant within every
        cluster.  Without either, every variable is level-1: the design is the same, only
        the L1/L2 display differs.

        Parameters
        ----------
        formula : str
            ``outcome ~ fixed terms + (random terms | cluster)``; ``*`` expands to main effects
            and interactions, ``:`` is an interaction, ``0`` or ``-1`` drops the intercept.
        data : DataFrame, optional
            Used only to find the level-2 variables.
        level2 : str or sequence of str, optional
            Level-2 variables, overriding what ``data`` would say; a single string is one name.
        reference, categorical, family, trials, exposure, name
            As in :meth:`from_equations`.  The formula may state the binomial trials as lme4
            (``cbind(k, n - k) ~ ...``) or brms (``k | trials(n) ~ ...``) do, and a Poisson
            exposure as ``offset(log(t))``.

        Returns
        -------
        Spec
        """
        from bayesmix.spec.formula import parse_formula
        from bayesmix.spec.formula_convert import spec_parts_from_formula

        said = split_formula(formula)
        fam, trials, exposure = resolve_family(family, said, trials, exposure)
        parsed = parse_formula(said.text)
        l2 = None if level2 is None else _names(level2, "level2")
        parts = spec_parts_from_formula(parsed, data=data, level2=l2)
        return cls(
            outcome=parts.outcome,
            family=fam,
            trials=trials,
            exposure=exposure,
            cluster=parts.cluster,
            coefficients=parts.coefficients,
            random=parts.random,
            variable_levels=parts.variable_levels,
            reference=_ref_tuple(reference),
            categorical=categorical,  # type: ignore[arg-type]  # normalised in __post_init__
            name=name,
        )

    @classmethod
    def from_file(cls, path: str | Path) -> Spec:
        """Read a model file (TOML) such as ``models/dung.toml``.

        See :func:`bayesmix.spec.file.read_model_file` for the format.
        """
        from bayesmix.spec.file import read_model_file

        return read_model_file(path)

    # ------------------------------------------------------------------ conversions
    def to_formula(self) -> str:
        """The lme4 formula of this model, e.g. ``'y ~ 1 + X + M + X:M + (1 + X | g)'``."""
        from bayesmix.spec.formula_convert import spec_to_formula

        return spec_to_formula(self)

    def to_equations(self) -> str:
        """The level equations as text, in the syntax :meth:`from_equations` reads.

        ``Spec.from_equations(spec.to_equations(), **equation_arguments(spec)) == spec``,
        with :func:`bayesmix.spec.levels_print.equation_arguments` giving the ``cluster``,
        ``levels`` or ``crossed`` (and ``diagonal``) to read them with.  Models of three or
        more levels need every predictor's level (``variable_levels``); their coefficients
        between level 1 and the top level, which a Spec does not name, are named β (γ at level
        3 of four) after the γ's below them or their positions.

        Raises
        ------
        SpecError
            If the model cannot be written as level equations (several blocks over one
            factor, unknown variable levels, ...).
        """
        from bayesmix.spec.levels_print import print_levels

        return print_levels(self)

    def with_options(self, **changes: object) -> Spec:
        """Return a copy with some fields changed (``priors=``, ``reference=``, ...)."""
        from dataclasses import fields, replace

        known = [f.name for f in fields(self)]
        unknown = [k for k in changes if k not in known]
        if unknown:
            raise SpecError(f"Spec has no field {unknown[0]!r}; its fields are {', '.join(known)}")
        if "reference" in changes and isinstance(changes["reference"], dict):
            changes["reference"] = _ref_tuple(changes["reference"])  # type: ignore[arg-type]
        return replace(self, **changes)  # type: ignore[arg-type]

    def with_centring(self, centring: dict[str, str]) -> Spec:
        """Centre predictors as HLM's dialog does: ``{"SES": "group", "MEANSES": "grand"}``.

        Every use of each variable becomes ``group(SES)`` / ``grand(MEANSES)``
        (:mod:`bayesmix.spec.centring`); ``"none"`` leaves it uncentred.
        """
        from bayesmix.spec.centring import with_centring

        return with_centring(self, centring)

    # ------------------------------------------------------------------ views
    @property
    def fixed_terms(self) -> tuple[FixedTerm, ...]:
        """The γ's in the column order of X.

        Order: first each coefficient's constant γ_q0 (so the intercept, then the level-1
        slopes), then the γ's with one level-2 variable, two, ...; within a group, by
        coefficient and then as written.  For ``y ~ X*M`` this is (1, X, M, X:M), lme4's order.
        """
        items = []
        for qi, coef in enumerate(self.coefficients):
            for si, gamma in enumerate(coef.gammas):
                items.append(((len(gamma.variables), qi, si), FixedTerm(coef, gamma)))
        return tuple(term for _, term in sorted(items, key=lambda item: item[0]))

    @property
    def random_coefficients(self) -> tuple[Coefficient, ...]:
        """The coefficients with a U term, in level-1 order."""
        return tuple(c for c in self.coefficients if c.random is not None)

    @property
    def groupings(self) -> tuple[str, ...]:
        """The distinct grouping factors of the random blocks, in order of first use."""
        return _unique(t.grouping for t in self.random)

    @property
    def factor_columns(self) -> tuple[str, ...]:
        """The data columns that identify the units of every grouping factor."""
        return _unique(c for t in self.random for c in t.factor)

    @property
    def single_factor(self) -> bool:
        """Whether every random block varies over ``cluster`` (one grouping factor)."""
        return self.groupings == (self.cluster,)

    @property
    def random_variables(self) -> tuple[str, ...]:
        """Variables of the random terms of every block, in order of first use."""
        return _unique(v for t in self.random for term in t.terms for v in term)

    @property
    def level1_variables(self) -> tuple[str, ...]:
        """Variables used at level 1, in order of first use."""
        return _unique(v for c in self.coefficients for v in c.variables)

    @property
    def level2_variables(self) -> tuple[str, ...]:
        """Variables used in level-2 equations, in order of first use."""
        return _unique(v for c in self.coefficients for g in c.gammas for v in g.variables)

    @property
    def variables(self) -> tuple[str, ...]:
        """Every data column the model uses: outcome, trials, exposure, groupings, predictors."""
        extra = tuple(c for c in (self.trials, self.exposure) if c is not None)
        return _unique(
            (self.outcome, *extra, *self.factor_columns, *self.level1_variables,
             *self.level2_variables, *self.random_variables)
        )

    @property
    def transforms(self) -> dict[str, Transform]:
        """The transformed variables (``log(x)``, ``group(SES)`` ...) by name, parsed once."""
        cached = self.__dict__.get("_transforms")
        if cached is None:
            cached = {v: parse_transform(v) for v in self.variables if is_call(v)}
            object.__setattr__(self, "_transforms", cached)
        return cached

    @property
    def columns(self) -> tuple[str, ...]:
        """Every data column the model reads.

        :attr:`variables` with each transformed variable replaced by the columns it is
        computed from.
        """
        transforms = self.transforms
        weights = self.weights.columns if self.weights is not None else ()
        if self.sigma_by is not None:
            weights = (*weights, self.sigma_by)
        return _unique([*(c for v in self.variables
                          for c in (transforms[v].columns if v in transforms else (v,))),
                        *weights])

    @property
    def predictors(self) -> tuple[str, ...]:
        """Every predictor the model uses (fixed and random parts)."""
        return _unique((*self.level1_variables, *self.level2_variables,
                        *self.random_variables))

    @property
    def reference_levels(self) -> dict[str, str]:
        """Reference levels as a dict."""
        return dict(self.reference)


def _random_from_coefficients(spec: Spec) -> tuple[RandomTerm, ...]:
    """The one unstructured block on ``cluster`` that the coefficients' U terms describe."""
    coefs = [c for c in spec.coefficients if isinstance(c, Coefficient) and c.random is not None]
    if not coefs or not isinstance(spec.cluster, str) or not spec.cluster:
        return ()
    return (RandomTerm(factor=tuple(spec.cluster.split(":")),
                       terms=tuple(c.variables for c in coefs),
                       names=tuple(c.random for c in coefs)),)  # type: ignore[misc]


def _no_residual(text: str, family: Family) -> None:
    """A non-Gaussian level-1 line has no residual ``e`` (its variance follows from μ)."""
    for lineno, line in enumerate(text.splitlines(), 1):
        code = line.split("#")[0]
        if re.search(r"\+\s*(e|ε|r)(\[\w*\])?\s*$", code) and not re.match(
                r"\s*[A-Za-zπβγ]+\d", code):
            raise SpecError(
                f"line {lineno}: a {family.name} outcome has no level-1 residual e (its "
                f"variance follows from {family.mean_name}); drop `+ e`"
            )


def _ref_tuple(reference: dict[str, str] | None) -> tuple[tuple[str, str], ...]:
    if not reference:
        return ()
    if not isinstance(reference, dict):
        raise SpecError(
            "`reference` maps a categorical column to its reference level, e.g. "
            f"{{'Sector': 'Public'}}; got {type(reference).__name__}"
        )
    return tuple((str(k), str(v)) for k, v in reference.items())


def _names(value: object, what: str) -> tuple[str, ...]:
    """Column names from a sequence of str; a single string is one name, not its letters."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, dict) or not hasattr(value, "__iter__"):
        raise SpecError(
            f"`{what}` is a column name or a list of column names, not {type(value).__name__}"
        )
    items = tuple(value)  # type: ignore[arg-type]
    bad = [v for v in items if not isinstance(v, str)]
    if bad:
        raise SpecError(
            f"`{what}` lists column names as text; {bad[0]!r} is a {type(bad[0]).__name__}"
        )
    return items


def _unique(items) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return tuple(seen)
