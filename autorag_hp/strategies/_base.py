"""The ask/tell contract every strategy implements, and the bookkeeping they share."""

from __future__ import annotations

import abc
import dataclasses
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import statistics

import numpy as np

from autorag_hp.objective import check_reward
from autorag_hp.space import SearchSpace

__all__ = ["Strategy", "Recommendation", "SpaceExhausted", "Coords"]

Coords = tuple[int, ...]


class SpaceExhausted(RuntimeError):
    """Raised by ``ask`` when a strategy has nothing left to propose (e.g. a finished grid)."""


@dataclass(frozen=True)
class Recommendation:
    """A configuration the strategy believes is good, with its estimate and interval."""

    config: dict[str, Any]
    mean: float
    pulls: int
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


def argmax_random(values: np.ndarray, rng: np.random.Generator) -> int:
    """Index of the maximum, ties broken uniformly at random by ``rng``."""
    m = values.max()
    ties = np.flatnonzero(values == m)
    if len(ties) == 1:
        return int(ties[0])
    return int(ties[rng.integers(len(ties))])


class JointStats:
    """Sparse per-configuration reward statistics (count, sum, sum of squares)."""

    def __init__(self) -> None:
        self.table: dict[Coords, list[float]] = {}
        self.total_n = 0
        self.total_sum = 0.0
        self.total_sumsq = 0.0

    def add(self, coords: Coords, reward: float) -> None:
        row = self.table.get(coords)
        if row is None:
            row = self.table[coords] = [0, 0.0, 0.0]
        row[0] += 1
        row[1] += reward
        row[2] += reward * reward
        self.total_n += 1
        self.total_sum += reward
        self.total_sumsq += reward * reward

    def noise_std(self) -> float:
        """Pooled within-configuration standard deviation of one pull's reward.

        Falls back to the overall spread, then to 0.5 (the largest standard deviation of a
        reward in [0, 1]) when there is nothing to pool.
        """
        ss = 0.0
        dof = 0
        for n, s, q in self.table.values():
            if n >= 2:
                ss += max(q - s * s / n, 0.0)
                dof += int(n) - 1
        if dof >= 2:
            return math.sqrt(ss / dof)
        if self.total_n >= 2:
            var = (self.total_sumsq - self.total_sum**2 / self.total_n) / (self.total_n - 1)
            return math.sqrt(max(var, 0.0)) or 0.5
        return 0.5


class Strategy(abc.ABC):
    """Ask/tell interface shared by every strategy.

    Subclasses set ``name``, an ``Options`` dataclass, and implement ``_ask`` and
    ``_update``; they may override ``best``. The base class validates input, tracks
    pending (asked but not yet told) configurations and keeps per-configuration
    statistics that every strategy's ``best`` can use.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type] = Options
    confidence: ClassVar[float] = 0.95

    def __init__(self, space: SearchSpace, *, seed: int = 0, **options: Any) -> None:
        if not isinstance(space, SearchSpace):
            raise ValueError(f"space must be a SearchSpace, got {type(space).__name__}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        options_obj = build_options(self.name, self.Options, options)
        self.space = space
        self.seed = int(seed)
        self.options = options_obj
        self.rng = np.random.default_rng(self.seed)
        self.stats = JointStats()
        self.pending: Counter[Coords] = Counter()
        self.n_told = 0
        self.n_asked = 0

    # -- public API ---------------------------------------------------------------------
    def ask(self) -> dict[str, Any]:
        """Propose the next configuration to evaluate."""
        coords = self._ask()
        self.pending[coords] += 1
        self.n_asked += 1
        return self.space.config_from_coords(coords)

    def ask_batch(self, n: int) -> list[dict[str, Any]]:
        """Propose ``n`` configurations to evaluate in parallel (pending ones count as pulled)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        return [self.ask() for _ in range(int(n))]

    def tell(self, config: Mapping[str, Any], reward: float) -> None:
        """Report the reward of a configuration (usually one returned by ``ask``).

        Raises ValueError for a configuration outside the space or a reward that is not a
        finite number; the state is then unchanged.
        """
        coords = self.space.coords(config)
        value = check_reward(reward)
        self._check_reward(value)
        was_pending = self.pending[coords] > 0
        self._update(coords, value, was_pending)
        if was_pending:
            self.pending[coords] -= 1
            if self.pending[coords] == 0:
                del self.pending[coords]
        else:
            self.pending.pop(coords, None)
        self.stats.add(coords, value)
        self.n_told += 1

    def best(self, n: int = 1) -> list[Recommendation]:
        """The ``n`` configurations with the highest estimated mean reward."""
        n = self._check_n(n)
        ranked = self._rank_pulled()
        return ranked[:n] if len(ranked) >= n else ranked + self._fill(n - len(ranked), ranked)

    def describe(self) -> dict[str, Any]:
        """Name, options and seed: what the journal records to rebuild this strategy."""
        return {"strategy": self.name, "options": dataclasses.asdict(self.options), "seed": self.seed}

    # -- for subclasses -------------------------------------------------------------------
    @abc.abstractmethod
    def _ask(self) -> Coords:
        """Return the coordinates of the next configuration."""

    @abc.abstractmethod
    def _update(self, coords: Coords, reward: float, was_pending: bool) -> None:
        """Learn from a validated reward. ``was_pending``: it answers one of our asks."""

    def _check_reward(self, reward: float) -> None:
        """Extra validation of a finite reward (e.g. a Beta posterior needs [0, 1])."""

    def _check_n(self, n: int) -> int:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        return int(min(n, len(self.space)))

    def _tiebreak_rng(self) -> np.random.Generator:
        """A generator for ties in ``best``: seeded, but separate from ``self.rng`` so that
        calling ``best`` never changes what ``ask`` proposes next."""
        return np.random.default_rng([self.seed, self.n_told, 0xBE57])

    def _z(self) -> float:
        return statistics.NormalDist().inv_cdf(0.5 + self.confidence / 2)

    def _rank_pulled(self) -> list[Recommendation]:
        """Rank pulled configurations by their own mean (ties: more pulls first, then random)."""
        if not self.stats.table:
            return []
        sigma = self.stats.noise_std()
        z = self._z()
        items = list(self.stats.table.items())
        means = np.array([s / n for _, (n, s, _) in items])
        pulls = np.array([n for _, (n, _, _) in items])
        jitter = self._tiebreak_rng().random(len(items))
        order = np.lexsort((jitter, -pulls, -means))
        out = []
        for i in order:
            coords, (n, s, _) = items[i]
            half = z * sigma / math.sqrt(n)
            out.append(Recommendation(self.space.config_from_coords(coords), s / n, int(n), s / n - half, s / n + half))
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
