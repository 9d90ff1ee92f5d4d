"""QA metrics with SQuAD normalisation, and the AutoRAG-HP reward.

reward = w * quality - (1 - w) * prompt_tokens / t_max   (AutoRAG-HP, arXiv 2406.19251, eq. 1)

``quality`` is one of :data:`QUALITY_METRICS`: ``answer_in_context`` (a normalised gold
answer occurs, on word boundaries, inside one of the final, compressed contexts),
``em`` and ``f1`` (SQuAD exact match and token F1 of the generated answer) or
``gold_recall`` (share of gold passages among the retrieved passages).
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from typing import Any, Mapping, Sequence

from autorag_hp.pipeline._protocol import PipelineResult, Question

__all__ = [
    "normalize_answer",
    "exact_match",
    "token_f1",
    "answer_in_context",
    "gold_recall",
    "score_result",
    "reward",
    "QUALITY_METRICS",
    "check_metric",
    "check_weight",
    "check_t_max",
]

QUALITY_METRICS = ("answer_in_context", "em", "f1", "gold_recall")
_ANSWER_METRICS = ("em", "f1")

_PUNCT = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, drop punctuation and articles, collapse white space."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split())


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    p = normalize_answer(prediction)
    return float(any(p == normalize_answer(a) for a in answers))


def _f1(prediction: str, truth: str) -> float:
    p, t = normalize_answer(prediction).split(), normalize_answer(truth).split()
    if not p or not t:
        return float(p == t)
    common = Counter(p) & Counter(t)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(t)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, answers: Sequence[str]) -> float:
    """The best SQuAD token F1 over the gold answers."""
    return max((_f1(prediction, a) for a in answers), default=0.0)


def answer_in_context(contexts: Sequence[str], answers: Sequence[str]) -> float:
    """1.0 if a normalised non-empty gold answer occurs on word boundaries in one context."""
    golds = [g for g in (normalize_answer(a) for a in answers) if g]
    if not golds:
        return 0.0
    for c in contexts:
        padded = f" {normalize_answer(c)} "
        if any(f" {g} " in padded for g in golds):
            return 1.0
    return 0.0


def gold_recall(retrieved_ids: Sequence[str], gold: Sequence[str]) -> float:
    """Share of the gold passage ids among ``retrieved_ids``; NaN when there is no gold."""
    if not gold:
        return math.nan
    got = set(retrieved_ids)
    return sum(g in got for g in set(gold)) / len(set(gold))


def check_metric(metric: Any) -> str:
    if metric not in QUALITY_METRICS:
        raise ValueError(f"metric must be one of {list(QUALITY_METRICS)}, got {metric!r}")
    return metric


def check_weight(w: Any) -> float:
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0.0 <= float(w) <= 1.0:
        raise ValueError(f"w must be a number with 0 <= w <= 1, got {w!r}")
    return float(w)


def check_t_max(t_max: Any) -> float:
    if isinstance(t_max, bool) or not isinstance(t_max, (int, float)) or not math.isfinite(t_max) or t_max <= 0:
        raise ValueError(f"t_max must be a positive number of tokens, got {t_max!r}")
    return float(t_max)


def reward(quality: float, prompt_tokens: float, *, w: float, t_max: float) -> float:
    """w * quality - (1 - w) * prompt_tokens / t_max."""
    return w * quality - (1.0 - w) * prompt_tokens / t_max


def score_result(
    question: Question,
    result: PipelineResult,
    *,
    metric: str = "answer_in_context",
    w: float = 0.9,
    t_max: float,
) -> dict[str, Any]:
    """Every metric for one question, plus its ``quality`` and ``reward``.

    ``em``/``f1`` are None when the pipeline did not answer; asking for them as the
    quality metric then raises ValueError.
    """
    has_answer = result.answer is not None
    row: dict[str, Any] = {
        "question_id": question.id,
        "answer_in_context": answer_in_context(result.contexts, question.answers),
        "em": exact_match(result.answer, question.answers) if has_answer else None,
        "f1": token_f1(result.answer, question.answers) if has_answer else None,
        "gold_recall": gold_recall(result.retrieved_ids, question.gold_passages),
        "prompt_tokens": int(result.prompt_tokens),
        "latency_s": float(result.latency_s),
        "answer": result.answer,
    }
    quality = row[metric]
    if quality is None:
        raise ValueError(f"metric {metric!r} needs generated answers, but the pipeline returned answer=None")
    if metric == "gold_recall" and math.isnan(quality):
        raise ValueError(f"metric 'gold_recall' needs gold passage ids, but question {question.id!r} has none")
    row["quality"] = float(quality)
    row["reward"] = reward(float(quality), row["prompt_tokens"], w=w, t_max=t_max)
    return row


def mean_reward(rows: Sequence[Mapping[str, Any]]) -> float:
    return sum(r["reward"] for r in rows) / len(rows) if rows else math.nan
