"""Strategies decide which configuration to evaluate next (ask/tell), found by name in a registry.

A new strategy is one new module with a :class:`Strategy` subclass plus one line in
``_REGISTRY`` (or a call to :func:`register_strategy` from user code).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from autorag_hp.space import SearchSpace
from autorag_hp.strategies._base import Recommendation, SpaceExhausted, Strategy

__all__ = [
    "Strategy",
    "Recommendation",
    "SpaceExhausted",
    "make_strategy",
    "list_strategies",
    "register_strategy",
]

# name -> "module:Class", imported on first use so optional extras stay optional.
_REGISTRY: dict[str, str | Callable[..., Strategy]] = {
    "hier-ucb": "autorag_hp.strategies.hierarchical:HierUCB",
    "hier-ts": "autorag_hp.strategies.hierarchical:HierTS",
    "flat-ucb": "autorag_hp.strategies.flat:FlatUCB",
    "flat-ts": "autorag_hp.strategies.flat:FlatTS",
    "random": "autorag_hp.strategies.random_search:RandomSearch",
    "grid": "autorag_hp.strategies.grid:GridSearch",
    "tpe": "autorag_hp.strategies.tpe:TPE",
    "structured-ts": "autorag_hp.strategies.structured:StructuredTS",
    "structured-tt": "autorag_hp.strategies.structured:StructuredTopTwo",
}


def register_strategy(name: str, factory: str | Callable[..., Strategy]) -> None:
    """Add a strategy: ``factory`` is a Strategy subclass (or "module:Class") built as
    ``factory(space, seed=seed, **options)``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if name in _REGISTRY:
        raise ValueError(f"strategy {name!r} is already registered")
    _REGISTRY[name] = factory


def list_strategies() -> list[str]:
    """Names accepted by :func:`make_strategy`."""
    return list(_REGISTRY)


def _resolve(name: str) -> Callable[..., Strategy]:
    factory = _REGISTRY[name]
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    return factory


def make_strategy(name: str, space: SearchSpace, seed: int = 0, **options: Any) -> Strategy:
    """Build the strategy registered as ``name`` over ``space``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown strategy {name!r}; available: {', '.join(_REGISTRY)}")
    return _resolve(name)(space, seed=seed, **options)
