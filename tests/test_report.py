"""Reports from a suite, a bench JSON and a tune run folder; the importance decomposition."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from autorag_hp.bench import ReplayTable, SuiteSpec, TableSpec, run_replay, run_suite, summarise, write_results  # noqa: E402
from autorag_hp.cli import main  # noqa: E402
from autorag_hp.report import build_report, grid_importance, load_results, pull_importance  # noqa: E402
from autorag_hp.space import SearchSpace  # noqa: E402
from autorag_hp.strategies import StrategySpec, make_strategy  # noqa: E402
from autorag_hp.tuner import tune  # noqa: E402

SPACE = SearchSpace({"a": [1, 2, 3], "b": ["x", "y"], "c": [0.1, 0.5, 0.9, 1.0]})


def _table(seed: int = 0) -> ReplayTable:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.1, 0.9, size=len(SPACE))
    out = (rng.random((len(SPACE), 12)) < p[:, None]).astype(float)
    return ReplayTable(SPACE, out.mean(axis=1), out, tuple(f"q{i}" for i in range(12)), True, 10)


def _check_page(page):
    html = page.read_text()
    assert html.count("data:image/png;base64,") >= 4  # self-contained
    assert len(list(page.parent.glob("*.png"))) >= 4
    return html


def test_importance_of_an_additive_grid_is_all_main_effects():
    a = np.array([0.0, 1.0, 2.0])[:, None, None]
    c = np.array([0.0, 0.0, 0.5, 0.5])[None, None, :]
    means = (a + c + np.zeros((3, 2, 4))).reshape(-1)
    imp = grid_importance(SPACE, means)
    assert imp["main"]["b"] == pytest.approx(0.0)
    assert imp["main"]["a"] + imp["main"]["c"] == pytest.approx(1.0)
    assert all(v == pytest.approx(0.0) for v in imp["pairs"].values())
    inter = np.zeros((3, 2, 4))
    inter[0, 0, :] = 1.0
    inter[0, 1, :] = -1.0  # a x b interaction only
    imp = grid_importance(SPACE, inter.reshape(-1))
    assert imp["pairs"][("a", "b")] > 0.5


def test_pull_importance_ranks_the_knob_that_matters():
    rng = np.random.default_rng(0)
    configs = [SPACE.config(int(i)) for i in rng.integers(len(SPACE), size=300)]
    rewards = [c["a"] + 0.1 * rng.standard_normal() for c in configs]
    imp = pull_importance(SPACE, configs, rewards)["main"]
    assert max(imp, key=imp.get) == "a"


def test_suite_report(tmp_path):
    tables = (TableSpec(name="medium", source="synthetic", bucket="medium", difficulty="medium", n_questions=8),)
    suite = SuiteSpec(name="tiny", tables=tables, budgets=(0.1, 0.3), seeds=2, max_pulls=50, root=str(tmp_path))
    payload = run_suite(suite, strategies=["hier-ucb", "random"], workers=1, progress=False)
    write_results(tmp_path / "suite" / "suite.json", payload)
    page = build_report(tmp_path / "suite")
    html = _check_page(page)
    assert "Results per difficulty bucket" in html and "hier-ucb" in html
    assert (page.parent / "pull_heatmap.png").is_file() and (page.parent / "recall_vs_budget.png").is_file()


def test_bench_json_report(tmp_path):
    import csv

    table = _table()
    path = tmp_path / "grid.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["a", "b", "c", "question_id", "score"])
        for i in range(len(SPACE)):
            cfg = SPACE.config(i)
            for q in range(table.outcomes.shape[1]):
                w.writerow([cfg["a"], cfg["b"], cfg["c"], f"q{q}", table.outcomes[i, q]])
    loaded = ReplayTable.from_file(path, params=["a", "b", "c"], metric="score")
    runs = run_replay(loaded, [StrategySpec("hier-ts"), StrategySpec("random")], [0, 1], budget=0.3, batch=3,
                      progress=False)
    out = write_results(tmp_path / "bench" / "bench-1.json", {
        "table": str(path), "params": ["a", "b", "c"], "metric": "score", "cost": None, "w": 1.0, "budget": 0.3,
        "batch": 3, "seeds": 2, "summary": summarise(runs), "runs": runs})
    assert main(["report", str(out), "--out", str(tmp_path / "r")]) == 0
    html = _check_page(tmp_path / "r" / "report.html")
    assert "Summary" in html and load_results(out).kind == "bench"


def test_tune_run_report(tmp_path):
    table = _table(1)
    run = tmp_path / "run"
    strategy = make_strategy("hier-ucb", SPACE, seed=0)
    tune(strategy, table.objective(batch=3, seed=0), budget_calls=150, calls_per_pull=3, journal=run / "journal.jsonl",
         fsync=False)
    (run / "summary.json").write_text(json.dumps({"best": [r.to_dict() for r in strategy.best(5)]}))
    page = build_report(run, knobs=["c", "a"])
    html = _check_page(page)
    assert "Best configurations" in html and load_results(run).kind == "run"


def test_report_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_report(tmp_path / "nothing")
    with pytest.raises(ValueError, match="journal.jsonl"):
        build_report(tmp_path)
