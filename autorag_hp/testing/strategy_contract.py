"""The checks every strategy passes: ask/tell/best, reproducibility, bad input, resume equivalence."""

from __future__ import annotations

import copy
import math
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from autorag_hp.objective import Outcome
from autorag_hp.space import SearchSpace
from autorag_hp.strategies import Recommendation, SpaceExhausted, make_strategy
from autorag_hp.tuner import tune

__all__ = ["CONTRACT_CHECKS", "check_strategy_contract", "contract_space"]


def contract_space() -> SearchSpace:
    return SearchSpace({"top_k": [1, 3, 5, 7], "chunk_size": [128, 256, 512], "embedder": ["bm25", "minilm"], "compression": [0.5, 1.0]})


def _truth(space: SearchSpace, config) -> float:
    k = space.value_index("top_k", config["top_k"])
    c = space.value_index("chunk_size", config["chunk_size"])
    return 0.3 + 0.08 * k - 0.05 * abs(c - 1) + 0.15 * (config["embedder"] == "minilm") + 0.05 * (config["compression"] == 1.0)


def _objective(space: SearchSpace):
    def f(config, pull: int) -> Outcome:
        rng = np.random.default_rng([11, pull])
        p = min(max(_truth(space, config), 0.0), 1.0)
        return Outcome(reward=float(rng.binomial(4, p) / 4), calls=4)

    return f


def _state(strategy) -> tuple:
    return (strategy.n_told, strategy.n_asked, sorted((k, tuple(v)) for k, v in strategy.stats.table.items()),
            sorted(strategy.pending.items()), strategy.rng.bit_generator.state["state"]["state"])


def check_ask_tell_best(name: str, **options) -> None:
    space = contract_space()
    s = make_strategy(name, space, seed=0, **options)
    f = _objective(space)
    pull = 0
    for _ in range(12):
        try:
            configs = s.ask_batch(3)
        except SpaceExhausted:
            break
        assert len(configs) == 3
        for c in configs:
            assert space.validate(c) == c, f"{name}: ask returned a configuration outside the space: {c}"
            s.tell(c, f(c, pull).reward)
            pull += 1
    try:
        c = s.ask()
        s.tell(c, f(c, pull).reward)
    except SpaceExhausted:
        pass
    for n in (1, 5):
        recs = s.best(n)
        assert len(recs) == n, f"{name}: best({n}) returned {len(recs)} recommendations"
        assert all(isinstance(r, Recommendation) for r in recs)
        keys = {space.key(r.config) for r in recs}
        assert len(keys) == n, f"{name}: best({n}) repeats a configuration"
        for r in recs:
            if r.pulls > 0:
                assert r.ci_low <= r.mean <= r.ci_high, f"{name}: mean outside its interval: {r}"
    means = [r.mean for r in s.best(5) if r.pulls > 0]
    assert means == sorted(means, reverse=True) or name in ("tpe",), f"{name}: best() is not sorted: {means}"
    # best() must not disturb what ask proposes next
    a = copy.deepcopy(s) if name != "tpe" else None
    if a is not None:
        s.best(3)
        try:
            assert a.ask() == s.ask(), f"{name}: calling best() changed the next ask"
        except SpaceExhausted:
            pass


def check_reproducible(name: str, **options) -> None:
    space = contract_space()
    runs = []
    for _ in range(2):
        s = make_strategy(name, space, seed=42, **options)
        f = _objective(space)
        seq = []
        for pull in range(30):
            try:
                c = s.ask()
            except SpaceExhausted:
                break
            seq.append(space.index(c))
            s.tell(c, f(c, pull).reward)
        runs.append((seq, [space.index(r.config) for r in s.best(3)]))
    assert runs[0] == runs[1], f"{name}: same seed gave different sequences"
    if name != "grid":
        other = make_strategy(name, space, seed=43, **options)
        seq = [space.index(other.ask()) for _ in range(1)]
        assert isinstance(seq[0], int)


def check_bad_input(name: str, **options) -> None:
    space = contract_space()
    s = make_strategy(name, space, seed=0, **options)
    c = s.ask()
    s.tell(c, 0.5)
    c2 = s.ask()
    before = _state(s)
    good = dict(c2)
    bad_configs = [
        {**good, "top_k": 2},
        {**good, "nope": 1},
        {k: v for k, v in good.items() if k != "top_k"},
        "top_k=1",
        None,
    ]
    for bad in bad_configs:
        try:
            s.tell(bad, 0.5)  # type: ignore[arg-type]
        except ValueError:
            pass
        else:
            raise AssertionError(f"{name}: tell accepted a configuration outside the space: {bad!r}")
        assert _state(s) == before, f"{name}: a rejected tell changed the state"
    for bad_reward in (math.nan, math.inf, -math.inf, "0.5", None, [0.5], True):
        try:
            s.tell(good, bad_reward)  # type: ignore[arg-type]
        except ValueError:
            pass
        else:
            raise AssertionError(f"{name}: tell accepted reward {bad_reward!r}")
        assert _state(s) == before, f"{name}: a rejected reward changed the state"
    for bad_n in (0, -1, 1.5, "2"):
        try:
            s.best(bad_n)  # type: ignore[arg-type]
        except ValueError:
            pass
        else:
            raise AssertionError(f"{name}: best({bad_n!r}) did not raise")
        try:
            s.ask_batch(bad_n)  # type: ignore[arg-type]
        except ValueError:
            pass
        else:
            raise AssertionError(f"{name}: ask_batch({bad_n!r}) did not raise")
    s.tell(good, 0.25)  # still usable
    try:
        make_strategy(name, space, seed=0, no_such_option=1)
    except ValueError as exc:
        assert "no_such_option" in str(exc)
    else:
        raise AssertionError(f"{name}: an unknown option was accepted")


def check_resume_equivalence(name: str, **options) -> None:
    space = contract_space()
    f = _objective(space)
    kwargs = dict(budget_calls=4 * 40, parallel=3, calls_per_pull=4, fsync=False)
    with tempfile.TemporaryDirectory() as d:
        full_path = Path(d) / "full.jsonl"
        full = tune(make_strategy(name, space, seed=5, **options), f, journal=full_path, **kwargs)
        lines = full_path.read_text().splitlines(keepends=True)
        for cut in sorted({1, 2, 4, len(lines) // 2, len(lines) - 1}):
            p = Path(d) / f"cut{cut}.jsonl"
            torn = lines[cut][: len(lines[cut]) // 2] if cut < len(lines) else ""
            p.write_text("".join(lines[:cut]) + torn)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                resumed = tune(make_strategy(name, space, seed=5, **options), f, journal=p, resume=True, **kwargs)
            assert [r.config for r in resumed.records] == [r.config for r in full.records], (
                f"{name}: resuming after {cut} journal lines diverged from the uninterrupted run"
            )
            assert [r.reward for r in resumed.records] == [r.reward for r in full.records]
            assert [x.config for x in resumed.best(3)] == [x.config for x in full.best(3)]


CONTRACT_CHECKS: dict[str, Callable[..., None]] = {
    "ask_tell_best": check_ask_tell_best,
    "reproducible": check_reproducible,
    "bad_input": check_bad_input,
    "resume_equivalence": check_resume_equivalence,
}


def check_strategy_contract(name: str, **options) -> None:
    """Run every contract check on the strategy registered as ``name``."""
    for check in CONTRACT_CHECKS.values():
        check(name, **options)
