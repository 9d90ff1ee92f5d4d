"""QA metrics with SQuAD normalisation, and the AutoRAG-HP reward.

reward = w * quality - (1 - w) * prompt_tokens / t_max   (AutoRAG-HP, arXiv 2406.19251, eq. 1)

``quality`` is one of :data:`QUALITY_METRICS`: ``answer_in_context`` (a normalised gold
answer occurs, on word boundaries, inside one of the final, compressed contexts),
``em`` and ``f1`` (SQuAD exact match and token F1 of the generated answer),
``gold_recall`` (share of gold passages among the retrieved passages), or one of the
model-based metrics found by name in a registry (:func:`make_metric`): ``semantic``
(MiniLM cosine of answer and gold answer), ``judge_correctness`` and
``judge_faithfulness`` (an LLM judge). Those score a batch of questions at once
(:func:`score_batch`) and keep their own call counts (``Metric.stats``).
"""

from __future__ import annotations

import math
import re
import string
import threading
from abc import ABC, abstractmethod
from collections import Counter
from typing import Any, Callable, ClassVar, Mapping, Sequence

from autorag_hp._registry import Registry
from autorag_hp.objective import check_t_max, check_w, reward
from autorag_hp.pipeline._protocol import PipelineResult, Question

__all__ = [
    "normalize_answer",
    "exact_match",
    "token_f1",
    "answer_in_context",
    "gold_recall",
    "score_result",
    "score_batch",
    "reward",
    "QUALITY_METRICS",
    "Metric",
    "make_metric",
    "list_metrics",
    "register_metric",
    "check_metric",
    "check_t_max",
]

_ROW_METRICS = ("answer_in_context", "em", "f1", "gold_recall")  # computed for every question by score_result
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


# --------------------------------------------------------------------------- model-based metrics


class Metric(ABC):
    """A quality metric that needs a model (an embedder, an LLM judge): scores a batch at once.

    Subclasses set ``name`` and implement :meth:`score_many` (one score in [0, 1] per
    question) and :meth:`fingerprint` (what identifies the model and prompt, for cache
    keys). ``stats`` counts the work done (model calls, cache hits, tokens), kept apart
    from the generator's. A new metric is one subclass plus :func:`register_metric`.
    """

    name: ClassVar[str] = ""
    needs_answer: ClassVar[bool] = True  # scores the generated answer (so it needs a generator)

    def __init__(self) -> None:
        self.stats: dict[str, Any] = {"calls": 0, "cache_hits": 0}

    @abstractmethod
    def fingerprint(self) -> str:
        """A string that changes whenever the same inputs could get a different score."""

    @abstractmethod
    def score_many(self, questions: Sequence[Question], results: Sequence[PipelineResult]) -> list[float]:
        """One score in [0, 1] per (question, result)."""

    def close(self) -> None:
        """Release resources (connections, models); the default does nothing."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.fingerprint()!r})"


_METRICS: Registry[Callable[..., Metric]] = Registry("metric", {
    "semantic": "autorag_hp.pipeline._semantic:SemanticSimilarity",
    "judge_correctness": "autorag_hp.pipeline._judge:JudgeCorrectness",
    "judge_faithfulness": "autorag_hp.pipeline._judge:JudgeFaithfulness",
})
QUALITY_METRICS = _ROW_METRICS + tuple(_METRICS)  # the built-in names; list_metrics() adds registered ones
_DEFAULTS: dict[str, Metric] = {}
_DEFAULTS_LOCK = threading.Lock()


def register_metric(name: str, factory: str | Callable[..., Metric], *, replace: bool = False) -> None:
    """Add a model-based metric: ``factory(**options)`` (a class or "module:Class") returns a :class:`Metric`.
    A name already registered (or a per-question metric's) is refused unless ``replace=True``."""
    if name in _ROW_METRICS:
        raise ValueError(f"metric {name!r} is already registered (a per-question metric)")
    _METRICS.register(name, factory, replace=replace)


def list_metrics() -> list[str]:
    """Every quality metric name: the per-question ones, then the model-based ones."""
    return [*_ROW_METRICS, *_METRICS]


def make_metric(spec: str | Metric, **options: Any) -> Metric:
    """Build the model-based metric registered as ``spec`` (a Metric instance is returned as is)."""
    if isinstance(spec, Metric):
        if options:
            raise ValueError(f"options are only accepted with a metric name, got {sorted(options)} with {spec!r}")
        return spec
    if not isinstance(spec, str) or spec not in _METRICS:
        raise ValueError(f"metric must be one of the model-based metrics {list(_METRICS)} (or a Metric), got {spec!r}")
    return _METRICS.build(spec, instance_of=Metric, **options)


def is_model_metric(metric: str) -> bool:
    return metric in _METRICS


def needs_answer(metric: str) -> bool:
    """True when ``metric`` scores the generated answer (em, f1, semantic, the judge ...)."""
    if metric in _ROW_METRICS:
        return metric in _ANSWER_METRICS
    return bool(getattr(_METRICS.get(metric), "needs_answer", True)) if metric in _METRICS else True


def check_metric(metric: Any) -> str:
    if not isinstance(metric, str) or (metric not in _ROW_METRICS and metric not in _METRICS):
        raise ValueError(f"metric must be one of {list_metrics()}, got {metric!r}")
    return metric


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
        # NaN, not 0, when the stack reported no retrieved ids although contexts reached the prompt
        "gold_recall": (gold_recall(result.retrieved_ids, question.gold_passages)
                        if result.retrieved_ids or not result.contexts else math.nan),
        "prompt_tokens": int(result.prompt_tokens),
        "latency_s": float(result.latency_s),
        "answer": result.answer,
    }
    if metric in _METRICS:
        return score_batch([question], [result], metric=metric, w=w, t_max=t_max)[0]
    quality = row[metric]
    if quality is None:
        raise ValueError(f"metric {metric!r} needs generated answers, but the pipeline returned answer=None")
    if metric == "gold_recall" and math.isnan(quality):
        if question.gold_passages:
            raise ValueError(f"metric 'gold_recall' needs the retrieved passage ids ('retrieved_ids'), but the "
                             f"pipeline returned none for question {question.id!r}")
        raise ValueError(f"metric 'gold_recall' needs gold passage ids, but question {question.id!r} has none")
    row["quality"] = float(quality)
    row["reward"] = reward(float(quality), row["prompt_tokens"], w=w, t_max=t_max)
    return row


def _default_metric(name: str) -> Metric:
    """One shared instance per model-based metric with default options (models load once)."""
    with _DEFAULTS_LOCK:
        m = _DEFAULTS.get(name)
        if m is None:
            m = _DEFAULTS[name] = make_metric(name)
        return m


def score_batch(
    questions: Sequence[Question],
    results: Sequence[PipelineResult],
    *,
    metric: str = "answer_in_context",
    w: float = 0.9,
    t_max: float,
    scorer: Metric | None = None,
) -> list[dict[str, Any]]:
    """:func:`score_result` for a batch; a model-based ``metric`` is scored in one batched call
    of ``scorer`` (default: a shared instance with default options) and added as a column."""
    if len(questions) != len(results):
        raise ValueError(f"questions and results must have the same length, got {len(questions)} and {len(results)}")
    check_metric(metric)
    if metric not in _METRICS:
        if scorer is not None:
            raise ValueError(f"scorer is only used with a model-based metric, got metric={metric!r}")
        return [score_result(q, r, metric=metric, w=w, t_max=t_max) for q, r in zip(questions, results)]
    scorer = scorer if scorer is not None else _default_metric(metric)
    if not isinstance(scorer, Metric):
        raise ValueError(f"scorer must be a Metric, got {type(scorer).__name__}")
    if scorer.needs_answer:
        for q, r in zip(questions, results):
            if r.answer is None:
                raise ValueError(
                    f"metric {metric!r} needs generated answers, but the pipeline returned answer=None "
                    f"for question {q.id!r}"
                )
    rows = [score_result(q, r, metric="answer_in_context", w=w, t_max=t_max) for q, r in zip(questions, results)]
    scores = scorer.score_many(questions, results)
    if len(scores) != len(rows):
        raise ValueError(f"metric {metric!r} must return one score per question, got {len(scores)} for {len(rows)}")
    for row, value in zip(rows, scores):
        value = float(value)
        if not (0.0 <= value <= 1.0):
            raise ValueError(f"metric {metric!r} must score in [0, 1], got {value!r} for question {row['question_id']!r}")
        row[metric] = value
        row["quality"] = value
        row["reward"] = reward(value, row["prompt_tokens"], w=w, t_max=t_max)
    return rows


def mean_reward(rows: Sequence[Mapping[str, Any]]) -> float:
    return sum(r["reward"] for r in rows) / len(rows) if rows else math.nan
