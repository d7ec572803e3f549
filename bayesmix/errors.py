"""Exceptions with messages that say what is wrong, where, and how to fix it."""

from __future__ import annotations


class BayesmixError(ValueError):
    """Base class of every error bayesmix raises on bad input."""


class SpecError(BayesmixError):
    """A model specification (equations, formula or model file) is malformed.

    Parameters
    ----------
    message : str
        What is wrong and how to fix it.
    text : str, optional
        The offending line; shown with a caret under ``position``.
    line : int, optional
        1-based line number in the equations or file.
    position : int, optional
        1-based character position in ``text``.
    """

    def __init__(
        self,
        message: str,
        *,
        text: str | None = None,
        line: int | None = None,
        position: int | None = None,
    ) -> None:
        self.line = line
        self.position = position
        self.text = text
        where = []
        if line is not None:
            where.append(f"line {line}")
        if position is not None:
            where.append(f"position {position}")
        head = f"{', '.join(where)}: " if where else ""
        full = head + message
        if text is not None:
            full += f"\n    {text}"
            if position is not None:
                full += "\n    " + " " * (position - 1) + "^"
        super().__init__(full)


class DataError(BayesmixError):
    """The data do not fit the specification (unknown column, missing values, ...)."""
