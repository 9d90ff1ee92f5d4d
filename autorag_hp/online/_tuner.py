"""The online tuner: a thread-safe suggest/feedback loop over a registered strategy, journaled.

The strategy is the offline one (``make_strategy``), driven through its online hooks:
``propose`` picks a configuration, ``commit`` / ``tell`` / ``expire`` / ``observe`` apply what
the journal records, ``state`` / ``load`` snapshot it. With ``Stationary`` statistics and the
same seed and rewards, the suggestions are exactly the offline ``ask`` sequence.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
import warnings
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np

from autorag_hp._validation import check_int, check_positive_int
from autorag_hp.objective import check_reward
from autorag_hp.online._persistence import (
    FORMAT,
    Journal,
    JournalError,
    JournalUnavailable,
    Persistence,
    Recovery,
    recover,
    replay,
    scan_journal,
    write_snapshot,
)
from autorag_hp.space import SearchSpace
from autorag_hp.strategies import Proposal, Recommendation, Strategy, list_online_strategies, make_strategy
from autorag_hp.strategies._stats import Stationary, StatsRule, parse_stats

__all__ = [
    "OnlineTuner",
    "Suggestion",
    "Guardrail",
    "WarmStart",
    "FeedbackRejected",
    "UnknownSuggestion",
    "DuplicateFeedback",
    "ExpiredSuggestion",
]

_OBSERVE_CHUNK = 5_000
_CONFIG_CACHE = 65_536  # configurations whose dict a suggest record reuses (cleared when full)


@dataclass(frozen=True)
class Suggestion:
    """A configuration to serve; report its reward with ``feedback(id, reward)`` before ``expires_at``
    (seconds since the epoch)."""

    id: str
    config: dict[str, Any]
    expires_at: float


class FeedbackRejected(ValueError):
    """Feedback that is not counted; ``status`` is the HTTP status the service answers with."""

    status = 400


class UnknownSuggestion(FeedbackRejected):
    status = 404


class DuplicateFeedback(FeedbackRejected):
    status = 409


class ExpiredSuggestion(FeedbackRejected):
    status = 410


@dataclass(frozen=True)
class Guardrail:
    """Never explore a configuration whose upper confidence bound (mean + z * sigma / sqrt(pulls),
    with at least ``min_pulls`` effective pulls) lies more than ``margin`` below the mean of the
    current best; suggest the best instead. The best is re-estimated every 64 rewards."""

    margin: float
    z: float = 1.96
    min_pulls: float = 5.0

    def __post_init__(self) -> None:
        for name in ("margin", "z", "min_pulls"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")

    def to_dict(self) -> dict[str, float]:
        return {"margin": float(self.margin), "z": float(self.z), "min_pulls": float(self.min_pulls)}


@dataclass(frozen=True)
class WarmStart:
    """Start a new online journal from an earlier run's journal (offline ``tune`` or online).

    ``mode="continue"``: the strategy continues as that run left it -- same strategy, options
    and statistics required (an offline run is replayed ask by ask, so its upper and lower
    arms, tagged pulls, current configuration and random generator are exactly restored;
    asks of an unfinished round are dropped; from an online journal, its learned state with
    the unanswered suggestions dropped). ``mode="observe"``: its rewards count as
    observations of configurations we did not propose (any strategy; the hierarchical ones
    credit every group's value and no upper arm). ``mode="reset"``: only checks the journal.
    """

    path: str
    mode: Literal["continue", "observe", "reset"] = "continue"

    def __post_init__(self) -> None:
        if self.mode not in ("continue", "observe", "reset"):
            raise ValueError(f"mode must be 'continue', 'observe' or 'reset', got {self.mode!r}")
        if not Path(self.path).is_file():
            raise FileNotFoundError(f"warm start journal {str(self.path)!r} does not exist")


class OnlineTuner:
    """Chooses a configuration per request and learns from late, missing or repeated feedback.

    Thread-safe: every method may be called from any number of threads. ``strategy`` is
    one of :func:`list_online_strategies`, built with ``make_strategy(strategy, space,
    seed=seed, stats=stats, **options)`` and available as ``tuner.strategy``; ``stats``
    picks stationary, discounted or sliding-window statistics (a rule or its string form). Unanswered suggestions expire
    after ``expiry_s`` seconds. With ``persistence`` every change is journaled and a
    restart on the same journal restores the state (see ``_persistence``).
    """

    def __init__(
        self,
        space: SearchSpace,
        *,
        strategy: str = "hier-ts",
        seed: int = 0,
        options: Mapping[str, Any] | None = None,
        stats: StatsRule | str = Stationary(),
        expiry_s: float = 3600.0,
        guardrail: Guardrail | None = None,
        persistence: Persistence | None = None,
        warm_start: WarmStart | None = None,
        reward_range: tuple[float, float] = (-1e6, 1e6),
        remember_ids: int = 1_000_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(space, SearchSpace):
            raise ValueError(f"space must be a SearchSpace, got {type(space).__name__}")
        check_int("seed", seed, minimum=0)
        if isinstance(expiry_s, bool) or not isinstance(expiry_s, (int, float)) or not expiry_s > 0 or not math.isfinite(expiry_s):
            raise ValueError(f"expiry_s must be a finite number > 0, got {expiry_s!r}")
        if guardrail is not None and not isinstance(guardrail, Guardrail):
            raise ValueError(f"guardrail must be a Guardrail or None, got {guardrail!r}")
        if persistence is not None and not isinstance(persistence, Persistence):
            raise ValueError(f"persistence must be a Persistence or None, got {persistence!r}")
        if warm_start is not None and not isinstance(warm_start, WarmStart):
            raise ValueError(f"warm_start must be a WarmStart or None, got {warm_start!r}")
        lo, hi = (float(x) for x in reward_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"reward_range must be finite with low < high, got {reward_range!r}")
        check_int("remember_ids", remember_ids, minimum=1)
        online = list_online_strategies()
        if strategy not in online:
            raise ValueError(f"strategy must be one of {online} for online tuning, got {strategy!r}")
        if options is not None and "stats" in options:
            raise ValueError("options must not contain 'stats': pass the statistics rule as stats=...")
        self.space = space
        self.seed = int(seed)
        self.options = dict(options or {})
        self.rule = parse_stats(stats)
        self.expiry_s = float(expiry_s)
        self.guardrail = guardrail
        self.persistence = persistence
        self.reward_range = (lo, hi)
        self._remember = remember_ids
        self._clock = clock
        self.strategy: Strategy = self._new_strategy(strategy)

        self._lock = threading.Lock()
        self._pending: OrderedDict[str, tuple[int, Any, float, Proposal]] = OrderedDict()  # id -> (index, tag, ts, proposal)
        self._closed: OrderedDict[str, bool] = OrderedDict()  # id -> True (answered) / False (expired)
        # _closed's ids in its order as runs [boot, first seq, count, answered] of consecutive ids: what a
        # snapshot stores, kept as ids close so that a snapshot costs O(runs), not O(remembered ids)
        self._closed_runs: deque[list[Any]] = deque()
        self.boot = 0
        self._seq = 0
        self._n = {"suggestions": 0, "feedback": 0, "expired": 0, "observations": 0, "guardrail_vetoes": 0}
        self._reward_sum = 0.0
        self._rejected = {"unknown": 0, "duplicate": 0, "expired": 0, "invalid": 0}
        self._guard_cache: tuple[int, float, float] | None = None  # (version, best mean, sigma)
        self._guard_ref = -1
        self._configs: dict[int, dict[str, Any]] = {}  # index -> configuration, for suggest records (never mutated)
        self._journal: Journal | None = None
        self._journal_id = uuid.uuid4().hex
        self._since_snapshot = 0
        self._snapshot_wanted = threading.Event()
        self._snapshot_lock = threading.Lock()
        self._snapshot_offset = 0
        self._snapshot_thread: threading.Thread | None = None
        self._closing = False
        self.restored_from: dict[str, Any] = {"snapshot": False, "replayed": 0}

        fresh = True
        if persistence is not None:  # locks the journal before anything is read or written
            recovery = recover(persistence, space=space, settings=self.settings())
            try:
                if recovery.header is not None:
                    self._restore(recovery)
                    fresh = False
                else:
                    self._journal = recovery.open()
                    self._journal.append(self._header(warm_start))
            except BaseException:
                recovery.release()
                raise
        self.boot += 1
        if self.boot > 1:  # a restart: the generator's state is not journaled, so each boot reseeds it
            self.strategy.rng = np.random.default_rng([self.seed, self.boot])
        if fresh:
            if warm_start is not None:
                try:
                    self._warm_start(warm_start)
                except BaseException:
                    self._abandon()  # releases the journal's lock
                    raise
        if self._journal is not None:
            seq = self._journal.append({"type": "boot", "boot": self.boot, "ts": self._clock()})
            self._journal.sync()
            self._journal.wait(seq)
            if persistence is not None and persistence.snapshot_every > 0:
                self._snapshot_thread = threading.Thread(target=self._snapshot_loop, name="autorag-hp-snapshot", daemon=True)
                self._snapshot_thread.start()
        with self._lock:
            self._sweep(self._clock())

    # -- settings and journal header ----------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """What must match when a journal is reopened."""
        return {
            "strategy": self.strategy.name,
            "options": self.options,
            "seed": self.seed,
            "stats": self.rule.to_dict(),
        }

    def _header(self, warm_start: WarmStart | None) -> dict[str, Any]:
        return {
            "type": "header",
            "kind": "online",
            "version": FORMAT,
            "journal_id": self._journal_id,
            "space": self.space.to_dict(),
            **self.settings(),
            "warm_start": None if warm_start is None else {"path": str(warm_start.path), "mode": warm_start.mode},
            "ts": self._clock(),
        }

    # -- the public API ---------------------------------------------------------------------
    def suggest(self) -> Suggestion:
        """The configuration to serve next, with an id to report its reward under."""
        return self.suggest_many(1)[0]

    def suggest_many(self, n: int) -> list[Suggestion]:
        """``n`` configurations to serve, under one lock, journaled without an fsync (a later one
        covers them). Each is one that :meth:`suggest` could have chosen after the previous
        ones; a strategy with a batch draw (``Strategy.propose_batch``: ``hier-ts`` once every
        arm has a reward, without a guardrail) draws the whole batch at once and journals it
        as one record, from the same posterior as ``n`` calls of :meth:`suggest` but not with
        the same draws; otherwise the batch is exactly ``n`` calls of :meth:`suggest`.

        If the journal fails, JournalUnavailable is raised: nothing of a batch drawn at once
        is counted; of a batch chosen one by one, the suggestions already journaled stay
        pending (and expire unanswered)."""
        check_positive_int("n", n)
        ids, _, coords, expires = self._suggest(int(n))
        config = self.space.config_from_coords
        return [Suggestion(sid, config(c), expires) for sid, c in zip(ids, coords)]

    def _suggest(self, n: int) -> tuple[list[str], list[int], list[tuple[int, ...]], float]:
        """``suggest_many`` as (ids, configuration indices, coordinates, expiry time)."""
        ids: list[str] = []
        indices: list[int] = []
        coords_of: list[tuple[int, ...]] = []
        space = self.space
        with self._lock:
            if self._closing:
                raise RuntimeError("the tuner is closed")
            now = self._clock()
            self._sweep(now)
            strategy, journal, guardrail = self.strategy, self._journal, self.guardrail
            expires = now + self.expiry_s
            prefix = f"{self.boot}-"
            batch = strategy.propose_batch(n) if n > 1 and guardrail is None else None
            if batch is not None:
                first = self._seq + 1
                batch = [p if type(p.coords) is tuple else Proposal(tuple(int(c) for c in p.coords), p.tag) for p in batch]
                index_of = space.index_of_coords
                indices = [index_of(p.coords) for p in batch]
                if journal is not None:  # one record, before any state changes: all or nothing
                    journal.append({"type": "suggest_batch", "boot": self.boot, "first": first, "indices": indices,
                                    "tags": [p.tag for p in batch], "ts": now}, sync=False)
                    self._since_snapshot += len(batch)  # a batch record counts its items
                self._seq += len(batch)
                strategy.commit_many(batch)
                pending = self._pending
                for k, (proposal, index) in enumerate(zip(batch, indices)):
                    sid = prefix + str(first + k)
                    pending[sid] = (index, proposal.tag, now, proposal)
                    ids.append(sid)
                    coords_of.append(proposal.coords)
                self._n["suggestions"] += len(batch)
                self._maybe_snapshot()
                return ids, indices, coords_of, expires
            for _ in range(n):
                proposal = strategy.propose()
                coords, tag = proposal.coords, proposal.tag
                if type(coords) is not tuple:
                    coords = tuple(int(c) for c in coords)
                index = space.index_of_coords(coords)
                veto = False
                if guardrail is not None and self._vetoed(index):
                    index, tag, veto = self._guard_ref, None, True
                    coords = space.coords_of_index(index)
                self._seq += 1
                sid = prefix + str(self._seq)
                if journal is not None:
                    config = self._configs.get(index)
                    if config is None:
                        if len(self._configs) >= _CONFIG_CACHE:
                            self._configs.clear()
                        config = self._configs[index] = space.config_from_coords(coords)
                    rec = {"type": "suggest", "id": sid, "index": index, "config": config, "tag": tag, "ts": now}
                    if veto:
                        rec["veto"] = True
                    journal.append(rec, sync=False)  # journal first: a failed write changes nothing
                    self._since_snapshot += 1
                self._apply_suggest(sid, index, tag, now, veto, coords)
                ids.append(sid)
                indices.append(index)
                coords_of.append(coords)
            self._maybe_snapshot()
        return ids, indices, coords_of, expires

    def feedback(self, id: str, reward: float, *, wait: bool = True) -> int:
        """Count ``reward`` for suggestion ``id`` once.

        Raises UnknownSuggestion, DuplicateFeedback or ExpiredSuggestion (all ValueError)
        for feedback that is not counted, ValueError for a bad reward; nothing changes then.
        With ``wait`` it returns once the feedback is durable under the fsync policy;
        otherwise it returns a ticket for :meth:`wait` / :meth:`wait_async`.
        """
        try:
            value = self._check_reward(reward)
            if not isinstance(id, str):
                raise ValueError(f"id must be a string returned by suggest(), got {id!r}")
        except ValueError:
            with self._lock:
                self._rejected["invalid"] += 1
            raise
        with self._lock:
            now = self._clock()
            self._sweep(now)
            if id not in self._pending:
                self._reject(id)
            seq = 0
            journal = self._journal
            if journal is not None:
                seq = journal.append({"type": "feedback", "id": id, "reward": value, "ts": now})
                self._since_snapshot += 1
            self._apply_feedback(id, value)
            self._maybe_snapshot()
        if wait and seq:
            self._journal.wait(seq)  # type: ignore[union-attr]
        return seq

    def feedback_many(self, items: Sequence[tuple[str, float]], *, wait: bool = True) -> tuple[list[ValueError | None], int]:
        """Count several ``(id, reward)`` pairs with one journal write (so one fsync covers them).

        Returns, per item, None (counted) or the exception :meth:`feedback` would have raised
        for it (an id repeated within the batch counts once, later copies are duplicates), and
        the ticket of the write. Valid items count even when others fail; if the journal write
        fails, JournalUnavailable is raised and none of them counts.
        """
        outcomes: list[ValueError | None] = [None] * len(items)
        values: dict[int, float] = {}
        for k, (sid, reward) in enumerate(items):
            try:
                values[k] = self._check_reward(reward)
                if not isinstance(sid, str):
                    raise ValueError(f"id must be a string returned by suggest(), got {sid!r}")
            except ValueError as exc:
                values.pop(k, None)
                outcomes[k] = exc
        with self._lock:
            self._rejected["invalid"] += len(items) - len(values)
            self._sweep(self._clock())
            ts = self._clock()
            taken: set[str] = set()
            pending = self._pending
            ids, rewards = [], []
            for k, value in values.items():
                sid = items[k][0]
                if sid in pending and sid not in taken:
                    taken.add(sid)
                    ids.append(sid)
                    rewards.append(value)
                    continue
                try:
                    if sid in taken:
                        self._rejected["duplicate"] += 1
                        raise DuplicateFeedback(f"id {sid!r}: feedback was already received earlier in this batch; it counts once")
                    self._reject(sid)
                except FeedbackRejected as exc:
                    outcomes[k] = exc
            seq = 0
            if ids and self._journal is not None:  # one record, before any state changes: all or nothing
                if len(ids) == 1:
                    rec = {"type": "feedback", "id": ids[0], "reward": rewards[0], "ts": ts}
                else:
                    rec = {"type": "feedback_batch", "ids": ids, "rewards": rewards, "ts": ts}
                seq = self._journal.append(rec)
                self._since_snapshot += len(ids)
            self._apply_feedback_many(ids, rewards)
            self._maybe_snapshot()
        if wait and seq:
            self._journal.wait(seq)  # type: ignore[union-attr]
        return outcomes, seq

    def observe(self, config: Mapping[str, Any], reward: float, *, wait: bool = True) -> int:
        """Count a reward for a configuration that was not suggested (e.g. measured offline)."""
        index = self.space.index(config)
        value = self._check_reward(reward)
        with self._lock:
            seq = self._append_observe([index], [value])
            self._apply_observe([index], [value])
        if wait and seq:
            self._journal.wait(seq)  # type: ignore[union-attr]
        return seq

    def wait(self, ticket: int, timeout: float | None = None) -> bool:
        """Block until the record behind ``ticket`` is durable under the fsync policy."""
        return True if self._journal is None or not ticket else self._journal.wait(ticket, timeout)

    async def wait_async(self, ticket: int) -> None:
        if self._journal is not None and ticket:
            await self._journal.wait_async(ticket)

    def best(self, n: int = 1) -> list[Recommendation]:
        """The strategy's own ``best(n)`` (the offline code): its estimates under the
        (possibly discounted or windowed) statistics; ``pulls`` is an effective count."""
        with self._lock:
            return self.strategy.best(n)

    def stats(self) -> dict[str, Any]:
        """Counters (lifetime of the journal), pending suggestions and rejected feedback."""
        with self._lock:
            self._sweep(self._clock())
            out: dict[str, Any] = {
                "strategy": self.strategy.name,
                "stats": self.rule.to_dict(),
                "configs": len(self.space),
                **self._n,
                "pending": len(self._pending),
                "reward_sum": self._reward_sum,
                "reward_mean": self._reward_sum / self._n["feedback"] if self._n["feedback"] else None,
                "boot": self.boot,
                "rejected": dict(self._rejected),
            }
            if self._journal is not None:
                out["journal"] = {
                    "path": str(self._journal.path),
                    "fsync": self._journal.fsync,
                    "bytes": self._journal.offset,
                    "syncs": self._journal.syncs,
                    "sync_seconds": self._journal.sync_seconds,
                    "restored_from_snapshot": self.restored_from["snapshot"],
                    "replayed_records": self.restored_from["replayed"],
                }
        return out

    def snapshot(self) -> None:
        """Write a snapshot now (also done every ``snapshot_every`` records and on close)."""
        if self._journal is None or self.persistence is None or self._journal.failed:
            return  # a failed journal: the restart re-reads it
        with self._snapshot_lock:  # one writer at a time, offsets only grow
            with self._lock:
                state = self._state()
                offset, last_crc, seq = self._journal.position()
                self._since_snapshot = 0
            if offset <= self._snapshot_offset:
                return
            self._journal.wait(seq)
            if self._journal.fsync != "always":
                self._journal.sync()
            write_snapshot(self.persistence.snapshot_path, {
                "type": "snapshot", "version": FORMAT, "journal_id": self._journal_id,
                "offset": offset, "last_crc": last_crc, "ts": self._clock(), "state": state,
            })
            self._snapshot_offset = offset

    def close(self) -> None:
        """Write a final snapshot and close the journal (idempotent)."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
        if self._snapshot_thread is not None:
            self._snapshot_wanted.set()
            self._snapshot_thread.join()
        if self._journal is not None:
            try:
                self.snapshot()
            finally:
                self._journal.close()

    def _abandon(self) -> None:
        """Stop without a final snapshot, as a crash would (for tests)."""
        with self._lock:
            self._closing = True
        if self._snapshot_thread is not None:
            self._snapshot_wanted.set()
            self._snapshot_thread.join()
        if self._journal is not None:
            self._journal.close()

    def __enter__(self) -> "OnlineTuner":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- validation and rejection --------------------------------------------------------------
    def _check_reward(self, reward: Any) -> float:
        lo, hi = self.reward_range
        if type(reward) is float and lo <= reward <= hi:  # the common case: check_reward would return it as is
            self.strategy._check_reward(reward)
            return reward
        value = check_reward(reward)
        if not lo <= value <= hi:
            raise ValueError(f"reward must satisfy {lo:g} <= reward <= {hi:g}, got {reward!r}")
        self.strategy._check_reward(value)  # the rest of strategy.validate_reward (check_reward ran)
        return value

    def _reject(self, id: str) -> None:
        state = self._closed.get(id)
        if state is True:
            self._rejected["duplicate"] += 1
            raise DuplicateFeedback(f"id {id!r}: feedback was already received; a suggestion's reward counts once")
        if state is False:
            self._rejected["expired"] += 1
            raise ExpiredSuggestion(
                f"id {id!r}: the suggestion expired (feedback must arrive within expiry_s={self.expiry_s:g} s); not counted"
            )
        self._rejected["unknown"] += 1
        shown = id if len(id) <= 80 else id[:77] + "..."
        raise UnknownSuggestion(f"id {shown!r} is not a suggestion of this tuner (or too old to remember)")

    def _vetoed(self, index: int) -> bool:
        g = self.guardrail
        assert g is not None
        stats = self.strategy.stats
        version = self.strategy.n_told
        cache = self._guard_cache
        if cache is None or version - cache[0] >= 64:
            best_mean, ref = -math.inf, -1
            for coords, (n, s, _) in stats.items():
                if n >= g.min_pulls and s / n > best_mean:
                    best_mean, ref = s / n, self.space.index_of_coords(coords)
            self._guard_ref = ref
            cache = (version, best_mean, stats.noise_std()) if ref >= 0 else (version, math.nan, 0.0)
            self._guard_cache = cache
        if self._guard_ref < 0 or index == self._guard_ref:
            return False
        row = stats.row(self.space.coords_of_index(index))
        if row is None or row[0] < g.min_pulls:
            return False
        n, s, _ = row
        return s / n + g.z * cache[2] / math.sqrt(n) < cache[1] - g.margin

    # -- state changes (shared by live calls and journal replay) ---------------------------------
    def _sweep(self, now: float) -> None:
        pending = self._pending
        if not pending:
            return
        cutoff = now - self.expiry_s
        first = next(iter(pending))
        if pending[first][2] > cutoff:
            return
        ids = []
        for sid, item in pending.items():
            if item[2] > cutoff:
                break
            ids.append(sid)
        if self._journal is not None:
            self._journal.append({"type": "expire", "ids": ids, "ts": now}, sync=False)
            self._since_snapshot += 1
        self._apply_expire(ids)

    def _remember_closed(self, ids: Sequence[str], answered: bool) -> None:
        """Remember ``ids`` as closed (answered or expired), in order: in ``_closed`` and as runs
        of consecutive ids in ``_closed_runs``; the oldest forgotten past ``remember_ids``."""
        closed, runs = self._closed, self._closed_runs
        last = runs[-1] if runs else None
        for sid in ids:
            closed[sid] = answered
            boot, _, seq = sid.partition("-")
            b, n = int(boot), int(seq)
            if last is not None and last[0] == b and last[1] + last[2] == n and last[3] is answered:
                last[2] += 1
            else:
                last = [b, n, 1, answered]
                runs.append(last)
        while len(closed) > self._remember:
            self._forget_oldest_closed()

    def _forget_oldest_closed(self) -> None:
        self._closed.popitem(last=False)
        first = self._closed_runs[0]  # the oldest id is its first
        first[1] += 1
        first[2] -= 1
        if not first[2]:
            self._closed_runs.popleft()

    def _apply_suggest(self, sid: str, index: int, tag: Any, ts: float, veto: bool,
                       coords: tuple[int, ...] | None = None) -> None:
        """``coords``: the configuration's coordinates when the caller has them (else from ``index``)."""
        proposal = Proposal(self.space.coords_of_index(index) if coords is None else coords, tag)
        self.strategy.commit(proposal)
        self._pending[sid] = (index, tag, ts, proposal)  # the proposal is what feedback / expiry answer
        self._n["suggestions"] += 1
        if veto:
            self._n["guardrail_vetoes"] += 1

    def _apply_feedback(self, sid: str, reward: float) -> None:
        """Count a reward that ``_check_reward`` accepted (the strategy's rules included)."""
        proposal = self._pending.pop(sid)[3]
        self.strategy._answer(proposal, reward)
        self._remember_closed((sid,), True)
        self._n["feedback"] += 1
        self._reward_sum += reward

    def _apply_feedback_many(self, ids: list[str], rewards: list[float]) -> None:
        """``_apply_feedback`` for each pair in order (pending ids, distinct, checked rewards)."""
        pending = self._pending
        self.strategy._answer_many([pending.pop(sid)[3] for sid in ids], rewards)
        self._remember_closed(ids, True)
        self._n["feedback"] += len(ids)
        total = self._reward_sum
        for reward in rewards:  # one at a time: the same float as single feedbacks add up to
            total += reward
        self._reward_sum = total

    def _apply_expire(self, ids: list[str]) -> None:
        for sid in ids:
            item = self._pending.pop(sid, None)
            if item is None:
                continue
            self.strategy.expire(item[3])
            self._remember_closed((sid,), False)
            self._n["expired"] += 1

    def _apply_observe(self, indices: list[int], rewards: list[float]) -> None:
        for i, r in zip(indices, rewards):
            self.strategy.observe(self.space.config(i), r)
        self._n["observations"] += len(indices)

    def _append_observe(self, indices: list[int], rewards: list[float]) -> int:
        if self._journal is None:
            return 0
        configs = [self.space.config(i) for i in indices]
        self._since_snapshot += 1
        return self._journal.append({"type": "observe", "configs": configs, "rewards": rewards, "ts": self._clock()})

    def _apply_record(self, rec: Mapping[str, Any]) -> None:
        kind = rec.get("type")
        if kind == "suggest":
            sid = rec["id"]
            self._apply_suggest(sid, int(rec["index"]), rec.get("tag"), float(rec["ts"]), bool(rec.get("veto")))
            boot, _, seq = sid.partition("-")
            if int(boot) == self.boot:
                self._seq = max(self._seq, int(seq))
        elif kind == "suggest_batch":
            boot, first, ts = int(rec["boot"]), int(rec["first"]), float(rec["ts"])
            for k, (index, tag) in enumerate(zip(rec["indices"], rec["tags"])):
                self._apply_suggest(f"{boot}-{first + k}", int(index), tag, ts, False)
            if boot == self.boot:
                self._seq = max(self._seq, first + len(rec["indices"]) - 1)
        elif kind == "feedback":
            if rec["id"] in self._pending:
                self._apply_feedback(rec["id"], self.strategy.validate_reward(rec["reward"]))
        elif kind == "feedback_batch":
            ids, rewards, seen = [], [], set()
            for sid, r in zip(rec["ids"], rec["rewards"]):
                if sid in self._pending and sid not in seen:  # as for single records: counted once
                    seen.add(sid)
                    ids.append(sid)
                    rewards.append(self.strategy.validate_reward(r))
            self._apply_feedback_many(ids, rewards)
        elif kind == "expire":
            self._apply_expire(list(rec["ids"]))
        elif kind == "observe":
            self._apply_observe([self.space.index(c) for c in rec["configs"]], [float(r) for r in rec["rewards"]])
        elif kind == "warm_start":
            self.strategy.load(rec["state"])
        elif kind == "boot":
            self.boot = max(self.boot, int(rec["boot"]))
        elif kind == "header":
            raise JournalError("a second header record in the journal")

    # -- restore, warm start, snapshots -----------------------------------------------------------
    def _restore(self, rec: Recovery) -> None:
        self._journal_id = rec.header["journal_id"]  # type: ignore[index]
        if rec.snapshot is not None:
            try:
                self._load_state(rec.snapshot["state"])
                self.restored_from["snapshot"] = True
            except (KeyError, TypeError, ValueError, IndexError) as exc:
                warnings.warn(f"{rec.persistence.snapshot_path}: ignoring an inconsistent snapshot ({exc})", stacklevel=3)
                self._reset_state()
                rec.replay_all()
        self.restored_from["replayed"] = replay(rec.records, self._apply_record, rec.persistence.path, len(self.space))
        self._journal = rec.open()

    def _reset_state(self) -> None:
        self.strategy = self._new_strategy(self.strategy.name)
        self._pending.clear()
        self._closed.clear()
        self._closed_runs.clear()
        self.boot = 0
        self._n = dict.fromkeys(self._n, 0)
        self._reward_sum = 0.0

    def _state(self) -> dict[str, Any]:
        return {
            "boot": self.boot,
            "counters": dict(self._n),
            "reward_sum": self._reward_sum,
            "pending": [[sid, i, tag, ts] for sid, (i, tag, ts, _) in self._pending.items()],
            "closed_runs": [[b, first, count, int(a)] for b, first, count, a in self._closed_runs],
            "strategy": self.strategy.state(),
        }

    def _load_state(self, state: Mapping[str, Any]) -> None:
        self.strategy.load(state["strategy"])
        self.boot = int(state["boot"])
        self._n.update({k: int(v) for k, v in state["counters"].items()})
        self._reward_sum = float(state["reward_sum"])
        coords = self.space.coords_of_index
        self._pending = OrderedDict((sid, (int(i), tag, float(ts), Proposal(coords(int(i)), tag)))
                                    for sid, i, tag, ts in state["pending"])
        self._closed = OrderedDict()
        self._closed_runs = deque()
        if "closed_runs" in state:
            for b, first, count, a in state["closed_runs"]:
                answered = bool(a)
                self._closed.update((f"{int(b)}-{n}", answered) for n in range(int(first), int(first) + int(count)))
                self._closed_runs.append([int(b), int(first), int(count), answered])
        else:  # a snapshot written before the runs: the ids one by one
            for sid, a in state["closed"]:
                self._remember_closed((sid,), bool(a))

    def _maybe_snapshot(self) -> None:
        p = self.persistence
        if p is not None and p.snapshot_every and self._since_snapshot >= p.snapshot_every:
            self._since_snapshot = 0
            self._snapshot_wanted.set()

    def _snapshot_loop(self) -> None:
        while True:
            self._snapshot_wanted.wait()
            self._snapshot_wanted.clear()
            if self._closing:
                return
            try:
                self.snapshot()
            except (OSError, JournalUnavailable) as exc:  # the journal still has everything; try again next time
                warnings.warn(f"snapshot failed: {exc}", stacklevel=2)

    def _new_strategy(self, name: str) -> Strategy:
        return make_strategy(name, self.space, seed=self.seed, stats=self.rule, **self.options)

    def _warm_start(self, ws: WarmStart) -> None:
        if ws.mode == "continue":
            state = self._continued_state(ws.path)
            with self._lock:
                if self._journal is not None:  # replayed by loading the state, not by reading the source
                    self._journal.append({"type": "warm_start", "mode": ws.mode, "source": str(ws.path),
                                          "state": state, "ts": self._clock()})
                    self._since_snapshot += 1
                self.strategy.load(state)
            return
        pairs = read_rewards(ws.path, self.space)
        if ws.mode == "reset":
            return
        with self._lock:
            for k in range(0, len(pairs), _OBSERVE_CHUNK):
                chunk = pairs[k : k + _OBSERVE_CHUNK]
                idx = [i for i, _ in chunk]
                rew = [self._check_reward(r) for _, r in chunk]
                self._append_observe(idx, rew)
                self._apply_observe(idx, rew)


    def _continued_state(self, path: str) -> dict[str, Any]:
        """The strategy state at the end of the run journaled in ``path`` (see :class:`WarmStart`)."""
        records, _ = scan_journal(path)
        if not records or records[0].get("type") != "header":
            raise JournalError(f"{path}: line 1 must be a header record")
        header = records[0]
        if header.get("space") != self.space.to_dict():
            raise ValueError(f"warm start journal {path!r}: its search space differs from the tuner's")
        online = header.get("kind") == "online"
        try:  # the journal's strategy, rebuilt (this also normalises omitted default options)
            stats = header.get("stats") if online else None
            theirs = make_strategy(header["strategy"], self.space, seed=int(header["seed"]), stats=stats,
                                   **header["options"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"warm start journal {path!r}: cannot rebuild its strategy from the header ({exc})") from None
        mine = self.strategy.describe()
        if (theirs.name, theirs.describe()["options"]) != (mine["strategy"], mine["options"]):
            raise ValueError(
                f"warm start 'continue' needs the journal's strategy, options and statistics: {path!r} has "
                f"strategy={theirs.name!r}, options={theirs.describe()['options']!r}; this tuner has "
                f"strategy={mine['strategy']!r}, options={mine['options']!r} "
                "(mode='observe' counts its rewards in any strategy)"
            )
        if online:
            scratch = OnlineTuner(self.space, strategy=header["strategy"], seed=int(header["seed"]),
                                  options=header["options"], stats=self.rule, reward_range=self.reward_range)
            for rec in records[1:]:
                scratch._apply_record(rec)
            scratch._apply_expire(list(scratch._pending))  # unanswered suggestions: their rewards will not come
            state = scratch.strategy.state()
            state["rng"] = np.random.default_rng(self.seed).bit_generator.state
            return state
        from autorag_hp.journal import read_journal
        from autorag_hp.tuner import _replay

        header, pulls = read_journal(path)
        _, unfinished = _replay(theirs, header, pulls, Path(path))
        for *_, config in unfinished:  # asks of a round cut short: no suggestion id will answer them
            coords = self.space.coords(config)
            theirs.expire(Proposal(coords, theirs.pending[coords][-1]))
        return theirs.state()


def read_rewards(path: str | Path, space: SearchSpace) -> list[tuple[int, float]]:
    """(configuration index, reward) pairs of a journal: an offline ``tune`` run's pulls, or an
    online run's answered suggestions and observations, in journal order."""
    records, _ = scan_journal(path)
    if not records or records[0].get("type") != "header":
        raise JournalError(f"{path}: line 1 must be a header record")
    out: list[tuple[int, float]] = []
    configs: dict[str, Any] = {}

    def index(config: Any, where: str) -> int:
        try:
            return space.index(config)
        except ValueError as exc:
            raise ValueError(f"warm start journal {str(path)!r}, {where}: {exc}") from None

    for n, rec in enumerate(records[1:], start=2):
        kind = rec.get("type")
        if kind == "pull":
            out.append((index(rec["config"], f"record {n}"), float(rec["reward"])))
        elif kind == "suggest":
            configs[rec["id"]] = rec["config"]
        elif kind == "suggest_batch":
            for k, i in enumerate(rec["indices"]):
                try:
                    configs[f"{rec['boot']}-{rec['first'] + k}"] = space.config(i)
                except ValueError as exc:
                    raise ValueError(f"warm start journal {str(path)!r}, record {n}: {exc}") from None
        elif kind == "feedback" and rec.get("id") in configs:
            out.append((index(configs.pop(rec["id"]), f"record {n}"), float(rec["reward"])))
        elif kind == "feedback_batch":
            for sid, r in zip(rec["ids"], rec["rewards"]):
                if sid in configs:
                    out.append((index(configs.pop(sid), f"record {n}"), float(r)))
        elif kind == "observe":
            out.extend((index(c, f"record {n}"), float(r)) for c, r in zip(rec["configs"], rec["rewards"]))
    return out
