"""Strategies decide which configuration to evaluate next (ask/tell), found by name in a registry.

A new strategy is one new module with a :class:`Strategy` subclass plus one line in
``_REGISTRY`` (or a call to :func:`register_strategy` from user code). A strategy is named
by a spec, ``name`` or ``name:key=value:key=value`` (``"hier-ucb:alpha_upper=1.5"``).
"""

from __future__ import annotations

from typing import Any, Callable

from autorag_hp._registry import Registry
from autorag_hp.space import SearchSpace
from autorag_hp.strategies._base import Proposal, Recommendation, SpaceExhausted, Strategy
from autorag_hp.strategies._spec import StrategySpec, parse_key_value, parse_strategy_spec
from autorag_hp.strategies._stats import Discounted, SlidingWindow, Stationary, StatsRule, parse_stats

__all__ = [
    "Strategy",
    "Proposal",
    "Recommendation",
    "SpaceExhausted",
    "Stationary",
    "Discounted",
    "SlidingWindow",
    "StatsRule",
    "parse_stats",
    "make_strategy",
    "strategy_class",
    "list_strategies",
    "list_online_strategies",
    "register_strategy",
    "StrategySpec",
    "parse_strategy_spec",
    "parse_key_value",
]

# name -> "module:Class", imported on first use so optional extras stay optional.
_REGISTRY: Registry[Callable[..., Strategy]] = Registry("strategy", {
    "hier-ucb": "autorag_hp.strategies.hierarchical:HierUCB",
    "hier-ts": "autorag_hp.strategies.hierarchical:HierTS",
    "flat-ucb": "autorag_hp.strategies.flat:FlatUCB",
    "flat-ts": "autorag_hp.strategies.flat:FlatTS",
    "random": "autorag_hp.strategies.random_search:RandomSearch",
    "grid": "autorag_hp.strategies.grid:GridSearch",
    "tpe": "autorag_hp.strategies.tpe:TPE",
    "structured-ts": "autorag_hp.strategies.structured:StructuredTS",
    "structured-tt": "autorag_hp.strategies.structured:StructuredTopTwo",
    "pareto-ts": "autorag_hp.strategies.pareto:ParetoTS",
})


def register_strategy(name: str, factory: str | Callable[..., Strategy], *, replace: bool = False) -> None:
    """Add a strategy: ``factory`` is a Strategy subclass (or "module:Class") built as
    ``factory(space, seed=seed, **options)``. A name already registered is refused unless
    ``replace=True``."""
    _REGISTRY.register(name, factory, replace=replace)


def list_strategies() -> list[str]:
    """Names accepted by :func:`make_strategy`."""
    return _REGISTRY.names()


def list_online_strategies() -> list[str]:
    """Names of the strategies the online tuner can drive: they implement the online hooks
    (``Strategy.online``) and accept forgetting statistics."""
    return [name for name in _REGISTRY.names() if getattr(_REGISTRY.get(name), "online", False)]


def strategy_class(name: str) -> Callable[..., Strategy]:
    """The factory (usually the Strategy subclass) registered as ``name``."""
    return _REGISTRY.get(name)


def make_strategy(spec: str | StrategySpec, space: SearchSpace, seed: int = 0, **options: Any) -> Strategy:
    """Build the strategy ``spec`` names over ``space``.

    ``spec`` is a registered name or ``name:key=value:key=value`` (values parsed as JSON
    where they can be); keyword ``options`` are added to (and override) the spec's.
    """
    parsed = parse_strategy_spec(spec)
    return _REGISTRY.get(parsed.name)(space, seed=seed, **{**dict(parsed.options), **options})
