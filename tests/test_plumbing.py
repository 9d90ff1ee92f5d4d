"""Shared helpers: the registry, argument checks, atomic writes, the reward, seed streams, budgets."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from autorag_hp._budget import budget_calls, parse_budget
from autorag_hp._io import atomic_write_bytes, atomic_write_json, atomic_write_text
from autorag_hp._registry import Registry, resolve_import
from autorag_hp._seeds import STREAMS, generator
from autorag_hp._validation import check_int, check_number, check_positive_int, check_share
from autorag_hp.objective import check_t_max, check_w, reward


# -- Registry --------------------------------------------------------------------------------------
def test_registry_refuses_duplicates_unless_replaced():
    reg = Registry("widget", {"a": dict})
    with pytest.raises(ValueError, match="widget 'a' is already registered .*replace=True"):
        reg.register("a", list)
    reg.register("a", list, replace=True)
    assert reg.get("a") is list and reg.names() == ["a"] and "a" in reg and len(reg) == 1
    reg.unregister("a")
    assert "a" not in reg


def test_registry_resolves_lazily_and_names_the_known_entries():
    reg = Registry("widget", {"od": "collections:OrderedDict", "plain": dict})
    assert reg._entries["od"] == "collections:OrderedDict"  # not imported until asked for
    from collections import OrderedDict

    assert reg.get("od") is OrderedDict
    with pytest.raises(ValueError, match="widget must be one of od, plain, got 'nope'"):
        reg.get("nope")
    for bad, match in [("", "non-empty string"), ("x", None)]:
        with pytest.raises(ValueError, match=match or "'module:attr'"):
            reg.register(bad, "no_colon" if bad == "x" else dict)
    with pytest.raises(ValueError, match="callable or 'module:attr'"):
        reg.register("n", 3)
    assert resolve_import("os.path:join") is os.path.join


def test_registry_build_checks_options_and_result_type():
    class Base:
        pass

    class Impl(Base):
        def __init__(self, *, size: int = 1) -> None:
            self.size = size

    reg = Registry("part", {"impl": Impl, "bad": lambda: 3})
    assert reg.build("impl", instance_of=Base, size=4).size == 4
    inst = Impl()
    assert reg.build(inst, instance_of=Base) is inst
    with pytest.raises(ValueError, match="options are only accepted with a part name"):
        reg.build(inst, instance_of=Base, size=2)
    with pytest.raises(ValueError, match=r"part 'impl' does not take option\(s\) \['colour'\]; it takes \['size'\]"):
        reg.build("impl", colour="red")
    with pytest.raises(ValueError, match="part factory for 'bad' must return a Base, got int"):
        reg.build("bad", instance_of=Base)


def test_every_registry_uses_the_one_duplicate_rule():
    from autorag_hp.executors import _REGISTRY as executors
    from autorag_hp.pipeline import register_compressor, register_embedder, register_loader, register_tokenizer
    from autorag_hp.pipeline._chunking import _TOKENIZERS as tokenizers
    from autorag_hp.pipeline._compression import _COMPRESSORS as compressors
    from autorag_hp.pipeline._datasets import _LOADERS as loaders
    from autorag_hp.pipeline._generators import _REGISTRY as generators
    from autorag_hp.pipeline._metrics import _METRICS as metrics
    from autorag_hp.pipeline._retrievers import _EMBEDDERS as embedders
    from autorag_hp.strategies import _REGISTRY as strategies
    from autorag_hp.strategies import register_strategy

    for reg in (executors, generators, metrics, strategies, embedders, compressors, tokenizers, loaders):
        assert isinstance(reg, Registry)
        name = reg.names()[0]
        with pytest.raises(ValueError, match="already registered"):
            reg.register(name, reg.get(name))
    with pytest.raises(ValueError, match="strategy 'random' is already registered"):
        register_strategy("random", "autorag_hp.strategies.random_search:RandomSearch")
    for register, name in ((register_embedder, "bm25"), (register_compressor, "none"), (register_tokenizer, "words"),
                           (register_loader, "jsonl")):
        with pytest.raises(ValueError, match=f"'{name}' is already registered"):
            register(name, dict)
    replaced = compressors.get("none")
    register_compressor("none", replaced, replace=True)  # replace=True is the one way to overwrite
    assert compressors.get("none") is replaced


# -- argument checks ----------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [0, -3, 2.0, True, "4", None])
def test_check_positive_int_rejects(value):
    with pytest.raises(ValueError, match=f"batch must be a positive integer, got {value!r}"):
        check_positive_int("batch", value)


def test_checks_accept_and_convert():
    assert check_positive_int("n", np.int64(3)) == 3 and isinstance(check_positive_int("n", np.int64(3)), int)
    assert check_positive_int("n", None, allow_none=True) is None
    assert check_int("seed", 0, minimum=0) == 0
    with pytest.raises(ValueError, match="n_questions must be an integer >= 4, got 2"):
        check_int("n_questions", 2, minimum=4)
    assert check_number("x", 0.5, low=0.0, high=1.0) == 0.5
    with pytest.raises(ValueError, match=r"x must lie in \[0, 1\), got 1.0"):
        check_number("x", 1.0, low=0.0, high=1.0, high_open=True)
    with pytest.raises(ValueError, match="x must be a number > 0, got nan"):
        check_number("x", float("nan"), low=0.0, low_open=True)
    assert check_share("budget", 1) == 1.0
    with pytest.raises(ValueError, match=r"budget must lie in \(0, 1\], got 0"):
        check_share("budget", 0)


# -- atomic writes ---------------------------------------------------------------------------------------
def test_atomic_writes_leave_no_temporary_file(tmp_path):
    target = tmp_path / "deep" / "out.json"
    atomic_write_json(target, {"a": np.float64(0.5)})
    assert json.loads(target.read_text()) == {"a": 0.5}
    atomic_write_text(target, "x", fsync=False)
    atomic_write_bytes(target, b"yz", fsync_dir=True)
    assert target.read_bytes() == b"yz" and os.listdir(target.parent) == ["out.json"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("old")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["r.json"]


# -- the reward --------------------------------------------------------------------------------------------
def test_reward_is_autorag_hp_eq_1():
    assert reward(0.8, 500, w=0.9, t_max=1000) == pytest.approx(0.9 * 0.8 - 0.1 * 0.5)
    assert reward(0.3, 10_000, w=1.0, t_max=1) == pytest.approx(0.3)
    arr = reward(np.array([1.0, 0.0]), np.array([0.0, 100.0]), w=0.5, t_max=100.0)
    assert arr.tolist() == [0.5, -0.5]
    with pytest.raises(ValueError, match="w must be a number with 0 <= w <= 1, got 1.5"):
        reward(1.0, 0.0, w=1.5, t_max=1.0)
    with pytest.raises(ValueError, match="t_max must be a positive number of tokens, got 0"):
        reward(1.0, 0.0, w=0.5, t_max=0)
    assert check_w(1) == 1.0 and check_t_max(2) == 2.0
    with pytest.raises(ValueError, match="--w must be a number with 0 <= w <= 1, got True"):
        check_w(True, name="--w")


# -- seed streams --------------------------------------------------------------------------------------------
def test_streams_are_distinct_and_keep_their_numbers():
    assert len(set(STREAMS.values())) == len(STREAMS)
    a = generator("questions", 3, 7).random(4)
    assert np.array_equal(a, generator("questions", 3, 7).random(4))
    assert not np.array_equal(a, generator("tie-break", 3, 7).random(4))
    assert not np.array_equal(a, generator("questions", 3, 8).random(4))
    # the salt sits after the keys and before the tail, as the package always seeded
    assert np.array_equal(generator("surface-draws", 1, 2, tail=(0, 50)).random(3),
                          np.random.default_rng([1, 2, STREAMS["surface-draws"], 0, 50]).random(3))
    with pytest.raises(ValueError, match="unknown random stream 'nope'; known: tie-break"):
        generator("nope", 1)


# -- budgets -----------------------------------------------------------------------------------------------
def test_one_budget_rule():
    assert parse_budget("20%") == ("share", 0.2) and parse_budget(0.2) == ("share", 0.2)
    assert parse_budget("5000") == ("calls", 5000.0)
    assert budget_calls(0.2, grid_calls=1000, batch=8) == 200
    assert budget_calls("150", grid_calls=1000, batch=8) == 150
    with pytest.raises(ValueError, match="--budget gives 7 calls, fewer than one pull of batch 8 questions"):
        budget_calls(0.007, grid_calls=1000, batch=8, name="--budget")
    for bad in ("0", "1.5", "abc", True):
        with pytest.raises(ValueError, match="budget"):
            parse_budget(bad)
