"""Chunking: sentence splitting, sizes in tokens, overlap, bad input."""

from __future__ import annotations

import pytest

from autorag_hp.pipeline import Chunking, Passage, chunk_corpus, get_tokenizer, split_sentences


TEXT = (
    "The Normans were a people in France. Dr. Smith wrote about them in 1990, e.g. in his book. "
    "They came from Scandinavia! Did they speak Norse? J. R. Tolkien did not write about them. "
    "Their duchy lasted for centuries."
)


def test_split_sentences_respects_abbreviations_and_initials():
    sents = split_sentences(TEXT)
    assert sents == [
        "The Normans were a people in France.",
        "Dr. Smith wrote about them in 1990, e.g. in his book.",
        "They came from Scandinavia!",
        "Did they speak Norse?",
        "J. R. Tolkien did not write about them.",
        "Their duchy lasted for centuries.",
    ]
    assert split_sentences("   ") == []
    assert " ".join(split_sentences("a.  b  c. D e")) == "a. b c. D e"


@pytest.mark.parametrize("tokenizer", ["words", "cl100k_base"])
@pytest.mark.parametrize("size,overlap", [(8, 0), (16, 0), (16, 8), (40, 12), (1000, 0)])
def test_chunks_respect_size_and_cover_every_sentence(tokenizer, size, overlap):
    passages = [Passage("a", TEXT), Passage("b", "One short passage. With two sentences.")]
    cc = chunk_corpus(passages, Chunking(size, overlap, tokenizer))
    tok = get_tokenizer(tokenizer)
    # units are sentences (or word pieces of long ones) and rebuild each passage exactly
    for pi, p in enumerate(passages):
        a, b = cc.passage_units[pi]
        assert " ".join(cc.unit_text[a:b]) == " ".join(p.text.split())
    for j in range(cc.n_chunks):
        units = range(cc.chunk_start[j], cc.chunk_end[j])
        assert cc.chunk_tokens[j] == sum(tok.count(cc.unit_text[u]) for u in units)
        assert cc.chunk_tokens[j] <= size or len(units) == 1
        assert len({cc.unit_passage[u] for u in units}) == 1  # never crosses passages
        assert cc.chunk_text[j] == " ".join(cc.unit_text[u] for u in units)
    covered = {u for j in range(cc.n_chunks) for u in range(cc.chunk_start[j], cc.chunk_end[j])}
    assert covered == set(range(cc.n_units))
    # consecutive chunks of a passage share at most `overlap` tokens of whole units
    for j in range(1, cc.n_chunks):
        if cc.chunk_passage[j] == cc.chunk_passage[j - 1]:
            shared = range(cc.chunk_start[j], min(cc.chunk_end[j - 1], cc.chunk_end[j]))
            assert sum(cc.unit_tokens[u] for u in shared) <= overlap
            assert cc.chunk_start[j] > cc.chunk_start[j - 1]


def test_overlap_repeats_trailing_sentences():
    passages = [Passage("a", " ".join(f"Sentence number {i} is here." for i in range(10)))]
    no = chunk_corpus(passages, Chunking(15, 0, "words"))
    yes = chunk_corpus(passages, Chunking(15, 5, "words"))
    assert yes.n_chunks > no.n_chunks
    assert yes.chunk_text[1].startswith(yes.unit_text[yes.chunk_end[0] - 1])


def test_long_sentence_is_split_at_word_boundaries():
    long = " ".join(f"w{i}" for i in range(50)) + "."
    cc = chunk_corpus([Passage("a", long)], Chunking(8, 0, "words"))
    assert all(t <= 8 for t in cc.unit_tokens)
    assert " ".join(cc.unit_text) == long


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"chunk_size": 0}, "chunk_size must be a positive integer, got 0"),
        ({"chunk_size": -5}, "chunk_size must be a positive integer, got -5"),
        ({"chunk_size": 2.5}, "chunk_size must be a positive integer"),
        ({"chunk_size": 10, "overlap": -1}, "overlap must be a non-negative integer, got -1"),
        ({"chunk_size": 10, "overlap": 10}, r"overlap < chunk_size must hold, but got \(overlap=10, chunk_size=10\)"),
    ],
)
def test_bad_chunking_is_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Chunking(**kwargs)


def test_unknown_tokenizer_is_rejected():
    with pytest.raises(ValueError, match="tokenizer must be one of .* got 'nope'"):
        get_tokenizer("nope")
