"""Flat bandits over the enumerated joint configurations: UCB1 and Thompson sampling.

Every configuration is an arm. Untried configurations come first, drawn uniformly at
random without replacement (no enumeration); afterwards each ask scores all arms, so
the cost of a step grows linearly with the size of the space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from autorag_hp.strategies._base import Coords, Strategy
from autorag_hp.strategies._policies import ArmSet, Thompson, UCB
from autorag_hp.strategies._sampling import LazyPermutation
from autorag_hp.strategies.hierarchical import _check_nonneg

__all__ = ["FlatUCB", "FlatTS"]


@dataclass(frozen=True)
class FlatUCBOptions:
    """``alpha``: UCB1 exploration weight."""

    alpha: float = 1.0

    def __post_init__(self) -> None:
        _check_nonneg("alpha", self.alpha)


@dataclass(frozen=True)
class FlatTSOptions:
    """``posterior``: "gaussian" (any real reward) or "beta" (rewards in [0, 1])."""

    posterior: Literal["gaussian", "beta"] = "gaussian"
    prior_strength: float = 1.0

    def __post_init__(self) -> None:
        Thompson(self.posterior, self.prior_strength)


class _Flat(Strategy):
    def __init__(self, space, *, seed=0, **options):
        super().__init__(space, seed=seed, **options)
        self.arms = ArmSet(len(space))
        self.untried = LazyPermutation(len(space))
        self.policy = self._policy()

    def _policy(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _ask(self) -> Coords:
        if len(self.untried):
            i = self.untried.pop(self.rng)
        else:
            i = self.policy.select(self.arms, self.rng)
        self.arms.pending[i] += 1
        return self.space.coords_of_index(i)

    def _update(self, coords: Coords, reward: float, was_pending: bool) -> None:
        i = self.space.index_of_coords(coords)
        self.untried.remove(i)
        self.arms.update(i, reward, was_pending=was_pending)


class FlatUCB(_Flat):
    """UCB1 (Auer et al., 2002) over all configurations."""

    name = "flat-ucb"
    Options = FlatUCBOptions

    def _policy(self):
        return UCB(self.options.alpha)


class FlatTS(_Flat):
    """Thompson sampling over all configurations."""

    name = "flat-ts"
    Options = FlatTSOptions

    def _policy(self):
        return Thompson(self.options.posterior, self.options.prior_strength)

    def _check_reward(self, reward: float) -> None:
        if self.options.posterior == "beta" and not 0.0 <= reward <= 1.0:
            raise ValueError(f"reward must lie in [0, 1] with posterior='beta', got {reward!r}")
