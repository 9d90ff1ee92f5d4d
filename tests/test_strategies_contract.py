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
