"""Random search: uniform configurations, each tried once before any repeats."""

from __future__ import annotations

from dataclasses import dataclass

from autorag_hp.strategies._base import Coords, Strategy
from autorag_hp.strategies._sampling import LazyPermutation

__all__ = ["RandomSearch"]


@dataclass(frozen=True)
class RandomOptions:
    pass


class RandomSearch(Strategy):
    """Draws untried configurations uniformly; once all are tried, draws uniformly with replacement."""

    name = "random"
    Options = RandomOptions

    def __init__(self, space, *, seed=0, **options):
        super().__init__(space, seed=seed, **options)
        self.untried = LazyPermutation(len(space))

    def _ask(self) -> Coords:
        if len(self.untried):
            i = self.untried.pop(self.rng)
        else:
            i = int(self.rng.integers(len(self.space)))
        return self.space.coords_of_index(i)

    def _update(self, coords: Coords, reward: float, was_pending: bool) -> None:
        self.untried.remove(self.space.index_of_coords(coords))
