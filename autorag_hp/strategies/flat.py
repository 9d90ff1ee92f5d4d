"""Flat bandits over the enumerated joint configurations: UCB1 and Thompson sampling.

Every configuration is an arm. Untried configurations come first, drawn uniformly at
random without replacement (no enumeration); afterwards each ask scores all arms, so
the cost of a step grows linearly with the size of the space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from autorag_hp.strategies._base import Coords, Proposal, Strategy
from autorag_hp.strategies._policies import ArmSet, Thompson, UCB
from autorag_hp.strategies._sampling import LazyPermutation
from autorag_hp.strategies._stats import Discounted, SlidingWindow, Stationary
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


_MAX_ARMS = 5_000_000


class _Flat(Strategy):
    forgets = (Stationary, Discounted, SlidingWindow)
    online = True

    def __init__(self, space, *, seed=0, **options):
        super().__init__(space, seed=seed, **options)
        if len(space) > _MAX_ARMS:
            raise ValueError(
                f"strategy {self.name!r} keeps one arm per configuration and needs "
                f"len(space) <= {_MAX_ARMS:,}, got {len(space):,}; use 'hier-ts' or 'hier-ucb'"
            )
        self.arms = ArmSet(len(space), self.stats_rule)
        self.untried = LazyPermutation(len(space))
        self.policy = self._policy()

    def _policy(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def propose(self) -> Proposal:
        """An untried configuration while there are any, else the policy's arm; the tag is the arm."""
        if len(self.untried):
            i = self.untried.peek(self.rng)
        else:
            i = self.policy.select(self.arms, self.rng)
        return Proposal(self.space.coords_of_index(i), int(i))

    def _commit(self, coords: Coords, tag) -> None:
        i = self.space.index_of_coords(coords)
        self.untried.remove(i)
        if tag is not None:
            self.arms.pending[i] += 1

    def _expire(self, coords: Coords, tag) -> None:
        i = self.space.index_of_coords(coords)
        if tag is not None and self.arms.pending[i] > 0:
            self.arms.pending[i] -= 1

    def _update(self, coords: Coords, reward: float, tag) -> None:
        i = self.space.index_of_coords(coords)
        self.untried.remove(i)
        self.arms.decay()
        self.arms.update(i, reward, was_pending=tag is not None)

    def _state(self) -> dict:
        return {"arms": self.arms.state(), "untried": self.untried.state()}

    def _load(self, state) -> None:
        self.arms.load(state["arms"])
        self.untried.load(state["untried"])


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
