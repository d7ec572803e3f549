"""Checks on a fit: summary with diagnostics, and the reconstruction of Y."""

from bayesmix.checks.reconstruct import Reconstruction, reconstruct
from bayesmix.checks.summary import ConvergenceWarning, Summary, summarize

__all__ = ["ConvergenceWarning", "Reconstruction", "Summary", "reconstruct", "summarize"]
