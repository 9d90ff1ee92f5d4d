"""Random search: uniform configurations, each tried once before any repeats."""

from __future__ import annotations

from dataclasses import dataclass

from autorag_hp.strategies._base import Coords, Proposal, Strategy
from autorag_hp.strategies._sampling import LazyPermutation
from autorag_hp.strategies._stats import Discounted, SlidingWindow, Stationary

__all__ = ["RandomSearch"]


@dataclass(frozen=True)
class RandomOptions:
    pass


class RandomSearch(Strategy):
    """Draws untried configurations uniformly; once all are tried, draws uniformly with replacement.

    It learns only for ``best``, whose statistics follow the ``stats`` rule."""

    name = "random"
    Options = RandomOptions
    forgets = (Stationary, Discounted, SlidingWindow)
    online = True

    def __init__(self, space, *, seed=0, **options):
        super().__init__(space, seed=seed, **options)
        self.untried = LazyPermutation(len(space))

    def propose(self) -> Proposal:
        if len(self.untried):
            i = self.untried.peek(self.rng)
        else:
            i = int(self.rng.integers(len(self.space)))
        return Proposal(self.space.coords_of_index(i))

    def _commit(self, coords: Coords, tag) -> None:
        self.untried.remove(self.space.index_of_coords(coords))

    def _update(self, coords: Coords, reward: float, tag) -> None:
        self.untried.remove(self.space.index_of_coords(coords))

    def _state(self) -> dict:
        return {"untried": self.untried.state()}

    def _load(self, state) -> None:
        self.untried.load(state["untried"])
