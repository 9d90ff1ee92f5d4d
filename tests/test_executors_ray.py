"""The Ray executor on a local Ray instance: same seeded results as the local executor, order kept."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from autorag_hp.executors import LocalExecutor, make_executor  # noqa: E402
from autorag_hp.executors._ray import RayExecutor, map_cells  # noqa: E402
from autorag_hp.bench import ReplayTable  # noqa: E402
from autorag_hp.space import SearchSpace  # noqa: E402
from autorag_hp.strategies import make_strategy  # noqa: E402
from autorag_hp.tuner import tune  # noqa: E402


@pytest.fixture(scope="module")
def ray_executor():
    # Workers import this module to unpickle the test's helper functions.
    path = os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    ex = RayExecutor()
    try:
        yield ex
    finally:
        ex.close()
        ray.shutdown()


def _table(seed: int = 0) -> ReplayTable:
    rng = np.random.default_rng(seed)
    space = SearchSpace({"top_k": [1, 3, 5, 10], "chunk": [128, 256, 512], "embedder": ["bm25", "minilm"]})
    p = rng.uniform(0.2, 0.9, size=len(space))
    outcomes = (rng.random((len(space), 30)) < p[:, None]).astype(float)
    return ReplayTable(space, outcomes.mean(axis=1), outcomes, tuple(f"q{i}" for i in range(30)), True, 10)


def _slow_square(x: int) -> int:
    time.sleep(0.02 * (5 - x % 5))  # earlier items finish later
    return x * x


@pytest.mark.parametrize("strategy", ["hier-ucb", "flat-ts", "random"])
def test_seeded_tune_equals_local(ray_executor, strategy):
    table = _table()
    results = []
    for executor in (LocalExecutor(), ray_executor):
        s = make_strategy(strategy, table.space, seed=7)
        res = tune(s, table.objective(batch=4, seed=3), budget_calls=160, parallel=4, calls_per_pull=4,
                   executor=executor)
        results.append(([(r.pull, r.config, r.reward) for r in res.records], [b.to_dict() for b in res.best(3)]))
    assert results[0] == results[1]


def test_evaluate_keeps_order(ray_executor):
    table = _table(1)
    obj = table.objective(batch=3, seed=5)
    configs = [table.space.config(i) for i in range(len(table.space))]
    pulls = list(range(len(configs)))
    assert ray_executor.evaluate(obj, configs, pulls) == [obj(c, p) for c, p in zip(configs, pulls)]


def test_map_keeps_submission_order(ray_executor):
    seen = []
    assert ray_executor.map(_slow_square, range(10), on_result=lambda i, v: seen.append(i)) == [x * x for x in range(10)]
    assert sorted(seen) == list(range(10))


def test_map_cells_local_equals_ray(ray_executor):
    items = list(range(7))
    assert map_cells(_slow_square, items) == map_cells(_slow_square, items, executor="ray")  # reuses the running Ray
    assert ray.is_initialized()  # joining a running instance does not shut it down


def test_registry_builds_ray_executor(ray_executor):
    ex = make_executor("ray")
    assert isinstance(ex, RayExecutor)
    ex.close()
    assert ray.is_initialized()


@pytest.mark.parametrize("kwargs, word", [({"num_cpus": 0}, "num_cpus"), ({"address": ""}, "address"),
                                          ({"max_in_flight": 0}, "max_in_flight")])
def test_bad_arguments_name_the_argument(kwargs, word):
    with pytest.raises(ValueError, match=word):
        RayExecutor(**kwargs)


def test_map_cells_rejects_unknown_executor():
    with pytest.raises(ValueError, match="executor must be"):
        map_cells(_slow_square, [1], executor="dask")


def test_suite_on_ray_equals_processes(ray_executor, tmp_path):
    from autorag_hp.bench import SuiteSpec, TableSpec, run_suite

    tables = (TableSpec(name="hard", source="synthetic", bucket="hard", difficulty="hard", n_questions=8),)
    suite = SuiteSpec(name="tiny", tables=tables, budgets=(0.2,), seeds=2, max_pulls=40, root=str(tmp_path))
    a = run_suite(suite, strategies=["hier-ts"], workers=1, progress=False)
    b = run_suite(suite, strategies=["hier-ts"], workers=2, executor="ray", progress=False)
    key = lambda rs: sorted((r["seed"], r["simple_regret"], r["cumulative_regret"]) for r in rs)  # noqa: E731
    assert key(a["runs"]) == key(b["runs"])


def test_grid_in_parts_on_ray_equals_the_sequential_grid(ray_executor):
    from autorag_hp.cli._grid import run_grid_parts
    from autorag_hp.pipeline import ReferencePipeline, load_default_dataset, run_grid

    dataset = load_default_dataset()
    space = SearchSpace({"chunk_size": [64, 128], "embedder": ["bm25"], "top_k": [1, 3], "compression": [0.5, 1.0]})
    pipeline = ReferencePipeline.from_space(dataset, space, cache_dir=None)
    sequential = run_grid(pipeline, dataset, space, t_max=pipeline.t_max)
    parts = run_grid_parts(pipeline, dataset, space, metric="answer_in_context", w=0.9, t_max=None, executor="ray")
    assert parts.extra["parts"] == 2 and len(parts) == len(sequential) == 8 * len(dataset.questions)
    for name, col in sequential.columns.items():
        if name == "latency_s":  # wall time, differs run to run
            continue
        np.testing.assert_array_equal(parts.columns[name], col, err_msg=name)
