"""Grid tables replayed as objectives: the bandit-vs-grid benchmark without new LLM calls.

A table has one row per configuration (its mean metric) or one row per configuration
and question (per-question outcomes, as ``autorag-hp grid`` writes). With per-question
rows a pull samples ``batch`` real questions; with mean-only rows it draws ``batch``
Bernoulli (metric in [0, 1]) or Gaussian outcomes around the mean.

:func:`load_grid` reads a grid CSV with its JSON sidecar (``<name>.json`` beside
``<name>.csv``) into a :class:`LoadedGrid`: the table, its ground truth and its space in
the sidecar's parameter and value order.
"""

from __future__ import annotations

import csv
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from autorag_hp._seeds import generator
from autorag_hp._validation import check_positive_int
from autorag_hp.objective import Outcome, PairedSampling, check_sampling, check_t_max, check_w, reward
from autorag_hp.regret import GroundTruth
from autorag_hp.space import SearchSpace

__all__ = ["ReplayTable", "TableObjective", "LoadedGrid", "load_grid", "load_rows", "read_sidecar", "default_grid_path",
           "describe_table"]


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
                  noise_std: float = 0.1, sampling: str = "iid") -> "TableObjective":
        return TableObjective(self, batch=batch, seed=seed, noise=noise, noise_std=noise_std, sampling=sampling)

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
        space: SearchSpace | None = None,
    ) -> "ReplayTable":
        """Build from rows. reward = w * metric - (1 - w) * cost / t_max (AutoRAG-HP eq. 1,
        :func:`autorag_hp.objective.reward`); without ``cost`` the reward is the metric.
        ``t_max`` defaults to the table's largest cost.

        ``space`` fixes the parameter and value order (configuration indices) as given, e.g.
        the space the grid was made with; without it the values are taken in sorted order
        and ``groups`` names the hierarchy.
        """
        if not rows:
            raise ValueError(f"{source}: the table has no rows")
        if not params:
            raise ValueError("params must name at least one column")
        w = check_w(w)
        if space is not None:
            if list(space.names) != list(params):
                raise ValueError(f"{source}: params {list(params)} must equal the space's parameters "
                                 f"{list(space.names)}, in the same order")
            groups = None
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
        if space is None:
            space = SearchSpace({p: sorted(values[p], key=lambda v: (isinstance(v, str), v)) for p in params},
                                groups=groups)
        if cost:
            if t_max is None:
                t_max = float(cost_v.max()) or 1.0
            rewards = reward(metric_v, cost_v, w=w, t_max=check_t_max(t_max))
        else:
            rewards = metric_v
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
            out.reshape(-1)[flat] = rewards
            if np.isnan(out).any():
                c, q = map(int, np.argwhere(np.isnan(out))[0])
                raise ValueError(f"{source}: no row for configuration {space.config(c)} and question {list(qids)[q]!r}")
            bounded = bool(((rewards >= 0) & (rewards <= 1)).all())
            return cls(space, out.mean(axis=1), out, tuple(map(str, qids)), bounded, grid_questions)
        means = np.full(len(space), np.nan)
        if len(np.unique(cfg_idx)) != len(rows):
            dup = int(np.flatnonzero(np.bincount(cfg_idx) > 1)[0])
            raise ValueError(f"{source}: configuration {space.config(dup)} has more than one row (add a {question_col!r} column for per-question rows)")
        means[cfg_idx] = rewards
        if np.isnan(means).any():
            raise ValueError(f"{source}: no row for configuration {space.config(int(np.flatnonzero(np.isnan(means))[0]))}")
        bounded = bool(((means >= 0) & (means <= 1)).all())
        return cls(space, means, None, (), bounded, grid_questions)

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> "ReplayTable":
        return cls.from_rows(load_rows(path), source=str(path), **kwargs)


class TableObjective(PairedSampling):
    """Scores a configuration from the table; randomness comes from (seed, pull) only."""

    def __init__(self, table: ReplayTable, *, batch: int = 4, seed: int = 0,
                 noise: Literal["auto", "bernoulli", "gaussian"] = "auto", noise_std: float = 0.1,
                 sampling: str = "iid") -> None:
        check_positive_int("batch", batch)
        self.sampling = check_sampling(sampling)
        if sampling == "paired" and table.outcomes is None:
            raise ValueError("sampling='paired' needs a per-question table (this one holds means only)")
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
        if self.sampling == "paired":
            q = self.paired_indices(self.table.n_questions, self.batch, seed=self.seed, pull=pull)
            return Outcome(reward=float(self.table.outcomes[i, q].mean()), calls=self.batch)
        rng = generator("questions", self.seed, pull)
        if self.table.outcomes is not None:
            q = rng.choice(self.table.n_questions, size=self.batch, replace=False)
            value = float(self.table.outcomes[i, q].mean())
        elif self.noise == "bernoulli":
            value = float(rng.binomial(self.batch, self.table.means[i]) / self.batch)
        else:
            value = float(self.table.means[i] + rng.standard_normal() * self.noise_std / math.sqrt(self.batch))
        return Outcome(reward=value, calls=self.batch)


def default_grid_path() -> Path:
    """The embedded default grid shipped in the package (``autorag_hp/data/default_grid.csv``)."""
    from importlib import resources

    return Path(str(resources.files("autorag_hp") / "data" / "default_grid.csv"))


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """The JSON sidecar of a grid table (``<name>.json`` beside ``<name>.csv``), or {} if there is none."""
    import json

    side = Path(path).with_suffix(".json")
    if not side.is_file():
        return {}
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{side}: the grid sidecar is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{side}: the grid sidecar must hold a JSON object, got {type(meta).__name__}")
    return meta


@dataclass(frozen=True)
class LoadedGrid:
    """A grid table read back with its sidecar: the replay table, its ground truth and settings."""

    table: ReplayTable
    truth: GroundTruth
    space: SearchSpace
    metric: str
    w: float
    t_max: float | None  # None when the reward has no cost term
    cost: str | None
    path: Path
    meta: Mapping[str, Any]


def _sidecar_space(meta: Mapping[str, Any], params: Sequence[str]) -> SearchSpace | None:
    """The space recorded in the sidecar, in ``params`` order with its values in recorded order."""
    recorded = meta.get("space")
    if not isinstance(recorded, Mapping):
        return None
    values = recorded.get("params") if isinstance(recorded.get("params"), Mapping) else recorded
    if not all(p in values for p in params):
        return None
    groups = recorded.get("groups")
    if groups and not all(p in params for members in groups.values() for p in members):
        groups = None
    return SearchSpace({p: list(values[p]) for p in params}, groups=groups)


def load_grid(
    path: str | Path,
    *,
    params: Sequence[str] | None = None,
    metric: str | None = None,
    cost: str | None = None,
    w: float | None = None,
    t_max: float | None = None,
    question_col: str = "question_id",
    grid_questions: int = 10,
) -> LoadedGrid:
    """Read a grid CSV (or Parquet) and its JSON sidecar into a replay table and its ground truth.

    Every setting left ``None`` comes from the sidecar (``params``, ``metric``, ``cost``,
    ``w``, ``t_max``). The parameter order is ``params`` (the sidecar's list) and each
    parameter's values keep the order of the sidecar's ``space``, so configuration indices
    are the ones the grid was made with. Without a ``space`` in the sidecar (tables written
    before it was recorded) the values are taken in sorted order.
    """
    p = Path(path)
    meta = read_sidecar(p)
    params = list(params) if params else list(meta.get("params") or [])
    metric = metric or meta.get("metric")
    side = p.with_suffix(".json").name
    if not params:
        raise ValueError(f"{p}: params (the parameter columns) must be given when the table has no {side} sidecar "
                         f"naming them")
    if not metric:
        raise ValueError(f"{p}: metric (the quality column) must be given when the table has no {side} sidecar "
                         f"naming it")
    params = [str(x).strip() for x in params]
    cost = (cost if cost is not None else meta.get("cost")) or None
    w = check_w(w if w is not None else meta.get("w", 0.9 if cost else 1.0))
    t_max = t_max if t_max is not None else meta.get("t_max")
    space = _sidecar_space(meta, params)
    groups = None
    if space is None:
        recorded = meta.get("space") if isinstance(meta.get("space"), Mapping) else {}
        groups = recorded.get("groups")
        if groups and not all(x in params for members in groups.values() for x in members):
            groups = None
    rows = load_rows(p)
    table = ReplayTable.from_rows(rows, params=params, metric=metric, cost=cost, w=w, t_max=t_max,
                                  question_col=question_col, grid_questions=grid_questions, groups=groups,
                                  space=space, source=str(p))
    if cost and t_max is None:  # from_rows used the table's largest cost
        t_max = max(float(r[cost]) for r in rows) or 1.0
    return LoadedGrid(table=table, truth=table.truth(), space=table.space, metric=str(metric), w=w,
                      t_max=float(t_max) if t_max is not None else None, cost=cost, path=p, meta=dict(meta))


def describe_table(table: ReplayTable, *, epsilon: float = 0.01) -> dict[str, Any]:
    """How hard a table is: near-ties to the best, gaps in the top, spread, one pull's noise."""
    m = np.sort(table.means)[::-1]
    out: dict[str, Any] = {
        "configs": int(len(m)),
        "questions": int(table.n_questions),
        "per_question": table.outcomes is not None,
        "best": float(m[0]),
        "within_epsilon": int((m >= m[0] - epsilon).sum()),
        "epsilon": epsilon,
        "gap_1_2": float(m[0] - m[1]) if len(m) > 1 else 0.0,
        "gap_5_6": float(m[4] - m[5]) if len(m) > 5 else 0.0,
        "top5_spread": float(m[0] - m[min(4, len(m) - 1)]),
        "spread": float(m[0] - m[-1]),
    }
    if table.outcomes is not None:
        out["question_std"] = float(table.outcomes.std(axis=1).mean())
    return out
