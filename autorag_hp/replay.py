"""Replay a full grid as an objective: the bandit-vs-grid benchmark without new LLM calls.

A table has one row per configuration (its mean metric) or one row per configuration
and question (per-question outcomes, as ``autorag-hp grid`` writes). With per-question
rows a pull samples ``batch`` real questions; with mean-only rows it draws ``batch``
Bernoulli (metric in [0, 1]) or Gaussian outcomes around the mean.
"""

from __future__ import annotations

import csv
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from autorag_hp.objective import Outcome
from autorag_hp.regret import GroundTruth
from autorag_hp.space import SearchSpace

__all__ = ["ReplayTable", "TableObjective", "load_rows"]


def _parse(value: str) -> Any:
    """CSV cell -> bool, int, float or str."""
    if isinstance(value, (numbers.Number, bool)):
        return value
    v = value.strip()
    if v in ("True", "true"):
        return True
    if v in ("False", "false"):
        return False
    try:
        return int(v)
    except ValueError:
        pass
    try:
        return float(v)
    except ValueError:
        return v


def load_rows(path: str | Path) -> list[dict[str, Any]]:
    """Read a CSV (stdlib) or Parquet (pandas + pyarrow) table into a list of dict rows."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"table {str(p)!r} does not exist")
    if p.suffix == ".parquet":
        try:
            import pandas as pd
        except ModuleNotFoundError as exc:  # pragma: no cover
            raise ModuleNotFoundError("reading Parquet needs `pip install 'autorag-hp[tables]'`") from exc
        return pd.read_parquet(p).to_dict("records")
    if p.suffix != ".csv":
        raise ValueError(f"table must be a .csv or .parquet file, got {str(p)!r}")
    with open(p, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = []
        for lineno, row in enumerate(reader, start=2):
            if None in row or any(v is None for v in row.values()):
                raise ValueError(f"{p}: line {lineno} has {len(row)} cells, the header has {len(reader.fieldnames or [])}")
            rows.append({k: _parse(v) for k, v in row.items()})
    if not rows:
        raise ValueError(f"{p}: the table has no rows")
    return rows


@dataclass
class ReplayTable:
    """A complete grid: ``outcomes[config_index, question]`` rewards (per-question), or ``means`` alone."""

    space: SearchSpace
    means: np.ndarray
    outcomes: np.ndarray | None = None  # shape (n_configs, n_questions)
    questions: tuple[str, ...] = ()
    bounded: bool = True  # every per-question reward lies in [0, 1]
    grid_questions: int = 10  # questions grid search spends per configuration (mean-only tables)

    @property
    def n_questions(self) -> int:
        return self.outcomes.shape[1] if self.outcomes is not None else self.grid_questions

    @property
    def grid_calls(self) -> int:
        """Calls grid search spends: every configuration on every question."""
        return len(self.space) * self.n_questions

    def truth(self) -> GroundTruth:
        return GroundTruth(self.space, self.means)

    def objective(self, *, batch: int = 4, seed: int = 0, noise: Literal["auto", "bernoulli", "gaussian"] = "auto",
                  noise_std: float = 0.1) -> "TableObjective":
        return TableObjective(self, batch=batch, seed=seed, noise=noise, noise_std=noise_std)

    @classmethod
    def from_rows(
        cls,
        rows: Sequence[Mapping[str, Any]],
        *,
        params: Sequence[str],
        metric: str,
        cost: str | None = None,
        w: float = 1.0,
        t_max: float | None = None,
        question_col: str = "question_id",
        grid_questions: int = 10,
        source: str = "table",
        groups: Mapping[str, Sequence[str]] | None = None,
    ) -> "ReplayTable":
        """Build from rows. reward = w * metric - (1 - w) * cost / t_max (AutoRAG-HP eq. 1);
        without ``cost`` the reward is the metric. ``t_max`` defaults to the table's largest cost."""
        if not rows:
            raise ValueError(f"{source}: the table has no rows")
        if not params:
            raise ValueError("params must name at least one column")
        if not (isinstance(w, (int, float)) and 0.0 <= w <= 1.0):
            raise ValueError(f"w must lie in [0, 1], got {w!r}")
        columns = set(rows[0])
        for name, col in [("param", p) for p in params] + [("metric", metric)] + ([("cost", cost)] if cost else []):
            if col not in columns:
                raise ValueError(f"{source}: {name} column {col!r} is missing; columns: {sorted(columns)}")
        per_question = question_col in columns
        values: dict[str, list[Any]] = {p: [] for p in params}
        seen: dict[str, set] = {p: set() for p in params}
        metric_v = np.empty(len(rows))
        cost_v = np.zeros(len(rows))
        for i, row in enumerate(rows):
            for p in params:
                v = row[p]
                if v not in seen[p]:
                    seen[p].add(v)
                    values[p].append(v)
            for col, arr in ((metric, metric_v), (cost, cost_v)):
                if col is None:
                    continue
                x = row[col]
                if isinstance(x, bool) or not isinstance(x, numbers.Real) or not math.isfinite(x):
                    raise ValueError(f"{source}: row {i + 2} column {col!r} must be a finite number, got {x!r}")
                arr[i] = float(x)
        space = SearchSpace({p: sorted(values[p], key=lambda v: (isinstance(v, str), v)) for p in params}, groups=groups)
        if cost:
            if t_max is None:
                t_max = float(cost_v.max()) or 1.0
            if not (isinstance(t_max, (int, float)) and t_max > 0):
                raise ValueError(f"t_max must be > 0, got {t_max!r}")
            reward = w * metric_v - (1.0 - w) * cost_v / t_max
        else:
            reward = metric_v
        cfg_idx = np.array([space.index({p: row[p] for p in params}) for row in rows])
        if per_question:
            qids: dict[Any, int] = {}
            q_idx = np.array([qids.setdefault(row[question_col], len(qids)) for row in rows])
            out = np.full((len(space), len(qids)), np.nan)
            flat = cfg_idx * len(qids) + q_idx
            if len(np.unique(flat)) != len(rows):
                dup = int(np.flatnonzero(np.bincount(flat) > 1)[0])
                c, q = divmod(dup, len(qids))
                raise ValueError(f"{source}: configuration {space.config(c)} has more than one row for question {list(qids)[q]!r}")
            out.reshape(-1)[flat] = reward
            if np.isnan(out).any():
                c, q = map(int, np.argwhere(np.isnan(out))[0])
                raise ValueError(f"{source}: no row for configuration {space.config(c)} and question {list(qids)[q]!r}")
            bounded = bool(((reward >= 0) & (reward <= 1)).all())
            return cls(space, out.mean(axis=1), out, tuple(map(str, qids)), bounded, grid_questions)
        means = np.full(len(space), np.nan)
        if len(np.unique(cfg_idx)) != len(rows):
            dup = int(np.flatnonzero(np.bincount(cfg_idx) > 1)[0])
            raise ValueError(f"{source}: configuration {space.config(dup)} has more than one row (add a {question_col!r} column for per-question rows)")
        means[cfg_idx] = reward
        if np.isnan(means).any():
            raise ValueError(f"{source}: no row for configuration {space.config(int(np.flatnonzero(np.isnan(means))[0]))}")
        bounded = bool(((means >= 0) & (means <= 1)).all())
        return cls(space, means, None, (), bounded, grid_questions)

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> "ReplayTable":
        return cls.from_rows(load_rows(path), source=str(path), **kwargs)


class TableObjective:
    """Scores a configuration from the table; randomness comes from (seed, pull) only."""

    def __init__(self, table: ReplayTable, *, batch: int = 4, seed: int = 0,
                 noise: Literal["auto", "bernoulli", "gaussian"] = "auto", noise_std: float = 0.1) -> None:
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be a positive integer, got {batch!r}")
        if table.outcomes is not None and batch > table.n_questions:
            raise ValueError(f"batch must be <= the table's {table.n_questions} questions, got {batch}")
        if noise not in ("auto", "bernoulli", "gaussian"):
            raise ValueError(f"noise must be 'auto', 'bernoulli' or 'gaussian', got {noise!r}")
        if noise == "auto":
            noise = "bernoulli" if table.bounded else "gaussian"
        if noise == "bernoulli" and table.outcomes is None and not table.bounded:
            raise ValueError("noise='bernoulli' needs means in [0, 1]; use noise='gaussian'")
        self.table = table
        self.batch = batch
        self.seed = seed
        self.noise = noise
        self.noise_std = noise_std

    def __call__(self, config: Mapping[str, Any], pull: int) -> Outcome:
        i = self.table.space.index(config)
        rng = np.random.default_rng([self.seed, pull, 0x5EED])
        if self.table.outcomes is not None:
            q = rng.choice(self.table.n_questions, size=self.batch, replace=False)
            reward = float(self.table.outcomes[i, q].mean())
        elif self.noise == "bernoulli":
            reward = float(rng.binomial(self.batch, self.table.means[i]) / self.batch)
        else:
            reward = float(self.table.means[i] + rng.standard_normal() * self.noise_std / math.sqrt(self.batch))
        return Outcome(reward=reward, calls=self.batch)
