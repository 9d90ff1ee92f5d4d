"""FunctionPipeline: validation of what a wrapped function returns, and a real third-party
stack (the Haystack example in pipelines/) wrapped and tuned through it."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from autorag_hp import SearchSpace, make_strategy
from autorag_hp.pipeline import PipelineObjective, PipelineResult, Question, QADataset, load_squad
from autorag_hp.pipeline.adapter import FunctionPipeline, PipelineOutputError, function_pipeline
from autorag_hp.tuner import tune

ROOT = Path(__file__).resolve().parents[1]
SQUAD = ROOT.parent / "shared" / "data" / "squad2-dev-5-articles.json"
QS = [Question("q1", "Where is Paris?", ("France",)), Question("q2", "Capital of Italy?", ("Rome",), ("p2",))]


def _ok(config, question):
    return {"contexts": [f"{question} Paris is in France."], "answer": "France", "prompt_tokens": 12}


def test_single_and_batch_functions_give_pipeline_results():
    seen = []

    def fn(config, question):
        seen.append(dict(config))
        config["mutated"] = True  # the caller's config must not change
        return _ok(config, question)

    cfg = {"top_k": 3}
    res = FunctionPipeline(fn, t_max=100).run(cfg, QS)
    assert cfg == {"top_k": 3} and seen == [{"top_k": 3}] * 2
    assert [r.answer for r in res] == ["France", "France"] and res[0].prompt_tokens == 12
    assert res[0].latency_s >= 0

    def batch(config, questions):
        return [{"contexts": [q], "retrieved_ids": ["p2"], "latency_s": 0.5} for q in questions]

    res = FunctionPipeline(batch, batch=True, count_tokens="words").run({}, QS)
    assert res[1].prompt_tokens == len("Capital of Italy?".split()) * 2 and res[1].latency_s == 0.5
    assert res[1].answer is None and res[1].retrieved_ids == ["p2"]

    got = FunctionPipeline(lambda c, q: PipelineResult(contexts=[q.text], prompt_tokens=3), pass_question=True).run({}, QS)
    assert got[0].contexts == ["Where is Paris?"]

    @function_pipeline(t_max=50)
    def decorated(config, question):
        return _ok(config, question)

    assert isinstance(decorated, FunctionPipeline) and decorated.t_max == 50.0


@pytest.mark.parametrize(
    "returned, pattern",
    [
        ("just text", r"expected a mapping with keys .* got str 'just text'"),
        ({"context": ["x"], "prompt_tokens": 1}, r"unknown key 'context' \(did you mean 'contexts'\?\)"),
        ({"prompt_tokens": 1}, r"the 'contexts' key is required"),
        ({"contexts": "abc", "prompt_tokens": 1}, r"'contexts' must be a list of strings, got str 'abc'"),
        ({"contexts": ["a", 2], "prompt_tokens": 1}, r"'contexts'\[1\] must be a string, got int 2"),
        ({"contexts": [], "answer": 3, "prompt_tokens": 1}, r"'answer' must be a string or None, got int 3"),
        ({"contexts": []}, r"'prompt_tokens' is missing: return the prompt's token count, or build"),
        ({"contexts": [], "prompt_tokens": -1}, r"'prompt_tokens' must be an integer >= 0, got -1"),
        ({"contexts": [], "prompt_tokens": "12"}, r"'prompt_tokens' must be an integer >= 0, got str '12'"),
        ({"contexts": [], "prompt_tokens": 1, "retrieved_ids": "p1"}, r"'retrieved_ids' must be a list of strings"),
        ({"contexts": [], "prompt_tokens": 1, "latency_s": math.nan}, r"'latency_s' must be a finite number >= 0"),
        ({"contexts": [], "prompt_tokens": 1, "extra": [1]}, r"'extra' must be a mapping"),
    ],
)
def test_bad_returns_name_function_question_and_field(returned, pattern):
    def broken(config, question):
        return returned

    with pytest.raises(PipelineOutputError, match=pattern) as info:
        FunctionPipeline(broken).run({"top_k": 2}, QS)
    assert "broken returned for question 0 ('q1') under config {'top_k': 2}" in str(info.value)


def test_bad_batches_and_constructor_arguments():
    with pytest.raises(PipelineOutputError, match=r"one result per question: got 1 results for 2 questions"):
        FunctionPipeline(lambda c, qs: [_ok(c, qs[0])], batch=True).run({}, QS)
    with pytest.raises(PipelineOutputError, match=r"must return a list with one result per question, got dict"):
        FunctionPipeline(lambda c, qs: _ok(c, qs[0]), batch=True).run({}, QS)
    with pytest.raises(ValueError, match=r"fn must be callable as fn\(config, question\), got int 3"):
        FunctionPipeline(3)
    with pytest.raises(ValueError, match=r"fn must accept two positional arguments \(config, question\)"):
        FunctionPipeline(lambda question: {})
    with pytest.raises(ValueError, match="t_max must be a positive number of tokens, got 0"):
        FunctionPipeline(_ok, t_max=0)
    with pytest.raises(ValueError, match=r"questions\[0\] must be a Question, got str"):
        FunctionPipeline(_ok).run({}, ["text"])


def test_errors_raised_inside_the_function_say_where():
    def fails(config, question):
        raise KeyError("top_k")

    with pytest.raises(KeyError) as info:
        FunctionPipeline(fails).run({"x": 1}, QS)
    assert any("fails on question 'q1' under config {'x': 1}" in n for n in getattr(info.value, "__notes__", []))


def test_objective_uses_the_function_pipeline():
    objective = PipelineObjective(FunctionPipeline(_ok, t_max=100), QS, metric="em", w=0.5, batch=2)
    out = objective({"top_k": 1}, 0)
    # "France" is right for q1 and wrong for q2.
    assert out.calls == 2 and out.reward == pytest.approx((0.5 * 1.0 + 0.5 * 0.0) / 2 - 0.5 * 12 / 100)


# --------------------------------------------------------------------------- a real third-party stack


def _load_example():
    spec = importlib.util.spec_from_file_location("example_wrap_existing_stack",
                                                  ROOT / "pipelines" / "example_wrap_existing_stack.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def normans():
    """The SQuAD 2.0 'Normans' article: 40-odd real paragraphs and questions about them."""
    if not SQUAD.is_file():
        pytest.skip(f"the SQuAD subset is not at {SQUAD} (it lives in ../shared/data/)")
    full = load_squad(SQUAD)
    corpus = [p for p in full.corpus if p.id.startswith("0-")]
    questions = [q for q in full.questions if q.gold_passages and q.gold_passages[0].startswith("0-")]
    return QADataset("normans", tuple(corpus), tuple(questions)).sample(24, seed=1)


@pytest.mark.slow
def test_haystack_stack_wrapped_and_tuned(normans, tmp_path):
    pytest.importorskip("haystack", reason="the example wraps Haystack: pip install haystack-ai")
    example = _load_example()
    pipeline, rag = example.make_pipeline(normans)
    assert isinstance(pipeline, FunctionPipeline)

    results = pipeline.run({"split_by": "word", "split_length": 10, "retriever": "hybrid", "top_k": 4},
                           normans.questions[:3])
    for r in results:
        assert len(r.contexts) == 4 and r.prompt_tokens > 100 and r.retrieved_ids and r.answer is None

    # Two chunkings keep the MiniLM embedding work small; the example's own SPACE has six.
    space = SearchSpace({"split_by": ["word", "period"], "split_length": [10],
                         "retriever": ["bm25", "embedding", "hybrid"], "top_k": [1, 4]})
    objective = PipelineObjective(pipeline, normans, metric="answer_in_context", w=0.9, batch=4, seed=0)
    strategy = make_strategy("hier-ucb", space, seed=0)
    result = tune(strategy, objective, budget_calls=64, calls_per_pull=4, journal=tmp_path / "j.jsonl")
    assert result.calls_used == 64 and len(result.records) == 16
    assert all(math.isfinite(r.reward) and len(r.details) == 4 for r in result.records)
    best = result.best(1)[0]
    assert space.validate(best.config) == best.config and best.pulls >= 2
    # Retrieval works: some pull found the gold answer in the context of most questions.
    assert max(sum(d["answer_in_context"] for d in r.details) for r in result.records) >= 3
