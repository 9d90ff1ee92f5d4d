import json
import warnings

import pytest

from autorag_hp import SearchSpace, make_strategy
from autorag_hp.journal import Journal, JournalError, read_journal
from autorag_hp.objective import Outcome
from autorag_hp.tuner import tune


def objective(config, pull):
    return Outcome(reward=0.1 * config["a"] + 0.01 * (pull % 3), calls=2, details=[{"q": pull, "ok": True}])


SPACE = SearchSpace({"a": [1, 2, 3], "b": ["x", "y"]})


def test_records_and_fsync(tmp_path):
    p = tmp_path / "j.jsonl"
    tune(make_strategy("hier-ucb", SPACE, seed=1), objective, max_pulls=5, journal=p, meta={"objective": "toy"})
    lines = [json.loads(x) for x in p.read_text().splitlines()]
    assert lines[0]["type"] == "header" and lines[0]["strategy"] == "hier-ucb" and lines[0]["seed"] == 1
    assert lines[0]["options"] == {"alpha_upper": 1.0, "alpha_lower": 1.0, "shrinkage": 1.0}
    assert lines[0]["meta"] == {"objective": "toy"}
    assert [r["pull"] for r in lines[1:]] == [0, 1, 2, 3, 4]
    assert lines[1]["details"] == [{"q": 0, "ok": True}] and "ts" in lines[1]


@pytest.mark.parametrize("interval, syncs", [(0.0, 5), (3600.0, 1)])
def test_fsync_interval_flushes_every_record_and_syncs_at_most_that_often(tmp_path, monkeypatch, interval, syncs):
    import os

    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd))[1])
    path = tmp_path / "j.jsonl"
    jr = Journal(path, fsync_interval=interval)
    for i in range(5):
        jr.write({"type": "pull", "pull": i})
        # flushed at once: another reader (a resume after kill -9) sees every record written so far
        assert len(path.read_text().splitlines()) == i + 1
    jr.close()
    assert len(calls) == syncs  # with a long interval: one fsync, at close
    with pytest.raises(ValueError, match="fsync_interval must be"):
        Journal(path, fsync_interval=-1)


def test_torn_last_line_is_ignored_with_warning(tmp_path):
    p = tmp_path / "j.jsonl"
    tune(make_strategy("flat-ucb", SPACE, seed=1), objective, max_pulls=4, journal=p, fsync=False)
    p.write_text(p.read_text() + '{"type": "pull", "pu')
    with pytest.warns(UserWarning, match="torn"):
        header, pulls = read_journal(p)
    assert len(pulls) == 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = tune(make_strategy("flat-ucb", SPACE, seed=1), objective, max_pulls=6, journal=p, resume=True, fsync=False)
    assert len(res.records) == 6
    assert not p.read_text().count('"pu"')  # the torn bytes were cut before appending
    assert len(read_journal(p)[1]) == 6


def test_corruption_in_the_middle_names_the_line(tmp_path):
    p = tmp_path / "j.jsonl"
    tune(make_strategy("random", SPACE, seed=1), objective, max_pulls=4, journal=p, fsync=False)
    lines = p.read_text().splitlines(keepends=True)
    lines[2] = "garbage\n"
    p.write_text("".join(lines))
    with pytest.raises(JournalError, match="line 3"):
        read_journal(p)
    with pytest.raises(JournalError, match="line 3"):
        tune(make_strategy("random", SPACE, seed=1), objective, max_pulls=6, journal=p, resume=True)


def test_resume_refuses_a_different_strategy_or_seed(tmp_path):
    p = tmp_path / "j.jsonl"
    tune(make_strategy("hier-ts", SPACE, seed=1), objective, max_pulls=3, journal=p, fsync=False)
    with pytest.raises(JournalError, match="seed"):
        tune(make_strategy("hier-ts", SPACE, seed=2), objective, max_pulls=6, journal=p, resume=True)
    with pytest.raises(JournalError, match="strategy"):
        tune(make_strategy("hier-ucb", SPACE, seed=1), objective, max_pulls=6, journal=p, resume=True)
    with pytest.raises(FileExistsError):
        tune(make_strategy("hier-ts", SPACE, seed=1), objective, max_pulls=6, journal=p)


def test_journal_rejects_nan(tmp_path):
    j = Journal(tmp_path / "x.jsonl")
    with pytest.raises(ValueError):
        j.write({"reward": float("nan")})
    j.close()


@pytest.mark.parametrize("kwargs,match", [
    ({"budget_calls": 0}, "budget_calls"), ({"max_pulls": -1}, "max_pulls"),
    ({"max_pulls": 3, "parallel": 0}, "parallel"), ({}, "budget_calls or max_pulls"),
])
def test_tune_validates_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tune(make_strategy("random", SPACE), objective, **kwargs)


def test_budget_is_respected_and_grid_stops_when_exhausted():
    res = tune(make_strategy("random", SPACE, seed=0), objective, budget_calls=9, parallel=4, calls_per_pull=2)
    # never overrun: 4 pulls of 2 calls (the last round shrinks to fit; this objective cannot trim a pull)
    assert res.calls_used == 8 and len(res.records) == 4 and res.stop_reason == "budget"
    res = tune(make_strategy("grid", SPACE), objective, max_pulls=100)
    assert len(res.records) == 6 and res.stop_reason.startswith("exhausted")
