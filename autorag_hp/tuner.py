"""The tuning loop: ask a round of configurations, evaluate them, tell the rewards, journal each pull.

Resuming replays the journal into a fresh strategy with the same asks, so an
interrupted run continues exactly as the uninterrupted run with the same seed would.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from autorag_hp._validation import check_positive_int
from autorag_hp.executors import Executor, LocalExecutor
from autorag_hp.journal import Journal, JournalError, read_journal
from autorag_hp.objective import Objective, Outcome, check_reward
from autorag_hp.strategies import SpaceExhausted, Strategy

__all__ = ["PullRecord", "TuneResult", "tune"]


@dataclass(frozen=True)
class PullRecord:
    """One evaluated pull, as journaled."""

    pull: int
    round: int
    round_size: int
    config: dict[str, Any]
    reward: float
    calls: int
    details: Any = None

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "pull",
            "pull": self.pull,
            "round": self.round,
            "round_size": self.round_size,
            "config": self.config,
            "reward": self.reward,
            "calls": self.calls,
            "details": self.details,
            "ts": time.time(),
        }


@dataclass
class TuneResult:
    strategy: Strategy
    records: list[PullRecord] = field(default_factory=list)
    calls_used: int = 0
    stop_reason: str = ""

    def best(self, n: int = 1):
        return self.strategy.best(n)


def _tell(strategy: Strategy, config: Mapping[str, Any], reward: float, details: Any) -> None:
    """``tell`` the reward; a multi-objective strategy (``tell_details``) learns from the
    pull's per-question records (quality, prompt tokens) instead."""
    hook = getattr(strategy, "tell_details", None)
    if hook is not None and details:
        hook(config, reward, details)
    else:
        strategy.tell(config, reward)


def _replay(strategy: Strategy, header: Mapping[str, Any], pulls: list[dict[str, Any]], path: Path):
    """Re-ask and re-tell the journaled rounds. Returns (records, unfinished round's asks)."""
    expected = strategy.describe()
    for key in ("strategy", "options", "seed"):
        if header.get(key) != expected[key]:
            raise JournalError(
                f"{path}: journal was written by {key}={header.get(key)!r}, resuming with {key}={expected[key]!r}"
            )
    if header.get("space") != strategy.space.to_dict():
        raise JournalError(f"{path}: journal's search space differs from the one given")
    records: list[PullRecord] = []
    i = 0
    while i < len(pulls):
        rnd, size = pulls[i]["round"], pulls[i]["round_size"]
        group = []
        while i < len(pulls) and pulls[i]["round"] == rnd:
            group.append(pulls[i])
            i += 1
        configs = strategy.ask_batch(size)
        for j, rec in enumerate(group):
            if strategy.space.validate(rec["config"]) != configs[j]:
                raise JournalError(
                    f"{path}: pull {rec.get('pull')} recorded {rec['config']!r} but the strategy asks "
                    f"{configs[j]!r}: the journal does not come from this strategy, seed and space"
                )
            reward = check_reward(rec["reward"], name=f"journal pull {rec.get('pull')} reward")
            _tell(strategy, configs[j], reward, rec.get("details"))
            records.append(
                PullRecord(rec["pull"], rnd, size, configs[j], reward, int(rec.get("calls", 1)), rec.get("details"))
            )
        if len(group) < size:  # crashed mid-round: evaluate the rest first
            base = len(records)
            return records, [(base + k, rnd, size, c) for k, c in enumerate(configs[len(group):])]
    return records, []


def tune(
    strategy: Strategy,
    objective: Objective,
    *,
    budget_calls: int | None = None,
    max_pulls: int | None = None,
    parallel: int = 1,
    calls_per_pull: int = 1,
    journal: str | Path | None = None,
    resume: bool = False,
    executor: Executor | None = None,
    progress: bool = False,
    callback: Callable[[PullRecord], None] | None = None,
    meta: Mapping[str, Any] | None = None,
    fsync: bool = True,
    fsync_interval: float = 0.0,
) -> TuneResult:
    """Run ``strategy`` against ``objective`` until ``budget_calls`` question evaluations
    (or ``max_pulls`` pulls) are spent, or the strategy is exhausted.

    Each round asks ``parallel`` configurations (``ask_batch``), evaluates them on the
    executor, and tells the rewards in ask order. ``calls_per_pull`` (how many calls one
    pull is expected to spend) sizes the last round so the budget is never overrun: when
    what is left does not divide by it, an objective with ``limit_calls({pull: n})``
    (e.g. :class:`~autorag_hp.pipeline.PipelineObjective`) spends the rest in a last,
    smaller pull; any other objective stops after the last whole pull.
    With ``journal`` every pull is appended and flushed, and fsync'd at most ``fsync_interval``
    seconds later (0: at once); ``resume=True`` replays it first.
    """
    check_positive_int("budget_calls", budget_calls, allow_none=True)
    check_positive_int("max_pulls", max_pulls, allow_none=True)
    check_positive_int("parallel", parallel)
    check_positive_int("calls_per_pull", calls_per_pull)
    if budget_calls is None and max_pulls is None:
        raise ValueError("give budget_calls or max_pulls (both None would never stop)")
    executor = executor or LocalExecutor()
    result = TuneResult(strategy)
    jr: Journal | None = None
    pending: list[tuple[int, int, int, dict[str, Any]]] = []
    if journal is not None:
        path = Path(journal)
        if resume and path.exists() and path.stat().st_size > 0:
            header, pulls = read_journal(path)
            result.records, pending = _replay(strategy, header, pulls, path)
            result.calls_used = sum(r.calls for r in result.records)
        elif path.exists() and path.stat().st_size > 0:
            raise FileExistsError(f"journal {str(path)!r} already exists: pass resume=True or choose a new path")
        jr = Journal(path, fsync=fsync, fsync_interval=fsync_interval)
        if not path.exists() or path.stat().st_size == 0:
            jr.write_header(strategy=strategy.describe(), space=strategy.space.to_dict(), **dict(meta or {}))
    elif resume:
        raise ValueError("resume=True needs a journal path")

    bar = None
    if progress:
        from tqdm.auto import tqdm

        total = budget_calls if budget_calls is not None else max_pulls
        bar = tqdm(total=total, initial=result.calls_used if budget_calls else len(result.records),
                   desc=f"tune {strategy.name}", unit="call" if budget_calls else "pull", dynamic_ncols=True)

    can_trim = callable(getattr(objective, "limit_calls", None))
    # each pull's ordinal among its configuration's pulls (journaled ones included), for
    # objectives that sample by it (sampling="paired")
    wants_ordinals = callable(getattr(objective, "with_ordinals", None))
    seen: dict[int, int] = {}
    for r in result.records:
        key = strategy.space.index(r.config)
        seen[key] = seen.get(key, 0) + 1

    def remaining_pulls() -> float:
        left = math.inf
        if max_pulls is not None:
            left = max_pulls - len(result.records)
        if budget_calls is not None:
            calls_left = budget_calls - result.calls_used
            whole, rest = divmod(max(calls_left, 0), calls_per_pull)
            left = min(left, whole + (1 if rest and can_trim else 0))
        return left

    def limits(pulls: Sequence[int]) -> dict[int, int]:
        """Pulls that must spend fewer than ``calls_per_pull`` calls to stay within the budget."""
        if budget_calls is None or not can_trim:
            return {}
        out, calls_left = {}, budget_calls - result.calls_used
        for p in pulls:
            if calls_left < calls_per_pull:
                out[p] = max(calls_left, 1)
            calls_left -= calls_per_pull
        return out

    try:
        rnd = result.records[-1].round + 1 if result.records else 0
        while True:
            if pending:
                batch = pending
                pending = []
            else:
                left = remaining_pulls()
                if left <= 0:
                    result.stop_reason = "budget"
                    break
                size = int(min(parallel, left))
                try:
                    configs = strategy.ask_batch(size)
                except SpaceExhausted as exc:
                    result.stop_reason = f"exhausted: {exc}"
                    break
                base = len(result.records)
                batch = [(base + k, rnd, size, c) for k, c in enumerate(configs)]
                rnd += 1
            trimmed = limits([b[0] for b in batch])
            target = objective
            if wants_ordinals:
                ordinals = {}
                for pull, _, _, config in batch:
                    key = strategy.space.index(config)
                    ordinals[pull] = seen.get(key, 0)
                    seen[key] = ordinals[pull] + 1
                target = target.with_ordinals(ordinals)  # type: ignore[attr-defined]
            if trimmed:
                target = target.limit_calls(trimmed)  # type: ignore[attr-defined]
            outcomes = executor.evaluate(target, [b[3] for b in batch], [b[0] for b in batch])
            for (pull, r, size, config), out in zip(batch, outcomes):
                if not isinstance(out, Outcome):
                    out = Outcome(reward=check_reward(out))
                _tell(strategy, config, out.reward, out.details)
                rec = PullRecord(pull, r, size, config, float(out.reward), int(out.calls),
                                 list(out.details) if out.details is not None else None)
                if jr is not None:
                    jr.write(rec.to_json())
                result.records.append(rec)
                result.calls_used += rec.calls
                if bar is not None:
                    bar.update(rec.calls if budget_calls else 1)
                if callback is not None:
                    callback(rec)
    finally:
        if bar is not None:
            bar.close()
        if jr is not None:
            jr.close()
    return result
