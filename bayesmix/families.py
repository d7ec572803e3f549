"""Families: the distribution of y given the linear predictor η, and its link.

A multilevel model's linear predictor is the same for every family::

    η = Xβ + Zu (+ log t for a Poisson exposure t),       u ~ N(0, T)

and the family says how y depends on it (Raudenbush & Bryk's "level-1 sampling model" and
"link function" of an HGLM; lme4's ``family``; brms's and bambi's families):

=============  ========================  ==========================  ==============
family         y_i | η_i                 link g(μ) = η               extra parameter
=============  ========================  ==========================  ==============
``gaussian``   N(μ_i, σ²)                identity: μ = η             σ
``bernoulli``  Bernoulli(p_i)            logit: log(p / (1 − p)) = η  none
``binomial``   Binomial(n_i, p_i)        logit                       none
``poisson``    Poisson(t_i λ_i)          log: log λ = η              none
=============  ========================  ==========================  ==============

The binomial family needs the number of trials n_i (``trials``), the Poisson family takes an
optional exposure t_i > 0 (``exposure``: η gains the offset log t_i, so λ is a rate per unit
of exposure).  The functions here are the only place that knows a family's formulas: the
Bayesian builder (:mod:`bayesmix.build_glmm`), the Laplace ML fit (:mod:`bayesmix.reml.laplace`),
reconstruction, prediction and rendering all read them from the :class:`Family`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from bayesmix.errors import SpecError

__all__ = ["FAMILIES", "Family", "get_family", "link_centre"]


@dataclass(frozen=True)
class Family:
    """One family of the outcome: name, link, and what else it needs.

    Attributes
    ----------
    name : str
        ``"gaussian"``, ``"bernoulli"``, ``"binomial"`` or ``"poisson"``.
    link : str
        ``"identity"``, ``"logit"`` or ``"log"``.
    mean_name : str
        The symbol of the mean in equations: μ, p or λ.
    needs_trials : bool
        Binomial: the number of trials n_i is a column of the data.
    takes_exposure : bool
        Poisson: an exposure column t_i may be given (offset log t_i).
    """

    name: str
    link: str
    mean_name: str
    needs_trials: bool = False
    takes_exposure: bool = False

    @property
    def has_sigma(self) -> bool:
        """Whether the family has a residual SD σ (only the Gaussian)."""
        return self.name == "gaussian"

    @property
    def is_gaussian(self) -> bool:
        """Whether this is the Gaussian family (the statistics-based forms apply)."""
        return self.name == "gaussian"

    def __str__(self) -> str:
        return self.name

    # ------------------------------------------------------------------ numpy formulas
    def linkinv(self, eta: np.ndarray) -> np.ndarray:
        """μ = g⁻¹(η) (per trial for the binomial, per unit of exposure for the Poisson)."""
        eta = np.asarray(eta, dtype=float)
        if self.link == "logit":
            return special.expit(eta)
        if self.link == "log":
            return np.exp(eta)
        return eta

    def linkfun(self, mu: np.ndarray) -> np.ndarray:
        """η = g(μ)."""
        mu = np.asarray(mu, dtype=float)
        if self.link == "logit":
            return special.logit(mu)
        if self.link == "log":
            return np.log(mu)
        return mu

    def loglik(self, y: np.ndarray, eta: np.ndarray, trials: np.ndarray | None = None,
               sigma: float | None = None) -> np.ndarray:
        """Log-density log p(y_i | η_i) per row, normalising constants included (as R's dbinom).

        Parameters
        ----------
        y : ndarray, shape (n,)
            Outcome (successes k_i for the binomial).
        eta : ndarray, shape (n,) or (..., n)
            Linear predictor, offsets included.
        trials : ndarray, shape (n,), optional
            n_i (binomial).
        sigma : float, optional
            σ (Gaussian).
        """
        y = np.asarray(y, dtype=float)
        eta = np.asarray(eta, dtype=float)
        if self.name == "gaussian":
            return -0.5 * np.log(2 * np.pi * sigma**2) - (y - eta) ** 2 / (2 * sigma**2)
        if self.name in ("bernoulli", "binomial"):
            n = np.ones_like(y) if trials is None else np.asarray(trials, dtype=float)
            # k η − n log(1 + e^η) + log C(n, k)
            const = special.gammaln(n + 1) - special.gammaln(y + 1) - special.gammaln(n - y + 1)
            return y * eta - n * np.logaddexp(0.0, eta) + const
        # Poisson: y η − e^η − log y!
        return y * eta - np.exp(eta) - special.gammaln(y + 1)

    def variance(self, mu: np.ndarray, trials: np.ndarray | None = None) -> np.ndarray:
        """Var(y_i) / φ as a function of μ_i (the IRLS weights use it)."""
        mu = np.asarray(mu, dtype=float)
        if self.name in ("bernoulli", "binomial"):
            n = 1.0 if trials is None else np.asarray(trials, dtype=float)
            return n * mu * (1 - mu)
        if self.name == "poisson":
            return mu
        return np.ones_like(mu)

    def expected(self, eta: np.ndarray, trials: np.ndarray | None = None) -> np.ndarray:
        """E(y_i | η_i): n_i p_i for the binomial, λ_i (exposure in η) for the Poisson."""
        mu = self.linkinv(eta)
        if self.name == "binomial" and trials is not None:
            return np.asarray(trials, dtype=float) * mu
        return mu


def link_centre(family: Family, y: np.ndarray, trials: np.ndarray | None = None,
                offset: np.ndarray | None = None) -> float:
    """g(ȳ): the link of the pooled mean, where the model's intercept is centred.

    The pooled proportion Σk/Σn (kept within [0.5/N, 1 − 0.5/N]) for the logit link; the
    pooled rate Σy / Σt (t = exp(offset), with ½ added to Σy) for the log link.  The
    model standardises the linear predictor as ``η = m + η̃`` with m this value and s = 1
    (the link scale needs no rescaling), so the autoscaled priors are on the link scale.
    """
    y = np.asarray(y, dtype=float)
    if family.link == "logit":
        total = float(len(y) if trials is None else np.sum(trials))
        p = np.clip(y.sum() / total, 0.5 / total, 1 - 0.5 / total)
        return float(np.log(p / (1 - p)))
    if family.link == "log":
        exposure = float(len(y) if offset is None else np.exp(offset).sum())
        return float(np.log((y.sum() + 0.5) / exposure))
    return float(np.mean(y))


GAUSSIAN = Family("gaussian", "identity", "μ")
BERNOULLI = Family("bernoulli", "logit", "p")
BINOMIAL = Family("binomial", "logit", "p", needs_trials=True)
POISSON = Family("poisson", "log", "λ", takes_exposure=True)

FAMILIES: dict[str, Family] = {f.name: f for f in (GAUSSIAN, BERNOULLI, BINOMIAL, POISSON)}
_ALIASES = {"normal": "gaussian", "logistic": "bernoulli", "logit": "bernoulli",
            "count": "poisson"}


def get_family(value: str | Family | None) -> Family:
    """The Family named by ``value`` (a name, a Family, or None for the Gaussian).

    Raises
    ------
    SpecError
        For an unknown name, listing the known ones.
    """
    if value is None:
        return GAUSSIAN
    if isinstance(value, Family):
        return value
    key = str(value).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in FAMILIES:
        raise SpecError(
            f"unknown family {value!r}; choose one of {', '.join(FAMILIES)} "
            "(a binomial outcome also needs trials=, a Poisson one may take exposure=)"
        )
    return FAMILIES[key]
