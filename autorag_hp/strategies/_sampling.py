"""Drawing untried configurations uniformly without enumerating the space."""

from __future__ import annotations

import numpy as np

__all__ = ["LazyPermutation"]


class LazyPermutation:
    """Uniform draws without replacement from ``range(n)`` in O(1) time and O(draws) memory.

    A sparse Fisher-Yates shuffle: ``pop`` draws a random remaining index, ``remove``
    takes a given index out (a configuration tried by other means).
    """

    def __init__(self, n: int) -> None:
        self.remaining = int(n)
        self._swap: dict[int, int] = {}  # position -> value, where it differs from identity
        self._where: dict[int, int] = {}  # value -> position, for moved values

    def __len__(self) -> int:
        return self.remaining

    def _value_at(self, pos: int) -> int:
        return self._swap.get(pos, pos)

    def _pos_of(self, value: int) -> int:
        return self._where.get(value, value)

    def _take(self, pos: int) -> int:
        last = self.remaining - 1
        value = self._value_at(pos)
        tail = self._value_at(last)
        # move the tail value into pos, drop the last slot
        if pos != last:
            self._swap[pos] = tail
            self._where[tail] = pos
        self._swap.pop(last, None)
        self._where.pop(value, None)
        if pos == last:
            self._where.pop(tail, None)
        self.remaining -= 1
        return value

    def pop(self, rng: np.random.Generator) -> int:
        if self.remaining == 0:
            raise IndexError("no remaining values")
        return self._take(int(rng.integers(self.remaining)))

    def peek(self, rng: np.random.Generator) -> int:
        """The value ``pop`` would draw with the same ``rng`` state, left in place (``remove`` takes it)."""
        if self.remaining == 0:
            raise IndexError("no remaining values")
        return self._value_at(int(rng.integers(self.remaining)))

    def state(self) -> dict:
        """Plain JSON record (``load`` restores it)."""
        return {"remaining": self.remaining, "swap": [[p, v] for p, v in self._swap.items()]}

    def load(self, state: dict) -> None:
        self.remaining = int(state["remaining"])
        self._swap = {int(p): int(v) for p, v in state["swap"]}
        self._where = {v: p for p, v in self._swap.items()}

    def remove(self, value: int) -> bool:
        """Take ``value`` out if it is still there; return whether it was."""
        pos = self._pos_of(value)
        if pos >= self.remaining or self._value_at(pos) != value:
            return False
        self._take(pos)
        return True
