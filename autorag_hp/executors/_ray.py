"""Evaluate pulls and grid cells as Ray tasks (extra: ``ray``), locally or on a cluster.

Results come back in submission order, whatever order the tasks finish in, and an
objective's randomness comes from (seed, pull) only, so a seeded run gives exactly the
local executor's results: asynchronous completion changes wall time, never outcomes.
The tuner still tells a round's rewards in ask order after the whole round is back, so
a round is as slow as its slowest pull.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

from autorag_hp._validation import check_int
from autorag_hp.objective import Objective, Outcome

__all__ = ["RayExecutor", "map_cells"]


def _import_ray():
    try:
        import ray
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
        raise ModuleNotFoundError("the 'ray' executor needs Ray: pip install 'autorag-hp[ray]'") from exc
    return ray


def _call_objective(objective: Objective, config: Mapping[str, Any], pull: int) -> Outcome:
    return objective(config, pull)


def _call_fn(fn: Callable[[Any], Any], item: Any) -> Any:
    return fn(item)


class RayExecutor:
    """Runs each pull (or grid cell) as a Ray task.

    ``address=None`` starts (or reuses) a local Ray instance; ``address="auto"`` or
    ``"ray://host:10001"`` joins a cluster. ``num_cpus`` caps a local instance's
    workers (ignored when joining a cluster). ``max_in_flight`` bounds the tasks
    submitted at once by :meth:`map` (default: no bound).
    Ray is left running on :meth:`close` if it was already initialised when the
    executor was made; otherwise ``close`` shuts it down.
    """

    def __init__(self, *, address: str | None = None, num_cpus: int | None = None,
                 max_in_flight: int | None = None, init_options: Mapping[str, Any] | None = None) -> None:
        if address is not None and (not isinstance(address, str) or not address):
            raise ValueError(f"address must be None or a non-empty string such as 'auto', got {address!r}")
        check_int("num_cpus", num_cpus, minimum=1, allow_none=True)
        check_int("max_in_flight", max_in_flight, minimum=1, allow_none=True)
        ray = _import_ray()
        self._ray = ray
        self._owns = not ray.is_initialized()
        if self._owns:
            opts: dict[str, Any] = {"ignore_reinit_error": True, "include_dashboard": False,
                                    "log_to_driver": False, "configure_logging": False}
            if address is not None:
                opts["address"] = address
            elif num_cpus is not None:
                opts["num_cpus"] = num_cpus
            opts.update(init_options or {})
            ray.init(**opts)
        self.address = address
        self.num_cpus = num_cpus
        self.max_in_flight = max_in_flight
        self._objective_task = ray.remote(_call_objective)
        self._fn_task = ray.remote(_call_fn)
        self._cached: tuple[Any, Any] | None = None  # (objective, its object ref)

    def _ref(self, obj: Any):
        """Put an objective (or function) in the object store once and reuse the reference."""
        if self._cached is None or self._cached[0] is not obj:
            self._cached = (obj, self._ray.put(obj))
        return self._cached[1]

    def evaluate(self, objective: Objective, configs: Sequence[Mapping[str, Any]], pulls: Sequence[int]) -> list[Outcome]:
        """Evaluate a round of pulls in parallel; outcomes in the order of ``configs``."""
        if len(configs) != len(pulls):
            raise ValueError(f"configs and pulls must have the same length, got {len(configs)} and {len(pulls)}")
        ref = self._ref(objective)
        futures = [self._objective_task.remote(ref, dict(c), int(p)) for c, p in zip(configs, pulls)]
        return list(self._ray.get(futures))

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any], *,
            on_result: Callable[[int, Any], None] | None = None) -> list[Any]:
        """``[fn(x) for x in items]`` as Ray tasks, in the order of ``items``.

        ``on_result(i, value)`` is called as each task finishes (in completion order), e.g. to
        advance a progress bar. ``fn`` and the items must pickle; ``fn`` is shipped once.
        """
        ray = self._ray
        items = list(items)
        fn_ref = ray.put(fn)
        results: list[Any] = [None] * len(items)
        index: dict[Any, int] = {}
        pending: list[Any] = []
        limit = self.max_in_flight or len(items) or 1
        nxt = 0
        while nxt < len(items) or pending:
            while nxt < len(items) and len(pending) < limit:
                f = self._fn_task.remote(fn_ref, items[nxt])
                index[f] = nxt
                pending.append(f)
                nxt += 1
            ready, pending = ray.wait(pending, num_returns=1)
            for f in ready:
                i = index.pop(f)
                results[i] = ray.get(f)
                if on_result is not None:
                    on_result(i, results[i])
        return results

    def close(self) -> None:
        self._cached = None
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()
            self._owns = False

    def __enter__(self) -> "RayExecutor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def map_cells(fn: Callable[[Any], Any], items: Iterable[Any], *, executor: str = "local", address: str | None = None,
              num_cpus: int | None = None, on_result: Callable[[int, Any], None] | None = None) -> list[Any]:
    """Evaluate the cells of a grid, ``[fn(x) for x in items]``, in this process or as Ray tasks.

    The result is in the order of ``items`` either way, so a grid table written from it is
    the same whichever executor made it. ``on_result(i, value)`` reports each finished cell.
    """
    if executor not in ("local", "ray"):
        raise ValueError(f"executor must be 'local' or 'ray', got {executor!r}")
    if executor == "local":
        out = []
        for i, x in enumerate(items):
            out.append(fn(x))
            if on_result is not None:
                on_result(i, out[-1])
        return out
    with RayExecutor(address=address, num_cpus=num_cpus) as ex:
        return ex.map(fn, items, on_result=on_result)
