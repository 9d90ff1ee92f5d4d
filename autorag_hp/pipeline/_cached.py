"""Outcomes of a wrapped stack cached on disk, per (stack fingerprint, dataset, configuration, question).

A ``tune`` after a ``grid``, or a resumed ``tune``, then never calls the stack again for a
cell it already evaluated. The key of a question's result is a content hash of the
stack's fingerprint, the dataset's fingerprint, the configuration (JSON, keys sorted) and
the question's id and text, so a changed stack, dataset or configuration simply misses.

The stack's fingerprint is the pipeline's ``fingerprint`` (a string, or a method that
returns one) when it has one; :class:`FunctionPipeline` takes it as
``fingerprint="..."`` or derives it with :func:`code_fingerprint`. Anything else is
fingerprinted by its class with :func:`code_fingerprint`.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

from autorag_hp.pipeline._cache import JsonShardStore, content_hash, default_cache_dir
from autorag_hp.pipeline._protocol import PipelineResult, Question

__all__ = ["CachedPipeline", "code_fingerprint", "pipeline_fingerprint"]

_NAMESPACE = "outcomes"


def code_fingerprint(obj: Any) -> str:
    """A hash of what defines ``obj``'s behaviour as far as the code shows it.

    Parts: the module and qualified name of the function (or of the class of a callable
    object; the wrapped function of a ``functools.partial`` and its bound arguments' reprs),
    its source code, and the full content of the file that defines it. Editing the function
    or anything else in its file changes the fingerprint. State the code does not show
    (an index built from files, a model's weights, environment variables) is not part of
    it: give a ``fingerprint`` by hand when that changes.
    """
    parts: list[str] = []
    target = obj
    while hasattr(target, "func") and hasattr(target, "args") and hasattr(target, "keywords"):  # functools.partial
        parts.append(repr(target.args) + repr(sorted(target.keywords.items())))
        target = target.func
    target = getattr(target, "__func__", target)  # bound methods: the function
    if not (inspect.isfunction(target) or inspect.isclass(target) or inspect.ismethod(target)):
        target = type(target)
    parts += [getattr(target, "__module__", "") or "", getattr(target, "__qualname__", "") or repr(target)]
    try:
        parts.append(inspect.getsource(target))
    except (OSError, TypeError):
        parts.append("")
    try:
        file = inspect.getsourcefile(target) or inspect.getfile(target)
        parts.append(Path(file).read_bytes().decode("utf-8", "replace"))
    except (OSError, TypeError):
        mod = sys.modules.get(getattr(target, "__module__", "") or "")
        parts.append(getattr(mod, "__version__", "") or "")
    return content_hash(*parts)


def pipeline_fingerprint(pipeline: Any) -> str:
    """The stack fingerprint used by the outcome cache (see the module docstring)."""
    fp = getattr(pipeline, "fingerprint", None)
    if callable(fp):
        fp = fp()
    if fp is not None:
        if not isinstance(fp, str) or not fp:
            raise ValueError(f"pipeline fingerprint must be a non-empty string, got {fp!r}")
        return fp
    return code_fingerprint(pipeline)


def _to_record(r: PipelineResult) -> dict[str, Any]:
    return {"contexts": r.contexts, "prompt_tokens": r.prompt_tokens, "answer": r.answer,
            "latency_s": r.latency_s, "retrieved_ids": r.retrieved_ids, "extra": r.extra}


class CachedPipeline:
    """``pipeline`` with its per-question results cached on disk (see the module docstring).

    ``scope`` is what else the stack's answers depend on (the dataset's fingerprint).
    ``cache_dir=None`` uses ``$AUTORAG_HP_CACHE`` (or ``~/.cache/autorag_hp``); the records
    live in ``<cache_dir>/outcomes/<hash of fingerprint and scope>/``. ``stack_calls`` and
    ``stack_questions`` count what reached the wrapped pipeline; ``hits`` what did not.
    """

    def __init__(self, pipeline: Any, *, fingerprint: str | None = None, scope: str = "",
                 cache_dir: str | os.PathLike[str] | None = None) -> None:
        if not callable(getattr(pipeline, "run", None)):
            raise ValueError(f"pipeline must have run(config, questions), got {type(pipeline).__name__}")
        self.pipeline = pipeline
        self.fingerprint = fingerprint if fingerprint is not None else pipeline_fingerprint(pipeline)
        self.scope = str(scope)
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.store = JsonShardStore(root / _NAMESPACE, content_hash(self.fingerprint, self.scope))
        self.stack_calls = 0
        self.stack_questions = 0
        self.hits = 0
        self._warned = False

    @property
    def t_max(self) -> float | None:
        return getattr(self.pipeline, "t_max", None)

    def __repr__(self) -> str:
        return f"CachedPipeline({self.pipeline!r}, cache={str(self.store.dir)!r})"

    def key(self, config: Mapping[str, Any], question: Question) -> str:
        """The cache key of ``question``'s result under ``config``."""
        return self._key(json.dumps(dict(config), sort_keys=True, default=str), question)

    @staticmethod
    def _key(config_json: str, question: Question) -> str:
        return content_hash(config_json, question.id, question.text)

    def run(self, config: Mapping[str, Any], questions: Sequence[Question]) -> list[PipelineResult]:
        questions = list(questions)
        cj = json.dumps(dict(config), sort_keys=True, default=str)
        keys = [self._key(cj, q) for q in questions]
        out: list[PipelineResult | None] = []
        for k in keys:
            rec = self.store.get(k)
            out.append(None if rec is None else PipelineResult(
                contexts=list(rec["contexts"]), prompt_tokens=rec["prompt_tokens"], answer=rec["answer"],
                latency_s=rec["latency_s"], retrieved_ids=list(rec["retrieved_ids"]), extra=dict(rec["extra"])))
        missing = [i for i, r in enumerate(out) if r is None]
        self.hits += len(questions) - len(missing)
        if missing:
            self.stack_calls += 1
            self.stack_questions += len(missing)
            results = self.pipeline.run(config, [questions[i] for i in missing])
            if len(results) != len(missing):
                raise ValueError(
                    f"pipeline.run must return one result per question, got {len(results)} for {len(missing)}"
                )
            items = []
            for i, r in zip(missing, results):
                out[i] = r
                items.append((keys[i], _to_record(r)))
            try:
                self.store.put_many(items)
            except (TypeError, ValueError) as exc:  # e.g. an ``extra`` that is not JSON: those stay uncached
                if not self._warned:
                    warnings.warn(f"not caching results of {self.pipeline!r} whose fields are not JSON ({exc})",
                                  RuntimeWarning, stacklevel=2)
                    self._warned = True
        return out  # type: ignore[return-value]
