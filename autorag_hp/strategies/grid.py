"""Grid search: every configuration once, in index order, ``repeats`` times over."""

from __future__ import annotations

from dataclasses import dataclass

from autorag_hp._validation import check_positive_int
from autorag_hp.strategies._base import Coords, Proposal, SpaceExhausted, Strategy

__all__ = ["GridSearch"]


@dataclass(frozen=True)
class GridOptions:
    """``repeats``: how many passes over the space before ``ask`` raises SpaceExhausted."""

    repeats: int = 1

    def __post_init__(self) -> None:
        check_positive_int("repeats", self.repeats)


class GridSearch(Strategy):
    """Deterministic order (mixed-radix index, last parameter fastest); no duplicates within a pass."""

    name = "grid"
    Options = GridOptions

    def __init__(self, space, *, seed=0, **options):
        super().__init__(space, seed=seed, **options)
        self.position = 0

    def propose(self) -> Proposal:
        total = len(self.space) * self.options.repeats
        if self.position >= total:
            raise SpaceExhausted(
                f"grid search finished its {self.options.repeats} pass(es) over {len(self.space)} configurations"
            )
        return Proposal(self.space.coords_of_index(self.position % len(self.space)))

    def _commit(self, coords: Coords, tag) -> None:
        self.position += 1

    def _update(self, coords: Coords, reward: float, tag) -> None:
        pass
