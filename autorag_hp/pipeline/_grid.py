"""Full grid evaluation: every configuration on every question, as a per-question table.

The CSV has one row per (configuration, question): ``config_index`` (position in the
space), one column per parameter, ``question_id``, then ``answer_in_context``, ``em``,
``f1`` (empty without a generator), ``gold_recall`` (empty without gold passages),
``prompt_tokens``, ``latency_s``, ``quality`` and ``reward``. A JSON sidecar
(``TABLE.json``) records ``params``, ``metric``, ``cost``, ``w`` and ``t_max`` so
``autorag-hp bench --table TABLE.csv`` replays it without further options.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from autorag_hp.pipeline._cache import atomic_write_text
from autorag_hp.pipeline._metrics import check_metric, check_t_max, check_weight, reward, score_result
from autorag_hp.space import SearchSpace

__all__ = ["run_grid", "GridResult", "METRIC_COLUMNS"]

METRIC_COLUMNS = ("answer_in_context", "em", "f1", "gold_recall", "prompt_tokens", "latency_s", "quality", "reward")


@dataclass
class GridResult:
    """The per-(configuration, question) rows of a full grid, plus how they were scored."""

    space: SearchSpace
    rows: list[dict[str, Any]]
    metric: str
    w: float
    t_max: float
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        return ["config_index", *self.space.names, "question_id", *METRIC_COLUMNS]

    def mean_rewards(self) -> dict[int, float]:
        """Mean reward per configuration index."""
        sums: dict[int, list[float]] = {}
        for r in self.rows:
            s = sums.setdefault(r["config_index"], [0.0, 0])
            s[0] += r["reward"]
            s[1] += 1
        return {i: s / n for i, (s, n) in sorted(sums.items())}

    def mean(self, column: str) -> dict[int, float]:
        """Mean of ``column`` per configuration index (NaN/empty cells skipped)."""
        acc: dict[int, list[float]] = {}
        for r in self.rows:
            v = r.get(column)
            if v is None or (isinstance(v, float) and math.isnan(v)):
                continue
            a = acc.setdefault(r["config_index"], [0.0, 0])
            a[0] += float(v)
            a[1] += 1
        return {i: s / n for i, (s, n) in sorted(acc.items()) if n}

    def best(self, n: int = 1) -> list[tuple[dict[str, Any], float]]:
        """The ``n`` configurations with the highest mean reward, best first."""
        means = self.mean_rewards()
        order = sorted(means, key=lambda i: (-means[i], i))[:n]
        return [(self.space.config(i), means[i]) for i in order]

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write the table and its JSON sidecar atomically; returns the CSV path."""
        path = Path(path)
        if path.suffix != ".csv":
            raise ValueError(f"out must be a .csv path, got {str(path)!r}")
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for r in self.rows:
            writer.writerow({k: _cell(r.get(k)) for k in self.columns})
        meta = {
            "params": list(self.space.names),
            "metric": "quality",
            "quality_metric": self.metric,
            "cost": "prompt_tokens",
            "w": self.w,
            "t_max": self.t_max,
            "space": self.space.to_dict(),
            "configurations": len(self.space),
            "questions": len({r["question_id"] for r in self.rows}),
            "seconds": round(self.seconds, 3),
            **self.extra,
        }
        atomic_write_text(path, buf.getvalue())
        atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
        return path


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return "nan" if math.isnan(v) else repr(v)
    return v


def _as_space(space: Any) -> SearchSpace:
    if isinstance(space, SearchSpace):
        return space
    if isinstance(space, (str, os.PathLike)):
        return SearchSpace.from_file(str(space))
    if isinstance(space, Mapping):
        return SearchSpace.from_dict(space)
    raise ValueError(f"space must be a SearchSpace, a mapping or a space file path, got {space!r}")


def run_grid(
    pipeline: Any,
    dataset: Any,
    space: SearchSpace | Mapping[str, Any] | str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] | None = None,
    metric: str = "answer_in_context",
    w: float = 0.9,
    t_max: float | None = None,
    progress: bool = False,
) -> GridResult:
    """Evaluate every configuration of ``space`` on every question of ``dataset``.

    Pipelines with ``evaluate_grid`` (the :class:`ReferencePipeline`) share retrieval and
    similarities across configurations; any other :class:`RAGPipeline` is run once per
    configuration on all questions. ``t_max=None`` takes the pipeline's ``t_max``, else the
    largest prompt in the table. ``out`` writes the CSV (and its ``.json`` sidecar).
    """
    space = _as_space(space)
    metric = check_metric(metric)
    w = check_weight(w)
    questions = list(getattr(dataset, "questions", dataset))
    if not questions:
        raise ValueError("dataset must hold at least one question, got none")
    if out is not None and Path(out).suffix != ".csv":
        raise ValueError(f"out must be a .csv path, got {str(out)!r}")
    configs = list(space)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(configs), desc="grid", unit="config", dynamic_ncols=True)
    t0 = time.perf_counter()
    by_config: dict[int, list[dict[str, Any]]] = {}
    try:
        if hasattr(pipeline, "evaluate_grid"):
            for i, rows in pipeline.evaluate_grid(configs, questions, progress=bar.update if bar else None):
                by_config[i] = rows
        else:
            if not callable(getattr(pipeline, "run", None)):
                raise ValueError(f"pipeline must have run(config, questions), got {type(pipeline).__name__}")
            for i, cfg in enumerate(configs):
                results = pipeline.run(cfg, questions)
                if len(results) != len(questions):
                    raise ValueError(
                        f"pipeline.run must return one result per question, got {len(results)} for {len(questions)}"
                    )
                by_config[i] = [score_result(q, r, metric="answer_in_context", t_max=1.0) for q, r in zip(questions, results)]
                if bar:
                    bar.update(1)
    finally:
        if bar:
            bar.close()
    seconds = time.perf_counter() - t0
    if t_max is None:
        t_max = getattr(pipeline, "t_max", None)
        if t_max is None:
            t_max = max((r["prompt_tokens"] for rows in by_config.values() for r in rows), default=1) or 1
    t_max = check_t_max(t_max)
    table: list[dict[str, Any]] = []
    for i, cfg in enumerate(configs):
        for r in by_config[i]:
            q = r.get(metric)
            if q is None:
                raise ValueError(f"metric {metric!r} needs generated answers, but configuration {cfg} produced none")
            if isinstance(q, float) and math.isnan(q):
                raise ValueError(f"metric {metric!r} needs gold passage ids, but question {r['question_id']!r} has none")
            row = {"config_index": i, **cfg, **{k: r.get(k) for k in ("question_id", *METRIC_COLUMNS[:6])}}
            row["quality"] = float(q)
            row["reward"] = reward(float(q), r["prompt_tokens"], w=w, t_max=t_max)
            table.append(row)
    result = GridResult(space=space, rows=table, metric=metric, w=w, t_max=t_max, seconds=seconds)
    if out is not None:
        result.to_csv(out)
    return result
