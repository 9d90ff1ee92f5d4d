"""Reward statistics that forget: stationary, discounted or sliding-window arm tables.

``ArmTable`` has the attributes of :class:`autorag_hp.strategies._policies.ArmSet`
(``n``, ``sum``, ``sumsq``, ``pending``, ``means()``), so the offline strategies'
UCB and Thompson rules select from it unchanged; the counts are just effective counts.
Discounting follows Garivier & Moulines (2008, "On upper-confidence bound policies for
non-stationary bandit problems"): every step multiplies all statistics by ``gamma``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Mapping, Union

import numpy as np

__all__ = ["Stationary", "Discounted", "SlidingWindow", "StatsRule", "ArmTable", "JointTable", "rule_from_dict"]


@dataclass(frozen=True)
class Stationary:
    """Every reward counts forever with weight 1 (the offline strategies' statistics)."""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "stationary"}


@dataclass(frozen=True)
class Discounted:
    """Each new reward multiplies all earlier weights by ``gamma`` (0 < gamma < 1).

    The effective memory is about ``1 / (1 - gamma)`` rewards (gamma=0.995: 200).
    """

    gamma: float = 0.995

    def __post_init__(self) -> None:
        g = self.gamma
        if isinstance(g, bool) or not isinstance(g, (int, float)) or not (0.0 < g < 1.0):
            raise ValueError(f"gamma must satisfy 0 < gamma < 1, got {g!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "discounted", "gamma": float(self.gamma)}


@dataclass(frozen=True)
class SlidingWindow:
    """Only the last ``size`` rewards of each table count."""

    size: int = 1000

    def __post_init__(self) -> None:
        s = self.size
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1:
            raise ValueError(f"size must be an integer >= 1, got {s!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "window", "size": int(self.size)}


StatsRule = Union[Stationary, Discounted, SlidingWindow]


def rule_from_dict(data: Mapping[str, Any]) -> StatsRule:
    """Inverse of ``rule.to_dict()``."""
    kind = data.get("kind") if isinstance(data, Mapping) else None
    if kind == "stationary":
        return Stationary()
    if kind == "discounted":
        return Discounted(gamma=data.get("gamma", 0.995))
    if kind == "window":
        return SlidingWindow(size=data.get("size", 1000))
    raise ValueError(f"stats kind must be 'stationary', 'discounted' or 'window', got {data!r}")


def _check_rule(rule: Any) -> StatsRule:
    if not isinstance(rule, (Stationary, Discounted, SlidingWindow)):
        raise ValueError(f"stats must be Stationary(), Discounted(gamma) or SlidingWindow(size), got {rule!r}")
    return rule


class ArmTable:
    """Statistics of ``k`` arms under a forgetting rule.

    ``decay()`` advances the clock by one reward, ``add`` records one. Discounting is lazy:
    stored sums are scaled by ``gamma ** -t`` (renormalised before overflow), so a step
    costs O(1) whatever ``k``. Small tables are Python lists (cheaper than numpy calls at
    this size); ``view()`` gives the effective statistics as an object with the attributes
    of the offline ``ArmSet`` so that its UCB and Thompson rules apply unchanged.
    Pending counts (asked, not yet told) are exact, never discounted.
    """

    SMALL = 64
    _RENORM = 1e150

    def __init__(self, k: int, rule: StatsRule) -> None:
        self.rule = _check_rule(rule)
        self.k = int(k)
        self.small = self.k <= self.SMALL
        zeros = (lambda: [0.0] * self.k) if self.small else (lambda: np.zeros(self.k))
        self.n, self.sum, self.sumsq, self.pending = zeros(), zeros(), zeros(), zeros()
        self.w = 1.0
        self._gamma = float(rule.gamma) if isinstance(rule, Discounted) else 1.0
        self._window: deque[tuple[int, float]] | None = deque() if isinstance(rule, SlidingWindow) else None
        self._size = int(rule.size) if isinstance(rule, SlidingWindow) else 0

    def __len__(self) -> int:
        return self.k

    def decay(self) -> None:
        if self._gamma < 1.0:
            self.w /= self._gamma
            if self.w > self._RENORM:
                inv = 1.0 / self.w
                for name in ("n", "sum", "sumsq"):
                    arr = getattr(self, name)
                    setattr(self, name, [x * inv for x in arr] if self.small else arr * inv)
                self.w = 1.0

    def add(self, arm: int, reward: float) -> None:
        w = self.w
        self.n[arm] += w
        self.sum[arm] += w * reward
        self.sumsq[arm] += w * reward * reward
        win = self._window
        if win is not None:
            win.append((arm, reward))
            if len(win) > self._size:
                old, r = win.popleft()
                self.n[old] -= 1.0
                if self.n[old] <= 0.5:  # integral in window mode: exactly empty again
                    self.n[old] = self.sum[old] = self.sumsq[old] = 0.0
                else:
                    self.sum[old] -= r
                    self.sumsq[old] -= r * r

    def effective(self) -> tuple[Any, Any, Any]:
        """(n, sum, sumsq) with the discount applied: lists for small tables, arrays otherwise."""
        if self.w == 1.0:
            return self.n, self.sum, self.sumsq
        inv = 1.0 / self.w
        if self.small:
            return [x * inv for x in self.n], [x * inv for x in self.sum], [x * inv for x in self.sumsq]
        return self.n * inv, self.sum * inv, self.sumsq * inv

    def view(self) -> "_ArmView":
        n, s, ss = self.effective()
        return _ArmView(np.asarray(n, dtype=float), np.asarray(s, dtype=float), np.asarray(ss, dtype=float),
                        np.asarray(self.pending, dtype=float))

    def to_dict(self) -> dict[str, Any]:
        tl = (lambda a: list(a)) if self.small else (lambda a: a.tolist())
        out: dict[str, Any] = {"n": tl(self.n), "sum": tl(self.sum), "sumsq": tl(self.sumsq),
                               "pending": tl(self.pending), "w": self.w}
        if self._window is not None:
            out["window"] = [[a, r] for a, r in self._window]
        return out

    def load(self, data: Mapping[str, Any]) -> None:
        for name in ("n", "sum", "sumsq", "pending"):
            vals = [float(x) for x in data[name]]
            if len(vals) != self.k:
                raise ValueError(f"snapshot table {name!r} has {len(vals)} arms, expected {self.k}")
            setattr(self, name, vals if self.small else np.asarray(vals, dtype=float))
        self.w = float(data.get("w", 1.0))
        if self._window is not None:
            self._window = deque((int(a), float(r)) for a, r in data.get("window", []))


class _ArmView:
    """Effective statistics with the attributes the offline UCB/Thompson rules read."""

    def __init__(self, n: np.ndarray, s: np.ndarray, ss: np.ndarray, pending: np.ndarray) -> None:
        self.n, self.sum, self.sumsq, self.pending = n, s, ss, pending

    def __len__(self) -> int:
        return len(self.n)

    def means(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n > 0, self.sum / np.maximum(self.n, 1e-300), 0.0)


class JointTable:
    """Sparse per-configuration statistics under a forgetting rule, for ``best`` and guardrails.

    Discounting is lazy: rows store weights scaled by ``gamma ** -t`` (renormalised before
    they overflow), so an update is O(1) however many configurations have been seen.
    """

    _RENORM = 1e150

    def __init__(self, rule: StatsRule) -> None:
        self.rule = _check_rule(rule)
        self._gamma = float(rule.gamma) if isinstance(rule, Discounted) else 1.0
        self._window: deque[tuple[int, float]] | None = deque() if isinstance(rule, SlidingWindow) else None
        self._size = int(rule.size) if isinstance(rule, SlidingWindow) else 0
        self._slot: dict[int, int] = {}
        self._index = np.zeros(16, dtype=np.int64)
        self._n = np.zeros(16)
        self._s = np.zeros(16)
        self._ss = np.zeros(16)
        self._w = 1.0  # current weight of a new reward, relative to stored rows
        self.version = 0  # number of rewards added (cache key, tie-break seed)

    def __len__(self) -> int:
        return len(self._slot)

    def _slot_of(self, index: int) -> int:
        slot = self._slot.get(index)
        if slot is None:
            slot = len(self._slot)
            if slot == len(self._n):
                for name in ("_index", "_n", "_s", "_ss"):
                    arr = getattr(self, name)
                    setattr(self, name, np.concatenate([arr, np.zeros_like(arr)]))
            self._slot[index] = slot
            self._index[slot] = index
        return slot

    def add(self, index: int, reward: float) -> None:
        if self._gamma < 1.0:
            self._w /= self._gamma
            if self._w > self._RENORM:
                k = len(self._slot)
                self._n[:k] /= self._w
                self._s[:k] /= self._w
                self._ss[:k] /= self._w
                self._w = 1.0
        slot = self._slot_of(index)
        w = self._w
        self._n[slot] += w
        self._s[slot] += w * reward
        self._ss[slot] += w * reward * reward
        if self._window is not None:
            self._window.append((slot, reward))
            if len(self._window) > self._size:
                old, r = self._window.popleft()
                self._n[old] -= 1.0
                if self._n[old] <= 0.5:
                    self._n[old] = self._s[old] = self._ss[old] = 0.0
                else:
                    self._s[old] -= r
                    self._ss[old] -= r * r
        self.version += 1

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(config index, effective count, sum, sum of squares) of rows with weight > 0."""
        k = len(self._slot)
        n = self._n[:k] / self._w
        keep = n > 0
        return self._index[:k][keep], n[keep], self._s[:k][keep] / self._w, self._ss[:k][keep] / self._w

    def row(self, index: int) -> tuple[float, float]:
        """(effective count, mean) of one configuration; (0, nan) if unseen."""
        slot = self._slot.get(index)
        if slot is None or self._n[slot] <= 0:
            return 0.0, math.nan
        return float(self._n[slot] / self._w), float(self._s[slot] / self._n[slot])

    def noise_std(self, arrays: tuple | None = None) -> float:
        """Pooled within-configuration std of one reward (0.5, the widest for [0, 1], without data)."""
        _, n, s, ss = arrays if arrays is not None else self.arrays()
        big = n >= 2
        if big.any():
            dof = float((n[big] - 1).sum())
            if dof >= 2:
                within = float(np.maximum(ss[big] - s[big] ** 2 / n[big], 0.0).sum())
                return math.sqrt(within / dof)
        total = float(n.sum())
        if total >= 2:
            mean = float(s.sum()) / total
            var = (float(ss.sum()) - total * mean * mean) / (total - 1)
            return math.sqrt(max(var, 0.0)) or 0.5
        return 0.5

    def to_dict(self) -> dict[str, Any]:
        k = len(self._slot)
        out: dict[str, Any] = {
            "index": self._index[:k].tolist(),
            "n": self._n[:k].tolist(),
            "sum": self._s[:k].tolist(),
            "sumsq": self._ss[:k].tolist(),
            "w": self._w,
            "version": self.version,
        }
        if self._window is not None:
            out["window"] = [[a, r] for a, r in self._window]
        return out

    def load(self, data: Mapping[str, Any]) -> None:
        index = [int(i) for i in data["index"]]
        k = len(index)
        cap = max(16, 1 << max(k - 1, 0).bit_length())
        self._slot = {i: s for s, i in enumerate(index)}
        self._index = np.zeros(cap, dtype=np.int64)
        self._index[:k] = index
        for name, key in (("_n", "n"), ("_s", "sum"), ("_ss", "sumsq")):
            arr = np.zeros(cap)
            arr[:k] = np.asarray(data[key], dtype=float)
            setattr(self, name, arr)
        self._w = float(data["w"])
        if self._window is not None:
            self._window = deque((int(a), float(r)) for a, r in data.get("window", []))
        self.version = int(data.get("version", 0))
