"""Tune a Haystack 2.x retrieval stack: one Haystack ``Pipeline`` per configuration.

>>> from autorag_hp.adapters.haystack import HaystackPipeline, cached_per, documents
>>> @cached_per("split_length")                               # one document store per chunking
... def store(config): ...
>>> def build(config):                                        # one Haystack Pipeline per configuration
...     p = Pipeline()
...     p.add_component("bm25", InMemoryBM25Retriever(document_store=store(config)))
...     return p
>>> pipeline = HaystackPipeline(build, inputs=lambda config, q: {"bm25": {"query": q, "top_k": config["top_k"]}},
...                             documents_from="bm25")      # doctest: +SKIP

How knobs map: your factory gets the whole configuration and returns a Haystack ``Pipeline``
(kept per configuration; stores built through :func:`cached_per` once per chunking);
``inputs(config, question)`` returns the ``data`` of ``Pipeline.run`` for one question, so
query-time knobs (``top_k``) reach the components there. The ranked documents are the
``documents`` output of the component named ``documents_from`` (a retriever, a joiner or a
ranker).

Prompt tokens: the first k documents of that output are kept (``beyond_k="truncate"``; a
``DocumentJoiner`` in concatenate mode returns the union of its inputs, ``"keep"`` counts all of
them), the prompt is rendered by a Haystack ``PromptBuilder`` from ``prompt`` (a Jinja template
over ``documents`` and ``question``; default :data:`PROMPT`) and counted with cl100k_base.
Retrieved ids: ``meta[id_key]`` of the kept documents (:func:`documents` stores the passage id
as ``meta["passage_id"]``, which ``DocumentSplitter`` copies to every chunk).

``llm``: a Haystack generator (``run(prompt=...)`` returning ``replies``) or a callable
``prompt -> str``; None scores retrieval only. Haystack's telemetry is switched off on import.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Sequence

from autorag_hp.adapters._base import AdapterPipeline, StackAdapter, cached_per

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")  # no network calls from Haystack

__all__ = ["HaystackPipeline", "cached_per", "documents", "PROMPT"]

PROMPT = """Answer the question from the documents.
{% for doc in documents %}
Document {{ loop.index }}: {{ doc.content }}
{% endfor %}
Question: {{ question }}
Answer:"""


def documents(dataset: Any, *, id_key: str = "passage_id") -> list[Any]:
    """The corpus of a :class:`~autorag_hp.pipeline.QADataset` as Haystack ``Document``\\ s (``meta[id_key]``)."""
    from haystack import Document

    corpus = getattr(dataset, "corpus", dataset)
    return [Document(content=p.text, meta={id_key: p.id, "title": p.title}) for p in corpus]


class _HaystackAdapter(StackAdapter):
    framework = "haystack"

    def __init__(self, factory: Callable[[dict[str, Any]], Any], *, inputs: Callable[[dict[str, Any], str], dict],
                 documents_from: str, **options: Any) -> None:
        if not callable(inputs):
            raise ValueError(f"inputs must be a callable (config, question) -> Pipeline.run data, got {inputs!r}")
        if not isinstance(documents_from, str) or not documents_from:
            raise ValueError(f"documents_from must name the component whose 'documents' are ranked, got {documents_from!r}")
        if options.get("prompt") is None:
            options["prompt"] = PROMPT
        super().__init__(factory, **options)
        self.inputs = inputs
        self.documents_from = documents_from
        self._builder = None
        if isinstance(self.prompt, str):
            from haystack.components.builders import PromptBuilder

            self._builder = PromptBuilder(template=self.prompt, required_variables=["documents", "question"])

    def fingerprint(self) -> str:
        from autorag_hp.pipeline._cache import content_hash
        from autorag_hp.pipeline._cached import code_fingerprint

        return content_hash(super().fingerprint(), code_fingerprint(self.inputs), self.documents_from)

    def prepare(self, built: Any, config: Mapping[str, Any]) -> Any:
        if not callable(getattr(built, "run", None)) or not callable(getattr(built, "get_component", None)):
            raise ValueError(
                f"the factory must return a Haystack Pipeline, got {type(built).__name__} for configuration {dict(config)}"
            )
        try:
            built.get_component(self.documents_from)
        except ValueError:
            raise ValueError(
                f"documents_from={self.documents_from!r} names no component of the Haystack pipeline for "
                f"configuration {dict(config)}"
            ) from None
        return built

    def retrieve(self, retriever: Any, question: str, config: Mapping[str, Any]) -> Sequence[Any]:
        out = retriever.run(self.inputs(dict(config), question), include_outputs_from={self.documents_from})
        docs = (out.get(self.documents_from) or {}).get("documents")
        if docs is None:
            raise ValueError(f"component {self.documents_from!r} produced no 'documents' output for configuration {dict(config)}")
        return docs

    def render(self, question: str, contexts: list[str], docs: Sequence[Any]) -> str:
        if self._builder is not None:
            return self._builder.run(documents=list(docs), question=question)["prompt"]
        return super().render(question, contexts, docs)

    def answer(self, prompt: str) -> str:
        if callable(getattr(self.llm, "run", None)):
            replies = self.llm.run(prompt=prompt)["replies"]
            reply = replies[0] if replies else ""
            return reply if isinstance(reply, str) else str(getattr(reply, "text", reply))
        return super().answer(prompt)

    def text(self, doc: Any) -> str:
        return doc.content or ""

    def doc_id(self, doc: Any) -> str | None:
        value = (doc.meta or {}).get(self.id_key)
        return None if value is None else str(value)


class HaystackPipeline(AdapterPipeline):
    """A tunable pipeline over ``factory(config) -> haystack.Pipeline`` (see the module doc).

    ``inputs(config, question)`` gives ``Pipeline.run``'s data; ``documents_from`` names the
    component whose ``documents`` are the ranking. Other options as for
    :class:`~autorag_hp.adapters.langchain.LangChainPipeline`, except ``prompt`` (a Jinja
    template, default :data:`PROMPT`) and ``id_key`` (default ``"passage_id"``).
    """

    adapter = _HaystackAdapter

    def __init__(
        self,
        factory: Callable[[dict[str, Any]], Any],
        *,
        inputs: Callable[[dict[str, Any], str], dict],
        documents_from: str,
        prompt: Any = PROMPT,
        id_key: str | None = "passage_id",
        **options: Any,
    ) -> None:
        super().__init__(factory, inputs=inputs, documents_from=documents_from, prompt=prompt, id_key=id_key, **options)
