import csv
import itertools
import json
import subprocess
import sys

import numpy as np
import pytest

from autorag_hp import SearchSpace, make_strategy
from autorag_hp.bench import parse_strategy_spec, run_replay, summarise
from autorag_hp.regret import GroundTruth, RegretLog
from autorag_hp.replay import ReplayTable


def write_table(path, per_question=True, n_q=20, seed=0):
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["top_k", "emb"] + (["question_id"] if per_question else []) + ["acc", "tokens"])
        for k, e in itertools.product([1, 3, 5], ["bm25", "minilm"]):
            p = 0.2 + 0.1 * k / 5 + 0.3 * (e == "minilm")
            if per_question:
                for q in range(n_q):
                    w.writerow([k, e, f"q{q}", int(rng.random() < p), 100 * k])
            else:
                w.writerow([k, e, p, 100 * k])


def test_ground_truth_recall_with_ties():
    space = SearchSpace({"a": [0, 1, 2, 3]})
    gt = GroundTruth(space, [0.5, 0.9, 0.9, 0.1])
    assert gt.best_value == 0.9
    assert set(gt.top_indices(1).tolist()) == {1, 2}  # tie with the best counts
    assert gt.recall_at([{"a": 2}], 1) == 1.0
    assert gt.recall_at([{"a": 0}, {"a": 1}], 2) == 0.5
    assert gt.rank({"a": 0}) == 3 and gt.regret({"a": 3}) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="one value per configuration"):
        GroundTruth(space, [1, 2])
    log = RegretLog(gt, grid_calls=40)
    log.add(0, {"a": 0}, 0.4, 4, best_config={"a": 1})
    row = log.add(1, {"a": 3}, 0.0, 4)
    assert row["cumulative_regret"] == pytest.approx(1.2) and row["calls_share"] == pytest.approx(0.2)


def test_per_question_table_and_objective(tmp_path):
    p = tmp_path / "t.csv"
    write_table(p)
    t = ReplayTable.from_file(p, params=["top_k", "emb"], metric="acc", cost="tokens", w=0.9)
    assert t.outcomes.shape == (6, 20) and t.grid_calls == 120
    i = t.space.index({"top_k": 5, "emb": "minilm"})
    assert t.means[i] == pytest.approx(t.outcomes[i].mean())
    obj = t.objective(batch=4, seed=3)
    a, b = obj({"top_k": 5, "emb": "minilm"}, 7), obj({"top_k": 5, "emb": "minilm"}, 7)
    assert a == b and a.calls == 4  # randomness comes from (seed, pull) only


def test_mean_only_table_bernoulli(tmp_path):
    p = tmp_path / "m.csv"
    write_table(p, per_question=False)
    t = ReplayTable.from_file(p, params=["top_k", "emb"], metric="acc", grid_questions=30)
    assert t.outcomes is None and t.grid_calls == 180
    obj = t.objective(batch=8, seed=0)
    draws = [obj({"top_k": 5, "emb": "minilm"}, k).reward for k in range(2000)]
    assert np.mean(draws) == pytest.approx(0.6, abs=0.02)
    assert set(np.round(np.array(draws) * 8, 6)) <= set(range(9))


@pytest.mark.parametrize("mutate,match", [
    (lambda rows: rows[:-1], "no row for configuration"),
    (lambda rows: rows + [rows[1]], "more than one row"),
    (lambda rows: [{**r, "acc": "x"} if i == 3 else r for i, r in enumerate(rows)], "row 5 column 'acc'"),
])
def test_malformed_tables(tmp_path, mutate, match):
    p = tmp_path / "t.csv"
    write_table(p)
    from autorag_hp.replay import load_rows

    rows = mutate(load_rows(p))
    with pytest.raises(ValueError, match=match):
        ReplayTable.from_rows(rows, params=["top_k", "emb"], metric="acc")


def test_missing_column_and_short_row(tmp_path):
    p = tmp_path / "t.csv"
    write_table(p)
    with pytest.raises(ValueError, match="metric column 'f1' is missing"):
        ReplayTable.from_file(p, params=["top_k", "emb"], metric="f1")
    p.write_text(p.read_text() + "1,bm25\n")
    with pytest.raises(ValueError, match="line"):
        ReplayTable.from_file(p, params=["top_k", "emb"], metric="acc")


def test_run_replay_pairs_seeds_and_reports_metrics(tmp_path):
    p = tmp_path / "t.csv"
    write_table(p)
    t = ReplayTable.from_file(p, params=["top_k", "emb"], metric="acc")
    specs = [parse_strategy_spec("hier-ucb:alpha_upper=1.5:alpha_lower=0.5"), parse_strategy_spec("random")]
    assert specs[0].options == {"alpha_upper": 1.5, "alpha_lower": 0.5}
    runs = run_replay(t, specs, [0, 1, 2], budget=0.4, batch=4, progress=False)
    assert len(runs) == 6
    for r in runs:
        assert r["calls_share"] == pytest.approx(0.4, abs=0.04)
        assert 0 <= r["recall@5"] <= 1 and r["simple_regret"] >= 0
    again = run_replay(t, specs[:1], [0], budget=0.4, batch=4, progress=False)
    assert again[0]["best"] == runs[0]["best"]
    summary = summarise(runs)
    assert {s["strategy"] for s in summary} == {"hier-ucb:alpha_upper=1.5:alpha_lower=0.5", "random"}


def test_bench_cli(tmp_path):
    p = tmp_path / "t.csv"
    write_table(p)
    out = tmp_path / "r.json"
    cmd = [sys.executable, "-m", "autorag_hp", "bench", "--table", str(p), "--params", "top_k,emb", "--metric", "acc",
           "--cost", "tokens", "--w", "0.9", "--strategies", "hier-ucb,hier-ts,grid", "--seeds", "2",
           "--budget", "0.3", "--batch", "4", "--out", str(out), "--quiet"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "Recall@5" in res.stdout and "hier-ts" in res.stdout
    data = json.loads(out.read_text())
    assert data["n_configs"] == 6 and len(data["runs"]) == 6
    bad = subprocess.run(cmd + ["--metric", "nope"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "'nope' is missing" in bad.stderr
    bad = subprocess.run([sys.executable, "-m", "autorag_hp", "bench", "--table", str(p), "--params", "top_k,emb",
                          "--metric", "acc", "--strategies", "nope"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown strategy 'nope'" in bad.stderr
