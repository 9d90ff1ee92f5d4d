"""Where pulls are evaluated: in this process, or elsewhere (Ray), chosen by name.

An executor evaluates a round of pulls and returns their outcomes in the order given,
whatever order they finish in, so a seeded run gives the same result on any executor.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Protocol, Sequence

from autorag_hp._registry import Registry
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


_REGISTRY: Registry[Callable[..., Executor]] = Registry("executor", {
    "local": LocalExecutor,
    "ray": "autorag_hp.executors._ray:RayExecutor",
})


def list_executors() -> list[str]:
    """Names accepted by :func:`make_executor`."""
    return _REGISTRY.names()


def make_executor(name: str = "local", **options: Any) -> Executor:
    """Build the executor registered as ``name`` (``"local"``: this process; ``"ray"``: Ray tasks)."""
    return _REGISTRY.build(name, **options)
