"""Reward statistics that can forget: the rules and the per-configuration table of every strategy.

A rule is an option of every strategy (``make_strategy(name, space, stats=Discounted(0.99))``
or ``stats="discounted(0.99)"``), offline and online alike:

* ``Stationary()``: every reward counts forever with weight 1 (the default);
* ``Discounted(gamma)``: each new reward multiplies all earlier weights by ``gamma``
  (Garivier & Moulines 2008, "On upper-confidence bound policies for non-stationary bandit
  problems"); the memory is about ``1 / (1 - gamma)`` rewards;
* ``SlidingWindow(size)``: only the last ``size`` rewards of each table count.

Discounting is lazy: stored values are scaled by ``gamma ** -t`` (renormalised before they
overflow), so a reward costs O(1) however many configurations or arms a table has.
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Union

import numpy as np

from autorag_hp._validation import check_int

__all__ = ["Stationary", "Discounted", "SlidingWindow", "StatsRule", "parse_stats", "JointStats"]

Coords = tuple[int, ...]
_RENORM = 1e150  # rescale lazily discounted values before gamma ** -t overflows


@dataclass(frozen=True)
class Stationary:
    """Every reward counts forever with weight 1."""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "stationary"}

    def __str__(self) -> str:
        return "stationary"


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

    def __str__(self) -> str:
        return f"discounted({float(self.gamma)!r})"


@dataclass(frozen=True)
class SlidingWindow:
    """Only the last ``size`` rewards of each table count."""

    size: int = 1000

    def __post_init__(self) -> None:
        s = self.size
        check_int("size", s, minimum=1)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "window", "size": int(self.size)}

    def __str__(self) -> str:
        return f"window({int(self.size)})"


StatsRule = Union[Stationary, Discounted, SlidingWindow]

_SPEC = re.compile(r"^\s*(stationary|discounted|window)\s*(?:\(\s*(?:(gamma|size)\s*=\s*)?([^)]*?)\s*\))?\s*$")


def parse_stats(value: Any) -> StatsRule:
    """A rule from a rule object, ``None`` (stationary), ``rule.to_dict()`` or a string:
    "stationary", "discounted(0.99)" (or "discounted(gamma=0.99)"), "window(1000)"."""
    if value is None:
        return Stationary()
    if isinstance(value, (Stationary, Discounted, SlidingWindow)):
        return value
    if isinstance(value, Mapping):
        kind = value.get("kind")
        extra = set(value) - {"kind", "gamma", "size"}
        if kind == "stationary" and not extra:
            return Stationary()
        if kind == "discounted" and not extra:
            return Discounted(gamma=value.get("gamma", 0.995))
        if kind == "window" and not extra:
            return SlidingWindow(size=value.get("size", 1000))
    if isinstance(value, str):
        m = _SPEC.match(value)
        if m:
            kind, key, arg = m.groups()
            if kind == "stationary" and not arg:
                return Stationary()
            if kind == "discounted" and key in (None, "gamma"):
                return Discounted(float(arg)) if arg else Discounted()
            if kind == "window" and key in (None, "size") and (not arg or arg.isdigit()):
                return SlidingWindow(int(arg)) if arg else SlidingWindow()
    raise ValueError(
        "stats must be Stationary(), Discounted(gamma), SlidingWindow(size) or a string such as "
        f"'stationary', 'discounted(0.99)', 'window(1000)', got {value!r}"
    )


class JointStats:
    """Sparse per-configuration reward statistics (count, sum, sum of squares) under a rule.

    Under ``Discounted`` the counts are effective (fractional) counts; under ``SlidingWindow``
    only the last ``size`` rewards count and a configuration whose rewards all left the window
    is unpulled again. ``items()``, ``row()`` and ``totals()`` give effective values.
    """

    def __init__(self, rule: StatsRule | None = None) -> None:
        self.rule = parse_stats(rule)
        self._gamma = float(self.rule.gamma) if isinstance(self.rule, Discounted) else 1.0
        self._size = int(self.rule.size) if isinstance(self.rule, SlidingWindow) else 0
        self._window: deque[tuple[Coords, float]] | None = deque() if self._size else None
        self.table: dict[Coords, list[float]] = {}  # raw rows (scaled by self._w when discounted)
        self._total = [0, 0.0, 0.0]
        self._w = 1.0

    def __len__(self) -> int:
        return len(self.table)

    def __contains__(self, coords: object) -> bool:
        return coords in self.table

    def add(self, coords: Coords, reward: float) -> None:
        if self._gamma < 1.0:
            self._w /= self._gamma
            if self._w > _RENORM:
                self._rescale()
        w = self._w
        row = self.table.get(coords)
        if row is None:
            row = self.table[coords] = [0, 0.0, 0.0]
        one = 1 if w == 1.0 else w  # integral counts while nothing is discounted
        row[0] += one
        row[1] += w * reward
        row[2] += w * reward * reward
        t = self._total
        t[0] += one
        t[1] += w * reward
        t[2] += w * reward * reward
        if self._window is not None:
            self._window.append((coords, reward))
            if len(self._window) > self._size:
                self._drop(*self._window.popleft())

    def _drop(self, coords: Coords, reward: float) -> None:
        row = self.table[coords]
        t = self._total
        t[0] -= 1
        t[1] -= reward
        t[2] -= reward * reward
        if row[0] <= 1:  # integral counts in window mode: the configuration is unpulled again
            del self.table[coords]
        else:
            row[0] -= 1
            row[1] -= reward
            row[2] -= reward * reward
        if not self.table:
            self._total = [0, 0.0, 0.0]

    def _rescale(self) -> None:
        inv = 1.0 / self._w
        for coords in list(self.table):
            row = self.table[coords]
            row[0] *= inv
            row[1] *= inv
            row[2] *= inv
            if row[0] <= 0.0:  # forgotten entirely (underflow)
                del self.table[coords]
        self._total = [x * inv for x in self._total]
        self._w = 1.0

    def items(self) -> Iterator[tuple[Coords, tuple[float, float, float]]]:
        """(coords, (count, sum, sum of squares)) of every configuration with rewards."""
        if self._w == 1.0:
            yield from self.table.items()  # type: ignore[misc]
            return
        inv = 1.0 / self._w
        for coords, (n, s, q) in self.table.items():
            yield coords, (n * inv, s * inv, q * inv)

    def row(self, coords: Coords) -> tuple[float, float, float] | None:
        """(count, sum, sum of squares) of one configuration, None if it has no rewards."""
        row = self.table.get(coords)
        if row is None:
            return None
        inv = 1.0 / self._w
        return row[0] * inv, row[1] * inv, row[2] * inv

    def totals(self) -> tuple[float, float, float]:
        """(count, sum, sum of squares) over all configurations."""
        inv = 1.0 / self._w
        n, s, q = self._total
        return (n if inv == 1.0 else n * inv), s * inv, q * inv

    def noise_std(self) -> float:
        """Pooled within-configuration standard deviation of one pull's reward.

        Falls back to the overall spread, then to 0.5 (the largest standard deviation of a
        reward in [0, 1]) when there is nothing to pool.
        """
        ss = 0.0
        dof = 0.0
        for n, s, q in self.table.values():  # raw rows: the scale cancels in ss / dof below
            if n >= 2 * self._w:
                ss += max(q - s * s / n, 0.0)
                dof += n - self._w
        if dof >= 2 * self._w:
            return math.sqrt(ss / dof)
        total_n, total_s, total_q = self.totals()
        if total_n >= 2:
            var = (total_q - total_s**2 / total_n) / (total_n - 1)
            return math.sqrt(max(var, 0.0)) or 0.5
        return 0.5

    def state(self) -> dict[str, Any]:
        """Plain JSON record of the table (``load`` restores it exactly)."""
        out: dict[str, Any] = {
            "rows": [[list(c), n, s, q] for c, (n, s, q) in self.table.items()],
            "total": list(self._total),
            "w": self._w,
        }
        if self._window is not None:
            out["window"] = [[list(c), r] for c, r in self._window]
        return out

    def load(self, state: Mapping[str, Any]) -> None:
        self.table = {tuple(int(x) for x in c): [n, float(s), float(q)] for c, n, s, q in state["rows"]}
        self._total = list(state["total"])
        self._w = float(state["w"])
        if self._window is not None:
            self._window = deque((tuple(int(x) for x in c), float(r)) for c, r in state.get("window", []))
