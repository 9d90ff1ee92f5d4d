"""The checks every strategy passes: ask/tell/best, reproducibility, bad input, resume equivalence,
and, for strategies usable online (``Strategy.online``), the online hooks and forgetting statistics."""

from __future__ import annotations

import copy
import json
import math
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from autorag_hp.objective import Outcome
from autorag_hp.space import SearchSpace
from autorag_hp.strategies import Discounted, Recommendation, SlidingWindow, SpaceExhausted, make_strategy
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
    return (strategy.n_told, strategy.n_asked, sorted((k, tuple(v)) for k, v in strategy.stats.items()),
            sorted((k, tuple(map(json.dumps, v))) for k, v in strategy.pending.items()),
            strategy.rng.bit_generator.state["state"]["state"])


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
    # pareto-ts ranks by the reward's lower credible bound (its best_lcb option) and reports the mean
    by_mean = name != "tpe" and not getattr(getattr(s, "options", None), "best_lcb", 0)
    assert not by_mean or means == sorted(means, reverse=True), f"{name}: best() is not sorted: {means}"
    # best() must not disturb what ask proposes next
    a = copy.deepcopy(s) if name != "tpe" else None
    if a is not None:
        s.best(3)
        try:
            assert a.ask() == s.ask(), f"{name}: calling best() changed the next ask"
        except SpaceExhausted:
            pass


def _run(name: str, seed: int, options: dict, pulls: int = 30) -> tuple[list[int], list[int]]:
    """(asked configuration indices, best(3) indices) of ``pulls`` ask/tell steps."""
    space = contract_space()
    s = make_strategy(name, space, seed=seed, **options)
    f = _objective(space)
    seq = []
    for pull in range(pulls):
        try:
            c = s.ask()
        except SpaceExhausted:
            break
        seq.append(space.index(c))
        s.tell(c, f(c, pull).reward)
    return seq, [space.index(r.config) for r in s.best(3)]


def check_reproducible(name: str, **options) -> None:
    first, second = _run(name, 42, options), _run(name, 42, options)
    assert first == second, f"{name}: same seed gave different sequences"
    if name != "grid":  # the one deterministic strategy
        other, _ = _run(name, 43, options)
        assert other != first[0], f"{name}: seeds 42 and 43 gave the same sequence: {other}"


def _refused(call, message: str) -> None:
    """``call()`` must raise ValueError; otherwise the contract fails with ``message``."""
    try:
        call()
    except ValueError:
        return
    raise AssertionError(message)


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
        _refused(lambda: s.tell(bad, 0.5), f"{name}: tell accepted a configuration outside the space: {bad!r}")
        assert _state(s) == before, f"{name}: a rejected tell changed the state"
    for bad_reward in (math.nan, math.inf, -math.inf, "0.5", None, [0.5], True):
        _refused(lambda: s.tell(good, bad_reward), f"{name}: tell accepted reward {bad_reward!r}")
        assert _state(s) == before, f"{name}: a rejected reward changed the state"
    for bad_n in (0, -1, 1.5, "2"):
        _refused(lambda: s.best(bad_n), f"{name}: best({bad_n!r}) did not raise")
        _refused(lambda: s.ask_batch(bad_n), f"{name}: ask_batch({bad_n!r}) did not raise")
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


def _json_round_trip(state: dict) -> dict:
    text = json.dumps(state, allow_nan=False)  # plain JSON: no pickle, no NaN
    return json.loads(text)


def _play(s, f, pulls: range, *, batch: int = 1) -> list[int]:
    seq = []
    for rnd in range(len(pulls) // batch):
        configs = s.ask_batch(batch)
        for k, c in enumerate(configs):
            seq.append(s.space.index(c))
            s.tell(c, f(c, pulls[rnd * batch + k]).reward)
    return seq


def check_online_hooks(name: str, **options) -> None:
    """propose / commit / expire / tell(tag=) / state / load, for strategies with ``online = True``;
    the others must refuse forgetting statistics."""
    space = contract_space()
    s = make_strategy(name, space, seed=3, **options)
    if not getattr(s, "online", False):
        try:
            make_strategy(name, space, seed=3, stats=Discounted(0.9), **options)
        except ValueError as exc:
            assert "stats" in str(exc), exc
        else:
            raise AssertionError(f"{name}: accepted forgetting statistics but is not usable online (online = False)")
        return
    f = _objective(space)
    _play(s, f, range(20), batch=2)
    open_asks = s.ask_batch(2)  # pending while we snapshot

    # propose draws from the generator only; proposing again from the same generator state repeats it
    before = _json_round_trip(s.state())
    p1 = s.propose()
    after = _json_round_trip(s.state())
    assert {k: v for k, v in after.items() if k != "rng"} == {k: v for k, v in before.items() if k != "rng"}, (
        f"{name}: propose() changed the state"
    )
    s.load(before)
    p2 = s.propose()
    assert p1 == p2, f"{name}: propose() is not a function of the state"
    json.dumps(p1.tag)  # tags are journaled

    # state/load round trip through JSON: an identical strategy, next asks and estimates included
    s.load(before)
    twin = make_strategy(name, space, seed=3, **options)
    twin.load(_json_round_trip(s.state()))
    assert _json_round_trip(twin.state()) == _json_round_trip(s.state()), f"{name}: load(state()) lost something"
    for strategy in (s, twin):
        for c in open_asks:
            strategy.tell(c, 0.5)
    assert _play(twin, f, range(20, 40)) == _play(s, f, range(20, 40)), f"{name}: a loaded state diverged"
    assert twin.best(3) == s.best(3)

    # ask == commit(propose); expire undoes what commit made pending
    pending_before = _json_round_trip(s.state())["pending"]
    p = s.propose()
    s.commit(p)
    assert s.pending, f"{name}: commit() did not make the proposal pending"
    s.expire(p)
    assert _json_round_trip(s.state())["pending"] == pending_before, f"{name}: expire() left the ask pending"
    _refused(lambda: s.expire(p), f"{name}: expired an ask that was not pending")
    c = space.config_from_coords(p.coords)
    state = _state(s)
    _refused(lambda: s.tell(c, 0.5, tag=["not", "pending"]), f"{name}: tell(tag=...) accepted a tag that is not pending")
    assert _state(s) == state, f"{name}: a rejected tell changed the state"

    # forgetting statistics are an option, offline too, and are journaled by describe()
    for rule in (Discounted(0.9), SlidingWindow(10)):
        if not isinstance(rule, s.forgets):
            continue
        d = make_strategy(name, space, seed=3, stats=str(rule), **options)
        assert d.stats_rule == rule
        _play(d, f, range(30))
        desc = d.describe()
        assert make_strategy(desc["strategy"], space, seed=desc["seed"], **desc["options"]).describe() == desc
        assert len(d.best(3)) == 3


CONTRACT_CHECKS: dict[str, Callable[..., None]] = {
    "ask_tell_best": check_ask_tell_best,
    "reproducible": check_reproducible,
    "bad_input": check_bad_input,
    "resume_equivalence": check_resume_equivalence,
    "online_hooks": check_online_hooks,
}


def check_strategy_contract(name: str, **options) -> None:
    """Run every contract check on the strategy registered as ``name``."""
    for check in CONTRACT_CHECKS.values():
        check(name, **options)
