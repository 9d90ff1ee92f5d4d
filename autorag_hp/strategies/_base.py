"""The ask/tell contract every strategy implements, and the bookkeeping they share."""

from __future__ import annotations

import abc
import dataclasses
import math
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import statistics

import numpy as np

from autorag_hp._seeds import generator
from autorag_hp._validation import check_int, check_positive_int
from autorag_hp.objective import check_reward
from autorag_hp.space import SearchSpace
from autorag_hp.strategies._stats import JointStats, Stationary, StatsRule, parse_stats

__all__ = ["Strategy", "Proposal", "Recommendation", "SpaceExhausted", "Coords", "pull_count"]

Coords = tuple[int, ...]
_OLDEST = object()  # tell(): answer the oldest pending ask of the configuration


class SpaceExhausted(RuntimeError):
    """Raised by ``ask`` when a strategy has nothing left to propose (e.g. a finished grid)."""


@dataclass(frozen=True)
class Proposal:
    """What ``propose`` suggests: the configuration's coordinates and a JSON-able ``tag`` that
    tells the strategy, when the reward comes, which of its arms the proposal came from."""

    coords: Coords
    tag: Any = None


@dataclass(frozen=True)
class Recommendation:
    """A configuration the strategy believes is good, with its estimate and interval.
    ``pulls`` is fractional under forgetting statistics (an effective count)."""

    config: dict[str, Any]
    mean: float
    pulls: int | float
    ci_low: float
    ci_high: float

    @property
    def ci(self) -> tuple[float, float]:
        return (self.ci_low, self.ci_high)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Options:
    """Base for each strategy's options; subclasses add fields and validate in ``__post_init__``."""


def build_options(strategy: str, options_cls: type, options: dict[str, Any]) -> Any:
    """``options_cls(**options)``, with unknown names rejected by a message listing the known ones."""
    fields = {f.name for f in dataclasses.fields(options_cls)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise ValueError(f"strategy {strategy!r}: unknown option {unknown[0]!r}; known options: {sorted(fields)}")
    return options_cls(**options)


def _rng_record(rng: np.random.Generator) -> dict[str, Any]:
    """The generator's state as plain JSON: its 128-bit integers as decimal strings (many JSON
    encoders stop at 64 bits)."""
    st = dict(rng.bit_generator.state)
    st["state"] = {k: str(v) for k, v in st["state"].items()}
    return st


def _rng_from_record(record: Mapping[str, Any]) -> dict[str, Any]:
    st = dict(record)
    st["state"] = {k: int(v) for k, v in st["state"].items()}
    return st


def pull_count(n: float) -> int | float:
    """A (possibly effective) pull count: an int when it is whole."""
    return int(n) if float(n).is_integer() else float(n)


def normal_mixture_quantile(weights: np.ndarray, centres: np.ndarray, sds: np.ndarray, q: float) -> np.ndarray:
    """``q``-quantile of each column's mixture ``sum_j weights[j] N(centres[j], sds[j]^2)``
    (arrays of shape (components, entries); bisection to float precision)."""
    from scipy.special import ndtr

    sds = np.maximum(sds, 1e-300)
    lo = (centres - 9 * sds).min(axis=0)
    hi = (centres + 9 * sds).max(axis=0)
    for _ in range(64):
        mid = 0.5 * (lo + hi)
        below = (weights * ndtr((mid - centres) / sds)).sum(axis=0) < q
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return 0.5 * (lo + hi)


def argmax_random(values: np.ndarray, rng: np.random.Generator) -> int:
    """Index of the maximum, ties broken uniformly at random by ``rng``."""
    m = values.max()
    ties = np.flatnonzero(values == m)
    if len(ties) == 1:
        return int(ties[0])
    return int(ties[rng.integers(len(ties))])


class Strategy(abc.ABC):
    """Ask/tell interface shared by every strategy.

    Subclasses set ``name``, an ``Options`` dataclass, and implement ``propose`` and
    ``_update``; they may override ``_commit``, ``_expire`` and ``best``. The base class
    validates input, tracks pending (asked but not yet told) configurations with the tag
    of the proposal each came from, and keeps per-configuration statistics (under the
    ``stats`` forgetting rule) that every strategy's ``best`` can use.

    ``ask`` is ``commit(propose())``. The two halves exist for online use
    (:class:`~autorag_hp.online.OnlineTuner`): ``propose`` only draws from ``self.rng``;
    ``commit``, ``tell``, ``observe`` and ``expire`` change the state from what a journal
    records, and ``state``/``load`` snapshot it as a plain JSON record. Strategies that
    implement these hooks and can forget set ``online = True``.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type] = Options
    confidence: ClassVar[float] = 0.95
    forgets: ClassVar[tuple[type, ...]] = (Stationary,)  # statistics rules the strategy accepts
    online: ClassVar[bool] = False  # propose/commit/expire/state/load usable by the online tuner
    default_sampling: ClassVar[str] = "iid"  # how a Study samples questions unless told (objective.SAMPLING_MODES)
    default_batch: ClassVar[int] = 4  # questions per pull of a Study unless told

    def __init__(self, space: SearchSpace, *, seed: int = 0, stats: Any = None, **options: Any) -> None:
        if not isinstance(space, SearchSpace):
            raise ValueError(f"space must be a SearchSpace, got {type(space).__name__}")
        check_int("seed", seed, minimum=0)
        rule = parse_stats(stats)
        if not isinstance(rule, self.forgets):
            kinds = ", ".join(f"{k.__name__}()" for k in self.forgets)
            raise ValueError(f"strategy {self.name!r}: stats must be one of {kinds}, got {rule!r}")
        options_obj = build_options(self.name, self.Options, options)
        self.space = space
        self.seed = int(seed)
        self.options = options_obj
        self.stats_rule: StatsRule = rule
        self.rng = np.random.default_rng(self.seed)
        self.stats = JointStats(rule)
        self.pending: dict[Coords, deque[Any]] = {}  # coords -> tags of its pending asks, oldest first
        self.n_told = 0
        self.n_asked = 0

    # -- public API ---------------------------------------------------------------------
    def ask(self) -> dict[str, Any]:
        """Propose the next configuration to evaluate."""
        proposal = self.propose()
        self.commit(proposal)
        return self.space.config_from_coords(proposal.coords)

    def ask_batch(self, n: int) -> list[dict[str, Any]]:
        """Propose ``n`` configurations to evaluate in parallel (pending ones count as pulled)."""
        check_positive_int("n", n)
        return [self.ask() for _ in range(int(n))]

    def tell(self, config: Mapping[str, Any], reward: float, *, tag: Any = _OLDEST) -> None:
        """Report the reward of a configuration (usually one returned by ``ask``).

        The reward answers the oldest pending ask of that configuration, or the pending ask
        committed with ``tag`` when one is given (online feedback); a configuration with no
        pending ask counts as an observation. Raises ValueError for a configuration outside
        the space, a reward that is not a finite number or a ``tag`` that is not pending;
        the state is then unchanged.
        """
        coords = self.space.coords(config)
        value = self.validate_reward(reward)
        queue = self.pending.get(coords)
        if tag is _OLDEST:
            if queue:
                self._learn(coords, value, queue[0], queue)
            else:
                self._learn(coords, value, None, None)
            return
        if not queue or tag not in queue:
            raise ValueError(f"tag {tag!r} is not a pending ask of {self.space.config_from_coords(coords)!r}")
        self._learn(coords, value, tag, queue)

    def answer(self, proposal: Proposal, reward: float) -> None:
        """``tell`` for a committed proposal, by coordinates (no configuration to validate):
        how the online tuner reports feedback. ValueError if it is not pending."""
        self._answer(proposal, self.validate_reward(reward))

    def _answer(self, proposal: Proposal, value: float) -> None:
        """``answer`` of a reward that ``validate_reward`` returned (the online tuner validates
        each reward once, before it journals it)."""
        coords = tuple(proposal.coords)
        queue = self.pending.get(coords)
        if not queue or proposal.tag not in queue:
            raise ValueError(f"{proposal!r} is not a pending ask")
        self._learn(coords, value, proposal.tag, queue)

    def _answer_many(self, proposals: list[Proposal], values: list[float]) -> None:
        """``_answer`` for each pair in order (the online tuner's feedback batches); a strategy
        may do it faster as long as the state is the same."""
        for proposal, value in zip(proposals, values):
            self._answer(proposal, value)

    def observe(self, config: Mapping[str, Any], reward: float) -> None:
        """Count a reward for a configuration that no pending ask stands for (e.g. measured
        elsewhere); pending asks of the same configuration stay pending."""
        coords = self.space.coords(config)
        value = self.validate_reward(reward)
        self._learn(coords, value, None, None)

    def validate_reward(self, reward: Any) -> float:
        """The reward as a float, or ValueError naming the rule it breaks (finite; [0, 1] for a
        Beta posterior)."""
        value = check_reward(reward)
        self._check_reward(value)
        return value

    @abc.abstractmethod
    def propose(self) -> Proposal:
        """The next configuration and its tag; draws from ``self.rng`` and changes nothing else
        (``commit`` counts it as asked). May raise :class:`SpaceExhausted`."""

    def propose_batch(self, n: int) -> list[Proposal] | None:
        """``n`` proposals drawn together, for a batch whose proposals are then committed in
        this order, or None when the strategy has no such draw at this moment (the caller then
        proposes and commits one at a time). Draws from ``self.rng`` and changes nothing else.
        Each proposal must be one that ``propose`` could make after the previous ones were
        committed, drawn from the same distribution; the draws may come in another order, so
        the values need not be those of ``n`` calls of ``propose``. Offline ``ask_batch``
        does not use it (the online tuner's batches do)."""
        return None

    def commit(self, proposal: Proposal) -> None:
        """Count ``proposal`` as asked: its reward is awaited (``tell``) unless it expires (``expire``)."""
        coords = tuple(proposal.coords)
        self._commit(coords, proposal.tag)
        queue = self.pending.get(coords)
        if queue is None:
            queue = self.pending[coords] = deque()
        queue.append(proposal.tag)
        self.n_asked += 1

    def commit_many(self, proposals: list[Proposal]) -> None:
        """``commit`` each of ``proposals`` in order (the same state; one call for a batch)."""
        for proposal in proposals:
            self.commit(proposal)

    def expire(self, proposal: Proposal) -> None:
        """Forget a committed proposal whose reward will never come (ValueError if not pending)."""
        coords = tuple(proposal.coords)
        queue = self.pending.get(coords)
        if not queue or proposal.tag not in queue:
            raise ValueError(f"{proposal!r} is not a pending ask")
        self._expire(coords, proposal.tag)
        self._unpend(coords, proposal.tag, queue)

    def best(self, n: int = 1) -> list[Recommendation]:
        """The ``n`` configurations with the highest estimated mean reward."""
        n = self._check_n(n)
        ranked = self._rank_pulled()
        return ranked[:n] if len(ranked) >= n else ranked + self._fill(n - len(ranked), ranked)

    def describe(self) -> dict[str, Any]:
        """Name, options and seed: what the journal records to rebuild this strategy
        (``options`` include ``stats`` when the statistics forget)."""
        options = dataclasses.asdict(self.options)
        if not isinstance(self.stats_rule, Stationary):
            options["stats"] = str(self.stats_rule)
        return {"strategy": self.name, "options": options, "seed": self.seed}

    def state(self) -> dict[str, Any]:
        """Everything the strategy knows, as a plain JSON record; ``load`` restores it exactly
        (the next proposals included: the generator's state is part of it)."""
        return {
            "strategy": self.name,
            "n_told": self.n_told,
            "n_asked": self.n_asked,
            "rng": _rng_record(self.rng),
            "stats": self.stats.state(),
            "pending": [[list(c), list(q)] for c, q in self.pending.items()],
            "own": self._state(),
        }

    def load(self, state: Mapping[str, Any]) -> None:
        """Restore a ``state()`` record of the same strategy over the same space."""
        if state.get("strategy") != self.name:
            raise ValueError(f"state is of strategy {state.get('strategy')!r}, not {self.name!r}")
        self._load(state["own"])
        self.n_told = int(state["n_told"])
        self.n_asked = int(state["n_asked"])
        self.rng.bit_generator.state = _rng_from_record(state["rng"])
        self.stats.load(state["stats"])
        self.pending = {tuple(int(x) for x in c): deque(q) for c, q in state["pending"]}

    # -- for subclasses -------------------------------------------------------------------
    def _commit(self, coords: Coords, tag: Any) -> None:
        """Bookkeeping when a proposal (possibly replaced by the caller) is used."""

    @abc.abstractmethod
    def _update(self, coords: Coords, reward: float, tag: Any) -> None:
        """Learn from a validated reward. ``tag``: the committed proposal's tag, None when
        the reward is not for a pending ask."""

    def _expire(self, coords: Coords, tag: Any) -> None:
        """Undo ``_commit``'s pending bookkeeping for an ask that will never be told."""

    def _state(self) -> dict[str, Any]:
        raise NotImplementedError(f"strategy {self.name!r} has no state snapshot (it is not usable online)")

    def _load(self, state: Mapping[str, Any]) -> None:
        raise NotImplementedError(f"strategy {self.name!r} has no state snapshot (it is not usable online)")

    def _check_reward(self, reward: float) -> None:
        """Extra validation of a finite reward (e.g. a Beta posterior needs [0, 1])."""

    def _learn(self, coords: Coords, value: float, tag: Any, queue: deque | None) -> None:
        self._update(coords, value, tag)
        if queue is not None:
            self._unpend(coords, tag, queue)
        self.stats.add(coords, value)
        self.n_told += 1

    def _unpend(self, coords: Coords, tag: Any, queue: deque) -> None:
        if queue[0] == tag:
            queue.popleft()
        else:
            queue.remove(tag)
        if not queue:
            del self.pending[coords]

    def _check_n(self, n: int) -> int:
        check_positive_int("n", n)
        return int(min(n, len(self.space)))

    def _tiebreak_rng(self) -> np.random.Generator:
        """A generator for ties in ``best``: seeded, but separate from ``self.rng`` so that
        calling ``best`` never changes what ``ask`` proposes next."""
        return generator("tie-break", self.seed, self.n_told)

    def _z(self) -> float:
        return statistics.NormalDist().inv_cdf(0.5 + self.confidence / 2)

    def _rank_pulled(self) -> list[Recommendation]:
        """Rank pulled configurations by their own mean (ties: more pulls first, then random)."""
        if not len(self.stats):
            return []
        sigma = self.stats.noise_std()
        z = self._z()
        items = list(self.stats.items())
        means = np.array([s / n for _, (n, s, _) in items])
        pulls = np.array([n for _, (n, _, _) in items])
        jitter = self._tiebreak_rng().random(len(items))
        order = np.lexsort((jitter, -pulls, -means))
        out = []
        for i in order:
            coords, (n, s, _) = items[i]
            half = z * sigma / math.sqrt(n)
            out.append(Recommendation(self.space.config_from_coords(coords), s / n, pull_count(n), s / n - half, s / n + half))
        return out

    def _fill(self, k: int, taken: list[Recommendation]) -> list[Recommendation]:
        """Unpulled configurations to complete ``best(n)``, in index order (no estimate: NaN mean)."""
        seen = {self.space.key(r.config) for r in taken}
        out: list[Recommendation] = []
        i = 0
        while len(out) < k and i < len(self.space):
            cfg = self.space.config(i)
            if self.space.key(cfg) not in seen:
                out.append(Recommendation(cfg, math.nan, 0, -math.inf, math.inf))
            i += 1
        return out
