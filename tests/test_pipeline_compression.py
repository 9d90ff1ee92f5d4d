"""Compressors: the budget rule, the extractive text API, the registry, llmlingua when installed."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from autorag_hp.pipeline import Compressor, ExtractiveCompressor, list_compressors, make_compressor, register_compressor
from autorag_hp.pipeline._compression import check_ratio, select_by_budget

words = lambda s: len(s.split())  # noqa: E731


def test_select_by_budget_skips_items_that_do_not_fit():
    assert select_by_budget([5, 10, 3, 4], 12) == [0, 2, 3]
    assert select_by_budget([20], 10) == []
    assert select_by_budget([1, 1, 1], 2) == [0, 1]


def test_extractive_select_keeps_most_similar_in_corpus_order():
    c = ExtractiveCompressor()
    kept = c.select(np.array([0.1, 0.9, 0.5, 0.8]), np.array([5, 5, 5, 5]), 10)
    assert kept == [1, 3]
    # ties go to the earlier sentence
    assert c.select(np.array([0.5, 0.5, 0.5]), np.array([1, 1, 1]), 2) == [0, 1]


def test_extractive_compress_text_api_keeps_the_relevant_sentence():
    contexts = [
        "The castle was built in 1066. It has four towers. The moat is dry.",
        "Bread is baked daily. The bakery opens at six.",
    ]
    out = ExtractiveCompressor().compress("When was the castle built?", contexts, 0.3, count_tokens=words)
    assert out == ["The castle was built in 1066."]
    total = sum(words(c) for c in out)
    assert total <= 0.3 * sum(words(c) for c in contexts)
    full = ExtractiveCompressor().compress("q", contexts, 1.0, count_tokens=words)
    assert full == contexts


def test_adjacent_kept_sentences_stay_one_context():
    contexts = ["Alpha one. Alpha two. Beta three."]
    scorer = lambda q, sents: np.array([1.0, 0.9, 0.0])  # noqa: E731
    out = ExtractiveCompressor(scorer=scorer).compress("alpha", contexts, 0.7, count_tokens=words)
    assert out == ["Alpha one. Alpha two."]


@pytest.mark.parametrize("bad", [0, -0.5, 1.5, "half", True, float("nan")])
def test_bad_ratio_is_rejected(bad):
    with pytest.raises(ValueError, match="compression must"):
        check_ratio(bad)


def test_registry():
    assert {"none", "extractive", "llmlingua"} <= set(list_compressors())
    assert make_compressor("none").compress("q", ["a b"], 0.1, count_tokens=words) == ["a b"]
    with pytest.raises(ValueError, match="compressor must be one of .* got 'zip'"):
        make_compressor("zip")

    class FirstWords(Compressor):
        name = "first-words"

        def compress(self, question, contexts, ratio, *, count_tokens):
            return [" ".join(c.split()[: max(1, int(ratio * len(c.split())))]) for c in contexts]

    register_compressor("first-words", FirstWords)
    assert make_compressor("first-words").compress("q", ["a b c d"], 0.5, count_tokens=words) == ["a b"]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llmlingua") is None, reason="optional backend llmlingua not installed")
def test_llmlingua_compresses_with_a_local_model():
    c = make_compressor("llmlingua")
    ctx = [
        "The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, a region in "
        "France. They were descended from Norse raiders and pirates from Denmark, Iceland and Norway who, under "
        "their leader Rollo, agreed to swear fealty to King Charles III of West Francia.",
        "The English name Normans comes from the French words Normans/Normanz, plural of Normant, modern French "
        "normand, which is itself borrowed from Old Low Franconian Nortmann Northman.",
    ]
    out = c.compress("Where is Normandy?", ctx, 0.5, count_tokens=words)
    assert len(out) == 1 and 0 < words(out[0]) < 0.8 * sum(words(x) for x in ctx)
    assert "Where is Normandy?" not in out[0]
