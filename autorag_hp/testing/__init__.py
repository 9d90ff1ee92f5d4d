"""Reusable contract checks: every registered strategy must pass them (see tests/test_strategies_contract.py).

Third-party strategies can run the same checks::

    from autorag_hp.testing import check_strategy_contract
    check_strategy_contract("my-strategy")
"""

from autorag_hp.testing.strategy_contract import (
    CONTRACT_CHECKS,
    check_strategy_contract,
    contract_space,
)

__all__ = ["CONTRACT_CHECKS", "check_strategy_contract", "contract_space"]
