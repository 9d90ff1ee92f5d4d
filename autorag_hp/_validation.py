"""Argument checks shared by the whole package; each error names the argument, the rule and the value."""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["check_positive_int", "check_int", "check_share", "check_number"]


def check_int(name: str, value: Any, *, minimum: int | None = None, allow_none: bool = False) -> int | None:
    """``value`` as an int (bools refused), at least ``minimum`` when given."""
    if value is None and allow_none:
        return None
    try:
        import numpy as np

        integral = (int, np.integer)
    except ModuleNotFoundError:  # pragma: no cover - numpy is a core dependency
        integral = (int,)
    if isinstance(value, bool) or not isinstance(value, integral) or (minimum is not None and value < minimum):
        rule = {None: "an integer", 0: "a non-negative integer", 1: "a positive integer"}.get(
            minimum, f"an integer >= {minimum}")
        raise ValueError(f"{name} must be {rule}, got {value!r}")
    return int(value)


def check_positive_int(name: str, value: Any, *, allow_none: bool = False) -> int | None:
    """``value`` as an int >= 1: "``name`` must be a positive integer, got ``value``" otherwise."""
    return check_int(name, value, minimum=1, allow_none=allow_none)


def check_number(name: str, value: Any, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float within the given bounds (open or closed)."""
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        if low is not None and high is not None:
            rule = f"lie in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        elif low is not None or high is not None:
            bound, sign = (low, ">" if low_open else ">=") if low is not None else (high, "<" if high_open else "<=")
            rule = f"be a number {sign} {bound:g}"
        else:
            rule = "be a finite number"
        raise ValueError(f"{name} must {rule}, got {value!r}")
    return float(value)


def check_share(name: str, value: Any) -> float:
    """A share in (0, 1], e.g. a budget as a share of grid search's calls."""
    return check_number(name, value, low=0.0, high=1.0, low_open=True)
