"""The bench package: grid tables and their sidecars, replayed objectives, runs, the bench CLI."""

import csv
import itertools
import json
import subprocess
import sys

import numpy as np
import pytest

from autorag_hp import SearchSpace
from autorag_hp.bench import (
    ReplayTable,
    default_grid_path,
    load_grid,
    load_rows,
    read_sidecar,
    run_budgets,
    run_one,
    run_replay,
    summarise,
)
from autorag_hp.objective import paired_questions
from autorag_hp.strategies import make_strategy, parse_strategy_spec


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


def test_paired_table_objective_scores_every_configuration_on_the_same_questions(tmp_path):
    p = tmp_path / "t.csv"
    write_table(p)
    t = ReplayTable.from_file(p, params=["top_k", "emb"], metric="acc", w=1.0)
    obj = t.objective(batch=4, seed=3, sampling="paired")
    with pytest.raises(ValueError, match="needs the configuration's pull ordinal of pull 0"):
        obj({"top_k": 1, "emb": "bm25"}, 0)
    # pull 10 is the 2nd pull (ordinal 1) of every configuration: same questions, so the reward is
    # each configuration's mean over exactly those questions
    q = paired_questions(20, 4, seed=3, ordinal=1)
    assert len(set(q.tolist())) == 4
    for c in t.space:
        got = obj.with_ordinals({10: 1})(c, 10).reward
        assert got == pytest.approx(t.outcomes[t.space.index(c), q].mean())
    # the budget and the table's per-question rows are what replay with pairing uses end to end
    run = run_one(t, "structured-tt", 0, budget=0.5, batch=4, sampling="paired")
    assert run["calls"] == 60
    with pytest.raises(ValueError, match="per-question table"):
        write_table(tmp_path / "m.csv", per_question=False)
        ReplayTable.from_file(tmp_path / "m.csv", params=["top_k", "emb"], metric="acc").objective(sampling="paired")


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


# -- load_grid: the one way to read a grid table and its sidecar ---------------------------------
def _sidecar(path, **meta):
    path.with_suffix(".json").write_text(json.dumps(meta))


def test_load_grid_keeps_the_sidecar_order_and_settings(tmp_path):
    p = tmp_path / "g.csv"
    write_table(p)
    # the grid was made with emb before top_k, values in an order sorting would change
    space = {"params": {"emb": ["minilm", "bm25"], "top_k": [5, 1, 3]}, "groups": {"retrieval": ["emb", "top_k"]}}
    _sidecar(p, params=["emb", "top_k"], metric="acc", cost="tokens", w=0.8, t_max=1000.0, space=space)
    grid = load_grid(p)
    assert grid.space.names == ("emb", "top_k")
    assert grid.space.values("emb") == ("minilm", "bm25") and grid.space.values("top_k") == (5, 1, 3)
    assert [g.name for g in grid.space.groups] == ["retrieval"]
    assert (grid.metric, grid.cost, grid.w, grid.t_max) == ("acc", "tokens", 0.8, 1000.0)
    assert grid.table.space is grid.space and grid.truth.space is grid.space
    # configuration 0 is the sidecar's first values; its mean is the reward of its rows
    assert grid.space.config(0) == {"emb": "minilm", "top_k": 5}
    rows = [r for r in load_rows(p) if r["emb"] == "minilm" and r["top_k"] == 5]
    expected = np.mean([0.8 * r["acc"] - 0.2 * r["tokens"] / 1000.0 for r in rows])
    assert grid.table.means[0] == pytest.approx(expected)
    assert grid.meta["metric"] == "acc" and read_sidecar(p)["w"] == 0.8


def test_load_grid_arguments_override_the_sidecar(tmp_path):
    p = tmp_path / "g.csv"
    write_table(p)
    _sidecar(p, params=["top_k", "emb"], metric="acc", cost="tokens", w=0.5)
    grid = load_grid(p, w=1.0, cost="")
    assert grid.w == 1.0 and grid.cost is None and grid.t_max is None
    i = grid.space.index({"top_k": 5, "emb": "bm25"})
    acc = [r["acc"] for r in load_rows(p) if r["top_k"] == 5 and r["emb"] == "bm25"]
    assert grid.table.means[i] == pytest.approx(np.mean(acc))  # accuracy only: no cost term
    with_cost = load_grid(p)
    assert with_cost.t_max == 500.0  # the table's largest cost when the sidecar names none
    # without a recorded space the values are in sorted order, as bench always replayed them
    assert with_cost.space.values("emb") == ("bm25", "minilm")


def test_load_grid_without_a_sidecar_names_what_is_missing(tmp_path):
    p = tmp_path / "g.csv"
    write_table(p)
    with pytest.raises(ValueError, match="params .* must be given when the table has no g.json sidecar"):
        load_grid(p, metric="acc")
    with pytest.raises(ValueError, match="metric .* must be given"):
        load_grid(p, params=["top_k", "emb"])
    p.with_suffix(".json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="must hold a JSON object"):
        load_grid(p)
    with pytest.raises(ValueError, match="must equal the space's parameters"):
        ReplayTable.from_file(p, params=["top_k", "emb"], metric="acc",
                              space=SearchSpace({"emb": ["bm25", "minilm"], "top_k": [1, 3, 5]}))


def test_load_grid_of_the_shipped_default_grid():
    grid = load_grid(default_grid_path())
    assert len(grid.space) == 240 and grid.table.n_questions == 120
    assert grid.metric == "answer_in_context" and grid.cost == "prompt_tokens" and grid.w == 0.9
    assert grid.truth.best_value == pytest.approx(grid.table.means.max())


# -- runs ----------------------------------------------------------------------------------------
def test_run_one_spends_whole_pulls_within_the_budget(tmp_path):
    p = tmp_path / "t.csv"
    write_table(p)
    t = ReplayTable.from_file(p, params=["top_k", "emb"], metric="acc")  # 120 grid calls
    run = run_one(t, "hier-ucb:alpha_upper=1.5", 0, budget=0.3, batch=7)  # 36 calls: 5 whole pulls
    assert run["pulls"] == 5 and run["calls"] == 35 and run["calls_share"] == pytest.approx(35 / 120)
    assert run["strategy"] == "hier-ucb:alpha_upper=1.5"
    assert sum(c for _, c in run["config_pulls"]) == 5
    assert len(run["regret_curve"]) == len(run["regret_curve_calls_share"]) == 5
    assert run["regret_curve"][-1] == pytest.approx(run["cumulative_regret"])
    with pytest.raises(ValueError, match="budget gives 3 calls, fewer than one pull of batch 4"):
        run_one(t, "random", 0, budget=0.03, batch=4)
    with pytest.raises(ValueError, match="budget gives 3 calls"):
        run_replay(t, ["random"], [0], budget=0.03, batch=4, progress=False)


def test_run_budgets_is_one_run_one(tmp_path):
    p = tmp_path / "t.csv"
    write_table(p)
    t = ReplayTable.from_file(p, params=["top_k", "emb"], metric="acc")
    runs = run_budgets(t, "flat-ts", 3, budgets=[0.2, 0.5], batch=3)
    big = run_one(t, "flat-ts", 3, budget=0.5, batch=3)
    small = run_one(t, "flat-ts", 3, budget=0.2, batch=3)
    for got, want in ((runs[0], small), (runs[1], big)):
        for key in ("pulls", "calls", "simple_regret", "recall@3", "cumulative_regret", "best", "config_pulls"):
            assert got[key] == want[key], key


def test_make_strategy_takes_a_spec():
    space = SearchSpace({"a": [1, 2, 3], "b": ["x", "y"]})
    s = make_strategy("hier-ucb:alpha_upper=1.5", space, seed=2)
    assert s.describe()["options"]["alpha_upper"] == 1.5
    assert make_strategy("hier-ucb:alpha_upper=1.5", space, alpha_upper=2.0).describe()["options"]["alpha_upper"] == 2.0
    assert make_strategy(parse_strategy_spec("random"), space).name == "random"
    with pytest.raises(ValueError, match="strategy must be one of .*got 'nope'"):
        make_strategy("nope:x=1", space)
    with pytest.raises(ValueError, match="must look like key=value"):
        make_strategy("hier-ucb:alpha_upper", space)
