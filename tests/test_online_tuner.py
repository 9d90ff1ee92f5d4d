"""OnlineTuner: feedback rules, forgetting statistics, warm start, guardrail, restore."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from autorag_hp.online import (
    Discounted,
    DuplicateFeedback,
    ExpiredSuggestion,
    Guardrail,
    OnlineTuner,
    Persistence,
    SlidingWindow,
    Stationary,
    UnknownSuggestion,
    WarmStart,
    list_online_strategies,
)
from autorag_hp.space import SearchSpace
from autorag_hp.strategies import make_strategy
from autorag_hp.strategies._policies import UCB, ArmSet

SPACE = SearchSpace({"top_k": [1, 3, 5, 8], "chunk": [128, 256, 512], "embedder": ["bm25", "minilm", "e5"]})


def reward_of(config: dict) -> float:
    return config["top_k"] / 8 + (0.25 if config["embedder"] == "e5" else 0.0) + config["chunk"] / 4096


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def state_of(t: OnlineTuner) -> dict:
    s = t.stats()
    s.pop("rejected")
    s.pop("journal", None)
    s.pop("boot")
    return s


@pytest.mark.parametrize("strategy", list_online_strategies())
@pytest.mark.parametrize("rule", [Stationary(), Discounted(0.99), SlidingWindow(50)])
def test_every_strategy_learns_and_counts(strategy, rule):
    if not isinstance(rule, make_strategy(strategy, SPACE).forgets):  # structured-ts forgets exponentially only
        with pytest.raises(ValueError, match="stats must be one of"):
            OnlineTuner(SPACE, strategy=strategy, stats=rule)
        return
    t = OnlineTuner(SPACE, strategy=strategy, stats=rule, seed=1)
    for _ in range(400):
        s = t.suggest()
        assert s.config in SPACE
        t.feedback(s.id, reward_of(s.config))
    st = t.stats()
    assert (st["suggestions"], st["feedback"], st["pending"], st["expired"]) == (400, 400, 0, 0)
    best = t.best(3)
    assert 1 <= len(best) <= 3 and best[0].ci_low <= best[0].mean <= best[0].ci_high
    if strategy != "random":
        assert best[0].config["top_k"] >= 5


def test_duplicate_unknown_and_invalid_feedback_leave_state_unchanged():
    t = OnlineTuner(SPACE, seed=0)
    s = t.suggest()
    t.feedback(s.id, 0.5)
    before = state_of(t)
    with pytest.raises(DuplicateFeedback, match="already received"):
        t.feedback(s.id, 0.7)
    with pytest.raises(UnknownSuggestion, match="not a suggestion"):
        t.feedback("9-9", 0.7)
    s2 = t.suggest()
    before = state_of(t)
    for bad in (math.nan, math.inf, "0.5", None, True, 1e9):
        with pytest.raises(ValueError, match="reward"):
            t.feedback(s2.id, bad)
    assert state_of(t) == before
    assert t.stats()["rejected"] == {"unknown": 1, "duplicate": 1, "expired": 0, "invalid": 6}
    t.feedback(s2.id, 0.25)
    assert t.stats()["feedback"] == 2 and t.stats()["reward_sum"] == 0.75


def test_suggestions_expire_and_late_feedback_is_not_counted():
    clock = Clock()
    t = OnlineTuner(SPACE, expiry_s=10.0, clock=clock)
    a, b = t.suggest(), t.suggest()
    assert a.expires_at == clock.now + 10.0
    clock.now += 5
    c = t.suggest()
    clock.now += 6  # a and b are 11 s old, c is 6 s old
    with pytest.raises(ExpiredSuggestion, match="expired"):
        t.feedback(a.id, 1.0)
    t.feedback(c.id, 1.0)
    st = t.stats()
    assert (st["expired"], st["feedback"], st["pending"], st["reward_sum"]) == (2, 1, 0, 1.0)
    assert st["rejected"]["expired"] == 1


def test_discounted_and_window_forget_a_changed_surface():
    space = SearchSpace({"arm": ["a", "b"]})
    late_b = {}
    for rule in (Stationary(), Discounted(0.9), SlidingWindow(20)):
        t = OnlineTuner(space, strategy="flat-ts", stats=rule, seed=0)
        served = []
        for i in range(400):
            s = t.suggest()
            served.append(s.config["arm"])
            good = "a" if i < 300 else "b"
            t.feedback(s.id, 1.0 if s.config["arm"] == good else 0.0)
        late_b[rule.to_dict()["kind"]] = served[-50:].count("b")
    assert late_b["discounted"] >= 40 and late_b["window"] >= 40
    assert late_b["stationary"] <= 10  # stays with the old best


def _offline_journal(path, space, pulls):
    with open(path, "w") as fh:
        fh.write(json.dumps({"type": "header", **make_strategy("hier-ucb", space).describe(), "space": space.to_dict()}) + "\n")
        for i, (cfg, r) in enumerate(pulls):
            fh.write(json.dumps({"type": "pull", "pull": i, "round": i, "round_size": 1, "config": cfg, "reward": r, "details": None, "ts": 0.0}) + "\n")


def test_warm_start_observe_counts_rewards_and_reset_ignores(tmp_path):
    src = tmp_path / "offline.jsonl"
    pulls = [(c, reward_of(c)) for c in SPACE] * 2
    _offline_journal(src, SPACE, pulls)  # written by hier-ucb: "observe" works for any strategy
    obs = OnlineTuner(SPACE, warm_start=WarmStart(str(src), "observe"))
    assert obs.stats()["observations"] == len(pulls) and obs.strategy.n_told == len(pulls)
    assert obs.best(1)[0].config == {"top_k": 8, "chunk": 512, "embedder": "e5"}
    assert obs.strategy.upper.n.sum() == 0  # observations never reach the upper bandit
    reset = OnlineTuner(SPACE, warm_start=WarmStart(str(src), "reset"))
    assert reset.stats()["observations"] == 0 and reset.strategy.n_told == 0 and reset.best(1)[0].pulls == 0
    # an online journal works as a source too, and the warm start is journaled once
    p = Persistence(tmp_path / "online.jsonl", fsync="never")
    with OnlineTuner(SPACE, persistence=p, warm_start=WarmStart(str(src), "observe")) as t:
        s = t.suggest()
        t.feedback(s.id, 0.5)
    with OnlineTuner(SPACE, persistence=p, warm_start=WarmStart(str(src), "observe")) as t:
        assert t.stats()["observations"] == len(pulls)  # not replayed twice on restart
    again = OnlineTuner(SPACE, warm_start=WarmStart(str(tmp_path / "online.jsonl"), "observe"))
    assert again.stats()["observations"] == len(pulls) + 1


def test_warm_start_continue_needs_the_same_strategy_options_and_stats(tmp_path):
    src = tmp_path / "offline.jsonl"
    _offline_journal(src, SPACE, [(c, reward_of(c)) for c in SPACE])  # hier-ucb, default options
    with pytest.raises(ValueError, match="needs the journal's strategy, options and statistics"):
        OnlineTuner(SPACE, strategy="hier-ts", warm_start=WarmStart(str(src), "continue"))
    with pytest.raises(ValueError, match="needs the journal's strategy"):
        OnlineTuner(SPACE, strategy="hier-ucb", options={"alpha_upper": 2.0}, warm_start=WarmStart(str(src)))
    with pytest.raises(ValueError, match="needs the journal's strategy"):
        OnlineTuner(SPACE, strategy="hier-ucb", stats=Discounted(0.9), warm_start=WarmStart(str(src)))
    with pytest.raises(ValueError, match="mode must be"):
        WarmStart(str(src), "replay")


def test_warm_start_continue_from_an_online_journal_keeps_its_learning(tmp_path):
    p = Persistence(tmp_path / "online.jsonl", fsync="never")
    with OnlineTuner(SPACE, strategy="hier-ucb", stats=Discounted(0.99), persistence=p, seed=3) as t:
        for i in range(60):
            s = t.suggest()
            if i % 5:
                t.feedback(s.id, reward_of(s.config))
        learned = t.strategy.state()
    cont = OnlineTuner(SPACE, strategy="hier-ucb", stats=Discounted(0.99), seed=9,
                       warm_start=WarmStart(str(p.path), "continue"))
    got = cont.strategy.state()
    for key in ("n_told", "stats"):
        assert got[key] == learned[key]
    assert got["own"]["upper"]["n"] == learned["own"]["upper"]["n"]
    assert sum(got["own"]["upper"]["pending"]) == 0 and got["pending"] == []  # unanswered ones dropped


def test_warm_start_rejects_configs_outside_the_space(tmp_path):
    src = tmp_path / "offline.jsonl"
    _offline_journal(src, SPACE, [({"top_k": 2, "chunk": 128, "embedder": "e5"}, 0.1)])
    with pytest.raises(ValueError, match="top_k"):
        OnlineTuner(SPACE, warm_start=WarmStart(str(src), "observe"))
    with pytest.raises(ValueError, match="top_k"):
        OnlineTuner(SPACE, strategy="hier-ucb", warm_start=WarmStart(str(src), "continue"))


def test_guardrail_stops_exploring_confidently_bad_configs():
    space = SearchSpace({"arm": list(range(6))})
    t = OnlineTuner(space, strategy="flat-ucb", options={"alpha": 5.0}, guardrail=Guardrail(margin=0.1, min_pulls=3), seed=0)
    served = []
    for _ in range(600):
        s = t.suggest()
        served.append(s.config["arm"])
        t.feedback(s.id, 1.0 if s.config["arm"] == 0 else 0.0)
    assert t.stats()["guardrail_vetoes"] > 0
    assert served[-200:].count(0) == 200  # bad arms (mean 0 < 1 - 0.1) no longer served


def _without_rng(state: dict) -> dict:
    return {k: v for k, v in state.items() if k != "rng"}  # each boot reseeds the generator


@pytest.mark.parametrize("strategy", ["hier-ts", "flat-ucb", "structured-ts"])
@pytest.mark.parametrize("rule", [Stationary(), Discounted(0.98), SlidingWindow(30)])
def test_snapshot_restore_equals_full_replay(tmp_path, strategy, rule):
    if strategy == "structured-ts" and isinstance(rule, SlidingWindow):
        pytest.skip("structured-ts forgets exponentially only")
    clock = Clock()
    p = Persistence(tmp_path / "run.jsonl", fsync="never", snapshot_every=37)
    t = OnlineTuner(SPACE, strategy=strategy, stats=rule, persistence=p, expiry_s=30, clock=clock)
    open_ids = []
    for i in range(500):
        s = t.suggest()
        clock.now += 0.1
        if i % 7:
            t.feedback(s.id, reward_of(s.config))
        else:
            open_ids.append(s.id)
    t.snapshot()
    for _ in range(50):  # a tail after the snapshot
        s = t.suggest()
        t.feedback(s.id, 0.3)
    expected, best = state_of(t), t.best(5)
    t._abandon()  # a crash: no final snapshot
    with_snap = OnlineTuner(SPACE, strategy=strategy, stats=rule, persistence=p, expiry_s=30, clock=clock)
    assert with_snap.stats()["journal"]["restored_from_snapshot"]
    assert state_of(with_snap) == expected and with_snap.best(5) == best
    assert _without_rng(with_snap.strategy.state()) == _without_rng(t.strategy.state())
    json.dumps(with_snap.strategy.state(), allow_nan=False)  # a plain JSON record
    with_snap._abandon()
    p.snapshot_path.unlink()
    replay = OnlineTuner(SPACE, strategy=strategy, stats=rule, persistence=p, expiry_s=30, clock=clock)
    assert not replay.stats()["journal"]["restored_from_snapshot"]
    assert state_of(replay) == expected and replay.best(5) == best
    assert _without_rng(replay.strategy.state()) == _without_rng(t.strategy.state())


def test_torn_last_record_is_ignored_and_truncated(tmp_path):
    p = Persistence(tmp_path / "run.jsonl", fsync="always", snapshot_every=0)
    with OnlineTuner(SPACE, persistence=p) as t:
        s = t.suggest()
        t.feedback(s.id, 0.5)
        s2 = t.suggest()
    p.snapshot_path.unlink()
    with open(p.path, "ab") as fh:
        fh.write(b'{"type":"feedback","id":"' + s2.id.encode() + b'","rew')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = OnlineTuner(SPACE, persistence=p)
    assert any("torn" in str(w.message) for w in caught)
    assert t.stats()["feedback"] == 1 and t.stats()["pending"] == 1
    t.feedback(s2.id, 0.25)  # the suggestion survived; its torn feedback did not count
    t.close()
    lines = open(p.path, "rb").read().split(b"\n")
    assert lines[-1] == b"" and all(json.loads(x) for x in lines[:-1])


def test_corrupt_record_in_the_middle_is_an_error(tmp_path):
    p = Persistence(tmp_path / "run.jsonl", fsync="never", snapshot_every=0)
    with OnlineTuner(SPACE, persistence=p) as t:
        t.suggest()
    p.snapshot_path.unlink()
    data = open(p.path, "rb").read().split(b"\n")
    data.insert(1, b"{garbage")
    open(p.path, "wb").write(b"\n".join(data))
    with pytest.raises(ValueError, match="not valid JSON"):
        OnlineTuner(SPACE, persistence=p)


def test_resume_requires_the_same_space_and_strategy(tmp_path):
    p = Persistence(tmp_path / "run.jsonl", fsync="never")
    OnlineTuner(SPACE, persistence=p).close()
    with pytest.raises(ValueError, match="strategy must match"):
        OnlineTuner(SPACE, strategy="flat-ts", persistence=p)
    with pytest.raises(ValueError, match="space differs"):
        OnlineTuner(SearchSpace({"top_k": [1, 2]}), persistence=p)


def test_ids_stay_unique_across_restarts(tmp_path):
    p = Persistence(tmp_path / "run.jsonl", fsync="never")
    ids = set()
    for _ in range(3):
        with OnlineTuner(SPACE, persistence=p) as t:
            for _ in range(5):
                ids.add(t.suggest().id)
    assert len(ids) == 15


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"strategy": "nope"}, "strategy must be one of"),
        ({"strategy": "hier-ts", "options": {"alpha": 1}}, "unknown option 'alpha'"),
        ({"expiry_s": 0}, "expiry_s must be"),
        ({"seed": -1}, "seed must be"),
        ({"reward_range": (1, 0)}, "reward_range"),
    ],
)
def test_bad_arguments_name_the_rule(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OnlineTuner(SPACE, **kwargs)


def test_rule_and_policy_validation():
    with pytest.raises(ValueError, match="gamma must satisfy"):
        Discounted(1.0)
    with pytest.raises(ValueError, match="size must be"):
        SlidingWindow(0)
    with pytest.raises(ValueError, match="margin must be"):
        Guardrail(margin=-1)
    with pytest.raises(ValueError, match="fsync must be"):
        Persistence("x.jsonl", fsync="sometimes")


# The case: a 9x9 group (81 arms) under discounting. A lower bandit whose group the upper
# bandit leaves alone used to see its total count fade below 1, so hier-ucb took log(t) < 0 ->
# NaN scores -> "ValueError: high <= 0" in suggest(), forever (old code: suggest #246 at gamma 0.5,
# #4,408 at gamma 0.995 with rewards on a 0-100 scale, in this very scenario).
NINE_BY_NINE = SearchSpace({"a": list(range(9)), "b": list(range(9)), "c": [0, 1, 2], "d": [0, 1]},
                           groups={"ab": ["a", "b"]})


@pytest.mark.parametrize("gamma, scale, steps", [(0.5, 1.0, 600), (0.995, 100.0, 5000)])
def test_discounted_hier_ucb_keeps_a_finite_exploration_bonus(gamma, scale, steps):
    t = OnlineTuner(NINE_BY_NINE, strategy="hier-ucb", stats=Discounted(gamma), seed=0, reward_range=(0, 100))
    rng = np.random.default_rng(0)
    faded = math.inf  # the 9x9 bandit's total count, n + pending: what ln() used to get
    for _ in range(steps):
        c = t.suggest()  # raised ValueError before the fix
        r = scale * (0.3 + 0.05 * c.config["a"] / 8 + 0.1 * c.config["c"] + 0.05 * c.config["d"] + 0.1 * rng.random())
        t.feedback(c.id, float(r))
        ab = t.strategy.lower[0]
        faded = min(faded, float((ab.n + ab.pending).sum()))
    assert faded < 1.0  # the run reaches the state that broke the old code
    for arms in [t.strategy.upper, *t.strategy.lower]:
        assert arms.clock >= 1.0  # UCB's t: ln t >= 0
    assert t.strategy.upper.n.sum() == pytest.approx(t.strategy.upper.clock)


def test_a_stale_discounted_bandit_explores_more_not_less():
    arms = ArmSet(3, Discounted(0.5))
    for arm, r in [(0, 1.0), (1, 0.0), (2, 0.5), (0, 1.0)]:
        arms.decay()
        arms.update(arm, r, was_pending=False)
    ucb = UCB(alpha=1.0)
    bonus = lambda: ucb.alpha * np.sqrt(math.log(arms.clock) / arms.n)  # noqa: E731
    fresh = bonus()
    for _ in range(40):  # rewards go to other bandits: this one's counts fade (to ~1e-12)
        arms.decay()
    stale = bonus()
    assert np.isfinite(stale).all() and (stale > 1000 * fresh).all()
    assert ucb.select(arms, np.random.default_rng(0)) in (0, 1, 2)


def test_statistics_rules_parse_and_refuse_with_the_rule():
    assert OnlineTuner(SPACE, stats="discounted(0.9)").rule == Discounted(0.9)
    assert OnlineTuner(SPACE, stats="window(30)").rule == SlidingWindow(30)
    assert OnlineTuner(SPACE, stats={"kind": "stationary"}).rule == Stationary()
    for bad, match in [("discounted(2)", "gamma must satisfy"), ("sometimes", "stats must be"),
                       ("window(1.5)", "stats must be"), (0.99, "stats must be")]:
        with pytest.raises(ValueError, match=match):
            OnlineTuner(SPACE, stats=bad)
    with pytest.raises(ValueError, match="stats must be one of Stationary"):
        make_strategy("grid", SPACE, stats=Discounted(0.9))  # grid does not forget
    with pytest.raises(ValueError, match="strategy must be one of"):
        OnlineTuner(SPACE, strategy="grid")
    with pytest.raises(ValueError, match="options must not contain 'stats'"):
        OnlineTuner(SPACE, options={"stats": "discounted(0.9)"})
