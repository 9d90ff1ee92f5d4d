"""Full grid evaluation: every configuration on every question, as a per-question table.

The CSV has one row per (configuration, question): ``config_index`` (position in the
space), one column per parameter, ``question_id``, then ``answer_in_context``, ``em``,
``f1`` (empty without a generator), ``gold_recall`` (``nan`` without gold passages),
``prompt_tokens``, ``latency_s``, ``quality`` and ``reward``. A JSON sidecar
(``TABLE.json``) records ``params``, ``metric``, ``cost``, ``w``, ``t_max`` and the
``space`` (parameters and values in the space's own order, never sorted) so
``autorag-hp bench --table TABLE.csv`` replays it without further options and
:meth:`GridResult.from_csv` reads it back exactly.
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
from typing import Any, Iterator, Mapping

import numpy as np

from autorag_hp._io import atomic_write_text
from autorag_hp.objective import check_w, reward
from autorag_hp.pipeline._metrics import check_metric, check_t_max, score_result
from autorag_hp.space import SearchSpace

__all__ = ["run_grid", "GridResult", "METRIC_COLUMNS"]

METRIC_COLUMNS = ("answer_in_context", "em", "f1", "gold_recall", "prompt_tokens", "latency_s", "quality", "reward")
_FLOAT_COLUMNS = ("answer_in_context", "em", "f1", "gold_recall", "latency_s", "quality", "reward")


@dataclass
class GridResult:
    """A full grid, stored by column: ``columns[name][row]``; one row per (configuration, question).

    ``columns`` holds ``config_index`` (int), ``question_id`` (str) and :data:`METRIC_COLUMNS`
    (``em``/``f1`` are NaN where nothing answered). :attr:`rows` builds dict rows on demand.
    """

    space: SearchSpace
    columns: dict[str, np.ndarray]
    metric: str
    w: float
    t_max: float
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def header(self) -> list[str]:
        return ["config_index", *self.space.names, "question_id", *METRIC_COLUMNS]

    def __len__(self) -> int:
        return len(self.columns["config_index"])

    def iter_rows(self) -> Iterator[dict[str, Any]]:
        """Rows as dicts (parameters included), in table order."""
        cfgs: dict[int, dict[str, Any]] = {}
        cols = {k: self.columns[k].tolist() for k in ("config_index", "question_id", *METRIC_COLUMNS)}
        for n, i in enumerate(cols["config_index"]):
            cfg = cfgs.get(i)
            if cfg is None:
                cfg = cfgs[i] = self.space.config(i)
            row: dict[str, Any] = {"config_index": i, **cfg, "question_id": cols["question_id"][n]}
            for k in METRIC_COLUMNS:
                v = cols[k][n]
                row[k] = None if k in ("em", "f1") and v != v else v
            yield row

    @property
    def rows(self) -> list[dict[str, Any]]:
        return list(self.iter_rows())

    def mean(self, column: str) -> dict[int, float]:
        """Mean of ``column`` per configuration index (NaN cells skipped)."""
        if column not in self.columns or column == "question_id":
            raise ValueError(f"column must be one of {list(METRIC_COLUMNS)}, got {column!r}")
        idx = self.columns["config_index"]
        vals = self.columns[column].astype(np.float64)
        ok = ~np.isnan(vals)
        n = np.bincount(idx[ok], minlength=len(self.space))
        s = np.bincount(idx[ok], weights=vals[ok], minlength=len(self.space))
        present = np.unique(idx)
        return {int(i): float(s[i] / n[i]) for i in present if n[i]}

    def mean_rewards(self) -> dict[int, float]:
        """Mean reward per configuration index."""
        return self.mean("reward")

    def best(self, n: int = 1) -> list[tuple[dict[str, Any], float]]:
        """The ``n`` configurations with the highest mean reward, best first (ties: lower index)."""
        means = self.mean_rewards()
        order = sorted(means, key=lambda i: (-means[i], i))[:n]
        return [(self.space.config(i), means[i]) for i in order]

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write the table and its JSON sidecar atomically; returns the CSV path."""
        path = Path(path)
        if path.suffix != ".csv":
            raise ValueError(f"out must be a .csv path, got {str(path)!r}")
        buf = io.StringIO()
        buf.write(",".join(self.header) + "\n")
        params = {i: ",".join(_cell(v) for v in self.space.config(i).values()) for i in np.unique(self.columns["config_index"]).tolist()}
        cols = [self.columns[k].tolist() for k in METRIC_COLUMNS]
        empty_nan = [k in ("em", "f1") for k in METRIC_COLUMNS]
        for n, (i, q) in enumerate(zip(self.columns["config_index"].tolist(), self.columns["question_id"].tolist())):
            cells = [("" if e and c[n] != c[n] else _cell(c[n])) for c, e in zip(cols, empty_nan)]
            buf.write(f"{i},{params[i]},{_cell(q)},{','.join(cells)}\n")
        meta = {
            "params": list(self.space.names),
            "metric": "quality",
            "quality_metric": self.metric,
            "cost": "prompt_tokens",
            "w": self.w,
            "t_max": self.t_max,
            "space": self.space.to_dict(),
            "configurations": len(np.unique(self.columns["config_index"])),
            "questions": len(set(self.columns["question_id"].tolist())),
            "seconds": round(self.seconds, 3),
            **self.extra,
        }
        atomic_write_text(path, buf.getvalue())
        # Not key-sorted: the space's parameter and value order defines config_index.
        atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2, default=str) + "\n")
        return path

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str]) -> "GridResult":
        """Read back a table written by :meth:`to_csv` (the CSV and its ``.json`` sidecar)."""
        from autorag_hp.bench import read_sidecar

        path = Path(path)
        side = path.with_suffix(".json")
        if not path.is_file():
            raise FileNotFoundError(f"grid table {str(path)!r} does not exist")
        if not side.is_file():
            raise FileNotFoundError(f"grid table {str(path)!r} has no sidecar {side.name} (written by GridResult.to_csv)")
        try:
            meta = read_sidecar(path)
            space = SearchSpace.from_dict(meta["space"])
            metric, w, t_max = meta["quality_metric"], meta["w"], meta["t_max"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{side}: not a grid sidecar ({type(exc).__name__}: {exc})") from None
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            expected = ["config_index", *space.names, "question_id", *METRIC_COLUMNS]
            if header != expected:
                raise ValueError(f"{path}: header must be {expected} (from the sidecar's space), got {header}")
            rows = list(reader)
        if not rows:
            raise ValueError(f"{path}: the table has no rows")
        n_p = len(space.names)
        cells: dict[int, list[str]] = {}
        idx, qids = [], []
        cols: dict[str, list[float]] = {k: [] for k in METRIC_COLUMNS}
        for lineno, row in enumerate(rows, start=2):
            if len(row) != len(expected):
                raise ValueError(f"{path}: line {lineno} has {len(row)} cells, the header has {len(expected)}")
            i = int(row[0])
            want = cells.get(i)
            if want is None:
                if not 0 <= i < len(space):
                    raise ValueError(f"{path}: line {lineno}: config_index {i} is outside the space ({len(space)})")
                want = cells[i] = next(csv.reader([",".join(_cell(v) for v in space.config(i).values())]))
            if [c for c in row[1:1 + n_p]] != want:
                raise ValueError(f"{path}: line {lineno}: config_index {i} has {row[1:1 + n_p]}, the sidecar's space "
                                 f"says {want}")
            idx.append(i)
            qids.append(row[1 + n_p])
            for k, v in zip(METRIC_COLUMNS, row[2 + n_p:]):
                cols[k].append(float("nan") if v == "" else float(v))
        columns: dict[str, np.ndarray] = {"config_index": np.array(idx, dtype=np.int64),
                                          "question_id": np.array(qids, dtype=object)}
        for k in METRIC_COLUMNS:
            columns[k] = np.array(cols[k], dtype=np.int64 if k == "prompt_tokens" else np.float64)
        known = {"params", "metric", "quality_metric", "cost", "w", "t_max", "space", "configurations", "questions",
                 "seconds"}
        return cls(space=space, columns=columns, metric=check_metric(metric), w=check_w(w),
                   t_max=check_t_max(t_max), seconds=float(meta.get("seconds", 0.0)),
                   extra={k: v for k, v in meta.items() if k not in known})


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "nan" if math.isnan(v) else repr(v)
    s = str(v)
    if any(c in s for c in ',"\n\r'):
        return '"' + s.replace('"', '""') + '"'
    return s


def _as_space(space: Any) -> SearchSpace:
    if isinstance(space, SearchSpace):
        return space
    if isinstance(space, (str, os.PathLike)):
        return SearchSpace.from_file(str(space))
    if isinstance(space, Mapping):
        return SearchSpace.from_dict(space)
    raise ValueError(f"space must be a SearchSpace, a mapping or a space file path, got {space!r}")


def _float_array(values: Any, n: int) -> np.ndarray:
    if values is None:
        return np.full(n, np.nan)
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


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
    largest prompt in the table; the result's ``t_max`` (and ``extra["t_max_source"]``) says
    which, and a live :class:`PipelineObjective` must use the same value to share the
    reward's scale (:class:`autorag_hp.Study` does). ``out`` writes the CSV (and its ``.json`` sidecar).
    """
    space = _as_space(space)
    metric = check_metric(metric)
    if metric not in METRIC_COLUMNS:  # a model-based metric (semantic, judge_*) scores answers the grid does not keep
        raise ValueError(f"metric {metric!r} is not a grid column ({', '.join(METRIC_COLUMNS[:4])}): a full grid "
                         f"keeps no answers to score with a model; tune without a grid (grid='none' / --grid never)")
    w = check_w(w)
    questions = list(getattr(dataset, "questions", dataset))
    if not questions:
        raise ValueError("dataset must hold at least one question, got none")
    if out is not None and Path(out).suffix != ".csv":
        raise ValueError(f"out must be a .csv path, got {str(out)!r}")
    configs = list(space)
    n_q = len(questions)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(configs), desc="grid", unit="config", dynamic_ncols=True)
    t0 = time.perf_counter()
    blocks: dict[int, dict[str, Any]] = {}
    try:
        if hasattr(pipeline, "evaluate_grid"):
            for i, cols in pipeline.evaluate_grid(configs, questions, progress=bar.update if bar else None):
                blocks[i] = cols
        else:
            if not callable(getattr(pipeline, "run", None)):
                raise ValueError(f"pipeline must have run(config, questions), got {type(pipeline).__name__}")
            for i, cfg in enumerate(configs):
                results = pipeline.run(cfg, questions)
                if len(results) != n_q:
                    raise ValueError(f"pipeline.run must return one result per question, got {len(results)} for {n_q}")
                rows = [score_result(q, r, t_max=1.0) for q, r in zip(questions, results)]
                blocks[i] = {k: [row[k] for row in rows] for k in
                             ("question_id", "answer_in_context", "em", "f1", "gold_recall", "prompt_tokens", "latency_s")}
                if bar:
                    bar.update(1)
    finally:
        if bar:
            bar.close()
    seconds = time.perf_counter() - t0
    order = range(len(configs))
    columns: dict[str, np.ndarray] = {
        "config_index": np.repeat(np.arange(len(configs), dtype=np.int64), n_q),
        "question_id": np.array([q for i in order for q in blocks[i]["question_id"]], dtype=object),
        "prompt_tokens": np.concatenate([np.asarray(blocks[i]["prompt_tokens"], dtype=np.int64) for i in order]),
    }
    for k in ("answer_in_context", "em", "f1", "gold_recall", "latency_s"):
        columns[k] = np.concatenate([_float_array(blocks[i][k], n_q) for i in order])
    t_max_source = "given"
    if t_max is None:
        t_max, t_max_source = getattr(pipeline, "t_max", None), "pipeline"
        if t_max is None:
            t_max, t_max_source = float(columns["prompt_tokens"].max(initial=1)) or 1.0, "largest prompt"
    t_max = check_t_max(t_max)
    quality = columns[metric]
    bad = np.isnan(quality)
    if bad.any():
        first = int(np.argmax(bad))
        if metric in ("em", "f1"):
            raise ValueError(f"metric {metric!r} needs generated answers, but configuration "
                             f"{configs[first // n_q]} produced none")
        qid = columns["question_id"][first]
        if any(q.id == qid and q.gold_passages for q in questions):
            raise ValueError(f"metric 'gold_recall' needs the retrieved passage ids ('retrieved_ids'), but the "
                             f"pipeline returned none for question {qid!r} under configuration {configs[first // n_q]}")
        raise ValueError(f"metric {metric!r} needs gold passage ids, but question {qid!r} has none")
    columns["quality"] = quality.copy()
    columns["reward"] = reward(quality, columns["prompt_tokens"], w=w, t_max=t_max)
    result = GridResult(space=space, columns=columns, metric=metric, w=w, t_max=t_max, seconds=seconds,
                        extra={"t_max_source": t_max_source})
    if out is not None:
        result.to_csv(out)
    return result
