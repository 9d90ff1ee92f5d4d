"""Budgets: a share of grid search's calls or a number of calls, turned into calls by one rule."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["parse_budget", "budget_calls"]


def parse_budget(text: Any, *, name: str = "--budget") -> tuple[str, float]:
    """``("share", s)`` for a share of grid's calls, or ``("calls", n)``.

    A value with a ``%``, a decimal point, or at most 1 is a share in (0, 1]; an integer
    above 1 is a number of calls.
    """
    if isinstance(text, bool):
        raise ValueError(f"{name} must be a share like 0.2 or 20% or a number of calls like 5000, got {text!r}")
    raw = str(text).strip()
    try:
        if raw.endswith("%"):
            share = float(raw[:-1]) / 100.0
        elif "." in raw or "e" in raw.lower() or float(raw) <= 1:
            share = float(raw)
        else:
            return "calls", float(int(raw))
    except ValueError:
        raise ValueError(f"{name} must be a share like 0.2 or 20% or a number of calls like 5000, got {raw!r}") from None
    if not (0 < share <= 1 and math.isfinite(share)):
        raise ValueError(f"{name} as a share of grid's calls must be in (0, 1], got {raw!r}")
    return "share", share


def budget_calls(budget: Any, *, grid_calls: int, batch: int, name: str = "budget",
                 batch_name: str = "batch") -> int:
    """Calls a run may spend: ``floor(share * grid_calls)`` for a share, or the number of calls.

    A budget below one pull of ``batch`` questions is an error (never silently rounded up).
    """
    kind, value = parse_budget(budget, name=name)
    calls = int(math.floor(value * grid_calls)) if kind == "share" else int(value)
    if calls < batch:
        raise ValueError(f"{name} gives {calls} calls, fewer than one pull of {batch_name} {batch} questions "
                         f"(grid search spends {grid_calls})")
    return calls
