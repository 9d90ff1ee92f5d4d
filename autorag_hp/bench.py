"""Bandit-vs-grid replay benchmark: many strategies and seeds on one ground-truth table."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from autorag_hp.replay import ReplayTable
from autorag_hp.strategies import make_strategy
from autorag_hp.tuner import tune

__all__ = ["StrategySpec", "parse_strategy_spec", "run_replay", "summarise", "format_table"]

RECALL_AT = (1, 3, 5)


@dataclass(frozen=True)
class StrategySpec:
    """A strategy name with options, and the label its results are reported under."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""

    @property
    def display(self) -> str:
        return self.label or self.name


def parse_key_value(item: str, *, what: str) -> tuple[str, Any]:
    """``key=value`` -> (key, value), the value parsed as JSON where it can be (else a string)."""
    key, eq, value = item.partition("=")
    key = key.strip()
    if not eq or not key:
        raise ValueError(f"{what}: {item!r} must look like key=value")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def parse_strategy_spec(text: str) -> StrategySpec:
    """``name`` or ``name:key=value:key=value`` (values parsed as JSON where they can be)."""
    parts = [p for p in text.strip().split(":") if p]
    if not parts:
        raise ValueError(f"strategy spec must not be empty, got {text!r}")
    options = dict(parse_key_value(part, what=f"strategy spec {text!r}: option") for part in parts[1:])
    return StrategySpec(parts[0], options, text.strip())


def _checkpoints(n_pulls: int, k: int = 20) -> set[int]:
    return {max(1, round(n_pulls * (j + 1) / k)) for j in range(k)}


def recommendation_metrics(strategy, truth) -> dict[str, Any]:
    """Simple regret of ``best(1)`` and Recall@x of ``best(5)`` against the ground truth."""
    top = strategy.best(5)
    return {
        "simple_regret": truth.regret(top[0].config),
        **{f"recall@{x}": truth.recall_at([r.config for r in top], x) for x in RECALL_AT},
        "best": [r.to_dict() for r in top],
    }


def run_one(table: ReplayTable, spec: StrategySpec, seed: int, *, budget: float, batch: int,
            parallel: int = 1, checkpoints: int = 20, executor=None) -> dict[str, Any]:
    """One strategy, one seed: curves and final metrics against the table's ground truth."""
    truth = table.truth()
    strategy = make_strategy(spec.name, table.space, seed=seed, **dict(spec.options))
    objective = table.objective(batch=batch, seed=seed)
    budget_calls = max(batch, int(math.floor(budget * table.grid_calls)))
    est_pulls = budget_calls // batch
    marks = _checkpoints(est_pulls, checkpoints)
    regrets: list[float] = []
    curve: list[dict[str, Any]] = []

    def on_pull(rec) -> None:
        regrets.append(truth.best_value - truth.means[table.space.index(rec.config)])
        if len(regrets) in marks:
            metrics = recommendation_metrics(strategy, truth)
            del metrics["best"]
            curve.append({"pull": len(regrets), "calls_share": (len(regrets) * batch) / table.grid_calls, **metrics})

    t0 = time.perf_counter()
    result = tune(strategy, objective, budget_calls=budget_calls, parallel=parallel, calls_per_pull=batch,
                  callback=on_pull, executor=executor)
    elapsed = time.perf_counter() - t0
    cum = np.cumsum(regrets)
    return {
        "strategy": spec.display,
        "seed": seed,
        "pulls": len(result.records),
        "calls": result.calls_used,
        "calls_share": result.calls_used / table.grid_calls,
        "cumulative_regret": float(cum[-1]) if len(cum) else 0.0,
        **recommendation_metrics(strategy, truth),
        "regret_curve": [float(x) for x in cum[:: max(1, len(cum) // 200)]],
        "checkpoints": curve,
        "seconds": elapsed,
    }


def run_replay(table: ReplayTable, specs: Sequence[StrategySpec], seeds: Sequence[int], *, budget: float = 0.2,
               batch: int = 4, parallel: int = 1, progress: bool = True,
               on_result: Callable[[dict[str, Any]], None] | None = None, executor=None) -> list[dict[str, Any]]:
    """Run every (strategy, seed) pair; the same seed gives every strategy the same question draws."""
    if not 0 < budget <= 1:
        raise ValueError(f"budget must lie in (0, 1] (a share of grid search's calls), got {budget!r}")
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(specs) * len(seeds), desc="bench", unit="run", dynamic_ncols=True)
    runs = []
    try:
        for spec in specs:
            for seed in seeds:
                run = run_one(table, spec, seed, budget=budget, batch=batch, parallel=parallel, executor=executor)
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


def _ci(values: Sequence[float]) -> tuple[float, float]:
    """Mean and 95% half-width (Student t) over seeds."""
    from scipy import stats

    a = np.asarray(values, dtype=float)
    if len(a) < 2:
        return float(a.mean()), 0.0
    return float(a.mean()), float(stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / math.sqrt(len(a)))


METRICS = ("recall@1", "recall@3", "recall@5", "simple_regret", "cumulative_regret", "calls_share")


def summarise(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per strategy: mean and 95% CI half-width of each metric over seeds."""
    by: dict[str, list[Mapping[str, Any]]] = {}
    for r in runs:
        by.setdefault(r["strategy"], []).append(r)
    out = []
    for name, rs in by.items():
        row: dict[str, Any] = {"strategy": name, "seeds": len(rs)}
        for m in METRICS:
            mean, half = _ci([r[m] for r in rs])
            row[m] = mean
            row[m + "_ci"] = half
        out.append(row)
    return out


def format_table(summary: Sequence[Mapping[str, Any]]) -> str:
    header = f"{'strategy':<34} {'seeds':>5} {'Recall@3':>14} {'Recall@5':>14} {'simple regret':>17} {'cum. regret':>16} {'grid calls':>12}"
    lines = [header, "-" * len(header)]
    for r in summary:
        lines.append(
            f"{r['strategy']:<34} {r['seeds']:>5} "
            f"{r['recall@3']:>7.3f}±{r['recall@3_ci']:<6.3f} {r['recall@5']:>7.3f}±{r['recall@5_ci']:<6.3f} "
            f"{r['simple_regret']:>9.4f}±{r['simple_regret_ci']:<7.4f} {r['cumulative_regret']:>9.2f}±{r['cumulative_regret_ci']:<6.2f} "
            f"{100 * r['calls_share']:>11.1f}%"
        )
    return "\n".join(lines)


def write_results(path: str | Path, payload: Mapping[str, Any]) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=float))
    tmp.replace(p)
    return p
