"""Design stage: y, X with cross-level interactions, sparse block-diagonal Z, clear errors."""

from bayesmix.design.build import Design, build_design

__all__ = ["Design", "build_design"]
