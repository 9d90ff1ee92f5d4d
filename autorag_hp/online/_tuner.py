"""The online tuner: a thread-safe suggest/feedback loop over an online policy, journaled."""

from __future__ import annotations

import math
import threading
import time
import uuid
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

import numpy as np

from autorag_hp.objective import check_reward
from autorag_hp.online._persistence import (
    Journal,
    JournalError,
    Persistence,
    read_snapshot,
    scan_journal,
    write_snapshot,
)
from autorag_hp.online._policies import Rng, make_policy
from autorag_hp.online._stats import Discounted, SlidingWindow, Stationary, StatsRule, rule_from_dict
from autorag_hp.space import SearchSpace
from autorag_hp.strategies import Recommendation

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

_FORMAT = 1
_OBSERVE_CHUNK = 5_000


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
    """Start from an earlier run's journal (offline ``tune`` or online): ``mode="continue"``
    replays its rewards, ``mode="reset"`` only checks it and starts fresh."""

    path: str
    mode: Literal["continue", "reset"] = "continue"

    def __post_init__(self) -> None:
        if self.mode not in ("continue", "reset"):
            raise ValueError(f"mode must be 'continue' or 'reset', got {self.mode!r}")
        if not Path(self.path).is_file():
            raise FileNotFoundError(f"warm start journal {str(self.path)!r} does not exist")


class OnlineTuner:
    """Chooses a configuration per request and learns from late, missing or repeated feedback.

    Thread-safe: every method may be called from any number of threads. ``strategy`` is
    one of :func:`list_online_strategies` (the offline strategies' rules); ``stats`` picks
    stationary, discounted or sliding-window statistics. Unanswered suggestions expire
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
        stats: StatsRule = Stationary(),
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
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
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
        if isinstance(remember_ids, bool) or not isinstance(remember_ids, int) or remember_ids < 1:
            raise ValueError(f"remember_ids must be an integer >= 1, got {remember_ids!r}")
        self.space = space
        self.strategy = strategy
        self.seed = int(seed)
        self.options = dict(options or {})
        self.rule = stats
        self.expiry_s = float(expiry_s)
        self.guardrail = guardrail
        self.persistence = persistence
        self.reward_range = (lo, hi)
        self._remember = remember_ids
        self._clock = clock
        self.policy = make_policy(strategy, space, stats, **self.options)

        self._lock = threading.Lock()
        self._pending: OrderedDict[str, tuple[int, Any, float]] = OrderedDict()
        self._closed: OrderedDict[str, bool] = OrderedDict()  # id -> True (answered) / False (expired)
        self.boot = 0
        self._seq = 0
        self._n = {"suggestions": 0, "feedback": 0, "expired": 0, "observations": 0, "guardrail_vetoes": 0}
        self._reward_sum = 0.0
        self._rejected = {"unknown": 0, "duplicate": 0, "expired": 0, "invalid": 0}
        self._guard_cache: tuple[int, float, float] | None = None  # (version, best mean, sigma)
        self._guard_ref = -1
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
        if persistence is not None and Path(persistence.path).is_file() and Path(persistence.path).stat().st_size > 0:
            self._restore(persistence)
            fresh = False
        elif persistence is not None:
            Path(persistence.path).parent.mkdir(parents=True, exist_ok=True)
            self._journal = Journal(persistence.path, valid_end=0, fsync=persistence.fsync,
                                    interval_ms=persistence.interval_ms)
            self._journal.append(self._header(warm_start))
        self.boot += 1
        self._rng = Rng([self.seed, self.boot])
        if fresh:
            if hasattr(self.policy, "current"):
                self.policy.current = [self._rng.py.randrange(s) for s in space.sizes]
            if warm_start is not None:
                self._warm_start(warm_start)
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
            "strategy": self.strategy,
            "options": self.options,
            "seed": self.seed,
            "stats": self.rule.to_dict(),
        }

    def _header(self, warm_start: WarmStart | None) -> dict[str, Any]:
        return {
            "type": "header",
            "kind": "online",
            "version": _FORMAT,
            "journal_id": self._journal_id,
            "space": self.space.to_dict(),
            **self.settings(),
            "warm_start": None if warm_start is None else {"path": str(warm_start.path), "mode": warm_start.mode},
            "ts": self._clock(),
        }

    # -- the public API ---------------------------------------------------------------------
    def suggest(self) -> Suggestion:
        """The configuration to serve next, with an id to report its reward under."""
        with self._lock:
            if self._closing:
                raise RuntimeError("the tuner is closed")
            now = self._clock()
            self._sweep(now)
            index, tag = self.policy.propose(self._rng)
            veto = False
            if self.guardrail is not None and self._vetoed(index):
                index, tag, veto = self._guard_ref, None, True
            self._seq += 1
            sid = f"{self.boot}-{self._seq}"
            config = self.space.config(index)
            if self._journal is not None:
                rec = {"type": "suggest", "id": sid, "index": index, "config": config, "tag": tag, "ts": now}
                if veto:
                    rec["veto"] = True
                self._journal.append(rec, sync=False)
                self._since_snapshot += 1
            self._apply_suggest(sid, index, tag, now, veto)
            self._maybe_snapshot()
        return Suggestion(sid, config, now + self.expiry_s)

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
            self._sweep(self._clock())
            if id not in self._pending:
                self._reject(id)
            seq = 0
            if self._journal is not None:
                seq = self._journal.append({"type": "feedback", "id": id, "reward": value, "ts": self._clock()})
                self._since_snapshot += 1
            self._apply_feedback(id, value)
            self._maybe_snapshot()
        if wait and seq:
            self._journal.wait(seq)  # type: ignore[union-attr]
        return seq

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
        """The ``n`` configurations with the highest estimated (discounted or windowed) mean reward.

        Only configurations with rewards are listed. As in the offline hierarchical
        strategies, a configuration's mean is shrunk toward the overall mean by one
        pseudo-reward, so one lucky reward does not top the list:
        estimate = (sum + mu) / (pulls + 1), interval = estimate +- 1.96 * sigma / sqrt(pulls + 1).
        ``pulls`` is the effective (possibly fractional) number of rewards.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        with self._lock:
            arrays = self.policy.joint.arrays()
            sigma = self.policy.joint.noise_std(arrays)
            version = self.policy.joint.version
        index, cnt, s, _ = arrays
        if len(index) == 0:
            return []
        mu = float(s.sum() / cnt.sum())
        est = (s + mu) / (cnt + 1.0)
        jitter = np.random.default_rng([self.seed, version, 0xBE57]).random(len(index))
        order = np.lexsort((jitter, -cnt, -est))[: int(n)]
        out = []
        for i in order:
            half = 1.96 * sigma / math.sqrt(cnt[i] + 1.0)
            m = float(est[i])
            out.append(Recommendation(self.space.config(int(index[i])), m, float(cnt[i]), m - half, m + half))
        return out

    def stats(self) -> dict[str, Any]:
        """Counters (lifetime of the journal), pending suggestions and rejected feedback."""
        with self._lock:
            self._sweep(self._clock())
            out: dict[str, Any] = {
                "strategy": self.strategy,
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
                    "restored_from_snapshot": self.restored_from["snapshot"],
                    "replayed_records": self.restored_from["replayed"],
                }
        return out

    def snapshot(self) -> None:
        """Write a snapshot now (also done every ``snapshot_every`` records and on close)."""
        if self._journal is None or self.persistence is None:
            return
        with self._snapshot_lock:  # one writer at a time, offsets only grow
            with self._lock:
                state = self._state()
                offset = self._journal.offset
                seq = self._journal._written
                self._since_snapshot = 0
            if offset <= self._snapshot_offset:
                return
            self._journal.wait(seq)
            if self._journal.fsync != "always":
                self._journal.sync()
            write_snapshot(self.persistence.snapshot_path, {
                "type": "snapshot", "version": _FORMAT, "journal_id": self._journal_id,
                "offset": offset, "ts": self._clock(), "state": state,
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
            self.snapshot()
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
        value = check_reward(reward)
        lo, hi = self.reward_range
        if not lo <= value <= hi:
            raise ValueError(f"reward must satisfy {lo:g} <= reward <= {hi:g}, got {reward!r}")
        self.policy.check_reward(value)
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
        joint = self.policy.joint
        cache = self._guard_cache
        if cache is None or joint.version - cache[0] >= 64:
            arrays = joint.arrays()
            idx, n, s, _ = arrays
            ok = n >= g.min_pulls
            if ok.any():
                means = np.where(ok, s / np.maximum(n, 1e-300), -np.inf)
                k = int(np.argmax(means))
                self._guard_ref = int(idx[k])
                cache = (joint.version, float(means[k]), joint.noise_std(arrays))
            else:
                self._guard_ref = -1
                cache = (joint.version, math.nan, 0.0)
            self._guard_cache = cache
        if self._guard_ref < 0 or index == self._guard_ref:
            return False
        n, mean = joint.row(index)
        if n < g.min_pulls:
            return False
        return mean + g.z * cache[2] / math.sqrt(n) < cache[1] - g.margin

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
        for sid, (_, _, ts) in pending.items():
            if ts > cutoff:
                break
            ids.append(sid)
        if self._journal is not None:
            self._journal.append({"type": "expire", "ids": ids, "ts": now}, sync=False)
            self._since_snapshot += 1
        self._apply_expire(ids)

    def _remember_closed(self, sid: str, answered: bool) -> None:
        self._closed[sid] = answered
        if len(self._closed) > self._remember:
            self._closed.popitem(last=False)

    def _apply_suggest(self, sid: str, index: int, tag: Any, ts: float, veto: bool) -> None:
        self.policy.on_suggest(index, tag)
        self._pending[sid] = (index, tag, ts)
        self._n["suggestions"] += 1
        if veto:
            self._n["guardrail_vetoes"] += 1

    def _apply_feedback(self, sid: str, reward: float) -> None:
        index, tag, _ = self._pending.pop(sid)
        self.policy.on_reward(index, tag, reward)
        self._remember_closed(sid, True)
        self._n["feedback"] += 1
        self._reward_sum += reward

    def _apply_expire(self, ids: list[str]) -> None:
        for sid in ids:
            item = self._pending.pop(sid, None)
            if item is None:
                continue
            self.policy.on_expire(item[0], item[1])
            self._remember_closed(sid, False)
            self._n["expired"] += 1

    def _apply_observe(self, indices: list[int], rewards: list[float]) -> None:
        for i, r in zip(indices, rewards):
            self.policy.on_reward(i, None, r)
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
        elif kind == "feedback":
            if rec["id"] in self._pending:
                self._apply_feedback(rec["id"], float(rec["reward"]))
        elif kind == "expire":
            self._apply_expire(list(rec["ids"]))
        elif kind == "observe":
            self._apply_observe([self.space.index(c) for c in rec["configs"]], [float(r) for r in rec["rewards"]])
        elif kind == "boot":
            self.boot = max(self.boot, int(rec["boot"]))
        elif kind == "header":
            raise JournalError("a second header record in the journal")

    # -- restore, warm start, snapshots -----------------------------------------------------------
    def _restore(self, p: Persistence) -> None:
        with open(p.path, "rb") as fh:
            first = fh.readline()
        try:
            import json

            header = json.loads(first)
        except ValueError:
            raise JournalError(f"{p.path}: line 1 is not a header record") from None
        if not isinstance(header, dict) or header.get("type") != "header" or header.get("kind") != "online":
            raise JournalError(f"{p.path}: line 1 must be an online journal header (type=header, kind=online)")
        if SearchSpace.from_dict(header["space"]) != self.space:
            raise ValueError(f"space differs from the one journaled in {str(p.path)!r}: {header['space']!r}")
        for key, value in self.settings().items():
            if header.get(key) != value:
                raise ValueError(
                    f"{key} must match the journal {str(p.path)!r} to resume it: journal has {header.get(key)!r}, got {value!r}"
                )
        self._journal_id = header["journal_id"]
        snap = read_snapshot(p.snapshot_path)
        start = 0
        size = Path(p.path).stat().st_size
        if snap is not None and snap.get("journal_id") == self._journal_id and 0 < snap.get("offset", -1) <= size:
            with open(p.path, "rb") as fh:
                fh.seek(snap["offset"] - 1)
                boundary = fh.read(1) == b"\n"
            if boundary:
                try:
                    self._load_state(snap["state"])
                    start = int(snap["offset"])
                    self.restored_from["snapshot"] = True
                except (KeyError, TypeError, ValueError) as exc:
                    warnings.warn(f"{p.snapshot_path}: ignoring an inconsistent snapshot ({exc})", stacklevel=3)
                    self._reset_state()
        records, end = scan_journal(p.path, start)
        if start == 0:
            records = records[1:]
        for rec in records:
            self._apply_record(rec)
        self.restored_from["replayed"] = len(records)
        self._journal = Journal(p.path, valid_end=end, fsync=p.fsync, interval_ms=p.interval_ms)

    def _reset_state(self) -> None:
        self.policy = make_policy(self.strategy, self.space, self.rule, **self.options)
        self._pending.clear()
        self._closed.clear()
        self.boot = 0
        self._n = dict.fromkeys(self._n, 0)
        self._reward_sum = 0.0

    def _state(self) -> dict[str, Any]:
        return {
            "boot": self.boot,
            "counters": dict(self._n),
            "reward_sum": self._reward_sum,
            "pending": [[sid, i, tag, ts] for sid, (i, tag, ts) in self._pending.items()],
            "closed": [[sid, int(a)] for sid, a in self._closed.items()],
            "policy": self.policy.state(),
        }

    def _load_state(self, state: Mapping[str, Any]) -> None:
        self.policy.load(state["policy"])
        self.boot = int(state["boot"])
        self._n.update({k: int(v) for k, v in state["counters"].items()})
        self._reward_sum = float(state["reward_sum"])
        self._pending = OrderedDict((sid, (int(i), tag, float(ts))) for sid, i, tag, ts in state["pending"])
        self._closed = OrderedDict((sid, bool(a)) for sid, a in state["closed"])

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
            except OSError as exc:  # the journal still has everything; try again next time
                warnings.warn(f"snapshot failed: {exc}", stacklevel=2)

    def _warm_start(self, ws: WarmStart) -> None:
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
        elif kind == "feedback" and rec.get("id") in configs:
            out.append((index(configs.pop(rec["id"]), f"record {n}"), float(rec["reward"])))
        elif kind == "observe":
            out.extend((index(c, f"record {n}"), float(r)) for c, r in zip(rec["configs"], rec["rewards"]))
    return out
