"""Ground truth and the regret log (autorag_hp.regret)."""

import pytest

from autorag_hp import SearchSpace
from autorag_hp.regret import GroundTruth, RegretLog


def test_ground_truth_recall_with_ties():
    space = SearchSpace({"a": [0, 1, 2, 3]})
    gt = GroundTruth(space, [0.5, 0.9, 0.9, 0.1])
    assert gt.best_value == 0.9
    assert set(gt.top_indices(1).tolist()) == {1, 2}  # tie with the best counts
    assert gt.recall_at([{"a": 2}], 1) == 1.0
    assert gt.recall_at([{"a": 0}, {"a": 1}], 2) == 0.5
    assert gt.rank({"a": 0}) == 3 and gt.regret({"a": 3}) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="one value per configuration"):
        GroundTruth(space, [1, 2])
    log = RegretLog(gt, grid_calls=40)
    log.add(0, {"a": 0}, 0.4, 4, best_config={"a": 1})
    row = log.add(1, {"a": 3}, 0.0, 4)
    assert row["cumulative_regret"] == pytest.approx(1.2) and row["calls_share"] == pytest.approx(0.2)
