"""LLM-judge metrics end to end over loopback OpenAI-compatible servers: scores, strict
parsing, the versioned cache, separate call/token counts, retries, timeouts and garbage,
and the real SmolLM2 playing the judge (the mechanics are tested, not its wisdom)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from autorag_hp.pipeline import (
    JudgeCorrectness,
    JudgeFaithfulness,
    JudgeOutputError,
    JudgeTemplate,
    PipelineObjective,
    PipelineResult,
    Question,
    make_metric,
    score_batch,
)
from autorag_hp.pipeline._generators import (
    EndpointResponseError,
    EndpointUnavailableError,
    OpenAIGenerator,
    RetryPolicy,
)
from autorag_hp.pipeline._judge import CORRECTNESS_V1, parse_score

sys.path.insert(0, str(Path(__file__).parent))
from _chat_server import ChatServer  # noqa: E402
from test_generators import model_server  # noqa: E402,F401  (the real-SmolLM2 server fixture)

FAST_RETRY = RetryPolicy(max_retries=2, backoff_s=0.05, max_backoff_s=0.2)
Q = Question("q1", "What is the capital of France?", ("Paris",))
R = PipelineResult(["Paris is the capital and most populous city of France."], 40, answer="Paris")


def _judge(srv, tmp_path, cls=JudgeCorrectness, **kw):
    kw.setdefault("retry", FAST_RETRY)
    return cls(base_url=srv.base_url, model="judge", cache_dir=tmp_path, **kw)


@pytest.mark.parametrize(
    "text, score",
    [("4", 4), ("Score: 4", 4), ("The answer is 5.", 5), ("4/5", 4), ("**3**", 3)],
)
def test_parse_score_accepts_one_number_on_the_scale(text, score):
    assert parse_score(text) == score


@pytest.mark.parametrize(
    "text, pattern",
    [("", "found 0"), ("Paris", "found 0"), ("1. The answer is 1.", "found 2"), ("7", "from 1 to 5, got '7'"),
     ("3.5", "got '3.5'"), ("The answer is 10th", "found 0")],
)
def test_parse_score_rejects_everything_else(text, pattern):
    with pytest.raises(ValueError, match=pattern):
        parse_score(text)


def test_template_validates_and_keeps_braces():
    with pytest.raises(ValueError, match=r"JudgeTemplate.version must be a positive integer, got 0"):
        JudgeTemplate(name="x", version=0, system="", user="{answer}")
    with pytest.raises(ValueError, match=r"must contain \{answer\}"):
        JudgeTemplate(name="x", version=1, system="", user="{question}")
    q = Question("b", "What does {x} mean?", ("{y}",))
    msgs = CORRECTNESS_V1.messages(q, PipelineResult(["c {z}"], 1, answer="{answer}"))
    assert "What does {x} mean?" in msgs[-1]["content"] and "Reference answer: {y}" in msgs[-1]["content"]
    assert "Candidate answer: {answer}" in msgs[-1]["content"]


def test_judge_scores_counts_and_caches_by_template_version(tmp_path):
    with ChatServer(mode="echo", reply="4", lifetime_s=30) as srv:
        j = _judge(srv, tmp_path)
        assert j.score_many([Q], [R]) == [0.75]
        assert j.stats["calls"] == 1 and j.stats["cache_hits"] == 0 and srv.requests == 1
        assert j.stats["prompt_tokens"] > 20 and j.stats["completion_tokens"] == 1
        assert j.score_many([Q], [R]) == [0.75] and srv.requests == 1 and j.stats["cache_hits"] == 1
        again = _judge(srv, tmp_path)  # a fresh instance reads the disk cache
        assert again.score_many([Q], [R]) == [0.75] and srv.requests == 1 and again.stats["calls"] == 0
        v2 = JudgeTemplate(name="correctness", version=2, system=CORRECTNESS_V1.system, user=CORRECTNESS_V1.user)
        bumped = _judge(srv, tmp_path, template=v2)  # same wording, new version: a new cache key
        assert bumped.score_many([Q], [R]) == [0.75] and srv.requests == 2
        faith = _judge(srv, tmp_path, cls=JudgeFaithfulness)
        assert faith.score_many([Q], [R]) == [0.75] and srv.requests == 3
        assert "[1] Paris is the capital" in faith.template.messages(Q, R)[-1]["content"]


def test_unparsable_judge_output_is_a_clear_error_or_an_explicit_score(tmp_path):
    with ChatServer(mode="echo", reply="Paris", lifetime_s=30) as srv:
        j = _judge(srv, tmp_path)
        with pytest.raises(JudgeOutputError, match=r"judge_correctness: .*template correctness@v1.*question 'q1'.*"
                                                   r"found 0 in 'Paris'.*unparsable_score=0.0"):
            j.score_many([Q], [R])
        lenient = _judge(srv, tmp_path, unparsable_score=0.0)
        assert lenient.score_many([Q, Q], [R, R]) == [0.0, 0.0]
        assert lenient.stats["unparsable"] == 2 and srv.requests == 3  # unparsable replies are not cached
    with pytest.raises(ValueError, match=r"unparsable_score must be None or a number in \[0, 1\], got 2"):
        JudgeCorrectness(base_url="http://127.0.0.1:9/v1", model="m", unparsable_score=2)


@pytest.mark.parametrize("mode", ["flaky", "ratelimit"])
def test_judge_retries_transient_errors_and_counts_them(tmp_path, mode):
    with ChatServer(mode=mode, fail_first=2, reply="5", lifetime_s=30) as srv:
        j = _judge(srv, tmp_path)
        assert j.score_many([Q], [R]) == [1.0]
        assert srv.requests == 3 and j.stats["retries"] == 2 and j.stats["calls"] == 1


def test_judge_timeouts_and_garbage_fail_clearly(tmp_path):
    with ChatServer(mode="slow", delay_s=5, lifetime_s=30) as srv:
        j = _judge(srv, tmp_path, timeout_s=0.3, retry=RetryPolicy(max_retries=1, backoff_s=0.05))
        with pytest.raises(EndpointUnavailableError, match=r"2 attempts.*no answer within timeout_s=0.3 s"):
            j.score_many([Q], [R])
        assert srv.requests == 2
    with ChatServer(mode="garbage", lifetime_s=30) as srv:
        with pytest.raises(EndpointResponseError, match=r"body that is not JSON: '<html>"):
            _judge(srv, tmp_path).score_many([Q], [R])
        assert srv.requests == 1


def test_judge_settings_from_environment_and_errors(monkeypatch, tmp_path):
    monkeypatch.setenv("AUTORAG_HP_JUDGE_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("AUTORAG_HP_JUDGE_MODEL", "judge-model")
    j = make_metric("judge_faithfulness", cache_dir=tmp_path)
    assert isinstance(j, JudgeFaithfulness) and j.judge.model == "judge-model"
    assert j.fingerprint().startswith("judge:faithfulness@v1:openai:http://127.0.0.1:9/v1:judge-model")
    with pytest.raises(ValueError, match=r"does not take option\(s\) \['modle'\]"):
        make_metric("judge_correctness", modle="x")
    with pytest.raises(ValueError, match=r"max_workers must be a positive integer, got 0"):
        make_metric("judge_correctness", max_workers=0)


class _AnsweringPipeline:
    """A tiny RAG stack whose answers come from an OpenAI-compatible generator."""

    t_max = 200

    def __init__(self, generator):
        self.generator = generator

    def run(self, config, questions):
        out = []
        for q in questions:
            ctx = [f"Context number {config['k']} about {q.text}"]
            a = self.generator.generate(q.text, ctx)
            out.append(PipelineResult(ctx, a.prompt_tokens, answer=a.text, latency_s=a.latency_s))
        return out


def test_judge_calls_and_tokens_are_reported_apart_from_the_generator(tmp_path):
    questions = [Question(f"q{i}", f"Question {i}?", ("Paris",)) for i in range(6)]
    with ChatServer(mode="echo", reply="Paris", lifetime_s=30) as gen_srv, \
            ChatServer(mode="echo", reply="Score: 5", lifetime_s=30) as judge_srv:
        gen = OpenAIGenerator(base_url=gen_srv.base_url, model="gen", cache_dir=tmp_path / "gen")
        judge = _judge(judge_srv, tmp_path / "judge", max_workers=3)
        obj = PipelineObjective(_AnsweringPipeline(gen), questions, metric=judge, batch=4, seed=1)
        out = obj({"k": 3}, 0)
        assert out.calls == 4 and out.reward == pytest.approx(
            sum(0.9 * 1.0 - 0.1 * d["prompt_tokens"] / 200 for d in out.details) / 4)
        assert all(d["judge_correctness"] == 1.0 and d["answer"] == "Paris" for d in out.details)
        assert gen.stats["calls"] == 4 and judge.stats["calls"] == 4
        assert gen_srv.requests == 4 and judge_srv.requests == 4
        gen_tokens = sum(d["prompt_tokens"] for d in out.details)
        assert judge.stats["prompt_tokens"] > 0 and judge.stats["prompt_tokens"] != gen_tokens
        obj({"k": 3}, 0)  # the same pull again: answers and judgements both come from the caches
        assert gen_srv.requests == 4 and judge_srv.requests == 4 and judge.stats["cache_hits"] == 4


def test_score_batch_needs_answers_for_the_judge(tmp_path):
    j = JudgeCorrectness(base_url="http://127.0.0.1:9/v1", model="m", cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"metric 'judge_correctness' needs generated answers.*question 'q1'"):
        score_batch([Q], [PipelineResult(["c"], 3)], metric="judge_correctness", t_max=10, scorer=j)


def _requests(base_url: str) -> int:
    import json
    import urllib.request

    return json.loads(urllib.request.urlopen(base_url.rsplit("/v1", 1)[0] + "/stats", timeout=5).read())["requests"]


@pytest.mark.slow
@pytest.mark.parametrize("cls", [JudgeCorrectness, JudgeFaithfulness])
def test_real_smollm2_plays_the_judge(model_server, tmp_path, cls):  # noqa: F811
    kw = dict(base_url=model_server, model="smollm2", api_key="sk-loopback", timeout_s=120, cache_dir=tmp_path)
    j = cls(**kw)
    before = _requests(model_server)
    try:  # greedy decoding: the reply is fixed, but whether a 135M judge keeps the format is not ours to pick
        [score] = j.score_many([Q], [R])
    except JudgeOutputError as exc:
        assert f"{j.name}: the judge" in str(exc) and j.template.id in str(exc) and "question 'q1'" in str(exc)
        assert j.stats["unparsable"] == 1 and j.stats["calls"] == 1
        lenient = cls(**kw, unparsable_score=0.0)
        assert lenient.score_many([Q], [R]) == [0.0] and lenient.stats["unparsable"] == 1
        assert _requests(model_server) == before + 2  # an unparsable reply is never cached
        return
    assert score in (0.0, 0.25, 0.5, 0.75, 1.0)
    assert j.stats["calls"] == 1 and j.stats["prompt_tokens"] > 50 and 0 < j.stats["completion_tokens"] <= 8
    assert cls(**kw).score_many([Q], [R]) == [score]  # a fresh instance: from the disk cache
    assert _requests(model_server) == before + 1
