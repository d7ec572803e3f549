"""The typed terms of a Spec: coefficients and γ's of the level equations, random blocks.

Frozen and free of data; :class:`~bayesmix.spec.model.Spec` holds them.
"""

from __future__ import annotations

from dataclasses import dataclass

from bayesmix.errors import SpecError
from bayesmix.notation import INTERCEPT


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


STRUCTURES = ("unstructured", "diagonal")
"""Covariance structures of a random-effect block: LKJ-correlated, or independent effects."""


@dataclass(frozen=True)
class RandomTerm:
    """One random-effect block: effects that vary over the levels of one grouping factor.

    lme4's ``(1 + X | g)`` is one block on ``g`` with effects for the intercept and X,
    correlated (``"unstructured"``: covariance T with an LKJ prior); ``(1 + X || g)`` is the
    same block with independent effects (``"diagonal"``); ``(1 | a/b)`` is two blocks, on
    ``a`` and on ``a:b``.

    Attributes
    ----------
    factor : tuple of str
        The columns whose combination is the grouping factor: ``("schoolid",)``, or
        ``("schoolid", "childid")`` for ``schoolid:childid`` (children within schools, so a
        child id that repeats in two schools names two children).
    terms : tuple of tuple of str
        The level-1 products each effect multiplies, in order; ``()`` is the intercept.
    names : tuple of str
        The effects' names in the level equations (``"U0"``, ``"r1"``, ``"u10"``), one per
        term.
    structure : {"unstructured", "diagonal"}
        Covariance of the block's effects within a level of the factor.
    """

    factor: tuple[str, ...]
    terms: tuple[tuple[str, ...], ...]
    names: tuple[str, ...]
    structure: str = "unstructured"

    def __post_init__(self) -> None:
        if isinstance(self.factor, str):
            object.__setattr__(self, "factor", (self.factor,))
        if self.structure not in STRUCTURES:
            raise SpecError(
                f"the covariance structure of a random-effect block is one of "
                f"{', '.join(STRUCTURES)}, not {self.structure!r}"
            )
        if not self.factor or not all(isinstance(f, str) and f for f in self.factor):
            raise SpecError(f"a grouping factor is one or more column names, not {self.factor!r}")
        if len(self.terms) != len(self.names) or not self.terms:
            raise SpecError(
                f"the random-effect block on {self.grouping} needs one name per term "
                f"({len(self.terms)} terms, {len(self.names)} names)"
            )

    @property
    def grouping(self) -> str:
        """The grouping factor as lme4 writes it: ``"schoolid:childid"``."""
        return ":".join(self.factor)

    @property
    def correlated(self) -> bool:
        """Whether the effects are correlated (an unstructured T with an LKJ prior)."""
        return self.structure == "unstructured"

    @property
    def term_names(self) -> tuple[str, ...]:
        """lme4-style names of the terms (``"(Intercept)"``, ``"X"``, ``"X:Z"``)."""
        return tuple(":".join(t) if t else INTERCEPT for t in self.terms)
