"""REML / ML fits of two-level models (lme4's numbers) and their import from R.

- :func:`fit_reml` — profiled REML / ML of Bates et al. (2015) on the per-cluster
  cross-products (:mod:`bayesmix.reml.profiled` holds the equations).
- :func:`read_reml`, :func:`write_reml` — the JSON format of :mod:`bayesmix.reml.io`, written
  from R by ``scripts/write_reml_json.R``.
- :func:`align_reml` — match an imported fit's term and cluster names to a design.
"""

from bayesmix.reml.io import REMLFormatError, align_reml, read_reml, write_reml
from bayesmix.reml.result import REMLConvergenceError, REMLFit, fit_reml

__all__ = [
    "REMLConvergenceError",
    "REMLFit",
    "REMLFormatError",
    "align_reml",
    "fit_reml",
    "read_reml",
    "write_reml",
]
