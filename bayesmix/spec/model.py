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

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bayesmix.errors import SpecError
from bayesmix.notation import INTERCEPT
from bayesmix.spec.consistency import validate_spec

if TYPE_CHECKING:
    import pandas as pd

    from bayesmix.priors import Priors
    from bayesmix.settings import SamplerSettings


@dataclass(frozen=True)
class Gamma:
    """One fixed effect γ_qs of a level-2 equation.

    Attributes
    ----------
    name : str
        Normalised name, e.g. ``"g01"``.
    variables : tuple of str
        Level-2 variables multiplied by γ; ``()`` for the constant γ_q0.
    """

    name: str
    variables: tuple[str, ...] = ()


@dataclass(frozen=True)
class Coefficient:
    """One level-1 coefficient β_q with its level-2 equation.

    Attributes
    ----------
    name : str
        Normalised name, e.g. ``"b1"``.
    variables : tuple of str
        Level-1 variables that β_q multiplies; ``()`` for the intercept β_0.
    gammas : tuple of Gamma
        The fixed part of the level-2 equation.
    random : str or None
        Name of the random effect (``"U1"``), or None for a coefficient without U.
    """

    name: str
    variables: tuple[str, ...] = ()
    gammas: tuple[Gamma, ...] = ()
    random: str | None = None

    @property
    def term(self) -> str:
        """The level-1 term β_q multiplies, lme4-style (``"(Intercept)"``, ``"X"``, ``"X:Z"``)."""
        return ":".join(self.variables) if self.variables else INTERCEPT


@dataclass(frozen=True)
class FixedTerm:
    """One fixed-effect term: γ_qs times the product of its level-1 and level-2 variables."""

    coefficient: Coefficient
    gamma: Gamma

    @property
    def variables(self) -> tuple[str, ...]:
        """All variables of the term, level-1 first."""
        return self.coefficient.variables + self.gamma.variables

    @property
    def term(self) -> str:
        """lme4-style term name (``"X:M"``), ``"(Intercept)"`` for γ_00."""
        return ":".join(self.variables) if self.variables else INTERCEPT


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
        Column that identifies the level-2 unit j.
    coefficients : tuple of Coefficient
        β_0, β_1, ... in the order of the level-1 equation.
    reference : tuple of (str, str)
        Reference level of categorical predictors, e.g. ``(("Sector", "Public"),)``.
    categorical : tuple of str
        Numeric columns to code as categorical (string/boolean columns always are).
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
        validate_spec(self)

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
        cluster: str,
        *,
        reference: dict[str, str] | None = None,
        categorical: tuple[str, ...] | list[str] = (),
        name: str | None = None,
    ) -> Spec:
        """Parse level-1 / level-2 equations as the seeds write them.

        Parameters
        ----------
        text : str
            One level-1 line ``OUTCOME = COEF + COEF*VAR + ... + e`` and one level-2 line per
            coefficient ``COEF = GAMMA + GAMMA*VAR + ... [+ U..]``.  Subscripts (``y[ij]``,
            ``b0[j]``, ``M[j]``) and ``·`` for ``*`` are accepted; ``#`` starts a comment.
        cluster : str
            Column that identifies the clusters j.
        reference : dict, optional
            Reference level per categorical column, e.g. ``{"Sector": "Public"}``.
        categorical : str or sequence of str, optional
            Numeric columns to treat as categorical; a single string is one column name.
        name : str, optional
            Model name.

        Returns
        -------
        Spec

        Raises
        ------
        SpecError
            With the line and position of the fault.
        """
        from bayesmix.spec.equations import parse_equations

        outcome, coefficients = parse_equations(text)
        return cls(
            outcome=outcome,
            cluster=cluster,
            coefficients=coefficients,
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
        name: str | None = None,
    ) -> Spec:
        """Parse an lme4 formula with one grouping factor, e.g. ``y ~ X*M + (1 + X | g)``.

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
        reference, categorical, name
            As in :meth:`from_equations`.

        Returns
        -------
        Spec
        """
        from bayesmix.spec.formula import parse_formula, spec_parts_from_formula

        parsed = parse_formula(formula)
        l2 = None if level2 is None else _names(level2, "level2")
        outcome, cluster, coefficients = spec_parts_from_formula(parsed, data=data, level2=l2)
        return cls(
            outcome=outcome,
            cluster=cluster,
            coefficients=coefficients,
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
        from bayesmix.spec.formula import spec_to_formula

        return spec_to_formula(self)

    def to_equations(self) -> str:
        """The level-1 / level-2 equations as text, in the syntax :meth:`from_equations` reads."""
        from bayesmix.spec.equations import spec_to_equations

        return spec_to_equations(self)

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
    def level1_variables(self) -> tuple[str, ...]:
        """Variables used at level 1, in order of first use."""
        return _unique(v for c in self.coefficients for v in c.variables)

    @property
    def level2_variables(self) -> tuple[str, ...]:
        """Variables used in level-2 equations, in order of first use."""
        return _unique(v for c in self.coefficients for g in c.gammas for v in g.variables)

    @property
    def variables(self) -> tuple[str, ...]:
        """Every data column the model uses: outcome, cluster, level-1 and level-2 variables."""
        return _unique(
            (self.outcome, self.cluster, *self.level1_variables, *self.level2_variables)
        )

    @property
    def reference_levels(self) -> dict[str, str]:
        """Reference levels as a dict."""
        return dict(self.reference)


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
