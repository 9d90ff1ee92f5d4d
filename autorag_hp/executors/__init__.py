"""Where pulls are evaluated: in this process, or elsewhere (Ray), chosen by name.

An executor evaluates a round of pulls and returns their outcomes in the order given,
whatever order they finish in, so a seeded run gives the same result on any executor.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping, Protocol, Sequence

from autorag_hp.objective import Objective, Outcome

__all__ = ["Executor", "LocalExecutor", "make_executor", "list_executors"]


class Executor(Protocol):
    def evaluate(
        self, objective: Objective, configs: Sequence[Mapping[str, Any]], pulls: Sequence[int]
    ) -> list[Outcome]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """Evaluates pulls one after another in this process."""

    def evaluate(self, objective, configs, pulls):
        return [objective(c, p) for c, p in zip(configs, pulls)]

    def close(self) -> None:
        pass


_REGISTRY: dict[str, str | Callable[..., Executor]] = {
    "local": LocalExecutor,
    "ray": "autorag_hp.executors._ray:RayExecutor",
}


def list_executors() -> list[str]:
    return list(_REGISTRY)


def make_executor(name: str = "local", **options: Any) -> Executor:
    if name not in _REGISTRY:
        raise ValueError(f"unknown executor {name!r}; available: {', '.join(_REGISTRY)}")
    factory = _REGISTRY[name]
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    return factory(**options)
