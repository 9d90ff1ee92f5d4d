"""LLM-as-judge metrics: ``judge_correctness`` and ``judge_faithfulness``.

A judge model behind an OpenAI-compatible endpoint (or any registered
:class:`~autorag_hp.pipeline._generators.Generator`) reads a versioned prompt and replies
with a score on a 1-5 scale, mapped to [0, 1] as ``(score - 1) / 4``, as in G-Eval
(Liu et al. 2023, "G-Eval: NLG Evaluation using GPT-4 with Better Human Alignment") and the
RAGAS / AutoRAG answer-correctness and faithfulness metrics.

* ``judge_correctness``: does the answer mean the same as a reference (gold) answer?
* ``judge_faithfulness``: is every claim of the answer supported by the retrieved contexts?

The reply is parsed strictly: it must hold exactly one number, an integer on the scale
(``"4"``, ``"Score: 4"``, ``"The answer is 4."``); anything else raises
:class:`JudgeOutputError` with the reply, unless ``unparsable_score`` is set (then that
score is used and counted in ``stats["unparsable"]``). Judgements are cached on disk by
the judge's fingerprint, the template's name and version, and the exact messages; judge
calls, cache hits, retries and tokens are counted in ``stats``, apart from the generator's.
"""

from __future__ import annotations

import json
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from autorag_hp._validation import check_int, check_positive_int
from autorag_hp.pipeline._cache import JsonStore, content_hash, default_cache_dir
from autorag_hp.pipeline._generators import Generator, GeneratorError, RetryPolicy, make_generator
from autorag_hp.pipeline._metrics import Metric
from autorag_hp.pipeline._protocol import PipelineResult, Question

__all__ = [
    "JudgeTemplate",
    "JudgeOutputError",
    "JudgeMetric",
    "JudgeCorrectness",
    "JudgeFaithfulness",
    "CORRECTNESS_V1",
    "FAITHFULNESS_V1",
    "parse_score",
]

_DEFAULT = object()
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?![\w])")
_SLOTS = ("{question}", "{gold}", "{answer}", "{context}")


class JudgeOutputError(GeneratorError):
    """The judge answered, but not with exactly one score on its scale."""


@dataclass(frozen=True)
class JudgeTemplate:
    """A judge prompt; ``name`` and ``version`` are part of every cache key (bump ``version``
    whenever the wording changes). ``user`` may use ``{question}``, ``{gold}`` (the gold
    answers, joined by `` | ``), ``{answer}`` and ``{context}`` (the contexts, numbered)."""

    name: str
    version: int
    system: str
    user: str
    low: int = 1
    high: int = 5

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not re.fullmatch(r"[a-z0-9_]+", self.name):
            raise ValueError(f"JudgeTemplate.name must be a lower-case identifier, got {self.name!r}")
        check_int("JudgeTemplate.version", self.version, minimum=1)
        for field_ in ("system", "user"):
            if not isinstance(getattr(self, field_), str):
                raise ValueError(f"JudgeTemplate.{field_} must be a string, got {getattr(self, field_)!r}")
        if "{answer}" not in self.user:
            raise ValueError(f"JudgeTemplate.user must contain {{answer}}, got {self.user!r}")
        if not (isinstance(self.low, int) and isinstance(self.high, int) and self.low < self.high):
            raise ValueError(f"JudgeTemplate needs integers low < high, got (low={self.low!r}, high={self.high!r})")

    @property
    def id(self) -> str:
        return f"{self.name}@v{self.version}"

    def messages(self, question: Question, result: PipelineResult) -> list[dict[str, str]]:
        values = {
            "{question}": question.text,
            "{gold}": " | ".join(question.answers),
            "{answer}": result.answer or "",
            "{context}": "\n\n".join(f"[{i}] {c}" for i, c in enumerate(result.contexts, start=1)),
        }
        # One pass over the slots, so braces inside questions or contexts stay as they are.
        user = re.sub("|".join(re.escape(s) for s in _SLOTS), lambda m: values[m.group(0)], self.user)
        out = [{"role": "system", "content": self.system}] if self.system else []
        out.append({"role": "user", "content": user})
        return out


CORRECTNESS_V1 = JudgeTemplate(
    name="correctness",
    version=1,
    system=(
        "You grade answers to questions. Compare the candidate answer with the reference answer. "
        "Reply with one digit from 1 to 5 and nothing else: 5 = same meaning as the reference, "
        "1 = wrong or unrelated."
    ),
    user="Question: {question}\nReference answer: {gold}\nCandidate answer: {answer}\nScore (1-5):",
)

FAITHFULNESS_V1 = JudgeTemplate(
    name="faithfulness",
    version=1,
    system=(
        "You check whether an answer is supported by the context. Reply with one digit from 1 to 5 and "
        "nothing else: 5 = every claim of the answer is stated in the context, 1 = not supported."
    ),
    user="Context:\n{context}\n\nQuestion: {question}\nAnswer: {answer}\nScore (1-5):",
)


def parse_score(text: str, *, low: int = 1, high: int = 5) -> int:
    """The one integer on ``[low, high]`` that ``text`` holds; ValueError otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"judge output must be a string, got {type(text).__name__}")
    numbers = _NUMBER.findall(re.sub(rf"\s*/\s*{high}(?![\w.])", "", text))  # "4/5" is one number
    if len(numbers) != 1:
        raise ValueError(
            f"judge output must hold exactly one number (an integer from {low} to {high}), "
            f"found {len(numbers)} in {text[:200]!r}"
        )
    value = float(numbers[0])
    if not value.is_integer() or not low <= value <= high:
        raise ValueError(f"judge score must be an integer from {low} to {high}, got {numbers[0]!r} in {text[:200]!r}")
    return int(value)


def _env(name: str) -> str | None:
    return os.environ.get(f"AUTORAG_HP_JUDGE_{name}") or None


class JudgeMetric(Metric):
    """Scores answers with an LLM judge; see the module docstring.

    The judge is ``judge`` (a :class:`Generator` or a registered generator name, default
    ``"openai"``). With a name, ``base_url``, ``model`` and ``api_key`` default to
    ``AUTORAG_HP_JUDGE_BASE_URL`` / ``_MODEL`` / ``_API_KEY``, else to the generator's
    ``AUTORAG_HP_OPENAI_*`` / ``OPENAI_*`` variables. ``max_workers > 1`` overlaps calls.
    """

    template_default: JudgeTemplate

    def __init__(
        self,
        *,
        judge: Generator | str = "openai",
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        retry: RetryPolicy | Mapping[str, Any] | None = None,
        max_tokens: int = 8,
        template: JudgeTemplate | None = None,
        cache_dir: str | os.PathLike[str] | None | object = _DEFAULT,
        use_cache: bool = True,
        max_workers: int = 1,
        unparsable_score: float | None = None,
    ) -> None:
        super().__init__()
        if isinstance(judge, Generator):
            given = {k: v for k, v in (("base_url", base_url), ("model", model), ("api_key", api_key)) if v is not None}
            if given:
                raise ValueError(f"{sorted(given)} only apply with a judge name, got them with {judge!r}")
            self.judge = judge
        elif isinstance(judge, str):
            options: dict[str, Any] = {"use_cache": False}
            if judge == "openai":
                options.update(
                    base_url=base_url or _env("BASE_URL"), model=model or _env("MODEL"),
                    api_key=api_key or _env("API_KEY"), timeout_s=timeout_s, retry=retry, max_tokens=max_tokens,
                    temperature=0.0,
                )
            self.judge = make_generator(judge, **options)
        else:
            raise ValueError(f"judge must be a Generator or a generator name, got {judge!r}")
        template = template if template is not None else self.template_default
        if not isinstance(template, JudgeTemplate):
            raise ValueError(f"template must be a JudgeTemplate, got {type(template).__name__}")
        self.template = template
        check_positive_int("max_workers", max_workers)
        self.max_workers = max_workers
        if unparsable_score is not None and (
            isinstance(unparsable_score, bool) or not isinstance(unparsable_score, (int, float))
            or not 0.0 <= unparsable_score <= 1.0
        ):
            raise ValueError(f"unparsable_score must be None or a number in [0, 1], got {unparsable_score!r}")
        self.unparsable_score = None if unparsable_score is None else float(unparsable_score)
        root = default_cache_dir() if cache_dir is _DEFAULT else cache_dir
        self._store = JsonStore(root, "judgements") if use_cache else None  # type: ignore[arg-type]
        self.stats.update({"retries": 0, "prompt_tokens": 0, "completion_tokens": 0, "unparsable": 0})
        self._lock = threading.Lock()

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for k, v in deltas.items():
                self.stats[k] += v

    def fingerprint(self) -> str:
        return f"judge:{self.template.id}:{self.judge.fingerprint()}"

    def judge_one(self, question: Question, result: PipelineResult) -> float:
        """The judge's score for one answer, in [0, 1] (cached)."""
        messages = self.template.messages(question, result)
        key = content_hash("judge", self.template.name, str(self.template.version), self.judge.fingerprint(),
                           json.dumps(messages, ensure_ascii=False, sort_keys=True))
        if self._store is not None:
            hit = self._store.get(key)
            if isinstance(hit, dict) and isinstance(hit.get("score"), (int, float)) and 0 <= hit["score"] <= 1:
                self._count(cache_hits=1)
                return float(hit["score"])
        try:
            reply = self.judge.complete(messages)
        finally:  # the judge's own generator counts retries; mirror them here
            with self._lock:
                self.stats["retries"] = self.judge.stats.get("retries", 0)
        self._count(calls=1, prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens)
        t = self.template
        try:
            score = (parse_score(reply.text, low=t.low, high=t.high) - t.low) / (t.high - t.low)
        except ValueError as exc:
            self._count(unparsable=1)
            if self.unparsable_score is None:
                raise JudgeOutputError(
                    f"{self.name}: the judge ({self.judge!r}, template {t.id}) gave an unparsable reply for "
                    f"question {question.id!r}: {exc}. Use a stronger judge model, or pass "
                    f"unparsable_score=0.0 to score such replies instead of stopping"
                ) from None
            return self.unparsable_score  # not cached: a later, better judge gets its chance
        if self._store is not None:
            self._store.put(key, {"score": score, "reply": reply.text, "template": t.id,
                                  "judge": self.judge.fingerprint(), "prompt_tokens": reply.prompt_tokens,
                                  "completion_tokens": reply.completion_tokens})
        return score

    def score_many(self, questions: Sequence[Question], results: Sequence[PipelineResult]) -> list[float]:
        if len(questions) != len(results):
            raise ValueError(f"questions and results must have the same length, got {len(questions)} and {len(results)}")
        if self.max_workers == 1 or len(questions) <= 1:
            return [self.judge_one(q, r) for q, r in zip(questions, results)]
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(questions))) as pool:
            return list(pool.map(self.judge_one, questions, results))

    def close(self) -> None:
        self.judge.close()


class JudgeCorrectness(JudgeMetric):
    """``judge_correctness``: the judge compares the answer with the gold answers (template ``correctness@v1``)."""

    name = "judge_correctness"
    template_default = CORRECTNESS_V1


class JudgeFaithfulness(JudgeMetric):
    """``judge_faithfulness``: the judge checks the answer against the retrieved contexts (``faithfulness@v1``)."""

    name = "judge_faithfulness"
    template_default = FAITHFULNESS_V1
