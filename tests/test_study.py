"""`autorag_hp.Study`: the tuning run of any pipeline (run folder, resume, budget, cache, grid
reuse, t_max) and `autorag-hp tune|grid --pipeline`, on small FunctionPipelines over tiny data."""

from __future__ import annotations

import csv
import json
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest

from autorag_hp import SearchSpace, Study, make_strategy
from autorag_hp.cli import main
from autorag_hp.objective import Outcome
from autorag_hp.pipeline import (
    FunctionPipeline,
    GridResult,
    PipelineObjective,
    PipelineSignatureError,
    Question,
    run_grid,
)
from autorag_hp.tuner import tune

N_DOCS = 12
DOCS = {f"d{i}": f"passage {i} says answer{i}" for i in range(N_DOCS)}
QUESTIONS = [Question(f"q{i}", f"what is {i}", (f"answer{i}",), (f"d{i}",)) for i in range(N_DOCS)]
SPACE = {"top_k": [1, 2, 3, 4], "shift": [0, 1, 2, 5, 7]}  # 20 configurations x 12 questions = 240 calls


class Stack:
    """A deterministic toy retrieval stack that counts the questions it is asked."""

    def __init__(self, *, ids: bool = True) -> None:
        self.calls = 0
        self.ids = ids

    def __call__(self, config, questions):
        self.calls += len(questions)
        out = []
        for q in questions:
            i = int(q.split()[-1])
            picked = [f"d{(i + j * config['shift']) % N_DOCS}" for j in range(config["top_k"])]
            rec = {"contexts": [DOCS[d] for d in picked], "prompt_tokens": 10 * config["top_k"]}
            if self.ids:
                rec["retrieved_ids"] = picked
            out.append(rec)
        return out


def _study(stack, tmp_path, name="run", **kw):
    kw = {"strategy": "random", "budget": 60, "batch": 4, "cache": tmp_path / "cache", **kw}
    return Study(FunctionPipeline(stack, batch=True, fingerprint="toy-v1"), QUESTIONS, SearchSpace(SPACE),
                 run_dir=tmp_path / name, **kw)


def _pulls(path: Path) -> list[dict]:
    return [r for r in map(json.loads, path.read_text().splitlines()) if r.get("type") == "pull"]


def test_run_folder_summary_and_result(tmp_path):
    stack = Stack()
    result = _study(stack, tmp_path, plots=True).run()
    out = tmp_path / "run"
    assert {p.name for p in out.iterdir()} >= {"run.json", "journal.jsonl", "grid.csv", "grid.json", "regret.csv",
                                               "summary.json", "regret.png", "pulls.png"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary == result.summary | {"settings": summary["settings"]}
    assert summary["grid_calls"] == 240 and summary["budget_calls"] == 60 == result.calls_used
    with open(out / "regret.csv", newline="") as f:
        regret = list(csv.DictReader(f))
    assert len(regret) == len(result.records) == len(result.regret) == len(_pulls(out / "journal.jsonl"))
    # The regret log agrees with the grid and with the result's own numbers.
    grid = GridResult.from_csv(out / "grid.csv")
    means = grid.mean_rewards()
    for row in regret:
        assert float(row["true_mean"]) == pytest.approx(means[int(row["config_index"])])
    best = result.best(3)
    assert [b.config for b in best] == [b["config"] for b in summary["best"][:3]]
    assert result.simple_regret == pytest.approx(summary["regret"]["simple_regret"])
    assert result.simple_regret == pytest.approx(max(means.values()) - means[grid.space.index(best[0].config)])
    assert result.recall(3) == summary["regret"]["recall@3"]
    assert 0.0 <= result.recall(5) <= 1.0
    assert summary["reward"]["t_max"] == grid.t_max == 40.0  # the grid's largest prompt, shared with the pulls
    for pull in _pulls(out / "journal.jsonl"):
        for d in pull["details"]:
            assert d["reward"] == pytest.approx(0.9 * d["quality"] - 0.1 * d["prompt_tokens"] / 40.0)
    assert json.loads((out / "run.json").read_text())["settings"]["pipeline"].startswith("object:")


def test_resume_after_a_crash_is_exact(tmp_path):
    full = _study(Stack(), tmp_path, "full", budget=80, plots=False).run()
    lines = (tmp_path / "full" / "journal.jsonl").read_text().splitlines(keepends=True)
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "run.json").write_text((tmp_path / "full" / "run.json").read_text())
    (cut / "journal.jsonl").write_text("".join(lines[:8]) + lines[8][:30])  # crash mid-record
    with pytest.raises(ValueError, match="pass it again"):
        Study.resume(cut)  # the run used a pipeline object
    stack = Stack()
    with pytest.warns(UserWarning, match="torn last record"):
        resumed = Study.resume(cut, pipeline=FunctionPipeline(stack, batch=True, fingerprint="toy-v1"),
                               data=QUESTIONS, plots=False).run()
    key = [(p["pull"], p["config"], p["reward"], p["calls"]) for p in _pulls(tmp_path / "full" / "journal.jsonl")]
    assert [(p["pull"], p["config"], p["reward"], p["calls"]) for p in _pulls(cut / "journal.jsonl")] == key
    assert [b.config for b in resumed.best(5)] == [b.config for b in full.best(5)]
    assert resumed.regret == full.regret
    assert stack.calls == 0  # grid and pulls all came from the outcome cache
    # a larger budget extends the run
    more = Study.resume(cut, pipeline=FunctionPipeline(Stack(), batch=True, fingerprint="toy-v1"), data=QUESTIONS,
                        budget=100, plots=False).run()
    assert more.calls_used == 100 and more.records[: len(key)] == resumed.records


@pytest.mark.parametrize("parallel", [1, 4])
def test_paired_sampling_gives_every_configuration_the_same_question_sequence(tmp_path, parallel):
    result = _study(Stack(), tmp_path, strategy="flat-ts", budget=200, batch=5, parallel=parallel, sampling="paired",
                    cache=False, grid="none", t_max=40, plots=False).run()
    seq: dict[str, list[list[str]]] = {}
    for p in _pulls(tmp_path / "run" / "journal.jsonl"):
        seq.setdefault(json.dumps(p["config"], sort_keys=True), []).append([d["question_id"] for d in p["details"]])
    assert len(result.records) == 40 and len(seq) > 5
    longest = max(seq.values(), key=len)
    for pulls in seq.values():
        assert pulls == longest[: len(pulls)]  # the k-th pull of every configuration: the same questions
        assert all(len(set(q)) == len(q) == 5 for q in pulls)
    # an epoch is the 12 questions cut to two whole batches: each covers 10 distinct questions
    if len(longest) >= 2:
        assert len(set(longest[0]) | set(longest[1])) == 10
    iid = _study(Stack(), tmp_path, "iid", strategy="flat-ts", budget=200, batch=5, sampling="iid", cache=False,
                 grid="none", t_max=40, plots=False).run()
    firsts: dict[str, tuple] = {}
    for p in _pulls(tmp_path / "iid" / "journal.jsonl"):
        firsts.setdefault(json.dumps(p["config"], sort_keys=True), tuple(d["question_id"] for d in p["details"]))
    assert iid.calls_used == 200 and len(set(firsts.values())) > 1  # iid: first pulls see different questions


@pytest.mark.parametrize(("strategy", "sampling", "expected"), [
    ("structured-tt", None, "paired"),  # chosen on the tuning set (issue #11 point 5)
    ("structured-tt:top_m=3", None, "paired"),
    ("pareto-ts", None, "paired"),  # chosen on its tuning seeds (docs/metrics.md)
    ("hier-ucb", None, "iid"),  # the paper's baselines draw each batch afresh
    ("flat-ts", None, "iid"),
    ("structured-tt", "iid", "iid"),  # an explicit choice always wins
    ("hier-ucb", "paired", "paired"),
])
def test_sampling_defaults_to_the_strategys_own(tmp_path, strategy, sampling, expected):
    study = _study(Stack(), tmp_path, strategy=strategy, sampling=sampling, plots=False)
    assert study.sampling == expected and study.settings()["sampling"] == expected


@pytest.mark.parametrize(("strategy", "batch", "expected"), [
    ("structured-tt", None, 2),  # chosen with its question-batch offsets on the tuning set (issue #11 point 5)
    ("structured-tt:batch_effects=false", None, 2),  # the strategy's default, whatever its options
    ("structured-ts", None, 4),
    ("hier-ucb", None, 4),
    ("structured-tt", 4, 4),  # an explicit choice always wins
])
def test_batch_defaults_to_the_strategys_own(tmp_path, strategy, batch, expected):
    study = _study(Stack(), tmp_path, strategy=strategy, batch=batch, budget=24, grid="none", t_max=40, plots=False)
    assert study.batch == expected and study.settings()["batch"] == expected
    result = study.run()
    assert result.summary["pulls"] == 24 // expected  # every pull scores `expected` questions
    with pytest.raises(ValueError, match="batch must be a positive integer, got 0"):
        _study(Stack(), tmp_path, strategy=strategy, batch=0)


def _resume_cut(tmp_path, lines: int, *, forget: tuple[str, ...] = ()) -> Study:
    """The run in tmp_path/"full" cut to its first ``lines`` journal lines (and its run.json without the
    settings in ``forget``) in tmp_path/"cut", resumed."""
    cut = tmp_path / "cut"
    cut.mkdir()
    saved = json.loads((tmp_path / "full" / "run.json").read_text())
    for key in forget:
        del saved["settings"][key]
    (cut / "run.json").write_text(json.dumps(saved))
    kept = (tmp_path / "full" / "journal.jsonl").read_text().splitlines(keepends=True)[:lines]
    (cut / "journal.jsonl").write_text("".join(kept))
    return Study.resume(cut, pipeline=FunctionPipeline(Stack(), batch=True, fingerprint="toy-v1"), data=QUESTIONS,
                        plots=False)


def test_paired_sampling_resumes_exactly(tmp_path):
    full = _study(Stack(), tmp_path, "full", strategy="structured-tt", budget=120, batch=3, sampling="paired",
                  plots=False).run()
    cut = tmp_path / "cut"
    resumed = _resume_cut(tmp_path, 21).run()
    key = [(p["config"], [d["question_id"] for d in p["details"]], p["reward"])
           for p in _pulls(tmp_path / "full" / "journal.jsonl")]
    assert [(p["config"], [d["question_id"] for d in p["details"]], p["reward"])
            for p in _pulls(cut / "journal.jsonl")] == key
    assert [b.config for b in resumed.best(3)] == [b.config for b in full.best(3)]
    # the resumed run's regret log replays the journaled pulls with the model that ran (population set)
    assert full.strategy.describe()["options"]["population"] == 12 // 3
    assert resumed.regret == full.regret
    with pytest.raises(ValueError, match="sampling must be one of 'iid', 'paired', got 'pairs'"):
        _study(Stack(), tmp_path, "bad", sampling="pairs")


def test_a_run_saved_before_sampling_was_recorded_resumes_with_iid_sampling(tmp_path):
    # run.json files written before the setting existed come from iid runs; resuming one must not switch to
    # the new default, or the resumed pulls would see other questions than the uninterrupted run
    _study(Stack(), tmp_path, "full", strategy="structured-tt", budget=120, batch=3, sampling="iid", plots=False).run()
    resumed = _resume_cut(tmp_path, 21, forget=("sampling",))
    assert resumed.sampling == "iid"
    resumed.run()
    key = [(p["config"], [d["question_id"] for d in p["details"]]) for p in _pulls(tmp_path / "full" / "journal.jsonl")]
    assert [(p["config"], [d["question_id"] for d in p["details"]])
            for p in _pulls(tmp_path / "cut" / "journal.jsonl")] == key


@pytest.mark.parametrize("parallel", [1, 3, 5])
def test_budget_is_never_overrun_last_pull_is_trimmed(tmp_path, parallel):
    result = _study(Stack(), tmp_path, budget=153, batch=8, parallel=parallel, grid="none", t_max=40, plots=False).run()
    calls = [r.calls for r in result.records]
    assert sum(calls) == result.calls_used == 153
    assert calls[:-1] == [8] * 19 and calls[-1] == 1  # 19 whole pulls of 8, then one question
    pulls = _pulls(tmp_path / "run" / "journal.jsonl")
    assert [len(p["details"]) for p in pulls] == calls


def test_budget_with_an_objective_that_cannot_trim_stops_after_the_last_whole_pull():
    space = SearchSpace({"a": [0, 1, 2]})

    def objective(config, pull):
        return Outcome(reward=0.5, calls=8)

    result = tune(make_strategy("random", space, seed=0), objective, budget_calls=153, calls_per_pull=8, parallel=4)
    assert result.calls_used == 152 and len(result.records) == 19


def test_warm_cache_second_tune_makes_zero_stack_calls(tmp_path):
    first, second = Stack(), Stack()
    r1 = _study(first, tmp_path, "a", budget=0.3, strategy="structured-tt", plots=False).run()
    assert first.calls == 240  # the grid once (the probe's question is reused), pulls hit the cache
    r2 = _study(second, tmp_path, "b", budget=0.3, strategy="structured-tt", plots=False).run()
    assert second.calls == 0 and r2.summary["cache"]["stack_calls"] == 0
    assert [(r.config, r.reward) for r in r2.records] == [(r.config, r.reward) for r in r1.records]
    # a changed fingerprint misses; cache=False never stores
    third = Stack()
    Study(FunctionPipeline(third, batch=True, fingerprint="toy-v2"), QUESTIONS, SPACE, strategy="random",
          budget=20, cache=tmp_path / "cache", grid="none", t_max=40).run()
    assert third.calls == 1 + 20
    fourth = Stack()
    Study(FunctionPipeline(fourth, batch=True, fingerprint="toy-v1"), QUESTIONS, SPACE, strategy="random",
          budget=20, cache=False, grid="none", t_max=40).run()
    assert fourth.calls == 1 + 20


def test_derived_fingerprint_follows_the_code(tmp_path):
    def a(config, questions):
        return []

    def b(config, questions):
        return [1]

    fa, fb = FunctionPipeline(a, batch=True).fingerprint, FunctionPipeline(b, batch=True).fingerprint
    assert fa != fb and fa == FunctionPipeline(a, batch=True).fingerprint
    assert FunctionPipeline(a, batch=False).fingerprint != fa
    assert FunctionPipeline(a, fingerprint="mine").fingerprint == "mine"
    with pytest.raises(ValueError, match="fingerprint must be a non-empty string"):
        FunctionPipeline(a, fingerprint="")


def test_grid_reload_keeps_parameter_order_and_feeds_a_study(tmp_path):
    space = SearchSpace({"top_k": [3, 1, 2], "shift": [5, 0]})  # neither names nor values sorted
    stack = Stack()
    pipe = FunctionPipeline(stack, batch=True)
    grid = run_grid(pipe, QUESTIONS, space, out=tmp_path / "g.csv", w=0.8)
    side = json.loads((tmp_path / "g.json").read_text())
    assert list(side["space"]["params"]) == ["top_k", "shift"] and side["space"]["params"]["top_k"] == [3, 1, 2]
    back = GridResult.from_csv(tmp_path / "g.csv")
    assert back.space.to_dict() == space.to_dict() and (back.metric, back.w, back.t_max) == ("answer_in_context", 0.8, 30.0)
    for k in grid.columns:
        assert np.array_equal(back.columns[k], grid.columns[k]) or np.allclose(
            back.columns[k].astype(float), grid.columns[k].astype(float), equal_nan=True)
    assert back.best(3) == grid.best(3)
    from autorag_hp.bench import load_grid  # the benchmark's reader sees the same order and scale

    loaded = load_grid(tmp_path / "g.csv")
    assert loaded.space.to_dict() == space.to_dict() and loaded.t_max == 30.0 and loaded.w == 0.8
    assert loaded.truth.means.tolist() == pytest.approx([grid.mean_rewards()[i] for i in range(len(space))])

    # a study reuses it (no grid evaluation), on its scale
    calls = stack.calls
    res = Study(pipe, QUESTIONS, space, strategy="random", budget=24, w=0.8, grid=tmp_path / "g.csv",
                cache=False).run()
    assert stack.calls - calls == 1 + 24 and res.summary["reward"]["t_max"] == 30.0 and res.regret
    with pytest.raises(ValueError, match="was scored with t_max=30.0, got 99"):
        Study(pipe, QUESTIONS, space, strategy="random", budget=24, w=0.8, grid=tmp_path / "g.csv", t_max=99,
              cache=False).run()
    with pytest.raises(ValueError, match="was scored with w=0.8"):
        Study(pipe, QUESTIONS, space, strategy="random", budget=24, grid=tmp_path / "g.csv", cache=False).run()
    with pytest.raises(ValueError, match="its search space .* differs from the study's"):
        Study(pipe, QUESTIONS, SPACE, strategy="random", budget=24, w=0.8, grid=tmp_path / "g.csv", cache=False).run()
    with pytest.raises(ValueError, match="its questions differ from the study's"):
        Study(pipe, QUESTIONS[:6], space, strategy="random", budget=24, w=0.8, grid=tmp_path / "g.csv",
              cache=False).run()


def test_t_max_is_shared_and_its_absence_named(tmp_path):
    pipe = FunctionPipeline(Stack(), batch=True)
    with pytest.raises(ValueError, match=r"t_max must be given: pass PipelineObjective\(\.\.\., t_max=TOKENS\).*"
                                         r"FunctionPipeline\) has t_max=None"):
        PipelineObjective(pipe, QUESTIONS)
    with pytest.raises(ValueError, match="t_max must be given .* when there is no grid"):
        Study(pipe, QUESTIONS, SPACE, budget=20, grid="none", cache=False).run()
    grid = run_grid(pipe, QUESTIONS, SPACE)
    assert grid.t_max == 40.0 and grid.extra["t_max_source"] == "largest prompt"
    assert run_grid(FunctionPipeline(Stack(), batch=True, t_max=64), QUESTIONS, SPACE).t_max == 64.0
    res = Study(FunctionPipeline(Stack(), batch=True, t_max=64), QUESTIONS, SPACE, strategy="random", budget=20,
                cache=False).run()
    assert res.summary["reward"]["t_max"] == res.grid.t_max == 64.0


def test_gold_recall_without_retrieved_ids_is_an_error_not_zero(tmp_path):
    no_ids = FunctionPipeline(Stack(ids=False), batch=True)
    with pytest.raises(ValueError, match=r"gold_recall' needs the retrieved passage ids \('retrieved_ids'\)"):
        run_grid(no_ids, QUESTIONS, SPACE, metric="gold_recall")
    with pytest.raises(ValueError, match=r"probing with one question.*'retrieved_ids'"):
        Study(no_ids, QUESTIONS, SPACE, metric="gold_recall", budget=20, cache=False).run()
    grid = run_grid(no_ids, QUESTIONS, SPACE)  # another metric: the column is NaN (not measured), never 0
    assert np.isnan(grid.columns["gold_recall"]).all()
    with_ids = run_grid(FunctionPipeline(Stack(), batch=True), QUESTIONS, SPACE, metric="gold_recall")
    assert with_ids.columns["gold_recall"].min() >= 0 and with_ids.columns["gold_recall"].max() == 1.0


def test_stack_without_retrieved_ids_tunes_and_journals_gold_recall_as_null(tmp_path):
    # gold_recall cannot be measured without ids: NaN in the grid, null in the JSON journal
    result = _study(Stack(ids=False), tmp_path, cache=False).run()
    pulls = _pulls(tmp_path / "run" / "journal.jsonl")
    assert result.calls_used == 60 and len(pulls) == 15
    assert all(d["gold_recall"] is None for p in pulls for d in p["details"])
    assert all(d["answer_in_context"] in (0.0, 1.0) for p in pulls for d in p["details"])


def test_function_pipeline_names_a_swapped_argument_order():
    def run(questions, config):
        return Stack()(config, questions)

    with pytest.raises(PipelineSignatureError, match=r"takes \(questions, config\).*lambda config, questions"):
        FunctionPipeline(run, batch=True)

    def stack_run(a, b):  # names that do not tell: found on the first call
        return Stack()(b, a)

    pipe = FunctionPipeline(stack_run, batch=True)
    with pytest.raises(PipelineSignatureError, match=r"but stack_run takes \(questions, config\).*raised ValueError"):
        pipe.run({"top_k": 1, "shift": 0}, QUESTIONS[:1])

    def buggy(config, questions):
        raise KeyError("index_missing")

    with pytest.raises(KeyError, match="index_missing"):  # a bug of the stack's own is left as it is
        FunctionPipeline(buggy, batch=True).run({"top_k": 1}, QUESTIONS[:1])


# --------------------------------------------------------------------------- the command line

STACK_MODULE = """
from autorag_hp.pipeline import FunctionPipeline, Question

CALLS = {"n": 0}
DOCS = {f"d{i}": f"passage {i} says answer{i}" for i in range(12)}

def run(config, questions):
    CALLS["n"] += len(questions)
    out = []
    for q in questions:
        i = sum(map(ord, q)) % 12
        ids = [f"d{(i + j * config['shift']) % 12}" for j in range(config["top_k"])]
        out.append({"contexts": [DOCS[d] for d in ids], "prompt_tokens": 10 * config["top_k"], "retrieved_ids": ids})
    return out

pipeline = FunctionPipeline(run, batch=True, fingerprint="{name}")

def build():
    return FunctionPipeline(run, batch=True, fingerprint="{name}")

def swapped_stack(qs, cfg):
    return run(qs, cfg)

def takes_args(x, y, z):
    return None

def broken():
    raise RuntimeError("no index on disk")

swapped = FunctionPipeline(lambda a, b: run(b, a), batch=True)
not_a_pipeline = 42
"""


@pytest.fixture
def stack_module(tmp_path, monkeypatch):
    name = f"toystack_{uuid.uuid4().hex[:12]}"  # a fresh module (and cache fingerprint) per test
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(STACK_MODULE.replace("{name}", name)))
    (tmp_path / "space.toml").write_text('[params]\ntop_k = [1, 2, 3]\nshift = [0, 1, 5]\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUTORAG_HP_CACHE", str(tmp_path / "cache"))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


@pytest.mark.parametrize(
    "attr, message",
    [
        ("nowhere_mod:x", "--pipeline nowhere_mod:x: module 'nowhere_mod' not found (searched the current folder"),
        ("{m}:missing", "--pipeline {m}:missing: module '{m}' has no attribute 'missing' (it has: "),
        ("{m}:not_a_pipeline", "not_a_pipeline is a int, not a pipeline"),
        ("{m}:takes_args", "takes_args is a callable with signature (x, y, z), not a pipeline nor a zero-argument"),
        ("{m}:run", "wrap it: pipeline = FunctionPipeline(run, batch=True)"),
        ("{m}:swapped_stack", "FunctionPipeline(lambda config, questions: swapped_stack(questions, config)"),
        ("{m}:swapped", "FunctionPipeline calls fn(config, questions), but <lambda> takes (questions, config)"),
        ("{m}:broken", "calling the factory broken() failed: RuntimeError: no index on disk"),
        ("{m}", "--pipeline must look like MODULE:ATTR"),
    ],
)
def test_pipeline_option_errors_are_one_line(stack_module, attr, message, capsys, tmp_path):
    attr, message = attr.replace("{m}", stack_module), message.replace("{m}", stack_module)
    for cmd in (["tune", "--budget", "20"], ["grid"]):
        assert main([*cmd, "--pipeline", attr, "--space", "space.toml", "--out",
                     str(tmp_path / ("o.csv" if cmd == ["grid"] else "o")), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
        assert not (tmp_path / "o").exists() and not (tmp_path / "o.csv").exists()
    assert main(["tune", "--pipeline", f"{stack_module}:build", "--quiet"]) == 2
    assert "--space is required with --pipeline" in capsys.readouterr().err


def test_cli_grid_then_tune_then_resume_never_calls_the_stack_again(stack_module, capsys, tmp_path):
    mod_calls = lambda: sys.modules[stack_module].CALLS["n"]  # noqa: E731
    data = ["--data", "default"]
    assert main(["grid", "--pipeline", f"{stack_module}:build", "--space", "space.toml", *data, "--out", "g.csv",
                 "--quiet"]) == 0
    after_grid = mod_calls()
    n_q = json.loads(Path("g.json").read_text())["questions"]
    assert after_grid == 9 * n_q
    assert main(["tune", "--pipeline", f"{stack_module}:pipeline", "--space", "space.toml", *data, "--budget", "0.3",
                 "--batch", "8", "--out", "run", "--quiet", "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "simple regret" in out and "run folder: run" in out
    assert mod_calls() == after_grid  # the tune's grid and pulls all hit the cache
    summary = json.loads(Path("run/summary.json").read_text())
    assert summary["calls_used"] == summary["budget_calls"] == int(0.3 * (9 * n_q))
    assert summary["cache"]["stack_calls"] == 0
    # resume with a larger budget: re-resolves --pipeline from run.json; new pulls may be new cells only
    assert main(["tune", "--resume", "run", "--budget", "0.4", "--quiet", "--no-plots"]) == 0
    assert mod_calls() == after_grid
    # without the cache a resume reads its grid.csv back: only the probe and the new pulls reach the stack
    assert main(["tune", "--resume", "run", "--budget", "0.5", "--no-cache", "--quiet", "--no-plots"]) == 0
    new_calls = int(0.5 * (9 * n_q)) - int(0.4 * (9 * n_q))
    assert mod_calls() - after_grid == 1 + new_calls
    assert json.loads(Path("run/summary.json").read_text())["calls_used"] == int(0.5 * (9 * n_q))
    assert main(["tune", "--resume", "run", "--pipeline", f"{stack_module}:build", "--quiet"]) == 2
    assert "--pipeline: the run in 'run' used" in capsys.readouterr().err
    # the grid CSV can be given to tune instead of recomputing it
    assert main(["tune", "--pipeline", f"{stack_module}:pipeline", "--space", "space.toml", *data, "--grid", "g.csv",
                 "--budget", "0.2", "--out", "run2", "--quiet", "--no-plots"]) == 0
    assert json.loads(Path("run2/summary.json").read_text())["grid"]["source"].endswith("g.csv")
    # --no-cache calls the stack
    before = mod_calls()
    assert main(["tune", "--pipeline", f"{stack_module}:pipeline", "--space", "space.toml", *data, "--grid", "never",
                 "--t-max", "30", "--no-cache", "--budget", "16", "--out", "run3", "--quiet", "--no-plots"]) == 0
    assert mod_calls() - before == 1 + 16


@pytest.mark.parametrize(("strategy", "sampling", "population"), [
    ("structured-tt", "paired", 12 // 3),  # the default under paired sampling: 12 questions // 3 per pull
    ("structured-tt", "iid", 0),
    ("structured-tt:population=auto", "paired", 12 // 3),
    ("structured-tt:population=auto", "iid", 0),
    ("structured-tt:population=2", "paired", 2),
    ("hier-ucb", "paired", None),
])
def test_paired_study_sets_the_structured_population(tmp_path, strategy, sampling, population):
    result = _study(Stack(), tmp_path, strategy=strategy, budget=60, batch=3, sampling=sampling, plots=False).run()
    opts = result.strategy.describe()["options"]
    assert opts.get("population") == population
