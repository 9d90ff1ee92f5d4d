"""Online selection policies: the offline strategies' rules over forgetting statistics.

Each policy splits a step in two so that a journal replay rebuilds the exact state:
``propose()`` uses the random generator and changes nothing; ``on_suggest`` /
``on_reward`` / ``on_expire`` change the state from what the journal records.
A *tag* (JSON-able) carries what a suggestion's reward must update later.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import random
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Literal, Mapping

import numpy as np

from autorag_hp.online._stats import ArmTable, JointTable, StatsRule
from autorag_hp.space import SearchSpace
from autorag_hp.strategies._base import build_options
from autorag_hp.strategies._policies import Thompson, UCB
from autorag_hp.strategies._sampling import LazyPermutation
from autorag_hp.strategies.flat import FlatTSOptions as TSOptions
from autorag_hp.strategies.flat import FlatUCBOptions  # the offline options, shared

__all__ = ["OnlinePolicy", "Rng", "make_policy", "list_online_strategies"]

_MAX_FLAT_ARMS = 5_000_000


def _check_nonneg(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


class Rng:
    """The two seeded generators a policy draws from: numpy for large tables, ``random`` for
    small ones (a numpy call costs more than the whole computation on a handful of arms)."""

    __slots__ = ("np", "py")

    def __init__(self, seed: Any) -> None:
        self.np = np.random.default_rng(seed)
        self.py = random.Random(int(self.np.integers(2**63)))


def _argmax(scores: list[float], rng: random.Random) -> int:
    best = max(scores)
    ties = [i for i, v in enumerate(scores) if v == best]
    return ties[0] if len(ties) == 1 else ties[rng.randrange(len(ties))]


def select(table: ArmTable, rule: UCB | Thompson, rng: Rng) -> int:
    """The arm ``rule`` picks: the offline rule itself on large tables, the same formulas in
    plain Python on small ones (see ``autorag_hp.strategies._policies``)."""
    if not table.small:
        return int(rule.select(table.view(), rng.np))
    n, s, ss = table.effective()
    pend = table.pending
    k = table.k
    untried = [i for i in range(k) if n[i] + pend[i] == 0]
    if untried:
        return untried[0] if len(untried) == 1 else untried[rng.py.randrange(len(untried))]
    r = rng.py
    if isinstance(rule, UCB):
        tried = [i for i in range(k) if n[i] > 0]
        q = [s[i] / n[i] if n[i] > 0 else 0.0 for i in range(k)]
        if len(tried) < k:
            fill = sum(q[i] for i in tried) / len(tried) if tried else 0.0
            q = [q[i] if n[i] > 0 else fill for i in range(k)]
        n_eff = [n[i] + pend[i] for i in range(k)]
        log_t = math.log(max(sum(n_eff), 1.0))
        a = rule.alpha
        return _argmax([q[i] + a * math.sqrt(log_t / n_eff[i]) for i in range(k)], r)
    if rule.posterior == "beta":
        return _argmax([r.betavariate(1.0 + max(s[i], 0.0), 1.0 + max(n[i] - s[i], 0.0)) for i in range(k)], r)
    # Normal-Inverse-Gamma posterior, exactly as Thompson.sample
    total = sum(n)
    if total > 0:
        mu0 = sum(s) / total
        var0 = max((sum(ss) - total * mu0 * mu0) / max(total - 1, 1), 1e-6) if total > 1 else 0.25
    else:
        mu0, var0 = 0.0, 0.25
    k0 = rule.prior_strength
    a0 = 1.0 + k0 / 2.0
    b0 = var0 * (a0 - 1.0) if a0 > 1 else var0
    draws = []
    for i in range(k):
        ni = n[i]
        if ni > 0:
            xbar = s[i] / ni
            ssi = max(ss[i] - ni * xbar * xbar, 0.0)
        else:
            xbar, ssi = mu0, 0.0
        kn = k0 + ni
        mun = (k0 * mu0 + ni * xbar) / kn
        an = a0 + ni / 2.0
        bn = b0 + 0.5 * ssi + k0 * ni * (xbar - mu0) ** 2 / (2.0 * kn)
        sigma2 = bn / r.gammavariate(an, 1.0)
        draws.append(mun + r.gauss(0.0, 1.0) * math.sqrt(sigma2 / kn))
    return _argmax(draws, r)


@dataclass(frozen=True)
class HierUCBOptions:
    """UCB1 exploration weights of the upper (group) and lower (value) bandits."""

    alpha_upper: float = 1.0
    alpha_lower: float = 1.0

    def __post_init__(self) -> None:
        for f in ("alpha_upper", "alpha_lower"):
            _check_nonneg(f, getattr(self, f))


@dataclass(frozen=True)
class NoOptions:
    pass


class OnlinePolicy(abc.ABC):
    """Chooses configurations (by index) and learns from rewards under a forgetting rule."""

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions

    def __init__(self, space: SearchSpace, rule: StatsRule, **options: Any) -> None:
        options_obj = build_options(self.name, self.Options, options)
        self.space = space
        self.rule = rule
        self.options = options_obj
        self.joint = JointTable(rule)

    def check_reward(self, reward: float) -> None:
        """Extra validation of a finite reward (a Beta posterior needs [0, 1])."""
        if getattr(self.options, "posterior", None) == "beta" and not 0.0 <= reward <= 1.0:
            raise ValueError(f"reward must lie in [0, 1] with posterior='beta', got {reward!r}")

    @abc.abstractmethod
    def propose(self, rng: Rng) -> tuple[int, Any]:
        """(configuration index, tag) of the next suggestion; no state change."""

    @abc.abstractmethod
    def on_suggest(self, index: int, tag: Any) -> None: ...

    @abc.abstractmethod
    def on_reward(self, index: int, tag: Any, reward: float) -> None:
        """A reward for ``index``; ``tag`` None means it was not our suggestion (warm start)."""

    @abc.abstractmethod
    def on_expire(self, index: int, tag: Any) -> None: ...

    def state(self) -> dict[str, Any]:
        return {"joint": self.joint.to_dict()}

    def load(self, state: Mapping[str, Any]) -> None:
        self.joint.load(state["joint"])


class _Hierarchical(OnlinePolicy):
    """Hier-MAB of AutoRAG-HP as in ``autorag_hp.strategies.hierarchical``: the upper bandit
    picks a group, that group's bandit picks its arm, the other groups keep the values of
    the previous suggestion."""

    def __init__(self, space: SearchSpace, rule: StatsRule, **options: Any) -> None:
        super().__init__(space, rule, **options)
        self.groups = space.groups
        pos = {name: i for i, name in enumerate(space.names)}
        self._group_pos = [tuple(pos[p] for p in g.params) for g in self.groups]
        self.upper = ArmTable(len(self.groups), rule)
        self.lower = [ArmTable(g.size, rule) for g in self.groups]
        self.upper_rule, self.lower_rule = self._rules()
        self.current: list[int] = [0] * len(space.names)  # set by the tuner from its seeded rng

    def _rules(self) -> tuple[Any, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _arm_of(self, g: int, coords: Any) -> int:
        idx = 0
        for p, size in zip(self._group_pos[g], self.groups[g].sizes):
            idx = idx * size + coords[p]
        return idx

    def _set_arm(self, g: int, coords: list[int], arm: int) -> None:
        for p, size in zip(reversed(self._group_pos[g]), reversed(self.groups[g].sizes)):
            arm, r = divmod(arm, size)
            coords[p] = r

    def propose(self, rng: Rng) -> tuple[int, Any]:
        g = select(self.upper, self.upper_rule, rng)
        arm = select(self.lower[g], self.lower_rule, rng)
        coords = list(self.current)
        self._set_arm(g, coords, arm)
        return self.space.index_of_coords(coords), [int(g), int(arm)]

    def on_suggest(self, index: int, tag: Any) -> None:
        self.current = list(self.space.coords_of_index(index))
        if tag is not None:
            g, arm = tag
            self.upper.pending[g] += 1
            self.lower[g].pending[arm] += 1

    def _tick(self) -> None:
        self.upper.decay()
        for t in self.lower:
            t.decay()

    def on_reward(self, index: int, tag: Any, reward: float) -> None:
        self._tick()
        if tag is not None:
            g, arm = tag
            self.upper.add(g, reward)
            self.lower[g].add(arm, reward)
            self._unpend(g, arm)
        else:  # says something about every group's value, nothing about which group to move
            coords = self.space.coords_of_index(index)
            for g, table in enumerate(self.lower):
                table.add(self._arm_of(g, coords), reward)
        self.joint.add(index, reward)

    def _unpend(self, g: int, arm: int) -> None:
        if self.upper.pending[g] > 0:
            self.upper.pending[g] -= 1
        if self.lower[g].pending[arm] > 0:
            self.lower[g].pending[arm] -= 1

    def on_expire(self, index: int, tag: Any) -> None:
        if tag is not None:
            self._unpend(*tag)

    def state(self) -> dict[str, Any]:
        return {
            **super().state(),
            "upper": self.upper.to_dict(),
            "lower": [t.to_dict() for t in self.lower],
            "current": list(self.current),
        }

    def load(self, state: Mapping[str, Any]) -> None:
        super().load(state)
        self.upper.load(state["upper"])
        for t, d in zip(self.lower, state["lower"], strict=True):
            t.load(d)
        self.current = [int(c) for c in state["current"]]


class HierUCB(_Hierarchical):
    name = "hier-ucb"
    Options = HierUCBOptions

    def _rules(self):
        return UCB(self.options.alpha_upper), UCB(self.options.alpha_lower)


class HierTS(_Hierarchical):
    name = "hier-ts"
    Options = TSOptions

    def _rules(self):
        ts = Thompson(self.options.posterior, self.options.prior_strength)
        return ts, ts


class _Flat(OnlinePolicy):
    """Every configuration is an arm; untried ones first, drawn without replacement."""

    def __init__(self, space: SearchSpace, rule: StatsRule, **options: Any) -> None:
        super().__init__(space, rule, **options)
        if len(space) > _MAX_FLAT_ARMS:
            raise ValueError(
                f"strategy {self.name!r} keeps one arm per configuration and needs "
                f"len(space) <= {_MAX_FLAT_ARMS}, got {len(space)}; use 'hier-ts' or 'hier-ucb'"
            )
        self.arms = ArmTable(len(space), rule)
        self.untried = LazyPermutation(len(space))
        self.select_rule = self._rule()

    def _rule(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def propose(self, rng: Rng) -> tuple[int, Any]:
        if len(self.untried):
            return self.untried._value_at(rng.py.randrange(len(self.untried))), 1
        return select(self.arms, self.select_rule, rng), 1

    def on_suggest(self, index: int, tag: Any) -> None:
        self.untried.remove(index)
        if tag is not None:
            self.arms.pending[index] += 1

    def on_reward(self, index: int, tag: Any, reward: float) -> None:
        self.untried.remove(index)
        self.arms.decay()
        self.arms.add(index, reward)
        if tag is not None and self.arms.pending[index] > 0:
            self.arms.pending[index] -= 1
        self.joint.add(index, reward)

    def on_expire(self, index: int, tag: Any) -> None:
        if tag is not None and self.arms.pending[index] > 0:
            self.arms.pending[index] -= 1

    def state(self) -> dict[str, Any]:
        return {
            **super().state(),
            "arms": self.arms.to_dict(),
            "untried": {"remaining": self.untried.remaining, "swap": list(self.untried._swap.items())},
        }

    def load(self, state: Mapping[str, Any]) -> None:
        super().load(state)
        self.arms.load(state["arms"])
        perm = LazyPermutation(len(self.space))
        perm.remaining = int(state["untried"]["remaining"])
        perm._swap = {int(p): int(v) for p, v in state["untried"]["swap"]}
        perm._where = {v: p for p, v in perm._swap.items()}
        self.untried = perm


class FlatUCB(_Flat):
    name = "flat-ucb"
    Options = FlatUCBOptions

    def _rule(self):
        return UCB(self.options.alpha)


class FlatTS(_Flat):
    name = "flat-ts"
    Options = TSOptions

    def _rule(self):
        return Thompson(self.options.posterior, self.options.prior_strength)


class RandomPolicy(OnlinePolicy):
    """Uniform over the space, with replacement (a baseline; learns only for ``best``)."""

    name = "random"

    def propose(self, rng: Rng) -> tuple[int, Any]:
        return rng.py.randrange(len(self.space)), None

    def on_suggest(self, index: int, tag: Any) -> None:
        pass

    def on_reward(self, index: int, tag: Any, reward: float) -> None:
        self.joint.add(index, reward)

    def on_expire(self, index: int, tag: Any) -> None:
        pass


_REGISTRY: dict[str, Callable[..., OnlinePolicy]] = {
    "hier-ts": HierTS,
    "hier-ucb": HierUCB,
    "flat-ts": FlatTS,
    "flat-ucb": FlatUCB,
    "random": RandomPolicy,
}


def list_online_strategies() -> list[str]:
    """Strategy names :class:`~autorag_hp.online.OnlineTuner` accepts."""
    return list(_REGISTRY)


def make_policy(name: str, space: SearchSpace, rule: StatsRule, **options: Any) -> OnlinePolicy:
    if name not in _REGISTRY:
        raise ValueError(f"strategy must be one of {list(_REGISTRY)} for online tuning, got {name!r}")
    return _REGISTRY[name](space, rule, **options)
