"""autorag_hp: tune RAG hyperparameters with hierarchical multi-armed bandits.

The core (this package's top level) needs only numpy and scipy; the RAG pipeline,
plots, Optuna, Ray and the HTTP service are optional extras imported where used.
"""

from __future__ import annotations

from autorag_hp.objective import Objective, Outcome
from autorag_hp.space import SearchSpace
from autorag_hp.strategies import (
    Recommendation,
    SpaceExhausted,
    Strategy,
    list_strategies,
    make_strategy,
    register_strategy,
)

__version__ = "0.1.0"

_LAZY = {"Study": "autorag_hp.study", "StudyResult": "autorag_hp.study"}


def __getattr__(name: str):
    """``Study`` and ``StudyResult`` load on first use (the pipeline extras stay optional)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'autorag_hp' has no attribute {name!r}")

__all__ = [
    "SearchSpace",
    "Strategy",
    "Recommendation",
    "SpaceExhausted",
    "make_strategy",
    "list_strategies",
    "register_strategy",
    "Objective",
    "Outcome",
    "Study",
    "StudyResult",
    "__version__",
]
