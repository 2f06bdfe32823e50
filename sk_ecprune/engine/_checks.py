"""Argument checks shared by the engine's public functions (one wording for each)."""

from __future__ import annotations

import numbers

__all__ = ["check_choice", "check_fraction", "check_positive_int"]


def check_fraction(name: str, value) -> float:
    """``value`` as a float in [0, 1); any real number type (numpy scalars too)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a number in [0, 1); got {value!r}.")
    return float(value)


def check_positive_int(name: str, value) -> int:
    """``value`` as an int >= 1; any integral type."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    return int(value)


def check_choice(name: str, value, options) -> str:
    """``value`` if it is one of ``options``, else a ValueError that lists them."""
    if value not in options:
        raise ValueError(f"Unknown {name} {value!r}; expected one of {sorted(options)}.")
    return value
