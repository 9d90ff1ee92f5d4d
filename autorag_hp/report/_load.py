"""Read what a report is made from: a suite's or bench's JSON, or a ``tune`` run folder."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from autorag_hp.space import SearchSpace

__all__ = ["Results", "TableInfo", "load_results"]


@dataclass
class TableInfo:
    """A ground-truth grid: its space and (when known) every configuration's true mean."""

    name: str
    space: SearchSpace
    means: np.ndarray | None = None
    sems: np.ndarray | None = None
    bucket: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Results:
    """Everything a report draws, whatever it came from."""

    kind: Literal["suite", "bench", "run"]
    source: Path
    title: str
    settings: dict[str, Any] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    tables: dict[str, TableInfo] = field(default_factory=dict)
    pull_counts: list[dict[str, Any]] = field(default_factory=list)
    budgets: list[float] = field(default_factory=list)
    reference: str | None = None
    bucket_summary: list[dict[str, Any]] | None = None
    table_summary: list[dict[str, Any]] | None = None
    skipped: list[dict[str, str]] = field(default_factory=list)
    # a tune run
    pulls: list[tuple[dict[str, Any], float]] = field(default_factory=list)
    regret_rows: list[dict[str, Any]] = field(default_factory=list)
    recommendations: list[dict[str, Any]] = field(default_factory=list)
    payload: dict[str, Any] = field(default_factory=dict)


def _find(path: Path) -> tuple[str, Path]:
    if path.is_file():
        if path.name.endswith(".jsonl"):
            return "run", path.parent
        if path.suffix == ".json":
            return "json", path
        raise ValueError(f"report source must be a results folder, a .json results file or a journal, got {str(path)!r}")
    if not path.is_dir():
        raise FileNotFoundError(f"report source {str(path)!r} does not exist")
    if (path / "suite.json").is_file():
        return "json", path / "suite.json"
    if (path / "journal.jsonl").is_file():
        return "run", path
    benches = sorted(path.glob("bench*.json"), key=lambda p: p.stat().st_mtime)
    if benches:
        return "json", benches[-1]
    raise ValueError(f"{str(path)!r} holds no suite.json, journal.jsonl or bench*.json: "
                     "give a folder written by `autorag-hp bench`, `bench --suite` or `tune`")


def load_results(path: str | Path) -> Results:
    """Load a suite folder (``suite.json``), a bench JSON, or a tune run folder (``journal.jsonl``)."""
    p = Path(path)
    what, where = _find(p)
    if what == "run":
        return _load_run(where)
    payload = json.loads(where.read_text())
    if payload.get("kind") == "suite":
        return _load_suite(where, payload)
    if "runs" in payload and "summary" in payload:
        return _load_bench(where, payload)
    raise ValueError(f"{where} is not a suite or bench results file (no 'kind': 'suite', nor 'runs' and 'summary')")


def _load_suite(path: Path, d: dict[str, Any]) -> Results:
    tables = {}
    for t in d.get("tables", []):
        tables[t["name"]] = TableInfo(
            t["name"], SearchSpace.from_dict(t["space"]), np.asarray(t["means"], float),
            np.asarray(t["sems"], float) if t.get("sems") else None, t.get("bucket", ""),
            {k: v for k, v in t.items() if k not in ("space", "means", "sems")},
        )
    counts = [{**c, "counts": np.asarray(c["counts"])} for c in d.get("pull_counts", [])]
    settings = {k: d.get(k) for k in ("suite", "description", "budgets", "seeds", "reference", "min_batch",
                                      "max_pulls", "parallel", "workers", "seconds")}
    settings["strategies"] = ", ".join(d.get("strategies", []))
    return Results("suite", path, f"Benchmark suite '{d.get('suite')}'", settings, d.get("runs", []), tables, counts,
                   list(d.get("budgets", [])), d.get("reference"), d.get("bucket_summary"), d.get("table_summary"),
                   d.get("skipped", []), payload=d)


def _load_bench(path: Path, d: dict[str, Any]) -> Results:
    name = Path(str(d.get("table", "table"))).stem
    runs = [{**r, "table": name, "bucket": "all", "budget": d.get("budget")} for r in d["runs"]]
    batch = d.get("batch") or 1
    for r in runs:  # bench.run_one keeps every step-th cumulative regret, step = max(1, pulls // 200)
        if r.get("regret_curve") and "regret_curve_calls_share" not in r and r.get("calls") and r.get("calls_share"):
            grid_calls = r["calls"] / r["calls_share"]
            step = max(1, int(r["pulls"]) // 200)
            r["regret_curve_calls_share"] = [(i * step + 1) * batch / grid_calls for i in range(len(r["regret_curve"]))]
    tables = {}
    src = d.get("table")
    if src and Path(src).is_file() and d.get("params") and d.get("metric"):
        try:
            from autorag_hp.bench import load_grid

            t = load_grid(src, params=list(d["params"]), metric=d["metric"], cost=d.get("cost") or None,
                          w=float(d.get("w") if d.get("w") is not None else 1.0)).table
            sems = None
            if t.outcomes is not None and t.outcomes.shape[1] > 1:
                sems = t.outcomes.std(axis=1, ddof=1) / np.sqrt(t.outcomes.shape[1])
            tables[name] = TableInfo(name, t.space, t.means, sems, "all")
        except (ValueError, FileNotFoundError):
            pass
    settings = {k: d.get(k) for k in ("table", "metric", "cost", "w", "budget", "batch", "parallel", "seeds", "seconds")}
    table_summary = [{**r, "table": name, "bucket": "all", "budget": d.get("budget")} for r in d["summary"]]
    return Results("bench", path, f"Bench on {name}", settings, runs, tables, [], [d.get("budget")], None, None,
                   table_summary, payload=d)


def _num(v: str) -> Any:
    try:
        return float(v)
    except ValueError:
        return v


def _run_grid(folder: Path, space: SearchSpace) -> TableInfo | None:
    """The full grid a ``tune`` run measured itself against (``grid.csv`` + ``grid.json``), in the run's order."""
    csv_path, side = folder / "grid.csv", folder / "grid.json"
    if not (csv_path.is_file() and side.is_file()):
        return None
    try:
        from autorag_hp.bench import load_grid

        t = load_grid(csv_path).table
        order = np.array([t.space.index(space.config(i)) for i in range(len(space))])
    except (ValueError, FileNotFoundError):
        return None
    sems = None
    if t.outcomes is not None and t.outcomes.shape[1] > 1:
        sems = (t.outcomes.std(axis=1, ddof=1) / np.sqrt(t.outcomes.shape[1]))[order]
    return TableInfo("run", space, t.means[order], sems, "run")


def _load_run(folder: Path) -> Results:
    from autorag_hp.journal import read_journal

    header, pulls = read_journal(folder / "journal.jsonl")
    space = SearchSpace.from_dict(header["space"])
    res = Results("run", folder, f"Tuning run {folder.name} ({header.get('strategy')}, seed {header.get('seed')})")
    res.settings = {"strategy": header.get("strategy"), "options": header.get("options"), "seed": header.get("seed"),
                    "pulls": len(pulls), "calls": sum(int(r.get("calls", 1)) for r in pulls),
                    **{k: v for k, v in (header.get("meta") or {}).items() if isinstance(v, (str, int, float, bool))}}
    res.pulls = [(space.validate(r["config"]), float(r["reward"])) for r in pulls]
    res.tables["run"] = _run_grid(folder, space) or TableInfo("run", space)
    summary_path = folder / "summary.json"
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        res.payload = summary
        for key in ("best", "recommendations", "top"):
            if isinstance(summary.get(key), list):
                res.recommendations = [r for r in summary[key] if isinstance(r, dict) and "config" in r]
                break
        for k, v in summary.items():
            if isinstance(v, (str, int, float, bool)) and k not in res.settings:
                res.settings[k] = v
    regret_path = folder / "regret.csv"
    if regret_path.is_file():
        with open(regret_path, newline="", encoding="utf-8") as fh:
            res.regret_rows = [{k: _num(v) for k, v in row.items()} for row in csv.DictReader(fh)]
    counts = np.zeros(len(space), dtype=np.int64)
    for c, _ in res.pulls:
        counts[space.index(c)] += 1
    res.pull_counts = [{"table": "run", "budget": None, "strategy": header.get("strategy", "run"), "counts": counts}]
    return res
