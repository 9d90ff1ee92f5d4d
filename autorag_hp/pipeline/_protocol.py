"""The small protocol any RAG stack satisfies to be tuned by autorag_hp."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

__all__ = ["Question", "Passage", "PipelineResult", "RAGPipeline"]


@dataclass(frozen=True)
class Passage:
    """One document of the retrieval corpus."""

    id: str
    text: str
    title: str = ""


@dataclass(frozen=True)
class Question:
    """One QA item: the question, its acceptable answers, and (optionally) gold passage ids."""

    id: str
    text: str
    answers: tuple[str, ...]
    gold_passages: tuple[str, ...] = ()


@dataclass
class PipelineResult:
    """What a pipeline returns for one question under one configuration.

    ``contexts`` are the texts that reached the prompt (after compression);
    ``prompt_tokens`` is the prompt's token count; ``answer`` is None when the stack
    does not generate (retrieval-only scoring).
    """

    contexts: list[str]
    prompt_tokens: int
    answer: str | None = None
    latency_s: float = 0.0
    retrieved_ids: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class RAGPipeline(Protocol):
    """Anything with ``run(config, questions) -> one PipelineResult per question``."""

    def run(self, config: Mapping[str, Any], questions: Sequence[Question]) -> list[PipelineResult]: ...
