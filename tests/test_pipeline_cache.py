"""On-disk caches: persistence, content keys (no stale hits), atomic writes."""

from __future__ import annotations

import os

import numpy as np
import pytest

from autorag_hp.pipeline import ArrayStore, JsonStore, Passage, ReferencePipeline, content_hash
from autorag_hp.pipeline import _cache
from autorag_hp.pipeline._retrievers import DenseRetriever


class CountingEncoder:
    """A deterministic bag-of-characters encoder that counts the texts it embeds."""

    fingerprint = "counting-v1"

    def __init__(self):
        self.seen: list[str] = []

    def encode_passages(self, texts):
        self.seen += list(texts)
        out = np.zeros((len(texts), 26), dtype=np.float32)
        for i, t in enumerate(texts):
            for ch in t.lower():
                if "a" <= ch <= "z":
                    out[i, ord(ch) - 97] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)

    encode_queries = encode_passages


def test_content_hash_is_length_prefixed():
    assert content_hash("ab", "c") != content_hash("a", "bc")
    assert content_hash("x") == content_hash("x") and len(content_hash("x")) == 32


def test_array_store_roundtrip_and_keys_with_trailing_zero_bytes(tmp_path):
    keys = [content_hash(str(i)) for i in range(3000)]
    assert any(k.endswith("00") for k in keys)  # a bytes dtype would drop these
    vals = np.random.default_rng(0).random((3000, 4)).astype(np.float32)
    ArrayStore(tmp_path, "ns").put_many(keys, vals)
    store = ArrayStore(tmp_path, "ns")  # a new process would see the same
    found, rows = store.get_many(keys)
    assert found.all()
    np.testing.assert_array_equal(np.stack(rows), vals)


def test_array_store_compacts_shards(tmp_path):
    store = ArrayStore(tmp_path, "ns", max_shards=4)
    for i in range(10):
        store.put_many([content_hash(str(i))], np.full((1, 3), i, dtype=np.float32))
    assert len(list((tmp_path / "ns").glob("*.npz"))) <= 5
    fresh = ArrayStore(tmp_path, "ns")
    assert len(fresh) == 10
    assert fresh.get_many([content_hash("7")])[1][0].tolist() == [7, 7, 7]


def test_array_store_rejects_bad_input(tmp_path):
    store = ArrayStore(tmp_path, "ns")
    with pytest.raises(ValueError, match="one row per key"):
        store.put_many([content_hash("a")], np.zeros((2, 3)))
    with pytest.raises(ValueError, match="hex digests"):
        store.get_many(["not-a-hash"])
    with pytest.raises(ValueError, match="namespace"):
        ArrayStore(tmp_path, "../escape")


def test_failed_write_leaves_nothing_half_written(tmp_path, monkeypatch):
    store = ArrayStore(tmp_path, "ns")
    store.put_many([content_hash("ok")], np.ones((1, 2)))
    before = sorted(p.name for p in (tmp_path / "ns").iterdir())

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(_cache.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        ArrayStore(tmp_path, "ns").put_many([content_hash("new")], np.ones((1, 2)))
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "ns").iterdir()) == before  # no temp file, no partial shard
    fresh = ArrayStore(tmp_path, "ns")
    assert content_hash("ok") in fresh and content_hash("new") not in fresh


def test_unreadable_shard_is_skipped_with_a_warning(tmp_path):
    ArrayStore(tmp_path, "ns").put_many([content_hash("a")], np.ones((1, 2)))
    (tmp_path / "ns" / "garbage.npz").write_bytes(b"not a zip")
    with pytest.warns(RuntimeWarning, match="unreadable cache shard"):
        assert content_hash("a") in ArrayStore(tmp_path, "ns")


def test_json_store(tmp_path):
    s = JsonStore(tmp_path, "gen")
    k = content_hash("prompt")
    assert s.get(k) is None
    s.put(k, {"text": "Paris", "n": 3})
    assert JsonStore(tmp_path, "gen").get(k) == {"text": "Paris", "n": 3}
    with pytest.raises(TypeError):
        s.put(content_hash("x"), {"bad": object()})
    assert not any(p.suffix == ".tmp" for p in tmp_path.rglob("*"))


def test_embeddings_are_computed_once_and_survive_a_new_process(tmp_path):
    enc = CountingEncoder()
    r = DenseRetriever(enc)
    r.bind(tmp_path)
    docs = ["apples and pears", "stone bridges", "river boats", "apples and pears"]
    first = r.rank(docs, ["which fruit?"], 2)
    r.rank(docs, ["which fruit?", "boats"], 2)
    assert sorted(enc.seen) == sorted(["apples and pears", "stone bridges", "river boats", "which fruit?", "boats"])
    enc2 = CountingEncoder()
    r2 = DenseRetriever(enc2)
    r2.bind(tmp_path)
    assert r2.rank(docs, ["which fruit?"], 2).tolist() == first.tolist()
    assert enc2.seen == []  # everything came from disk


def test_changed_corpus_never_returns_stale_results(tmp_path):
    from autorag_hp.pipeline import register_embedder

    enc = CountingEncoder()
    register_embedder("counting-test", lambda **kw: enc)
    q = [__import__("autorag_hp.pipeline", fromlist=["Question"]).Question("q", "Where are the zebras?", ("zoo",))]
    cfg = {"embedder": "counting-test", "top_k": 1, "chunk_size": 64}
    p1 = ReferencePipeline([Passage("a", "Zebras live in the zoo."), Passage("b", "Cars drive on roads.")],
                           cache_dir=tmp_path, tokenizer="words")
    assert p1.run(cfg, q)[0].retrieved_ids == ["a"]
    # same ids, changed texts: the zebras moved to passage b
    p2 = ReferencePipeline([Passage("a", "Cars drive on roads."), Passage("b", "Zebras live in the zoo now.")],
                           cache_dir=tmp_path, tokenizer="words")
    res = p2.run(cfg, q)[0]
    assert res.retrieved_ids == ["b"] and "zoo now" in res.contexts[0]
    assert "Zebras live in the zoo now." in enc.seen


def test_json_shard_store_persists_merges_and_skips_bad_shards(tmp_path):
    from autorag_hp.pipeline._cache import JsonShardStore, content_hash

    keys = [content_hash(str(i)) for i in range(10)]
    store = JsonShardStore(tmp_path, "outcomes/x", max_shards=3)
    for i, k in enumerate(keys):
        store.put_many([(k, {"i": i, "texts": [f"t{i}"]})])
    shards = list((tmp_path / "outcomes" / "x").glob("*.jsonl"))
    assert 1 <= len(shards) <= 3  # merged whenever more than 3 accumulated
    again = JsonShardStore(tmp_path, "outcomes/x")
    assert len(again) == 10 and again.get(keys[7]) == {"i": 7, "texts": ["t7"]} and again.get(content_hash("no")) is None
    with pytest.raises(TypeError):  # not JSON: refused before anything is written
        again.put_many([(keys[0], {"bad": object()})])
    assert JsonShardStore(tmp_path, "outcomes/x").get(keys[0]) == {"i": 0, "texts": ["t0"]}
    (tmp_path / "outcomes" / "x" / "broken.jsonl").write_text('{"k": "torn')
    with pytest.warns(RuntimeWarning, match="ignoring unreadable cache shard"):
        assert len(JsonShardStore(tmp_path, "outcomes/x")) == 10
    with pytest.raises(ValueError, match="cache keys must be"):
        again.get("short")
