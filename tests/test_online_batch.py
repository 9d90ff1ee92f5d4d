"""Batches drawn at once: ``Strategy.propose_batch`` (hier-ts), ``commit_many``, ``_answer_many``,
``ArmSet.update_many``, and the tuner's one-record-per-batch journal (``suggest_batch``,
``feedback_batch``): the same state as one at a time, the same distribution of suggestions,
replayed after a crash, nothing counted when the write fails."""

from __future__ import annotations

import errno
import json
import warnings
from collections import Counter

import numpy as np
import pytest

from autorag_hp.online import Discounted, Guardrail, OnlineTuner, Persistence, SlidingWindow, Stationary, WarmStart
from autorag_hp.online._persistence import JournalUnavailable, scan_journal
from autorag_hp.space import SearchSpace
from autorag_hp.strategies import Proposal, make_strategy
from autorag_hp.strategies._policies import ArmSet, Thompson

from test_online_persistence import _asgi  # noqa: E402  (the ASGI call helper)

SPACE = SearchSpace({"top_k": [1, 3, 5, 8, 10], "chunk": [128, 256, 512, 1024], "embedder": ["bm25", "minilm", "e5"],
                     "rerank": [True, False]})


def reward_of(config: dict, k: int = 0) -> float:
    return config["top_k"] / 10 + (0.2 if config["embedder"] == "e5" else 0.0) + 0.1 * ((k * 7) % 5) / 4


def trained(name: str = "hier-ts", pairs: int = 80, **kw):
    """A strategy after ``pairs`` asks and tells (every arm of hier-ts has a reward by then)."""
    s = make_strategy(name, SPACE, seed=5, **kw)
    for k in range(pairs):
        c = s.ask()
        s.tell(c, reward_of(c, k))
    return s


def without_rng(state: dict) -> dict:
    return {k: v for k, v in state.items() if k != "rng"}


def tuner_state(t: OnlineTuner) -> dict:
    s = t.stats()
    for k in ("rejected", "journal", "boot"):
        s.pop(k, None)
    return s


# -- the strategy hooks --------------------------------------------------------------------------
def test_propose_batch_waits_until_every_arm_has_a_reward_and_only_hier_ts_has_one():
    fresh = make_strategy("hier-ts", SPACE, seed=0)
    assert fresh.propose_batch(8) is None  # untried arms go first, one at a time
    assert trained().propose_batch(1) is None  # a batch of one is a single call
    for name in ("hier-ucb", "flat-ts", "random"):
        assert trained(name).propose_batch(8) is None
    s = trained()
    assert all(arms.n.min() > 0 for arms in (s.upper, *s.lower))
    before = s.state()
    batch = s.propose_batch(12)
    assert len(batch) == 12
    after = s.state()
    assert after["rng"] != before["rng"] and without_rng(after) == without_rng(before)  # draws only


def test_propose_batch_chains_configurations_as_committing_in_order_does():
    s = trained()
    batch = s.propose_batch(40)
    prev = tuple(s.current)
    for p in batch:
        g, arm = p.tag
        positions = s._group_pos[g]
        assert all(p.coords[i] == prev[i] for i in range(len(prev)) if i not in positions)  # one group moves
        assert s._arm_of(g, p.coords) == arm
        prev = p.coords
    s.commit_many(batch)
    assert tuple(s.current) == batch[-1].coords


def test_a_batch_draws_from_the_same_distribution_as_single_proposals():
    """propose() and propose_batch() change nothing but the generator, so both can be sampled
    many times from one state: their (group, arm) frequencies must agree, and differ from a
    uniform pick (the posteriors are informative), else the comparison would prove nothing."""
    s = make_strategy("hier-ts", SPACE, seed=11)
    for k in range(60):  # few rewards: spread-out posteriors
        c = s.ask()
        s.tell(c, reward_of(c, k))
    assert s.propose_batch(2) is not None
    draws = 20_000
    single = Counter(tuple(s.propose().tag) for _ in range(draws))
    batched = Counter(tuple(p.tag) for _ in range(draws // 50) for p in s.propose_batch(50))
    keys = set(single) | set(batched)
    tv = 0.5 * sum(abs(single[k] - batched[k]) for k in keys) / draws
    assert tv < 0.03, (tv, single.most_common(5), batched.most_common(5))
    uniform = {(g, a): 1 / (len(s.groups) * len(s.lower[g])) for g in range(len(s.groups)) for a in range(len(s.lower[g]))}
    tv_uniform = 0.5 * sum(abs(single[k] / draws - p) for k, p in uniform.items())
    assert tv_uniform > 0.1


@pytest.mark.parametrize("posterior", ["gaussian", "beta"])
def test_select_many_rows_follow_each_tables_posterior(posterior):
    """Rows of one table are i.i.d. draws: the frequency of the best arm matches select()'s."""
    rng = np.random.default_rng(3)
    arms = ArmSet(4)
    for a, r in [(0, 0.2), (1, 0.5), (2, 0.55), (3, 0.1)] * 3:
        arms.update(a, r + 0.05 * rng.random(), was_pending=False)
    ts = Thompson(posterior)
    gen = np.random.default_rng(7)
    single = Counter(ts.select(arms, gen) for _ in range(8000))
    many = Counter(ts.select_many([arms, arms], [0, 1] * 4000, np.random.default_rng(8)))
    for a in range(4):
        assert abs(single[a] - many[a]) / 8000 < 0.03, (a, single, many)


def _pending_proposals(s, n: int) -> list[Proposal]:
    out = []
    for _ in range(n):
        p = s.propose()
        s.commit(p)
        out.append(p)
    untagged = Proposal(out[0].coords, None)  # a guardrail veto: committed without a tag
    s.commit(untagged)
    return [*out, untagged]


@pytest.mark.parametrize("rule", [Stationary(), Discounted(0.97), SlidingWindow(25)])
def test_commit_many_and_answer_many_leave_the_state_of_one_at_a_time(rule):
    a, b = trained(stats=rule), trained(stats=rule)
    assert a.state() == b.state()
    batch = a.propose_batch(30)
    assert batch == b.propose_batch(30)
    for p in batch:
        a.commit(p)
    b.commit_many(batch)
    assert a.state() == b.state()
    values = [reward_of(SPACE.config_from_coords(p.coords), k) for k, p in enumerate(batch)]
    for p, v in zip(batch, values):
        a._answer(p, v)
    b._answer_many(batch, values)
    assert a.state() == b.state()  # every float the same
    more_a, more_b = _pending_proposals(a, 6), _pending_proposals(b, 6)
    assert more_a == more_b
    for p in more_a[::-1]:
        a._answer(p, 0.5)
    b._answer_many(more_b[::-1], [0.5] * len(more_b))
    assert a.state() == b.state()


def test_answer_many_refuses_a_proposal_that_is_not_pending_after_the_earlier_ones_as_answer_does():
    a, b = trained(), trained()
    batch = a.propose_batch(6)
    assert b.propose_batch(6) == batch
    a.commit_many(batch)
    b.commit_many(batch)
    stranger = Proposal(batch[0].coords, [9, 9])
    items = [*batch[:3], stranger, *batch[3:]]
    with pytest.raises(ValueError, match="not a pending ask"):
        for p in items:
            a._answer(p, 0.4)
    with pytest.raises(ValueError, match="not a pending ask"):
        b._answer_many(items, [0.4] * len(items))
    assert a.state() == b.state()


@pytest.mark.parametrize("scale", [1.0, 1e-3, 1e4])
def test_arm_update_many_is_update_one_at_a_time(scale):
    rng = np.random.default_rng(int(scale * 10))
    one, many = ArmSet(7), ArmSet(7)
    one.pending[:] = many.pending[:] = [3, 0, 1, 5, 0, 2, 1]
    arms = rng.integers(7, size=200).tolist()
    rewards = (rng.normal(size=200) * scale).tolist()
    for a, r in zip(arms, rewards):
        one.update(a, r, was_pending=True)
    assert many.update_many(arms, rewards)
    assert one.state() == many.state()
    for rule in (Discounted(0.9), SlidingWindow(5)):
        other = ArmSet(7, rule)
        assert not other.update_many(arms, rewards) and other.state() == ArmSet(7, rule).state()


# -- the tuner -----------------------------------------------------------------------------------
def _trained_tuner(**kw) -> OnlineTuner:
    t = OnlineTuner(SPACE, strategy="hier-ts", seed=2, **kw)
    for k in range(80):
        s = t.suggest()
        t.feedback(s.id, reward_of(s.config, k))
    return t


@pytest.mark.parametrize("case", ["hier-ucb", "flat-ts", "guardrail", "untried arms"])
def test_a_batch_is_n_single_suggestions_without_a_batch_draw(case):
    def make():
        if case == "untried arms":
            return OnlineTuner(SPACE, strategy="hier-ts", seed=4)
        if case == "guardrail":
            return _trained_tuner(guardrail=Guardrail(margin=0.05))
        t = OnlineTuner(SPACE, strategy=case, seed=4)
        for k in range(40):
            s = t.suggest()
            t.feedback(s.id, reward_of(s.config, k))
        return t

    a, b = make(), make()
    for rnd in range(4):
        got = a.suggest_many(7)
        one = [b.suggest() for _ in range(7)]
        assert [(s.id, s.config) for s in got] == [(s.id, s.config) for s in one]
        for k, (x, y) in enumerate(zip(got, one)):
            a.feedback(x.id, reward_of(x.config, k))
            b.feedback(y.id, reward_of(y.config, k))
    assert tuner_state(a) == tuner_state(b)


def test_feedback_many_counts_as_single_feedbacks_do():
    a, b = _trained_tuner(), _trained_tuner()
    got = a.suggest_many(20)
    assert [s.id for s in got] == [s.id for s in b.suggest_many(20)]
    items = [(s.id, reward_of(s.config, k)) for k, s in enumerate(got)]
    outcomes, _ = a.feedback_many([*items[:12], (items[0][0], 0.9), ("77-1", 0.1), *items[12:]])
    assert [type(o).__name__ for o in outcomes[12:14]] == ["DuplicateFeedback", "UnknownSuggestion"]
    assert outcomes[:12] == outcomes[14:] + [None] * 4 == [None] * 12
    for sid, r in items:
        b.feedback(sid, r)
    sa, sb = tuner_state(a), tuner_state(b)
    assert sa == sb
    assert a.strategy.state() == b.strategy.state()


def _records(path) -> list[dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return scan_journal(path)[0]


@pytest.mark.parametrize("snapshot", [True, False])
def test_batch_records_replay_after_a_crash(tmp_path, snapshot):
    p = Persistence(tmp_path / "run.jsonl", fsync="always", snapshot_every=0)
    t = _trained_tuner(persistence=p)
    open_ids = []
    for rnd in range(15):
        got = t.suggest_many(3 + rnd % 9)
        answered = got[: len(got) - 1]
        open_ids.append(got[-1].id)
        t.feedback_many([(s.id, reward_of(s.config, k)) for k, s in enumerate(answered)])
        if snapshot and rnd == 7:
            t.snapshot()
    kinds = Counter(r["type"] for r in _records(p.path))
    assert kinds["suggest_batch"] == kinds["feedback_batch"] == 15 and kinds["feedback"] == 80
    expected, strategy = tuner_state(t), without_rng(t.strategy.state())
    t._abandon()  # a crash: no final snapshot
    back = OnlineTuner(SPACE, strategy="hier-ts", seed=2, persistence=p)
    assert back.stats()["journal"]["restored_from_snapshot"] is snapshot
    assert tuner_state(back) == expected and without_rng(back.strategy.state()) == strategy
    for sid in open_ids:  # the unanswered suggestions of each batch are still pending
        back.feedback(sid, 0.5)
    later = back.suggest_many(5)
    assert all(s.id.startswith("2-") for s in later)  # a new boot: ids are never reused
    back.close()


def test_a_torn_batch_record_is_dropped_whole(tmp_path):
    p = Persistence(tmp_path / "run.jsonl", fsync="always", snapshot_every=0)
    t = _trained_tuner(persistence=p)
    got = t.suggest_many(6)
    t._abandon()
    before = p.path.stat().st_size
    data = p.path.read_bytes()
    last = data.rstrip(b"\n").rsplit(b"\n", 1)[1]
    assert b'"suggest_batch"' in last
    p.path.write_bytes(data[: before - len(last) // 2 - 1])  # the batch record half written
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        back = OnlineTuner(SPACE, strategy="hier-ts", seed=2, persistence=p)
    assert any("torn" in str(w.message) for w in caught)
    assert back.stats()["pending"] == 0 and back.stats()["suggestions"] == 80
    outcomes, _ = back.feedback_many([(s.id, 0.5) for s in got])
    assert all(type(o).__name__ == "UnknownSuggestion" for o in outcomes)
    back.close()


class FullDisk:
    def __call__(self, fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failed_batch_write_counts_nothing(tmp_path):
    p = Persistence(tmp_path / "run.jsonl", fsync="always", snapshot_every=0)
    t = _trained_tuner(persistence=p)
    before, strategy, size = tuner_state(t), without_rng(t.strategy.state()), p.path.stat().st_size
    t._journal._write = FullDisk()
    with pytest.raises(JournalUnavailable):
        t.suggest_many(16)
    assert tuner_state(t) == before and without_rng(t.strategy.state()) == strategy
    assert p.path.stat().st_size == size
    t._journal._write = __import__("os").write
    got = t.suggest_many(16)
    t._journal._write = FullDisk()
    with pytest.raises(JournalUnavailable):
        t.feedback_many([(s.id, 0.5) for s in got])
    assert tuner_state(t)["feedback"] == 80 and tuner_state(t)["pending"] == 16
    t.close()


def test_warm_start_observe_reads_batch_records(tmp_path):
    p = Persistence(tmp_path / "run.jsonl", fsync="never", snapshot_every=0)
    t = _trained_tuner(persistence=p)
    got = t.suggest_many(10)
    t.feedback_many([(s.id, 0.25) for s in got[:7]])
    t.close()
    obs = OnlineTuner(SPACE, strategy="hier-ucb", warm_start=WarmStart(str(p.path), "observe"))
    assert obs.stats()["observations"] == 80 + 7
    configs = Counter(json.dumps(s.config, sort_keys=True) for s in got[:7])
    pulled = obs.strategy.stats
    for key, c in configs.items():
        assert pulled.row(SPACE.coords(json.loads(key)))[0] >= c


def test_http_batches_after_training_are_answered_and_journaled_as_batches(tmp_path):
    pytest.importorskip("fastapi")
    from autorag_hp.online import create_app

    p = Persistence(tmp_path / "run.jsonl", fsync="always", snapshot_every=0)
    t = _trained_tuner(persistence=p)
    app = create_app(t)

    def call(path: str, body: bytes) -> tuple[int, dict]:
        return _asgi(app, "POST", path, body)

    status, got = call("/suggest", b'{"n": 9}')
    assert status == 200 and len(got["suggestions"]) == 9
    for s in got["suggestions"]:
        assert set(s) == {"id", "config", "expires_at"} and s["config"] in SPACE
        assert s["expires_at"] > 0
    items = [{"id": s["id"], "reward": 0.5} for s in got["suggestions"]]
    status, body = call("/feedback", json.dumps([*items, items[0]]).encode())
    assert status == 200 and body["accepted"] == 9
    assert [r["status"] for r in body["results"]] == [200] * 9 + [409]
    kinds = [r["type"] for r in _records(p.path)]
    assert kinds[-2:] == ["suggest_batch", "feedback_batch"]
    status, one = call("/suggest", b"")
    assert status == 200 and set(one) == {"id", "config", "expires_at"}
    t.close()


# -- remembered ids: runs in the snapshot ---------------------------------------------------------
def _expanded(runs) -> list[tuple[str, bool]]:
    return [(f"{b}-{n}", bool(a)) for b, first, count, a in runs for n in range(first, first + count)]


def test_remembered_ids_are_runs_in_the_snapshot_and_come_back_whole(tmp_path):
    """The snapshot stores answered and expired ids as runs of consecutive ids (its size does not
    grow with the number of ids remembered); eviction of the oldest keeps the runs equal to the
    remembered ids, and a restart from the snapshot answers duplicates and expired ids as before."""
    clock = [1_000.0]
    p = Persistence(tmp_path / "run.jsonl", fsync="never", snapshot_every=0)
    t = OnlineTuner(SPACE, strategy="hier-ts", seed=1, persistence=p, expiry_s=50, remember_ids=400,
                    clock=lambda: clock[0])
    answered, expired = [], []
    for rnd in range(60):
        got = t.suggest_many(1 + rnd % 23)
        clock[0] += 1.0
        late = got[-1] if rnd % 4 == 0 else None
        items = [(s.id, 0.5) for s in got if s is not late][::-1 if rnd % 3 == 0 else 1]  # out of order too
        t.feedback_many(items)
        answered += [sid for sid, _ in items]
        if late is not None:
            expired.append(late.id)
        if rnd == 40:
            clock[0] += 60.0  # the late ones so far expire
    assert list(t._closed.items()) == _expanded(t._closed_runs)
    assert len(t._closed) == 400 and len(t._closed_runs) < 400 / 2  # reversed batches: runs of one
    t.snapshot()
    state = json.loads(p.snapshot_path.read_text())["state"]
    assert "closed" not in state and len(state["closed_runs"]) == len(t._closed_runs)
    remembered = dict(t._closed)
    t._abandon()
    back = OnlineTuner(SPACE, strategy="hier-ts", seed=1, persistence=p, expiry_s=50, remember_ids=400,
                       clock=lambda: clock[0])
    assert back.stats()["journal"]["restored_from_snapshot"]
    assert dict(back._closed) == remembered and list(back._closed) == list(remembered)
    old_answer = next(sid for sid, a in remembered.items() if a)
    old_expired = next(sid for sid, a in remembered.items() if not a)
    outcomes, _ = back.feedback_many([(old_answer, 0.1), (old_expired, 0.1), (answered[0], 0.1)])
    assert [type(o).__name__ for o in outcomes] == ["DuplicateFeedback", "ExpiredSuggestion", "UnknownSuggestion"]
    back.close()


def test_a_snapshot_with_the_old_list_of_ids_is_still_read(tmp_path):
    p = Persistence(tmp_path / "run.jsonl", fsync="never", snapshot_every=0)
    t = _trained_tuner(persistence=p)
    t.snapshot()
    snap = json.loads(p.snapshot_path.read_text())
    runs = snap["state"].pop("closed_runs")
    snap["state"]["closed"] = [[sid, int(a)] for sid, a in _expanded(runs)]  # as written before the runs
    p.snapshot_path.write_text(json.dumps(snap))
    expected = dict(t._closed)
    t._abandon()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # used, not refused
        back = OnlineTuner(SPACE, strategy="hier-ts", seed=2, persistence=p)
    assert back.stats()["journal"]["restored_from_snapshot"] and dict(back._closed) == expected
    assert list(back._closed.items()) == _expanded(back._closed_runs)
    back.close()


@pytest.mark.parametrize("remember", [7, 1_000])
def test_a_feedback_batch_leaves_the_remembered_ids_of_single_feedbacks(remember):
    """A feedback batch remembers its ids in one ``_remember_closed`` call: out-of-order ids,
    runs broken by ids not yet answered, and the oldest ids forgotten past ``remember_ids`` must
    come out as the same closed ids and the same runs (the snapshot's form) as one feedback at a
    time."""
    def make() -> OnlineTuner:
        t = OnlineTuner(SPACE, strategy="hier-ts", seed=2, remember_ids=remember, clock=lambda: 1000.0)
        for k in range(80):
            s = t.suggest()
            t.feedback(s.id, reward_of(s.config, k))
        return t

    a, b = make(), make()
    got = a.suggest_many(30)
    assert [s.id for s in got] == [s.id for s in b.suggest_many(30)]
    order = [int(i) for i in np.random.default_rng(3).permutation(30)[:24]]  # 6 stay pending: runs break
    items = [(got[i].id, reward_of(got[i].config, i)) for i in order]
    for chunk in (items[:5], items[5:6], items[6:17], items[17:]):
        outcomes, _ = a.feedback_many(chunk)
        assert outcomes == [None] * len(chunk)
    for sid, r in items:
        b.feedback(sid, r)
    assert a._state() == b._state()  # counters, reward sum, pending ids, closed runs, the strategy
    assert list(a._closed.items()) == list(b._closed.items())
    assert len(a._closed) == min(remember, 80 + 24)
