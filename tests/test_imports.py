"""The core must stay light: importing autorag_hp pulls no torch, faiss, transformers, optuna or ray."""

import subprocess
import sys

HEAVY = ["torch", "faiss", "transformers", "sentence_transformers", "optuna", "ray", "fastapi", "matplotlib", "pandas"]


def test_core_import_is_light():
    code = (
        "import sys, autorag_hp, autorag_hp.tuner, autorag_hp.bench, autorag_hp.journal; "
        "from autorag_hp import make_strategy, SearchSpace, list_strategies; "
        "s = SearchSpace({'a': [1, 2]}); [make_strategy(n, s) for n in list_strategies() if n != 'tpe']; "
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"heavy modules imported by the core: {out}"


def test_tpe_is_made_on_demand():
    from autorag_hp import SearchSpace, make_strategy

    s = make_strategy("tpe", SearchSpace({"a": [1, 2, 3]}), seed=0)
    assert s.ask()["a"] in (1, 2, 3)


def test_tpe_without_optuna_names_the_extra(monkeypatch):
    import pytest

    from autorag_hp import SearchSpace, make_strategy

    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ModuleNotFoundError, match=r"autorag-hp\[tpe\]"):
        make_strategy("tpe", SearchSpace({"a": [1, 2]}))
