"""The declared rule of evals/ten_percent.py (issue #11 point 5): which arm becomes the default."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "evals" / "ten_percent.py"
_spec = importlib.util.spec_from_file_location("ten_percent", _PATH)
tp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tp)

FAMILIES = ["easy", tp.REAL_TUNING_FAMILY]
SEEDS = range(1000, 1010)
GOOD, RISKY, SHORT = "structured-tt@paired/b4", "structured-tt@paired/b2", "structured-tt@paired/b8"


def _rows(values):
    """values[(arm, family, budget)] = (simple regret per seed, Recall@5 per seed)."""
    rows = []
    for (arm, family, budget), (regrets, recalls) in values.items():
        for seed, r, rec in zip(SEEDS, regrets, recalls):
            rows.append({"family": family, "arm": arm, "seed": seed, "budget": budget, "simple_regret": r,
                         "recall@5": rec})
    return rows


def _flat(regret, recall):
    return [regret + 0.001 * (i % 3) for i in range(len(SEEDS))], [recall] * len(SEEDS)


def _table(overrides):
    base = {}
    for family in FAMILIES:
        base[(tp.OLD_DEFAULT, family, 0.1)] = _flat(0.02, 0.6)
        base[(tp.OLD_DEFAULT, family, 0.2)] = _flat(0.01, 0.8)
        for arm in (GOOD, RISKY, SHORT):
            base[(arm, family, 0.1)] = _flat(0.008, 0.8)
            base[(arm, family, 0.2)] = _flat(0.005, 0.9)
    base.update(overrides)
    return _rows(base)


def test_the_lowest_regret_candidate_that_meets_the_bar_without_a_significant_loss_wins():
    rows = _table({
        # RISKY has the lowest mean regret, but loses to the old default on every easy seed at 20%
        (RISKY, "easy", 0.1): _flat(0.0, 0.9),
        (RISKY, tp.REAL_TUNING_FAMILY, 0.1): _flat(0.0, 0.9),
        (RISKY, "easy", 0.2): _flat(0.05, 0.9),
        # SHORT is good on the synthetic family but misses the bar's Recall@5 on the real grid
        (SHORT, "easy", 0.1): _flat(0.0, 1.0),
        (SHORT, tp.REAL_TUNING_FAMILY, 0.1): _flat(0.0, 0.7),
    })
    choice = tp.choose(rows, FAMILIES, [tp.OLD_DEFAULT, GOOD, RISKY, SHORT])
    by_arm = {c["arm"]: c for c in choice["candidates"]}
    assert by_arm[RISKY]["worse_than_old_default"] == ["easy at 20%"]
    assert not by_arm[SHORT]["meets_bar_on_real_grid"]
    assert choice["qualifying"] == [GOOD]
    assert choice["chosen"] == GOOD


def test_the_old_default_stays_when_no_candidate_qualifies():
    rows = _table({(arm, tp.REAL_TUNING_FAMILY, 0.1): _flat(0.03, 0.5) for arm in (GOOD, RISKY, SHORT)})
    choice = tp.choose(rows, FAMILIES, [tp.OLD_DEFAULT, GOOD, RISKY, SHORT])
    assert choice["qualifying"] == []
    assert choice["chosen"] == tp.OLD_DEFAULT


def test_arms_are_parsed_and_a_malformed_one_is_refused_with_its_value():
    assert tp.parse_arm("structured-tt:residual_tail=0@paired/b4") == ("structured-tt:residual_tail=0", "paired", 4)
    with pytest.raises(ValueError, match=r"SPEC@SAMPLING/bBATCH .*'structured-tt/b4'"):
        tp.parse_arm("structured-tt/b4")
    with pytest.raises(ValueError, match="sampling must be iid or paired"):
        tp.parse_arm("structured-tt@pairs/b4")
