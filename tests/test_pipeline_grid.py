"""Reference pipeline, shared-work grid, PipelineObjective and `autorag-hp grid` on small real data."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from autorag_hp.cli import main
from autorag_hp.objective import Outcome
from autorag_hp.pipeline import (
    Passage,
    PipelineObjective,
    PipelineResult,
    QADataset,
    Question,
    RAGPipeline,
    ReferencePipeline,
    default_space,
    load_default_dataset,
    load_squad,
    register_embedder,
    run_grid,
    score_result,
)
from autorag_hp.pipeline._retrievers import ENCODE_STATS
from autorag_hp.space import SearchSpace

ROOT = Path(__file__).resolve().parents[1]
SQUAD = ROOT / ".." / "shared" / "data" / "squad2-dev-5-articles.json"
needs_squad = pytest.mark.skipif(not SQUAD.is_file(), reason=f"SQuAD subset not found at {SQUAD}")

SPACE = SearchSpace({
    "chunk_size": [24, 96],
    "overlap": [0, 12],
    "embedder": ["bm25", "static", "minilm"],
    "top_k": [1, 3],
    "compression": [0.4, 1.0],
})


@pytest.fixture(scope="module")
def squad_small():
    ds = load_squad(SQUAD)
    corpus = ds.corpus[:10]
    ids = {p.id for p in corpus}
    qs = [q for q in ds.questions if q.gold_passages[0] in ids][:30]
    return QADataset("squad-small", corpus, qs)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def _same(a, b):
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


@needs_squad
def test_shared_work_grid_equals_running_each_configuration(squad_small, cache):
    pipe = ReferencePipeline.from_space(squad_small, SPACE, cache_dir=cache)
    grid = run_grid(pipe, squad_small, SPACE)
    assert len(grid.rows) == len(SPACE) * len(squad_small.questions)
    # one retrieval per (chunking, embedder), not per configuration
    assert pipe.stats["retrieval_calls"] == 2 * 2 * 3
    fresh = ReferencePipeline.from_space(squad_small, SPACE, cache_dir=cache)
    rows = {(r["config_index"], r["question_id"]): r for r in grid.rows}
    for i, cfg in enumerate(SPACE):
        for q, res in zip(squad_small.questions, fresh.run(cfg, squad_small.questions)):
            want = score_result(q, res, t_max=pipe.t_max)
            got = rows[(i, q.id)]
            for k in ("answer_in_context", "gold_recall", "prompt_tokens", "reward"):
                assert _same(got[k], want[k]), (cfg, q.id, k, got[k], want[k], res.contexts)
    # knobs matter on real data
    means = grid.mean("answer_in_context")
    assert max(means.values()) - min(means.values()) > 0.3


@needs_squad
def test_reference_pipeline_results(squad_small, cache):
    pipe = ReferencePipeline(squad_small, cache_dir=cache, max_top_k=5)
    assert isinstance(pipe, RAGPipeline)
    qs = squad_small.questions[:3]
    full = pipe.run({"chunk_size": 64, "embedder": "bm25", "top_k": 3, "compression": 1.0}, qs)
    half = pipe.run({"chunk_size": 64, "embedder": "bm25", "top_k": 3, "compression": 0.5}, qs)
    for f, h, q in zip(full, half, qs):
        assert len(f.contexts) == 3 and f.answer is None and f.latency_s >= 0
        assert f.prompt_tokens == pipe.tokenizer.count(q.text) + f.extra["context_tokens"]
        assert h.extra["context_tokens"] <= 0.5 * f.extra["retrieved_tokens"]
        assert set(f.retrieved_ids) <= {p.id for p in squad_small.corpus}
        assert all(s in " ".join(f.contexts) for c in h.contexts for s in c.split(". "))


def test_each_text_is_embedded_once_and_a_second_run_needs_no_model(tmp_path):
    seen: list[str] = []

    class Counting:
        fingerprint = "grid-counting-v1"

        def encode_queries(self, texts):
            return self.encode_passages(texts)

        def encode_passages(self, texts):
            seen.extend(texts)
            v = np.array([[t.count(c) for c in "aeiou"] + [1.0] for t in texts], dtype=np.float32)
            return v / np.linalg.norm(v, axis=1, keepdims=True)

    register_embedder("grid-counting", Counting)
    ds = load_default_dataset().sample(20, seed=3)
    space = SearchSpace({"chunk_size": [32, 64], "embedder": ["grid-counting"], "top_k": [1, 2, 4],
                         "compression": [0.5, 0.75, 1.0]})
    first = run_grid(ReferencePipeline.from_space(ds, space, cache_dir=tmp_path), ds, space)
    assert len(seen) == len(set(seen))  # nothing embedded twice
    n = len(seen)
    again = run_grid(ReferencePipeline.from_space(ds, space, cache_dir=tmp_path), ds, space)
    assert len(seen) == n  # all from the on-disk cache
    assert [r["reward"] for r in again.rows] == [r["reward"] for r in first.rows]


def test_config_errors_name_the_knob():
    pipe = ReferencePipeline([Passage("a", "Some text here.")], cache_dir=None, tokenizer="words", max_top_k=4)
    q = [Question("q", "text?", ("text",))]
    for cfg, match in [
        ({"chunk_sz": 3}, "unknown knob 'chunk_sz'"),
        ({"chunk_size": 0}, "chunk_size must be a positive integer, got 0"),
        ({"top_k": 5}, r"top_k must be an integer with 1 <= top_k <= max_top_k=4, got 5"),
        ({"embedder": "word2vec"}, "embedder must be one of .* got 'word2vec'"),
        ({"compressor": "gzip"}, "compressor must be one of .* got 'gzip'"),
        ({"compression": 0}, "compression must satisfy 0 < compression <= 1, got 0"),
        ({"generator": "gpt-9"}, "generator must be one of .* got 'gpt-9'"),
    ]:
        with pytest.raises(ValueError, match=match):
            pipe.run(cfg, q)
    with pytest.raises(ValueError, match="corpus must be a non-empty sequence of Passage"):
        ReferencePipeline([])


def test_generator_hook_answers_from_the_final_contexts():
    class FirstWords:
        """Answers with the first two words of the first context (a real, if poor, reader)."""

        generates = True

        def generate(self, question, contexts):
            text = " ".join(contexts[0].split()[:2]) if contexts else ""
            return text, 7 + sum(len(c.split()) for c in contexts)

    pipe = ReferencePipeline([Passage("a", "Paris France. Rome Italy.")], cache_dir=None, tokenizer="words",
                             generator=FirstWords())
    res = pipe.run({"chunk_size": 2, "top_k": 1}, [Question("q", "Paris?", ("Paris France",))])[0]
    assert res.answer == "Paris France." and res.prompt_tokens == 9
    row = score_result(Question("q", "Paris?", ("Paris France",)), res, metric="em", t_max=100)
    assert row["em"] == 1.0


def test_pipeline_objective_is_reproducible_per_pull():
    ds = load_default_dataset()
    pipe = ReferencePipeline.from_space(ds, default_space(), cache_dir=None)
    obj = PipelineObjective(pipe, ds, batch=5, seed=11)
    cfg = {"chunk_size": 128, "embedder": "bm25", "top_k": 3, "compression": 1.0}
    a, b = obj(cfg, 7), obj(cfg, 7)
    assert isinstance(a, Outcome) and a.calls == 5 and len(a.details) == 5
    assert [d["question_id"] for d in a.details] == [d["question_id"] for d in b.details]
    assert a.reward == pytest.approx(np.mean([d["reward"] for d in a.details]))
    assert [d["question_id"] for d in obj(cfg, 8).details] != [d["question_id"] for d in a.details]
    assert PipelineObjective(pipe, ds, batch=5, seed=11).sample(7) == obj.sample(7)
    assert obj.t_max == pipe.t_max
    for kwargs, match in [({"w": 1.5}, "w must be a number with 0 <= w <= 1"), ({"batch": 0}, "batch must be"),
                          ({"metric": "bleu"}, "metric must be one of"), ({"t_max": -1}, "t_max must be a positive number")]:
        with pytest.raises(ValueError, match=match):
            PipelineObjective(pipe, ds, **kwargs)
    with pytest.raises(ValueError, match="pull must be a non-negative integer"):
        obj(cfg, -1)


def test_run_grid_accepts_any_rag_pipeline(tmp_path):
    class Echo:
        """A pipeline that is not ours: returns the question as its only context."""

        def run(self, config, questions):
            return [PipelineResult(contexts=[q.text * config["n"]], prompt_tokens=10 * config["n"]) for q in questions]

    ds = QADataset("t", (Passage("p", "x"),), (Question("a", "alpha", ("alpha",)), Question("b", "beta", ("gamma",))))
    out = tmp_path / "echo.csv"
    g = run_grid(Echo(), ds, {"n": [1, 2]}, out=out, w=0.5)
    assert g.t_max == 20 and g.mean_rewards() == {0: pytest.approx(0.0), 1: pytest.approx(-0.5)}
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["config_index", "n", "question_id", "answer_in_context", "em", "f1", "gold_recall",
                             "prompt_tokens", "latency_s", "quality", "reward"]
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["params"] == ["n"] and meta["cost"] == "prompt_tokens" and meta["t_max"] == 20
    with pytest.raises(ValueError, match="out must be a .csv path"):
        run_grid(Echo(), ds, {"n": [1]}, out=tmp_path / "x.txt")


def test_default_space_file_matches_the_packaged_copy():
    assert SearchSpace.from_file(str(ROOT / "pipelines" / "default_space.toml")) == default_space()
    assert len(default_space()) == 240
    squad = SearchSpace.from_file(str(ROOT / "pipelines" / "squad_space.toml"))
    assert len(squad) == 240


def test_grid_command_writes_a_table_that_bench_can_replay(tmp_path, capsys):
    from autorag_hp.bench import ReplayTable

    data = tmp_path / "data"
    data.mkdir()
    ds = load_default_dataset()
    (data / "corpus.jsonl").write_text("\n".join(json.dumps({"id": p.id, "text": p.text}) for p in ds.corpus[:10]))
    (data / "questions.jsonl").write_text("\n".join(
        json.dumps({"id": q.id, "question": q.text, "answers": list(q.answers), "gold_passages": list(q.gold_passages)})
        for q in ds.questions if q.gold_passages[0] in {p.id for p in ds.corpus[:10]}))
    space = tmp_path / "space.toml"
    space.write_text('[params]\nchunk_size = [32, 128]\nembedder = ["bm25", "static"]\ntop_k = [1, 3]\n'
                     'compression = [0.5, 1.0]\n')
    out = tmp_path / "t.csv"
    rc = main(["grid", "--data", str(data), "--space", str(space), "--out", str(out), "--quiet",
               "--cache", str(tmp_path / "c")])
    assert rc == 0 and capsys.readouterr().out.strip() == str(out)
    meta = json.loads(out.with_suffix(".json").read_text())
    table = ReplayTable.from_file(out, params=meta["params"], metric=meta["metric"], cost=None, w=1.0,
                                  t_max=None, question_col="question_id", grid_questions=10)
    assert len(table.space) == 16 and table.outcomes is not None
    assert main(["grid", "--data", str(tmp_path / "missing.json"), "--out", str(out), "--quiet"]) == 2


def test_grid_table_quotes_awkward_ids_and_keeps_empty_answer_metrics(tmp_path):
    class Const:
        def run(self, config, questions):
            return [PipelineResult(contexts=["alpha, beta"], prompt_tokens=4) for _ in questions]

    ds = QADataset("t", (Passage("p", "x"),), (Question('q,1 "x"', "a?", ("alpha",)),))
    g = run_grid(Const(), ds, {"k": ["a,b", "c"]}, out=tmp_path / "t.csv")
    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert [r["question_id"] for r in rows] == ['q,1 "x"'] * 2 and [r["k"] for r in rows] == ["a,b", "c"]
    assert rows[0]["em"] == "" and rows[0]["gold_recall"] == "nan" and rows[0]["answer_in_context"] == "1.0"
    assert g.rows[0]["em"] is None and len(g) == 2
    with pytest.raises(ValueError, match="metric 'em' needs generated answers"):
        run_grid(Const(), ds, {"k": [1]}, metric="em")
