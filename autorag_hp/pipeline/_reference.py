"""The reference RAG pipeline: chunking -> retrieval -> top-k -> compression -> (generation).

Configuration knobs (all optional; missing ones take the pipeline's defaults):

============  ==========================================================================
chunk_size    chunk size in tokens of the pipeline's tokenizer (positive int)
overlap       tokens of whole trailing sentences shared by consecutive chunks (int >= 0)
embedder      retriever name from the registry (``bm25``, ``minilm``, ``static``, ...)
top_k         chunks retrieved (1 <= top_k <= max_top_k)
compression   share of context tokens kept, in (0, 1]; 1.0 keeps everything
compressor    compressor name (``extractive``, ``none``, ``llmlingua``, ...)
generator     generator name (``none`` = retrieval-only scoring)
============  ==========================================================================

Work is shared across configurations: each (chunking, embedder) corpus is embedded once
(and cached on disk by content), each question once per embedder, retrieval runs once
at ``max_top_k`` per (chunking, embedder, question) and is sliced for smaller ``top_k``;
sentence similarities for the extractive compressor are computed once per
(chunking, embedder, question). :meth:`ReferencePipeline.evaluate_grid` scores many
configurations at once on top of the same caches; its rows equal what :meth:`run` plus
:func:`~autorag_hp.pipeline.score_result` give (the tests check this).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from autorag_hp._validation import check_positive_int
from autorag_hp.pipeline._cache import default_cache_dir
from autorag_hp.pipeline._chunking import Chunking, ChunkedCorpus, chunk_corpus, get_tokenizer
from autorag_hp.pipeline._compression import Compressor, ExtractiveCompressor, check_ratio, make_compressor, select_by_budget
from autorag_hp.pipeline._metrics import normalize_answer
from autorag_hp.pipeline._protocol import Passage, PipelineResult, Question
from autorag_hp.pipeline._retrievers import IndexKind, MemoryRoot, Retriever, make_retriever

__all__ = ["ReferencePipeline", "KNOBS", "GRID_COLUMNS"]

#: the columns of one configuration's block of a grid, as yielded by ``evaluate_grid``
GRID_COLUMNS = ("question_id", "answer_in_context", "em", "f1", "gold_recall", "prompt_tokens", "latency_s")

KNOBS = ("chunk_size", "overlap", "embedder", "top_k", "compression", "compressor", "generator")

_DEFAULTS: dict[str, Any] = {
    "chunk_size": 128,
    "overlap": 0,
    "embedder": "bm25",
    "top_k": 3,
    "compression": 1.0,
    "compressor": "extractive",
    "generator": "none",
}

_USE_DEFAULT = object()


@dataclass(frozen=True)
class _Resolved:
    chunking: Chunking
    embedder: str
    top_k: int
    compression: float
    compressor: str
    generator: str | None

    @property
    def block(self) -> tuple:
        """Configurations with the same block share retrieval and similarities."""
        return (self.chunking, self.embedder, self.compressor, self.generator)


class ReferencePipeline:
    """A real RAG pipeline over ``corpus`` (a list of :class:`Passage` or a dataset).

    ``generator`` is the default answer generator: a name from the generator registry,
    a generator object (``generate(question, contexts)`` returning an object with
    ``text`` and ``prompt_tokens``, or a ``(text, prompt_tokens)`` pair), or None for
    retrieval-only scoring. ``cache_dir=None`` keeps caches in memory only; by default
    they live in ``$AUTORAG_HP_CACHE`` or ``~/.cache/autorag_hp``. ``t_max`` is the
    token scale of the reward's cost term; by default ``max_top_k`` times the largest
    chunk any configuration can produce (``chunk_cap``, default the longest passage).
    """

    def __init__(
        self,
        corpus: Sequence[Passage] | Any,
        *,
        tokenizer: str = "cl100k_base",
        max_top_k: int = 20,
        index: IndexKind = "flat",
        cache_dir: str | os.PathLike[str] | None | object = _USE_DEFAULT,
        generator: Any = None,
        defaults: Mapping[str, Any] | None = None,
        t_max: float | None = None,
        chunk_cap: int | None = None,
    ):
        passages = getattr(corpus, "corpus", corpus)
        passages = tuple(passages)
        if not passages or not all(isinstance(p, Passage) for p in passages):
            raise ValueError(f"corpus must be a non-empty sequence of Passage (or a QADataset), got {corpus!r:.200}")
        check_positive_int("max_top_k", max_top_k)
        if index not in ("flat", "hnsw"):
            raise ValueError(f"index must be 'flat' or 'hnsw', got {index!r}")
        self.corpus = passages
        self.tokenizer = get_tokenizer(tokenizer)
        self.max_top_k = max_top_k
        self.index = index
        self.cache_dir = default_cache_dir() if cache_dir is _USE_DEFAULT else cache_dir
        self._store_root = self.cache_dir if self.cache_dir is not None else MemoryRoot()
        self.defaults = dict(_DEFAULTS)
        if generator is not None:
            self.defaults["generator"] = generator if isinstance(generator, str) else "__instance__"
        for k, v in (defaults or {}).items():
            if k not in KNOBS:
                raise ValueError(f"defaults has unknown knob {k!r}; knobs are {list(KNOBS)}")
            self.defaults[k] = v
        self._generator_instance = None if generator is None or isinstance(generator, str) else generator
        longest = max(self.tokenizer.count(" ".join(p.text.split())) for p in passages)
        cap = longest if chunk_cap is None else min(int(chunk_cap), longest)
        self.t_max = float(t_max) if t_max is not None else float(max_top_k * cap)
        # caches (in memory; the on-disk ones live inside the retrievers)
        self._chunked: dict[Chunking, ChunkedCorpus] = {}
        self._retrievers: dict[str, Retriever] = {}
        self._compressors: dict[str, Compressor] = {}
        self._generators: dict[str, Any] = {}
        self._rankings: dict[tuple[Chunking, str], dict[str, np.ndarray]] = {}
        self._sims: dict[tuple[Chunking, str], dict[str, dict[int, float]]] = {}
        self._norm_units: dict[str, str] = {}
        self._passage_hits: dict[str, list[int]] = {}
        self._norm_lists: dict[Chunking, list[str]] = {}
        self._norm_passages: list[str] | None = None
        self._spans: dict[tuple, list[tuple[int, int]]] = {}
        self._qtokens: dict[str, int] = {}
        #: counts and seconds of the shared work (chunking, retrieval, similarities, answer
        #: spans per chunking and question) and of the configuration-dependent work of
        #: evaluate_grid (slicing, compression, scoring)
        self.stats: dict[str, float] = {
            "retrieval_calls": 0, "similarity_calls": 0,
            "chunking_s": 0.0, "retrieval_s": 0.0, "similarity_s": 0.0, "spans_s": 0.0, "scoring_s": 0.0, "scored": 0,
        }

    # In-memory caches hold loaded models (with locks): they are rebuilt, from the on-disk
    # caches, where the pipeline is unpickled (e.g. in a Ray worker).
    _TRANSIENT = ("_chunked", "_retrievers", "_compressors", "_generators", "_rankings", "_sims", "_norm_units",
                  "_passage_hits", "_norm_lists", "_spans", "_qtokens")

    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in self._TRANSIENT}
        state["_norm_passages"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        for name in self._TRANSIENT:
            setattr(self, name, {})

    @classmethod
    def from_space(cls, corpus: Sequence[Passage] | Any, space: Any, **kwargs: Any) -> "ReferencePipeline":
        """A pipeline sized for ``space``: ``max_top_k`` = its largest ``top_k`` and
        ``t_max`` = that times its largest ``chunk_size`` (capped by the longest passage)."""
        names = getattr(space, "names", ())
        if "top_k" in names:
            kwargs.setdefault("max_top_k", int(max(space.values("top_k"))))
        if "chunk_size" in names:
            kwargs.setdefault("chunk_cap", int(max(space.values("chunk_size"))))
        return cls(corpus, **kwargs)

    # ------------------------------------------------------------------ configuration
    def resolve(self, config: Mapping[str, Any]) -> _Resolved:
        """Validate ``config`` and fill in defaults; ValueError names the bad knob."""
        if not isinstance(config, Mapping):
            raise ValueError(f"config must be a mapping of knob -> value, got {config!r}")
        unknown = [k for k in config if k not in KNOBS]
        if unknown:
            raise ValueError(f"config has unknown knob {unknown[0]!r}; knobs are {list(KNOBS)}")
        c = {**self.defaults, **config}
        chunking = Chunking(chunk_size=c["chunk_size"], overlap=c["overlap"], tokenizer=self.tokenizer.name)
        top_k = c["top_k"]
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or not 1 <= top_k <= self.max_top_k:
            raise ValueError(f"top_k must be an integer with 1 <= top_k <= max_top_k={self.max_top_k}, got {top_k!r}")
        self._retriever(c["embedder"])
        self._compressor(c["compressor"])
        gen = c["generator"]
        if gen is not None and gen != "__instance__":
            from autorag_hp.pipeline._generators import list_generators

            if not isinstance(gen, str) or gen not in list_generators():
                raise ValueError(f"generator must be one of {list_generators()}, got {gen!r}")
        return _Resolved(chunking, c["embedder"], int(top_k), check_ratio(c["compression"]), c["compressor"], gen)

    def _retriever(self, name: Any) -> Retriever:
        r = self._retrievers.get(name) if isinstance(name, str) else None
        if r is None:
            r = make_retriever(name, index=self.index)
            r.bind(self._store_root)
            self._retrievers[name] = r
        return r

    def _compressor(self, name: Any) -> Compressor:
        c = self._compressors.get(name) if isinstance(name, str) else None
        if c is None:
            c = self._compressors[name] = make_compressor(name)
        return c

    def _generator(self, name: str | None) -> Any:
        if name is None or name == "none":
            return None
        if name == "__instance__":
            return self._generator_instance
        g = self._generators.get(name)
        if g is None:
            from autorag_hp.pipeline._generators import make_generator

            try:
                g = make_generator(name, cache_dir=self.cache_dir)
            except ValueError as exc:
                if "does not take option" not in str(exc):
                    raise
                g = make_generator(name)
            self._generators[name] = g
        return g if getattr(g, "generates", True) else None

    # ------------------------------------------------------------------ shared work
    def chunked(self, chunking: Chunking) -> ChunkedCorpus:
        cc = self._chunked.get(chunking)
        if cc is None:
            t0 = time.perf_counter()
            cc = self._chunked[chunking] = chunk_corpus(self.corpus, chunking)
            self.stats["chunking_s"] += time.perf_counter() - t0
        return cc

    def _rank(self, chunking: Chunking, embedder: str, texts: Sequence[str]) -> list[np.ndarray]:
        """Top-``max_top_k`` chunk indices per question text (memoised; one batch for misses)."""
        memo = self._rankings.setdefault((chunking, embedder), {})
        missing = list(dict.fromkeys(t for t in texts if t not in memo))
        if missing:
            cc = self.chunked(chunking)
            t0 = time.perf_counter()
            ranking = self._retriever(embedder).rank(cc.chunk_text, missing, self.max_top_k)
            self.stats["retrieval_calls"] += 1
            self.stats["retrieval_s"] += time.perf_counter() - t0
            for t, row in zip(missing, ranking):
                memo[t] = row[row >= 0]
        return [memo[t] for t in texts]

    def _candidates(self, cc: ChunkedCorpus, chunks: np.ndarray) -> list[int]:
        units: set[int] = set()
        for j in chunks.tolist():
            units.update(range(int(cc.chunk_start[j]), int(cc.chunk_end[j])))
        return sorted(units)

    def _similarities(
        self, chunking: Chunking, embedder: str, texts: Sequence[str], rankings: Sequence[np.ndarray]
    ) -> list[dict[int, float]]:
        """Similarity of every unit of each question's top chunks to the question (memoised)."""
        memo = self._sims.setdefault((chunking, embedder), {})
        cc = self.chunked(chunking)
        todo: dict[str, list[int]] = {}
        for t, r in zip(texts, rankings):
            have = memo.get(t)
            need = [u for u in self._candidates(cc, r) if have is None or u not in have]
            if need:
                todo.setdefault(t, [])
                todo[t] = sorted(set(todo[t]) | set(need))
        if todo:
            t0 = time.perf_counter()
            qs = list(todo)
            scores = self._retriever(embedder).similarities(
                cc.unit_text, qs, [np.asarray(todo[q], dtype=np.int64) for q in qs]
            )
            self.stats["similarity_calls"] += 1
            for q, s in zip(qs, scores):
                d = memo.setdefault(q, {})
                d.update(zip(todo[q], np.asarray(s, dtype=np.float64).tolist()))
            self.stats["similarity_s"] += time.perf_counter() - t0
        return [memo[t] if t in memo else {} for t in texts]

    def _question_tokens(self, text: str) -> int:
        n = self._qtokens.get(text)
        if n is None:
            n = self._qtokens[text] = self.tokenizer.count(text)
        return n

    # ------------------------------------------------------------------ RAGPipeline
    def run(self, config: Mapping[str, Any], questions: Sequence[Question]) -> list[PipelineResult]:
        """One :class:`PipelineResult` per question under ``config``."""
        cfg = self.resolve(config)
        questions = list(questions)
        if not all(isinstance(q, Question) for q in questions):
            raise ValueError("questions must be a sequence of Question")
        if not questions:
            return []
        t0 = time.perf_counter()
        cc = self.chunked(cfg.chunking)
        texts = [q.text for q in questions]
        rankings = self._rank(cfg.chunking, cfg.embedder, texts)
        compressor = self._compressor(cfg.compressor)
        structured = compressor.extractive and cfg.compression < 1.0
        sims = self._similarities(cfg.chunking, cfg.embedder, texts, rankings) if structured else None
        shared = (time.perf_counter() - t0) / len(questions)
        out: list[PipelineResult] = []
        for i, q in enumerate(questions):
            t1 = time.perf_counter()
            chunks = rankings[i][: cfg.top_k]
            ctx_tokens = int(cc.chunk_tokens[chunks].sum())
            kept_units: list[int] | None = None
            if cfg.compression >= 1.0 or cfg.compressor == "none":
                contexts = [cc.chunk_text[j] for j in chunks.tolist()]
                tokens = ctx_tokens
            elif structured:
                assert sims is not None
                units = self._candidates(cc, chunks)
                scores = np.array([sims[i][u] for u in units])
                kept = compressor.select(scores, cc.unit_tokens[units], cfg.compression * ctx_tokens)
                kept_units = [units[k] for k in kept]
                contexts = [cc.run_text(a, b) for a, b in cc.runs(kept_units)]
                tokens = int(cc.unit_tokens[kept_units].sum()) if kept_units else 0
            else:
                contexts = compressor.compress(
                    q.text, [cc.chunk_text[j] for j in chunks.tolist()], cfg.compression, count_tokens=self.tokenizer.count
                )
                tokens = sum(self.tokenizer.count(c) for c in contexts)
            prompt_tokens = self._question_tokens(q.text) + tokens
            answer = None
            extra: dict[str, Any] = {
                "chunk_ids": [cc.chunk_id(j) for j in chunks.tolist()],
                "context_tokens": tokens,
                "retrieved_tokens": ctx_tokens,
            }
            if kept_units is not None:
                extra["kept_units"] = len(kept_units)
            gen = self._generator(cfg.generator)
            if gen is not None:
                answer, prompt_tokens = _generate(gen, q.text, contexts)
            passages = list(dict.fromkeys(self.corpus[int(cc.chunk_passage[j])].id for j in chunks.tolist()))
            out.append(
                PipelineResult(
                    contexts=contexts,
                    prompt_tokens=int(prompt_tokens),
                    answer=answer,
                    latency_s=shared + time.perf_counter() - t1,
                    retrieved_ids=passages,
                    extra=extra,
                )
            )
        return out

    # ------------------------------------------------------------------ fast grid
    def _norm_unit(self, text: str) -> str:
        n = self._norm_units.get(text)
        if n is None:
            n = self._norm_units[text] = normalize_answer(text)
        return n

    def _answer_spans(self, cc: ChunkedCorpus, question: Question) -> list[tuple[int, int]]:
        """Minimal unit ranges ``[a, b)`` whose joined text contains a gold answer.

        ``answer_in_context`` on a context made of consecutive units is 1 exactly when
        the context covers one of these ranges (the units' normalised texts, joined by a
        space, equal the normalised joined text).
        """
        golds = [f" {g} " for g in (normalize_answer(a) for a in question.answers) if g]
        if not golds:
            return []
        hits = self._passage_hits.get(question.text + "\x1f" + "\x1f".join(question.answers))
        if hits is None:
            if self._norm_passages is None:
                self._norm_passages = [f" {normalize_answer(' '.join(p.text.split()))} " for p in self.corpus]
            hits = [pi for pi, padded in enumerate(self._norm_passages) if any(g in padded for g in golds)]
            self._passage_hits[question.text + "\x1f" + "\x1f".join(question.answers)] = hits
        key = (cc.chunking, question.text, question.answers)
        cached = self._spans.get(key)
        if cached is not None:
            return cached
        norm = self._norm_lists.get(cc.chunking)
        if norm is None:
            norm = self._norm_lists[cc.chunking] = [self._norm_unit(t) for t in cc.unit_text]

        def match(a: int, b: int) -> bool:
            padded = " " + " ".join(x for x in norm[a:b] if x) + " "
            return any(g in padded for g in golds)

        spans: list[tuple[int, int]] = []
        for pi in hits:
            first, last = cc.passage_units[pi]
            b = first
            ends: list[tuple[int, int]] = []
            for a in range(first, last):
                b = max(b, a + 1)
                while b <= last and not match(a, b):
                    b += 1
                if b > last:
                    break
                ends.append((a, b))
            for idx, (a, b) in enumerate(ends):
                nxt = ends[idx + 1][1] if idx + 1 < len(ends) else None
                if nxt is None or nxt > b:
                    spans.append((a, b))
        self._spans[key] = spans
        return spans

    def evaluate_grid(
        self,
        configs: Iterable[Mapping[str, Any]],
        questions: Sequence[Question],
        *,
        progress: Callable[[int], None] | None = None,
    ) -> Iterator[tuple[int, dict[str, list[Any] | None]]]:
        """Score many configurations; yields ``(config position, columns)``.

        ``columns`` maps each of :data:`GRID_COLUMNS` to one value per question (``em`` and
        ``f1`` are None when nothing generates), exactly as :meth:`run` + ``score_result``
        would report them; ``latency_s`` is amortised over the configurations sharing work.
        Configurations with a generator or a non-extractive compressor fall back to
        :meth:`run`. ``progress(n)`` is called with the number of configurations finished.
        """
        from autorag_hp.pipeline._metrics import score_result

        configs = list(configs)
        resolved = [self.resolve(c) for c in configs]
        questions = list(questions)
        blocks: dict[tuple, list[int]] = {}
        for i, r in enumerate(resolved):
            blocks.setdefault(r.block, []).append(i)
        texts = [q.text for q in questions]
        fast_blocks = []
        for members in blocks.values():
            first = resolved[members[0]]
            comp = self._compressor(first.compressor)
            fast = self._generator(first.generator) is None and (
                first.compressor == "none"
                or type(comp).select is ExtractiveCompressor.select
                or all(resolved[i].compression >= 1.0 for i in members)
            )
            fast_blocks.append(fast)
        self._prefetch([resolved[m[0]] for m, f in zip(blocks.values(), fast_blocks) if f],
                       [[resolved[i] for i in m] for m, f in zip(blocks.values(), fast_blocks) if f], texts)
        for members, fast in zip(blocks.values(), fast_blocks):
            first = resolved[members[0]]
            if not fast:
                for i in members:
                    results = self.run(configs[i], questions)
                    rows = [score_result(q, r, t_max=self.t_max) for q, r in zip(questions, results)]
                    yield i, {k: [row[k] for row in rows] for k in GRID_COLUMNS}
                    if progress:
                        progress(1)
                continue
            yield from self._evaluate_block(first, [resolved[i] for i in members], members, questions, texts, progress)

    def _prefetch(self, firsts: list[_Resolved], members: list[list[_Resolved]], texts: list[str]) -> None:
        """Embed everything the blocks need in one model call per role and embedder:
        all chunks of all chunkings with the questions, then all candidate sentences."""
        by_embedder: dict[str, list[Chunking]] = {}
        for f in firsts:
            by_embedder.setdefault(f.embedder, [])
            if f.chunking not in by_embedder[f.embedder]:
                by_embedder[f.embedder].append(f.chunking)
        for emb, chunkings in by_embedder.items():
            passages = [t for ch in chunkings for t in self.chunked(ch).chunk_text]
            t0 = time.perf_counter()
            self._retriever(emb).prefetch(passages, texts)
            self.stats["retrieval_s"] += time.perf_counter() - t0
        units_by_embedder: dict[str, list[str]] = {}
        for f, ms in zip(firsts, members):
            rankings = self._rank(f.chunking, f.embedder, texts)
            if f.compressor != "none" and any(r.compression < 1.0 for r in ms) and self._retriever(f.embedder).dense:
                cc = self.chunked(f.chunking)
                needed = sorted({u for r in rankings for u in self._candidates(cc, r)})
                units_by_embedder.setdefault(f.embedder, []).extend(cc.unit_text[u] for u in needed)
        for emb, units in units_by_embedder.items():
            t0 = time.perf_counter()
            self._retriever(emb).prefetch(units, ())
            self.stats["similarity_s"] += time.perf_counter() - t0

    def _evaluate_block(self, first, members_cfg, members, questions, texts, progress):
        """Score one block (same chunking, embedder, compressor) for all its configurations.

        Per question: the chunks at ``max(top_k)`` are walked once, growing the context for
        each ``top_k``; the candidate sentences are ordered by similarity once, and each
        ``compression`` ratio selects from that order with the compressor's budget rule.
        """
        t0 = time.perf_counter()
        chunking, embedder = first.chunking, first.embedder
        cc = self.chunked(chunking)
        rankings = self._rank(chunking, embedder, texts)
        compress = first.compressor != "none" and any(r.compression < 1.0 for r in members_cfg)
        sims = self._similarities(chunking, embedder, texts, rankings) if compress else None
        top_ks = sorted({r.top_k for r in members_cfg})
        ratios = sorted({r.compression for r in members_cfg})
        kmax = top_ks[-1]
        n_q, n_cfg = len(questions), len(members_cfg)
        pid_index = {p.id: i for i, p in enumerate(self.corpus)}
        cs, ce = cc.chunk_start.tolist(), cc.chunk_end.tolist()
        ctok, cpass = cc.chunk_tokens.tolist(), cc.chunk_passage.tolist()
        utok = cc.unit_tokens.tolist()
        keys = [(t, r) for t in top_ks for r in ratios]
        aic_col: dict[tuple, list[float]] = {k: [] for k in keys}
        rec_col: dict[tuple, list[float]] = {k: [] for k in keys}
        tok_col: dict[tuple, list[int]] = {k: [] for k in keys}
        q_seconds: list[float] = []
        t_spans = time.perf_counter()
        all_spans = [self._answer_spans(cc, q) for q in questions]
        self.stats["spans_s"] += time.perf_counter() - t_spans
        shared = time.perf_counter() - t0
        t_scoring = time.perf_counter()
        for qi, q in enumerate(questions):
            tq = time.perf_counter()
            spans = all_spans[qi]
            chunk_list = rankings[qi].tolist()[:kmax]
            qtok = self._question_tokens(q.text)
            gold = {pid_index[g] for g in q.gold_passages}
            contains = [any(cs[j] <= a and b <= ce[j] for a, b in spans) for j in chunk_list]
            if compress:
                sim = sims[qi]
                candidates = sorted({u for j in chunk_list for u in range(cs[j], ce[j])})
                order_all = sorted(candidates, key=lambda u: -sim[u])  # stable: ties by corpus order
            ctx, found, got, unit_set, prev = 0, False, set(), set(), 0
            for t in top_ks:
                for pos in range(prev, min(t, len(chunk_list))):
                    j = chunk_list[pos]
                    ctx += ctok[j]
                    found = found or contains[pos]
                    got.add(cpass[j])
                    if compress:
                        unit_set.update(range(cs[j], ce[j]))
                prev = t
                recall = len(gold & got) / len(gold) if gold else math.nan
                order_t = None
                for r in ratios:
                    key = (t, r)
                    rec_col[key].append(recall)
                    if r >= 1.0 or not compress:
                        aic_col[key].append(1.0 if found else 0.0)
                        tok_col[key].append(qtok + ctx)
                        continue
                    if order_t is None:
                        order_t = [u for u in order_all if u in unit_set]
                        tok_t = [utok[u] for u in order_t]
                    kept_pos = select_by_budget(tok_t, r * ctx)
                    kept = {order_t[k] for k in kept_pos}
                    aic_col[key].append(1.0 if any(all(u in kept for u in range(a, b)) for a, b in spans) else 0.0)
                    tok_col[key].append(qtok + sum(tok_t[k] for k in kept_pos))
            q_seconds.append(time.perf_counter() - tq)
        self.stats["scoring_s"] += time.perf_counter() - t_scoring
        self.stats["scored"] += n_q * n_cfg
        # latency: this question's share of the block's shared work, plus its loop time split over the configurations
        latency = [shared / n_q + s / n_cfg for s in q_seconds]
        qids = [q.id for q in questions]
        for i, r in zip(members, members_cfg):
            key = (r.top_k, r.compression)
            yield i, {
                "question_id": qids,
                "answer_in_context": aic_col[key],
                "em": None,
                "f1": None,
                "gold_recall": rec_col[key],
                "prompt_tokens": tok_col[key],
                "latency_s": latency,
            }
            if progress:
                progress(1)


def _generate(gen: Any, question: str, contexts: list[str]) -> tuple[str, int]:
    """Call a generator: GeneratedAnswer-like objects, or ``(text, prompt_tokens)`` pairs."""
    out = gen.generate(question, contexts)
    if isinstance(out, tuple) and len(out) == 2:
        return str(out[0]), int(out[1])
    text, tokens = getattr(out, "text", None), getattr(out, "prompt_tokens", None)
    if not isinstance(text, str) or not isinstance(tokens, int):
        raise ValueError(
            f"generator {gen!r} must return (answer, prompt_tokens) or an object with text and prompt_tokens, got {out!r:.200}"
        )
    return text, tokens
