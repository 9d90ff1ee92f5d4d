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
    "__version__",
]
