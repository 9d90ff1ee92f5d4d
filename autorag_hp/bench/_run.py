"""Runs: one strategy and one seed replayed on a table, and every (strategy, seed) pair of a benchmark."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from autorag_hp._budget import budget_calls
from autorag_hp._io import atomic_write_json
from autorag_hp._validation import check_positive_int
from autorag_hp.bench._stats import RECALL_AT
from autorag_hp.bench._table import ReplayTable
from autorag_hp.objective import paired_population
from autorag_hp.strategies import StrategySpec, make_strategy, parse_strategy_spec, strategy_class

__all__ = ["recommendation_metrics", "run_one", "run_budgets", "run_replay", "write_results"]

CURVE_POINTS = 60  # cumulative-regret curves are kept at about this many pulls
MAX_DENSE_COUNTS = 20_000  # pull counts per configuration are kept for spaces up to this size


def recommendation_metrics(strategy, truth) -> dict[str, Any]:
    """Simple regret of ``best(1)`` and Recall@x of ``best(5)`` against the ground truth."""
    top = strategy.best(5)
    return {
        "simple_regret": truth.regret(top[0].config),
        **{f"recall@{x}": truth.recall_at([r.config for r in top], x) for x in RECALL_AT},
        "best": [r.to_dict() for r in top],
    }


def _curve(cum: np.ndarray, n: int, grid_calls: int, calls: Sequence[int]) -> dict[str, list[float]]:
    """Cumulative regret after about :data:`CURVE_POINTS` of the first ``n`` pulls, with the calls share of each."""
    idx = np.unique(np.linspace(0, n - 1, min(n, CURVE_POINTS)).round().astype(int)) if n else np.array([], int)
    return {"regret_curve": [float(cum[i]) for i in idx],
            "regret_curve_calls_share": [float(calls[i] / grid_calls) for i in idx]}


def run_one(table: ReplayTable, spec: StrategySpec | str, seed: int, *, budget: float, batch: int,
            parallel: int = 1, checkpoints: int = 20, executor=None,
            at_budgets: Sequence[float] = (), sampling: str = "iid") -> dict[str, Any]:
    """One strategy, one seed: curves and final metrics against the table's ground truth.

    The run spends ``budget`` (a share of grid search's calls, :func:`autorag_hp._budget.budget_calls`)
    in pulls of ``batch`` questions, ``parallel`` configurations per round. ``checkpoints``
    snapshots of simple regret and Recall@x are taken along the way. ``at_budgets`` (smaller
    budgets) adds ``"at_budgets"``: the metrics the run had when it had spent each of them
    (with ``parallel=1`` exactly what a run with that budget ends with, as a strategy never
    knows its budget). ``sampling`` is how pulls pick questions (:data:`~autorag_hp.objective.SAMPLING_MODES`).
    """
    spec = parse_strategy_spec(spec)
    check_positive_int("checkpoints", checkpoints)
    from autorag_hp.tuner import tune

    G = table.grid_calls
    calls_budget = budget_calls(budget, grid_calls=G, batch=batch)
    # The tuner never overruns a budget: a replayed table (no trimmed pulls) stops after the last whole pull.
    stops = {b: budget_calls(b, grid_calls=G, batch=batch, name="at_budgets") // batch for b in at_budgets}
    n_pulls = calls_budget // batch
    marks = {max(1, round(n_pulls * (j + 1) / checkpoints)) for j in range(checkpoints)}
    want = set(stops.values())
    truth = table.truth()
    options = {**spec.options, **paired_population(strategy_class(spec.name), spec.options, sampling=sampling,
                                                    n_questions=table.n_questions, batch=batch)}
    strategy = make_strategy(spec.name, table.space, seed=seed, **options)
    objective = table.objective(batch=batch, seed=seed, sampling=sampling)
    counts = np.zeros(len(table.space), dtype=np.int64)
    regrets: list[float] = []
    total = [0.0]  # cumulative regret, summed in pull order
    calls: list[int] = []
    curve: list[dict[str, Any]] = []
    snaps: dict[int, dict[str, Any]] = {}
    t0 = time.perf_counter()

    def snapshot() -> dict[str, Any]:
        n = len(regrets)
        return {
            "pulls": n,
            "calls": calls[-1] if n else 0,
            "calls_share": (calls[-1] if n else 0) / G,
            "cumulative_regret": total[0],
            **recommendation_metrics(strategy, truth),
            "seconds": time.perf_counter() - t0,
            "config_pulls": counts.copy(),
        }

    def on_pull(rec) -> None:
        i = table.space.index(rec.config)
        counts[i] += 1
        regrets.append(truth.best_value - truth.means[i])
        total[0] = float(total[0] + regrets[-1])
        calls.append((calls[-1] if calls else 0) + rec.calls)
        n = len(regrets)
        if n in marks or n in want:
            snap = snapshot()
            if n in marks:
                curve.append({k: snap[k] for k in ("pulls", "calls_share", "simple_regret",
                                                   *(f"recall@{x}" for x in RECALL_AT))})
            if n in want:
                snaps[n] = snap

    result = tune(strategy, objective, budget_calls=calls_budget, parallel=parallel, calls_per_pull=batch,
                  callback=on_pull, executor=executor)
    cum = np.cumsum(regrets)

    def finish(snap: dict[str, Any], stop_reason: str) -> dict[str, Any]:
        n = snap["pulls"]
        cp = snap.pop("config_pulls")
        return {
            "strategy": spec.display, "seed": seed, "batch": batch, **snap, "stop_reason": stop_reason,
            **_curve(cum, n, G, calls),
            "checkpoints": [c for c in curve if c["pulls"] <= n],
            "config_pulls": [[int(i), int(cp[i])] for i in np.flatnonzero(cp)] if len(cp) <= MAX_DENSE_COUNTS else None,
        }

    out = finish(snapshot(), result.stop_reason)
    if at_budgets:
        out["at_budgets"] = []
        for b in at_budgets:
            snap = snaps.get(stops[b])
            ran_out = snap is None  # the strategy stopped (a finished grid) before this budget
            snap = snapshot() if ran_out else snap
            out["at_budgets"].append({"budget": float(b), **finish(snap, result.stop_reason if ran_out else "budget")})
    return out


def run_budgets(table: ReplayTable, spec: StrategySpec | str, seed: int, *, budgets: Sequence[float], batch: int,
                checkpoints: int = 20) -> list[dict[str, Any]]:
    """One strategy and seed at several budgets from a single :func:`run_one` (``parallel=1``).

    A strategy never knows its budget, so the run at the largest budget passes through the
    exact state every smaller budget's run ends in: the metrics taken there equal
    :func:`run_one`'s for that budget (tests check this), at the cost of one run. Each result
    has run_one's keys plus ``budget``.
    """
    if not budgets:
        raise ValueError(f"budgets must be shares of grid calls in (0, 1], got {list(budgets)!r}")
    run = run_one(table, spec, seed, budget=max(budgets), batch=batch, parallel=1, checkpoints=checkpoints,
                  at_budgets=budgets)
    return run["at_budgets"]


def run_replay(table: ReplayTable, specs: Sequence[StrategySpec | str], seeds: Sequence[int], *,
               budget: float = 0.2, batch: int = 4, parallel: int = 1, progress: bool = True,
               on_result: Callable[[dict[str, Any]], None] | None = None, executor=None,
               sampling: str = "iid") -> list[dict[str, Any]]:
    """Run every (strategy, seed) pair; the same seed gives every strategy the same question draws."""
    specs = [parse_strategy_spec(s) for s in specs]
    budget_calls(budget, grid_calls=table.grid_calls, batch=batch)  # a bad budget fails before any run
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(specs) * len(seeds), desc="bench", unit="run", dynamic_ncols=True)
    runs = []
    try:
        for spec in specs:
            for seed in seeds:
                run = run_one(table, spec, seed, budget=budget, batch=batch, parallel=parallel, executor=executor,
                              sampling=sampling)
                runs.append(run)
                if on_result:
                    on_result(run)
                if bar is not None:
                    bar.set_postfix_str(spec.display)
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return runs


def write_results(path: str | Path, payload: Mapping[str, Any]) -> Path:
    """Write a benchmark's results as JSON, atomically."""
    return atomic_write_json(path, payload, indent=1)
