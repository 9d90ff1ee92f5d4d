"""Every registered strategy goes through the same contract checks."""

import pytest

from autorag_hp import list_strategies
from autorag_hp.testing import CONTRACT_CHECKS


@pytest.mark.parametrize("check", sorted(CONTRACT_CHECKS))
@pytest.mark.parametrize("name", list_strategies())
def test_contract(name, check):
    CONTRACT_CHECKS[check](name)


@pytest.mark.parametrize("name,options", [
    ("hier-ucb", {"alpha_upper": 1.5, "alpha_lower": 0.5}),
    ("hier-ts", {"posterior": "beta"}),
    ("flat-ts", {"posterior": "beta"}),
    ("grid", {"repeats": 3}),
])
def test_contract_with_options(name, options):
    for check in CONTRACT_CHECKS.values():
        check(name, **options)


def test_the_contract_catches_a_strategy_that_ignores_its_seed():
    import numpy as np

    from autorag_hp import strategies
    from autorag_hp.strategies.random_search import RandomSearch

    class Seedless(RandomSearch):
        name = "seedless-random"

        def __init__(self, space, *, seed=0, **options):
            super().__init__(space, seed=seed, **options)
            self.rng = np.random.default_rng(0)  # the bug: every seed draws the same sequence

    strategies.register_strategy("seedless-random", Seedless)
    try:
        with pytest.raises(AssertionError, match="gave the same sequence"):
            CONTRACT_CHECKS["reproducible"]("seedless-random")
        CONTRACT_CHECKS["online_hooks"]("seedless-random")  # the other checks do not mind
    finally:
        strategies._REGISTRY.unregister("seedless-random")
