"""A tuning objective over a RAG pipeline: each pull scores a configuration on a few questions."""

from __future__ import annotations

import copy
import math
from typing import Any, Mapping

import numpy as np

from autorag_hp._validation import check_int, check_positive_int
from autorag_hp.objective import Outcome, PairedSampling, check_reward, check_sampling, check_w
from autorag_hp.pipeline._metrics import Metric, check_metric, check_t_max, score_batch
from autorag_hp.pipeline._protocol import RAGPipeline

__all__ = ["PipelineObjective"]


class PipelineObjective(PairedSampling):
    """``(config, pull) -> Outcome``: run ``pipeline`` on ``batch`` questions of ``dataset``.

    The questions of pull ``p`` are drawn without replacement by a generator seeded with
    ``(seed, p)`` only, so a resumed or parallel run sees exactly the questions a
    sequential one would. The reward is the mean over the batch of
    ``w * quality - (1 - w) * prompt_tokens / t_max`` (AutoRAG-HP); ``details`` keeps
    one record per question. ``t_max=None`` takes the pipeline's ``t_max`` attribute.
    """

    def __init__(
        self,
        pipeline: RAGPipeline,
        dataset: Any,
        *,
        metric: str | Metric = "answer_in_context",
        w: float = 0.9,
        t_max: float | None = None,
        batch: int = 4,
        seed: int = 0,
        sampling: str = "iid",
    ):
        if not callable(getattr(pipeline, "run", None)):
            raise ValueError(f"pipeline must have run(config, questions), got {type(pipeline).__name__}")
        questions = tuple(getattr(dataset, "questions", dataset))
        if not questions:
            raise ValueError("dataset must hold at least one question, got none")
        self.pipeline = pipeline
        self.dataset = dataset
        self.questions = questions
        # A Metric instance (e.g. make_metric("judge_correctness", base_url=...)) scores with its options.
        self.scorer = metric if isinstance(metric, Metric) else None
        self.metric = check_metric(metric.name if isinstance(metric, Metric) else metric)
        self.w = check_w(w)
        if t_max is None:
            t_max = getattr(pipeline, "t_max", None)
            if t_max is None:
                has = "has t_max=None" if hasattr(pipeline, "t_max") else "has no t_max attribute"
                raise ValueError(
                    f"t_max must be given: pass PipelineObjective(..., t_max=TOKENS) (the grid's GridResult.t_max "
                    f"keeps grid and live rewards on one scale); the pipeline ({type(pipeline).__name__}) {has}"
                )
        self.t_max = check_t_max(t_max)
        check_positive_int("batch", batch)
        self.batch = batch
        check_int("seed", seed, minimum=0)
        self.seed = int(seed)
        self.sampling = check_sampling(sampling)
        self.limits: dict[int, int] = {}

    def limit_calls(self, limits: Mapping[int, int]) -> "PipelineObjective":
        """A copy whose pull ``p`` asks only the first ``limits[p]`` of its questions (the
        tuner trims the last pull this way so a budget is never overrun)."""
        for p, n in limits.items():
            check_positive_int(f"limits[{p}]", n)
        out = copy.copy(self)
        out.limits = {**self.limits, **{int(p): int(n) for p, n in limits.items()}}
        return out

    def sample(self, pull: int) -> list[Any]:
        """The questions of pull ``pull``."""
        check_int("pull", pull, minimum=0)
        n = len(self.questions)
        if self.sampling == "paired":
            idx = self.paired_indices(n, self.batch, seed=self.seed, pull=pull)
        else:
            rng = np.random.default_rng([self.seed, int(pull)])
            idx = rng.choice(n, size=min(self.batch, n), replace=False)
        picked = [self.questions[i] for i in idx.tolist()]
        limit = self.limits.get(int(pull))
        return picked if limit is None else picked[:limit]

    def __call__(self, config: Mapping[str, Any], pull: int) -> Outcome:
        questions = self.sample(pull)
        results = self.pipeline.run(config, questions)
        if len(results) != len(questions):
            raise ValueError(
                f"pipeline.run must return one result per question, got {len(results)} for {len(questions)}"
            )
        details = score_batch(questions, results, metric=self.metric, w=self.w, t_max=self.t_max, scorer=self.scorer)
        reward = check_reward(sum(d["reward"] for d in details) / len(details))
        # a metric that cannot be computed for a question (gold_recall without gold passages or
        # retrieved ids) is NaN in the grid table and null in the journal, which stores only JSON
        for d in details:
            for k, v in d.items():
                if isinstance(v, float) and math.isnan(v):
                    d[k] = None
        return Outcome(reward=reward, calls=len(questions), details=details)

    def __repr__(self) -> str:
        return (
            f"PipelineObjective(metric={self.metric!r}, w={self.w}, t_max={self.t_max}, "
            f"batch={self.batch}, seed={self.seed}, questions={len(self.questions)}, "
            f"sampling={self.sampling!r})"
        )
