"""Cost-quality trade-offs: Pareto sets with confidence intervals from per-question outcomes.

A run (or a full grid) leaves, per configuration, per-question outcomes of several
objectives: ``quality`` (higher is better), ``tokens`` (prompt tokens) and ``latency``
(seconds), both lower is better. :class:`ParetoSet` summarises them per configuration
(mean, ``confidence`` interval, count), keeps the configurations no other dominates on the
means (the front), and the wider set no other dominates *with confidence* (every interval
of the dominating configuration lies beyond the other's: ``plausible``).
:meth:`ParetoSet.best` answers the scalarised question ``max w * quality - (1 - w) *
tokens / t_max`` (AutoRAG-HP's reward, :func:`autorag_hp.objective.reward`) for any ``w``
from the same numbers, without new calls: its maximiser always lies on the front.

Numpy only, like the rest of the core.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from autorag_hp.objective import check_t_max, check_w, reward

__all__ = [
    "OBJECTIVES",
    "ParetoPoint",
    "ParetoSet",
    "pareto_mask",
    "pareto_recall",
    "check_objectives",
]

# objective -> (per-question record field, +1 to maximise / -1 to minimise)
OBJECTIVES: dict[str, tuple[str, int]] = {
    "quality": ("quality", +1),
    "tokens": ("prompt_tokens", -1),
    "latency": ("latency_s", -1),
}


def check_objectives(objectives: Any) -> tuple[str, ...]:
    """``"quality,tokens"`` or a sequence of names: at least two known, distinct names, quality first."""
    names = [s.strip() for s in objectives.split(",")] if isinstance(objectives, str) else list(objectives or ())
    bad = [n for n in names if n not in OBJECTIVES]
    if bad or len(names) < 2 or len(set(names)) != len(names) or names[0] != "quality":
        raise ValueError(
            f"objectives must list 'quality' first and then at least one of {list(OBJECTIVES)[1:]}, "
            f"each once, e.g. 'quality,tokens'; got {objectives!r}"
        )
    return tuple(names)


_BROADCAST_LIMIT = 4_000_000  # pareto_mask compares every pair at once up to this many (rows^2 x objectives)


def pareto_mask(values: np.ndarray, senses: Sequence[int]) -> np.ndarray:
    """True for the rows of ``values`` (configurations x objectives) that no other row dominates.

    ``senses[j]`` is +1 when objective j is maximised, -1 when minimised. Row a dominates
    row b when a is at least as good on every objective and better on one; equal rows do
    not dominate each other (both stay on the front).
    """
    v = np.asarray(values, dtype=float)
    if v.ndim != 2 or v.shape[1] != len(senses):
        raise ValueError(f"values must be a 2-D array with one column per sense ({len(senses)}), got shape {v.shape}")
    g = v * np.asarray(senses, dtype=float)[None, :]  # all maximised
    n = len(g)
    if n * n * g.shape[1] <= _BROADCAST_LIMIT:  # small: every pair at once, row i (axis 0) against row k (axis 1)
        ge = np.ones((n, n), dtype=bool)  # row k at least as good as row i on every objective
        gt = np.zeros((n, n), dtype=bool)  # row k better than row i on some objective
        for j in range(g.shape[1]):
            ge &= g[None, :, j] >= g[:, j, None]
            gt |= g[None, :, j] > g[:, j, None]
        return ~np.any(ge & gt, axis=1)
    # large: best first on the first objective, each row against the front kept so far (a row can
    # only be dominated by one sorted before it, and then also by a front member)
    order = np.lexsort(tuple(-g[:, j] for j in reversed(range(g.shape[1]))))
    keep = np.zeros(n, dtype=bool)
    front = np.empty_like(g)
    m = 0
    for i in order:
        row, f = g[i], front[:m]
        if m and np.any(np.all(f >= row, axis=1) & np.any(f > row, axis=1)):
            continue
        keep[i] = True
        front[m] = row
        m += 1
    return keep


@dataclass(frozen=True)
class ParetoPoint:
    """One configuration's objectives: mean, ``confidence`` interval and count per objective."""

    index: int
    config: dict[str, Any]
    mean: dict[str, float]
    ci: dict[str, tuple[float, float]]
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "config": self.config, "mean": self.mean,
                "ci": {k: list(v) for k, v in self.ci.items()}, "n": self.n}


@dataclass
class ParetoSet:
    """Per-configuration summaries of several objectives, and their Pareto front.

    Build with :meth:`from_records` (per-question records, e.g. ``Outcome.details``) or
    :meth:`from_means` (known means, e.g. a model's posterior or a full grid).
    """

    objectives: tuple[str, ...]
    indices: np.ndarray  # configuration index of each row
    means: np.ndarray  # rows x objectives
    low: np.ndarray
    high: np.ndarray
    counts: np.ndarray
    configs: list[dict[str, Any]]
    t_max: float | None = None
    confidence: float = 0.95
    _front: np.ndarray | None = field(default=None, repr=False)

    @property
    def senses(self) -> list[int]:
        return [OBJECTIVES[o][1] for o in self.objectives]

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_records(
        cls,
        records: Mapping[int, Sequence[Mapping[str, Any]]],
        *,
        space: Any,
        objectives: Sequence[str] | str = ("quality", "tokens"),
        t_max: float | None = None,
        confidence: float = 0.95,
    ) -> "ParetoSet":
        """``records[config_index]``: that configuration's per-question records, each with the
        fields of :data:`OBJECTIVES` (``quality``, ``prompt_tokens``, ``latency_s``).
        Intervals are mean +- z * sd / sqrt(n) (normal; a single record gets a zero-width one)."""
        objs = check_objectives(objectives)
        _check_confidence(confidence)
        if not records:
            raise ValueError("records must hold at least one configuration, got none")
        z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
        idx, means, low, high, counts = [], [], [], [], []
        for i, rows in sorted(records.items()):
            if not rows:
                continue
            cols = []
            for o in objs:
                key = OBJECTIVES[o][0]
                try:
                    x = np.array([float(r[key]) for r in rows])
                except (KeyError, TypeError, ValueError):
                    raise ValueError(f"records[{i}]: every record needs a number in {key!r} for objective {o!r}") from None
                if not np.isfinite(x).all():
                    raise ValueError(f"records[{i}]: {key!r} must be finite, got {x[~np.isfinite(x)][0]!r}")
                cols.append(x)
            n = len(rows)
            m = np.array([c.mean() for c in cols])
            sd = np.array([c.std(ddof=1) if n > 1 else 0.0 for c in cols])
            half = z * sd / math.sqrt(n)
            idx.append(int(i))
            means.append(m)
            low.append(m - half)
            high.append(m + half)
            counts.append(n)
        return cls(objs, np.array(idx), np.array(means), np.array(low), np.array(high), np.array(counts),
                   [space.config(i) for i in idx], t_max=None if t_max is None else check_t_max(t_max),
                   confidence=confidence)

    @classmethod
    def from_means(
        cls,
        means: np.ndarray,
        *,
        space: Any,
        objectives: Sequence[str] | str = ("quality", "tokens"),
        indices: Sequence[int] | None = None,
        half_widths: np.ndarray | None = None,
        counts: Sequence[int] | None = None,
        t_max: float | None = None,
        confidence: float = 0.95,
    ) -> "ParetoSet":
        """From known means (rows x objectives), e.g. a whole grid (``indices`` default: 0..n-1)."""
        objs = check_objectives(objectives)
        _check_confidence(confidence)
        m = np.asarray(means, dtype=float)
        if m.ndim != 2 or m.shape[1] != len(objs) or not np.isfinite(m).all():
            raise ValueError(f"means must be a finite 2-D array with one column per objective {list(objs)}, "
                             f"got shape {m.shape}")
        idx = np.arange(len(m)) if indices is None else np.asarray(indices, dtype=int)
        h = np.zeros_like(m) if half_widths is None else np.asarray(half_widths, dtype=float)
        c = np.zeros(len(m), dtype=int) if counts is None else np.asarray(counts)
        return cls(objs, idx, m, m - h, m + h, c, [space.config(int(i)) for i in idx],
                   t_max=None if t_max is None else check_t_max(t_max), confidence=confidence)

    # -- queries ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.indices)

    def _point(self, r: int) -> ParetoPoint:
        return ParetoPoint(
            index=int(self.indices[r]), config=self.configs[r],
            mean={o: float(self.means[r, j]) for j, o in enumerate(self.objectives)},
            ci={o: (float(self.low[r, j]), float(self.high[r, j])) for j, o in enumerate(self.objectives)},
            n=int(self.counts[r]),
        )

    def front_rows(self) -> np.ndarray:
        if self._front is None:
            self._front = np.flatnonzero(pareto_mask(self.means, self.senses))
        return self._front

    @property
    def front(self) -> list[ParetoPoint]:
        """The configurations no other dominates on the means, by increasing cost (the first
        minimised objective)."""
        rows = self.front_rows()
        rows = rows[np.argsort(self.means[rows, 1], kind="stable")]
        return [self._point(int(r)) for r in rows]

    @property
    def plausible(self) -> list[ParetoPoint]:
        """The configurations no other dominates with confidence: b is out when some a's
        worst-case interval end beats b's best-case end on every objective (strictly on one)."""
        s = np.asarray(self.senses, dtype=float)[None, :]
        worst = np.where(s > 0, self.low, -self.high)  # a's pessimistic value, maximised
        best = np.where(s > 0, self.high, -self.low)  # b's optimistic value, maximised
        out = []
        for b in range(len(self)):
            dominated = np.all(worst >= best[b], axis=1) & np.any(worst > best[b], axis=1)
            dominated[b] = False
            if not dominated.any():
                out.append(b)
        rows = np.array(out, dtype=int)
        rows = rows[np.argsort(self.means[rows, 1], kind="stable")]
        return [self._point(int(r)) for r in rows]

    def best(self, w: float, *, t_max: float | None = None) -> ParetoPoint:
        """The configuration maximising ``w * quality - (1 - w) * tokens / t_max`` on the means
        (``objectives`` must hold quality and tokens; ``t_max`` defaults to the set's).
        Ties go to the cheaper configuration, then the lower index."""
        return self.rank(w, t_max=t_max)[0]

    def rank(self, w: float, *, t_max: float | None = None, n: int | None = None) -> list[ParetoPoint]:
        """Every configuration (or the first ``n``) by ``w * quality - (1 - w) * tokens / t_max``, best first."""
        w = check_w(w)
        if "tokens" not in self.objectives:
            raise ValueError(f"best(w) scalarises quality and tokens, but the objectives are {list(self.objectives)}")
        t_max = t_max if t_max is not None else self.t_max
        if t_max is None:
            raise ValueError("t_max must be given (best(w, t_max=...)) when the set was built without one")
        q = self.means[:, self.objectives.index("quality")]
        t = self.means[:, self.objectives.index("tokens")]
        r = reward(q, t, w=w, t_max=t_max)
        order = np.lexsort((self.indices, t, -r))[:n]
        return [self._point(int(i)) for i in order]

    def to_dict(self) -> dict[str, Any]:
        return {"objectives": list(self.objectives), "confidence": self.confidence, "t_max": self.t_max,
                "front": [p.to_dict() for p in self.front], "plausible": [p.index for p in self.plausible]}


def _check_confidence(confidence: Any) -> None:
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ValueError(f"confidence must be a number in (0, 1), got {confidence!r}")


def pareto_recall(found: Sequence[int], truth: np.ndarray, senses: Sequence[int], *,
                  scale: Sequence[float] | None = None, tol: float = 0.005) -> float:
    """Share of the true Pareto configurations found.

    ``truth`` holds the true objective values of every configuration (rows by index);
    ``found`` the configuration indices a run puts on its front. A true Pareto configuration
    counts as found when ``found`` holds it or a configuration whose true values are within
    ``tol`` of its own on every objective after dividing by ``scale`` (a tie: e.g. scale
    ``(1, t_max)`` compares quality and tokens / t_max).
    """
    v = np.asarray(truth, dtype=float)
    sc = np.ones(v.shape[1]) if scale is None else np.asarray(scale, dtype=float)
    front = np.flatnonzero(pareto_mask(v, senses))
    got = np.asarray(sorted(set(int(i) for i in found)), dtype=int)
    if len(got) == 0:
        return 0.0
    hits = 0
    for p in front:
        close = np.all(np.abs(v[got] - v[p]) / sc <= tol + 1e-12, axis=1)
        hits += bool(close.any())
    return hits / len(front)
