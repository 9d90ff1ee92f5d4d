"""The benchmark suite: suite files, multi-budget runs equal to bench.run_one, summaries, significance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autorag_hp.bench import ReplayTable, run_one
from autorag_hp.strategies import StrategySpec
from autorag_hp.space import SearchSpace
from autorag_hp.bench import (
    SuiteSpec,
    TableSpec,
    TableUnavailable,
    find_suite,
    format_suite_table,
    load_suite,
    load_table,
    markdown_suite_table,
    run_budgets,
    run_suite,
    summarise_buckets,
)

KEYS = ("pulls", "calls", "calls_share", "simple_regret", "cumulative_regret", "recall@1", "recall@3", "recall@5", "best")


def _table(seed: int = 0, n_q: int = 12) -> ReplayTable:
    rng = np.random.default_rng(seed)
    space = SearchSpace({"a": [1, 2, 3], "b": ["x", "y"], "c": [0.1, 0.5, 0.9, 1.0]})
    p = rng.uniform(0.1, 0.9, size=len(space))
    out = (rng.random((len(space), n_q)) < p[:, None]).astype(float)
    return ReplayTable(space, out.mean(axis=1), out, tuple(f"q{i}" for i in range(n_q)), True, 10)


@pytest.mark.parametrize("strategy", ["hier-ucb", "hier-ts", "flat-ucb", "random", "grid"])
def test_one_run_equals_run_one_at_every_budget(strategy):
    table = _table()
    multi = run_budgets(table, StrategySpec(strategy), 4, budgets=[0.05, 0.2, 0.5, 1.0], batch=3)
    for m in multi:
        r = run_one(table, StrategySpec(strategy), 4, budget=m["budget"], batch=3)
        assert {k: r[k] for k in KEYS} == {k: m[k] for k in KEYS}
        assert sum(c for _, c in m["config_pulls"]) == m["pulls"]


def test_default_suite_file_parses():
    suite = load_suite("default")
    assert suite.budgets == (0.1, 0.2, 0.4) and suite.seeds >= 10
    buckets = {t.bucket for t in suite.tables}
    assert {"real", "easy", "medium", "hard", "cost w=0.1", "cost w=0.5", "cost w=0.9"} <= buckets
    assert find_suite("default").name == "default.toml"


def test_unknown_suite_and_bad_specs_are_named():
    with pytest.raises(ValueError, match="unknown suite 'nope'"):
        find_suite("nope")
    with pytest.raises(ValueError, match="difficulty"):
        TableSpec(name="s", source="synthetic", bucket="x", difficulty="extreme")
    with pytest.raises(ValueError, match="budgets"):
        SuiteSpec(name="s", tables=(TableSpec(name="s", source="synthetic", bucket="x", difficulty="easy"),), budgets=(0.0,))


def test_missing_file_table_is_unavailable(tmp_path):
    spec = TableSpec(name="f", source="file", bucket="real", path="nope.csv", requires="absent-data.json",
                     generate=("autorag-hp", "grid"))
    with pytest.raises(TableUnavailable, match="absent-data.json"):
        load_table(spec, root=tmp_path)


def test_batch_keeps_the_pull_cap():
    suite = SuiteSpec(name="s", tables=(TableSpec(name="e", source="synthetic", bucket="easy", difficulty="easy"),),
                      max_pulls=100, min_batch=2)
    table = _table(n_q=50)  # 24 configs x 50 questions, 40%: 480 calls -> batch 5
    assert suite.batch_for(table) == 5


def test_small_suite_end_to_end(tmp_path):
    tables = (TableSpec(name="easy", source="synthetic", bucket="easy", difficulty="easy", n_questions=8),
              TableSpec(name="missing", source="file", bucket="real", path=str(tmp_path / "none.csv")))
    suite = SuiteSpec(name="tiny", tables=tables, budgets=(0.1, 0.3), seeds=3, max_pulls=60, reference="hier-ucb",
                      root=str(tmp_path))
    log = tmp_path / "log.jsonl"
    serial = run_suite(suite, strategies=["hier-ucb", "random"], workers=1, progress=False, log=log)
    pooled = run_suite(suite, strategies=["hier-ucb", "random"], workers=2, progress=False)
    strip = lambda rs: sorted((r["strategy"], r["budget"], r["seed"], r["simple_regret"], r["recall@3"]) for r in rs)  # noqa: E731
    assert strip(serial["runs"]) == strip(pooled["runs"])  # independent of the number of workers
    assert [s["table"] for s in serial["skipped"]] == ["missing"]
    assert len(serial["runs"]) == 2 * 2 * 3
    rows = serial["bucket_summary"]
    assert {(r["strategy"], r["budget"]) for r in rows} == {(s, b) for s in ("hier-ucb", "random") for b in (0.1, 0.3)}
    assert all("sig_recall@3" in r for r in rows if r["strategy"] == "random")
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert events[0] == "suite_start" and events[-1] == "suite_end" and events.count("run") == 12
    assert "easy" in format_suite_table(serial) and "| 10% |" in markdown_suite_table(serial)
    assert serial["pull_counts"] and len(serial["pull_counts"][0]["counts"]) == serial["tables"][0]["n_configs"]


def _runs(diffs, strategy, base=0.5):
    return [{"strategy": strategy, "bucket": "b", "budget": 0.2, "table": "t", "seed": i, "recall@1": base + d,
             "recall@3": base + d, "recall@5": base + d, "simple_regret": 0.1 - d, "cumulative_regret": 1.0,
             "calls_share": 0.2} for i, d in enumerate(diffs)]


def test_significance_marks_direction():
    ref = _runs([0.0] * 12, "ref")
    better = _runs([0.2 + 0.01 * i for i in range(12)], "better")
    worse = _runs([-0.2 - 0.01 * i for i in range(12)], "worse")
    same = _runs([0.0] * 12, "same")
    rows = {r["strategy"]: r for r in summarise_buckets(ref + better + worse + same, reference="ref")}
    assert rows["better"]["sig_recall@3"] == "better" and rows["better"]["sig_simple_regret"] == "better"
    assert rows["worse"]["sig_recall@3"] == "worse"
    assert rows["same"]["sig_recall@3"] == "" and rows["same"]["p_recall@3"] == 1.0
    assert rows["ref"].get("reference") is True
