"""Online tuning inside a serving loop: suggest a configuration per request, learn from feedback.

``OnlineTuner`` is thread-safe and journals every change (``Persistence``) so that a
restart after ``kill -9`` restores it; ``create_app`` (needs the ``server`` extra) serves
the same tuner over HTTP, and ``autorag-hp serve`` runs that app.
"""

from __future__ import annotations

from typing import Any

from autorag_hp.online._persistence import JournalLocked, JournalUnavailable, Persistence
from autorag_hp.online._tuner import (
    DuplicateFeedback,
    ExpiredSuggestion,
    FeedbackRejected,
    Guardrail,
    OnlineTuner,
    Suggestion,
    UnknownSuggestion,
    WarmStart,
    read_rewards,
)
from autorag_hp.strategies import Discounted, SlidingWindow, Stationary, StatsRule, list_online_strategies

__all__ = [
    "OnlineTuner",
    "Suggestion",
    "Stationary",
    "Discounted",
    "SlidingWindow",
    "StatsRule",
    "Guardrail",
    "Persistence",
    "JournalLocked",
    "JournalUnavailable",
    "WarmStart",
    "FeedbackRejected",
    "UnknownSuggestion",
    "DuplicateFeedback",
    "ExpiredSuggestion",
    "list_online_strategies",
    "read_rewards",
    "create_app",
]


def __getattr__(name: str) -> Any:
    if name == "create_app":  # imports fastapi: only when asked for
        from autorag_hp.online._service import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
