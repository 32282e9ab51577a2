"""The building blocks of config sections: the error type and bounded fields.

A section is a frozen dataclass. A field's ``metadata`` may carry ``ge``/``gt``/``le``/``lt``
bounds that the loader checks, and a section may define ``check(self)`` for rules that involve
several fields; the loader turns every failure into a :class:`ConfigError` naming the dotted key
and the file it came from.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

__all__ = ["ConfigError", "bounded"]


class ConfigError(ValueError):
    """A configuration problem, with the dotted key and the source it came from in the message."""


def bounded(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
            lt: float | None = None) -> Any:
    """A dataclass field with a default and optional numeric bounds checked at load."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("use tuples for sequence defaults: configs are frozen")
    bounds = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    return field(default=default, metadata=bounds)
