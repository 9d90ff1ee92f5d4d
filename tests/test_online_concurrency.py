"""Many threads suggesting and giving feedback at once: every count adds up exactly."""

from __future__ import annotations

import threading
from typing import Callable

import pytest

from autorag_hp.online import DuplicateFeedback, OnlineTuner, Persistence, UnknownSuggestion
from autorag_hp.space import SearchSpace

SPACE = SearchSpace(
    {"top_k": [1, 3, 5, 8, 10], "chunk": [128, 256, 512, 1024], "embedder": ["bm25", "minilm", "e5"], "compression": [0.25, 0.5, 1.0]}
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _in_threads(threads: int, work: Callable[[int], None]) -> None:
    """Run ``work(k)`` for k < threads in threads released together; re-raise failures here."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def run(k: int) -> None:
        try:
            barrier.wait()
            work(k)
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)

    ts = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=600)
    assert not errors, errors[:3]


def _hammer(tuner: OnlineTuner, threads: int, pairs: int, unanswered: int, dup_every: int):
    issued: list[list[str]] = [[] for _ in range(threads)]
    answered: list[float] = [0.0] * threads

    def worker(k: int) -> None:
        total = 0.0
        for i in range(pairs):
            s = tuner.suggest()
            issued[k].append(s.id)
            r = ((i + k) % 9) / 8  # exact in binary: sums do not depend on order
            tuner.feedback(s.id, r)
            total += r
            if i % dup_every == 0:
                try:
                    tuner.feedback(s.id, 1.0)
                except DuplicateFeedback:
                    pass
                else:
                    raise AssertionError(f"duplicate feedback for {s.id} was accepted")
        for _ in range(unanswered):
            issued[k].append(tuner.suggest().id)
        answered[k] = total

    _in_threads(threads, worker)
    return issued, sum(answered)


def test_16_threads_x_10000_pairs_add_up(tmp_path):
    threads, pairs, unanswered, dup_every = 16, 10_000, 50, 100
    clock = Clock()
    p = Persistence(tmp_path / "run.jsonl", fsync="interval", interval_ms=5, snapshot_every=25_000)
    tuner = OnlineTuner(SPACE, strategy="hier-ucb", persistence=p, expiry_s=60, clock=clock)
    issued, reward_sum = _hammer(tuner, threads, pairs, unanswered, dup_every)

    ids = [i for per in issued for i in per]
    assert len(ids) == len(set(ids)) == threads * (pairs + unanswered)
    st = tuner.stats()
    assert st["suggestions"] == threads * (pairs + unanswered)
    assert st["feedback"] == threads * pairs
    assert st["pending"] == threads * unanswered
    assert st["rejected"]["duplicate"] == threads * (pairs // dup_every)
    assert st["reward_sum"] == reward_sum
    # policy-level counts agree with the tuner's: every reward reached the statistics once
    assert tuner.strategy.n_told == threads * pairs
    assert sum(tuner.strategy.upper.n) == threads * pairs
    assert sum(tuner.strategy.upper.pending) == threads * unanswered

    clock.now += 61  # everything still open expires, exactly once
    st = tuner.stats()
    assert (st["expired"], st["pending"]) == (threads * unanswered, 0)
    assert sum(tuner.strategy.upper.pending) == 0
    with pytest.raises(UnknownSuggestion):
        tuner.feedback("0-1", 0.5)
    expected = {k: v for k, v in tuner.stats().items() if k not in ("rejected", "journal", "boot")}
    tuner._abandon()  # as after a crash: no final snapshot

    restored = OnlineTuner(SPACE, strategy="hier-ucb", persistence=p, expiry_s=60, clock=clock)
    got = {k: v for k, v in restored.stats().items() if k not in ("rejected", "journal", "boot")}
    assert got == expected
    restored.close()


def test_group_commit_under_concurrency(tmp_path):
    """fsync="always": every feedback is durable when acknowledged, with far fewer syncs than records."""
    threads, pairs = 16, 300
    p = Persistence(tmp_path / "run.jsonl", fsync="always", snapshot_every=0)
    tuner = OnlineTuner(SPACE, strategy="flat-ts", persistence=p)
    _, reward_sum = _hammer(tuner, threads, pairs, 0, 10**9)
    st = tuner.stats()
    assert st["feedback"] == threads * pairs and st["reward_sum"] == reward_sum
    records = 2 * threads * pairs
    assert st["journal"]["syncs"] < records / 2, st["journal"]
    tuner.close()


def test_8_threads_of_batches_add_up_and_one_sync_covers_a_batch(tmp_path):
    """suggest_many / feedback_many from many threads: every valid item counts once, the
    duplicate and the unknown id in each batch are rejected per item, a restart agrees."""
    threads, rounds = 8, 150
    p = Persistence(tmp_path / "run.jsonl", fsync="always", snapshot_every=2_000)
    tuner = OnlineTuner(SPACE, strategy="hier-ts", persistence=p)
    totals = [(0, 0.0)] * threads

    def worker(t: int) -> None:
        n, total = 0, 0.0
        for r in range(rounds):
            k = 1 + (7 * r + t) % 16
            got = tuner.suggest_many(k)
            assert len({s.id for s in got}) == k
            items = [(s.id, ((r + i + t) % 9) / 8) for i, s in enumerate(got)]
            outcomes, ticket = tuner.feedback_many([*items, (got[0].id, 1.0), (f"999-{t}-{r}", 0.5)])
            assert outcomes[:k] == [None] * k, outcomes
            assert isinstance(outcomes[k], DuplicateFeedback) and isinstance(outcomes[k + 1], UnknownSuggestion)
            assert ticket and tuner.wait(ticket, timeout=0)  # durable when feedback_many returned
            n += k
            total += sum(r for _, r in items)
        totals[t] = (n, total)

    _in_threads(threads, worker)
    pairs = sum(n for n, _ in totals)
    st = tuner.stats()
    assert st["suggestions"] == st["feedback"] == pairs and st["pending"] == 0
    assert st["rejected"]["duplicate"] == st["rejected"]["unknown"] == threads * rounds
    assert st["reward_sum"] == sum(x for _, x in totals)
    assert tuner.strategy.n_told == pairs
    assert st["journal"]["syncs"] <= threads * rounds + 1  # at most one fsync per batch (plus boot)
    expected = {k: v for k, v in st.items() if k not in ("rejected", "journal", "boot")}
    tuner._abandon()
    restored = OnlineTuner(SPACE, strategy="hier-ts", persistence=p)
    assert {k: v for k, v in restored.stats().items() if k not in ("rejected", "journal", "boot")} == expected
    restored.close()
