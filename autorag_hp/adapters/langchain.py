"""Tune a LangChain retrieval stack: one retriever (or runnable) per configuration.

>>> from autorag_hp.adapters.langchain import LangChainPipeline, cached_per, documents
>>> docs = documents(dataset)                       # the corpus as LangChain Documents, metadata["id"]
>>> @cached_per("chunk_size", "chunk_overlap")      # built once per chunking, shared by every configuration
... def chunks(config):
...     return RecursiveCharacterTextSplitter(chunk_size=config["chunk_size"],
...                                           chunk_overlap=config["chunk_overlap"]).split_documents(docs)
>>> def retriever(config):                          # one retriever per configuration
...     return BM25Retriever.from_documents(chunks(config), k=config["top_k"])
>>> pipeline = LangChainPipeline(retriever)         # doctest: +SKIP

How knobs map: the adapter passes the whole configuration to your factory, which reads the
knobs it needs; nothing is renamed. The factory runs once per configuration (the retriever is
kept), and whatever it builds through a :func:`cached_per` function once per chunking, so a
grid builds each index once. The knob named by ``top_k`` (default ``"top_k"``) is read only
for the k policy below; your factory still passes k to the retriever itself.

Prompt tokens: per question the retriever is invoked (``retriever.invoke(question)``, any
runnable that returns a list of ``Document``), the first k documents in the retriever's own
order are kept, the prompt is rendered from their ``page_content`` (``prompt``: a template
string with ``{context}`` and ``{question}``, a LangChain ``PromptTemplate`` or a callable),
and its tokens are counted with cl100k_base (``count_tokens``).

More than k chunks: an ``EnsembleRetriever`` returns the union of its retrievers' top-k
(up to ``n * k`` documents), ranked by weighted reciprocal-rank fusion. With
``beyond_k="truncate"`` (default) the first k of that fused ranking reach the prompt, so
``top_k`` means the same prompt size for every retriever and prompt tokens stay comparable;
``beyond_k="keep"`` counts every returned chunk (the union), as a stack that passes the
ensemble's output straight to the prompt would. ``extra["returned"]`` records how many came back.

Retrieved ids are ``metadata[id_key]`` of the kept documents (splitters copy a document's
metadata to its chunks), deduplicated in rank order, for the ``gold_recall`` metric.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from autorag_hp.adapters._base import DEFAULT_PROMPT, AdapterPipeline, StackAdapter, cached_per

__all__ = ["LangChainPipeline", "cached_per", "documents", "DEFAULT_PROMPT"]


def documents(dataset: Any, *, id_key: str = "id") -> list[Any]:
    """The corpus of a :class:`~autorag_hp.pipeline.QADataset` as LangChain ``Document``\\ s (id in metadata)."""
    from langchain_core.documents import Document

    corpus = getattr(dataset, "corpus", dataset)
    return [Document(page_content=p.text, metadata={id_key: p.id, "title": p.title}) for p in corpus]


class _LangChainAdapter(StackAdapter):
    framework = "langchain"

    def prepare(self, built: Any, config: Mapping[str, Any]) -> Any:
        if not callable(getattr(built, "invoke", None)):
            raise ValueError(
                f"the factory must return a LangChain retriever or runnable (with invoke), got "
                f"{type(built).__name__} for configuration {dict(config)}"
            )
        return built

    def retrieve(self, retriever: Any, question: str, config: Mapping[str, Any]) -> Sequence[Any]:
        docs = retriever.invoke(question)
        if isinstance(docs, (str, bytes)) or not isinstance(docs, Sequence):
            raise ValueError(
                f"the runnable for configuration {dict(config)} must return a list of Documents, got {type(docs).__name__}"
            )
        return docs

    def text(self, doc: Any) -> str:
        text = getattr(doc, "page_content", None)
        if not isinstance(text, str):
            raise ValueError(f"the retriever must return LangChain Documents (page_content), got {type(doc).__name__}")
        return text

    def doc_id(self, doc: Any) -> str | None:
        value = (getattr(doc, "metadata", None) or {}).get(self.id_key)
        return None if value is None else str(value)


class LangChainPipeline(AdapterPipeline):
    """A tunable pipeline over ``factory(config) -> LangChain retriever or runnable`` (see the module doc).

    Options (keyword-only): ``top_k`` (the knob holding k, or None), ``beyond_k``
    (``"truncate"`` | ``"keep"``), ``prompt``, ``llm`` (a chat model / LLM runnable or a callable
    ``prompt -> str``; None scores retrieval only), ``id_key`` (metadata key of the passage id,
    None for no ids), ``count_tokens``, ``t_max``, ``name``, ``fingerprint``.
    """

    adapter = _LangChainAdapter
