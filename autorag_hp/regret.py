"""Regret and the paper's Recall@x against a grid-search ground truth.

``GroundTruth`` holds every configuration's true mean reward (from a full grid).
Recall@x (AutoRAG-HP, Sec. 4) is the share of a strategy's top-x recommendations that
are among grid search's top-x; configurations tied with grid's x-th best count as in
its top-x, so near-ties are not punished arbitrarily.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from autorag_hp.space import SearchSpace

__all__ = ["GroundTruth", "RegretLog"]


class GroundTruth:
    """True mean reward of every configuration, indexed like ``space``."""

    def __init__(self, space: SearchSpace, means: Sequence[float] | np.ndarray, *, tie_tol: float = 1e-12) -> None:
        means = np.asarray(means, dtype=float)
        if means.shape != (len(space),):
            raise ValueError(f"means must have one value per configuration ({len(space)}), got shape {means.shape}")
        if not np.isfinite(means).all():
            bad = int(np.flatnonzero(~np.isfinite(means))[0])
            raise ValueError(f"means must be finite; configuration {space.config(bad)} has {means[bad]!r}")
        self.space = space
        self.means = means
        self.tie_tol = tie_tol
        self.best_value = float(means.max())
        self._order = np.argsort(-means, kind="stable")

    def value(self, config: Mapping[str, Any]) -> float:
        return float(self.means[self.space.index(config)])

    def regret(self, config: Mapping[str, Any]) -> float:
        return self.best_value - self.value(config)

    def top_indices(self, x: int) -> np.ndarray:
        """Indices of grid search's top-x, including every configuration tied with the x-th."""
        x = min(int(x), len(self.means))
        threshold = self.means[self._order[x - 1]] - self.tie_tol
        return np.flatnonzero(self.means >= threshold)

    def top_configs(self, x: int) -> list[dict[str, Any]]:
        return [self.space.config(int(i)) for i in self._order[:x]]

    def recall_at(self, configs: Iterable[Mapping[str, Any]], x: int) -> float:
        """Share of the first ``x`` of ``configs`` that lie in grid search's top-x."""
        if x < 1:
            raise ValueError(f"x must be >= 1, got {x!r}")
        top = set(self.top_indices(x).tolist())
        picked = [self.space.index(c) for c in list(configs)[:x]]
        return sum(1 for i in picked if i in top) / x

    def rank(self, config: Mapping[str, Any]) -> int:
        """1-based rank of a configuration by true mean (1 = best; ties share the better rank)."""
        v = self.value(config)
        return int((self.means > v + self.tie_tol).sum()) + 1


@dataclass
class RegretLog:
    """Per-pull regret of a run against a ground truth; ``rows`` are written as CSV/JSON."""

    truth: GroundTruth
    grid_calls: int

    def __post_init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.cumulative = 0.0
        self.calls = 0

    def add(self, pull: int, config: Mapping[str, Any], reward: float, calls: int, best_config=None) -> dict[str, Any]:
        true = self.truth.value(config)
        regret = self.truth.best_value - true
        self.cumulative += regret
        self.calls += calls
        row = {
            "pull": pull,
            "config": dict(config),
            "reward": reward,
            "true_mean": true,
            "regret": regret,
            "cumulative_regret": self.cumulative,
            "calls": self.calls,
            "calls_share": self.calls / self.grid_calls,
        }
        if best_config is not None:
            row["simple_regret"] = self.truth.regret(best_config)
        self.rows.append(row)
        return row
