"""Argument checks shared by the public constructors: each raises InvalidArgumentError."""

from __future__ import annotations

import math

from lenetish.errors import InvalidArgumentError

__all__ = ["check_fraction", "check_positive_int", "check_positive_number"]


def check_positive_int(name: str, value: object) -> None:
    """Raise :class:`InvalidArgumentError` naming ``name`` unless ``value`` is an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"{name} must be a positive integer, got {value!r}")


def check_positive_number(name: str, value: object) -> None:
    """Raise :class:`InvalidArgumentError` unless ``value`` is a finite number > 0."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise InvalidArgumentError(f"{name} must be a positive finite number, got {value!r}")


def check_fraction(name: str, value: object) -> None:
    """Raise :class:`InvalidArgumentError` unless ``value`` is a number in ``[0, 1)``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise InvalidArgumentError(f"{name} must be in [0, 1), got {value!r}")
