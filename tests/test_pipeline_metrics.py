"""Metrics: SQuAD normalisation, EM/F1, answer-in-context, recall, reward, per-question scoring."""

from __future__ import annotations

import math

import pytest

from autorag_hp.pipeline import (
    PipelineResult,
    Question,
    answer_in_context,
    exact_match,
    gold_recall,
    normalize_answer,
    reward,
    score_result,
    token_f1,
)


def test_squad_normalisation():
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert normalize_answer("an Apple, a pear and THE plum") == "apple pear and plum"


def test_exact_match_and_f1_follow_squad():
    assert exact_match("the Normans", ["Normans"]) == 1.0
    assert exact_match("Normans people", ["Normans"]) == 0.0
    assert token_f1("Norman people", ["the Norman"]) == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert token_f1("x", ["a", "x"]) == 1.0
    assert token_f1("", ["the"]) == 1.0  # both normalise to nothing, as in the official script


def test_answer_in_context_uses_word_boundaries_and_each_context():
    assert answer_in_context(["It is in France, they say."], ["france"]) == 1.0
    assert answer_in_context(["Frances is a name."], ["France"]) == 0.0
    assert answer_in_context(["the 10th and", "11th centuries"], ["10th and 11th centuries"]) == 0.0
    assert answer_in_context(["the 10th and 11th centuries"], ["10th and 11th centuries"]) == 1.0
    assert answer_in_context(["anything"], ["the"]) == 0.0  # empty after normalisation never matches


def test_gold_recall():
    assert gold_recall(["a", "b"], ["a", "c"]) == 0.5
    assert math.isnan(gold_recall(["a"], []))


def test_reward_formula():
    assert reward(1.0, 500, w=0.9, t_max=1000) == pytest.approx(0.9 - 0.1 * 0.5)
    assert reward(0.0, 0, w=0.5, t_max=10) == 0.0


def test_score_result_keeps_every_metric_per_question():
    q = Question("q1", "Where?", ("France",), ("p1",))
    r = PipelineResult(contexts=["Normandy is in France."], prompt_tokens=20, answer="in France",
                       latency_s=0.5, retrieved_ids=["p1", "p2"])
    row = score_result(q, r, metric="f1", w=0.8, t_max=100)
    assert row["question_id"] == "q1" and row["answer_in_context"] == 1.0 and row["gold_recall"] == 1.0
    assert row["em"] == 0.0 and row["f1"] == pytest.approx(2 / 3) and row["quality"] == row["f1"]
    assert row["reward"] == pytest.approx(0.8 * 2 / 3 - 0.2 * 0.2)
    assert row["prompt_tokens"] == 20 and row["latency_s"] == 0.5


def test_score_result_needs_answers_for_em_and_gold_for_recall():
    q = Question("q1", "Where?", ("France",))
    r = PipelineResult(contexts=["x"], prompt_tokens=1)
    assert score_result(q, r, t_max=10)["em"] is None
    with pytest.raises(ValueError, match="metric 'em' needs generated answers"):
        score_result(q, r, metric="em", t_max=10)
    with pytest.raises(ValueError, match="gold passage ids"):
        score_result(q, r, metric="gold_recall", t_max=10)
