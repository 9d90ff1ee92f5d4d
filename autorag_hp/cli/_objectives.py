"""`autorag-hp tune --objectives quality,tokens[,latency]`: the run's cost-quality front.

With ``--objectives`` (and no ``--strategy``) the run uses ``pareto-ts``; afterwards the run
folder gets ``pareto.json`` (the front with confidence intervals, the plausible set, and the
grid's front when there is a grid) and ``pareto.png`` (the run's front against the grid's).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_argument", "default_strategy", "report_front"]


def add_argument(p: Any) -> None:
    p.add_argument("--objectives", metavar="quality,tokens[,latency]",
                   help="also find the Pareto front of these objectives (quality first); without --strategy the "
                        "run uses pareto-ts; writes pareto.json and pareto.png (see docs/metrics.md)")


def default_strategy(objectives: str) -> str:
    """The strategy spec ``--objectives`` implies when no ``--strategy`` is given (Study passes
    the run's ``w`` and ``t_max`` to it)."""
    from autorag_hp.pareto import check_objectives

    check_objectives(objectives)
    return "pareto-ts"


def report_front(result: Any, objectives: str, run_dir: Path | None, *, plots: bool = True, out=None) -> dict:
    """Print the run's front, write ``pareto.json`` (and ``pareto.png``) into ``run_dir``."""
    import numpy as np

    from autorag_hp.pareto import ParetoSet, check_objectives

    out = out or sys.stdout
    objs = check_objectives(objectives)
    run_set = result.pareto(objs)
    payload: dict[str, Any] = run_set.to_dict()
    grid_set = None
    if result.grid is not None:
        cols = {"quality": "quality", "tokens": "prompt_tokens", "latency": "latency_s"}
        means = [result.grid.mean(cols[o]) for o in objs]
        idx = sorted(means[0])
        grid_set = ParetoSet.from_means(np.array([[m[i] for m in means] for i in idx]), space=result.grid.space,
                                        indices=idx, objectives=objs, t_max=result.grid.t_max)
        payload["grid_front"] = [p.to_dict() for p in grid_set.front]
    print(f"Pareto front ({', '.join(objs)}), {len(run_set.front)} configurations, "
          f"{run_set.confidence:.0%} intervals:", file=out)
    for p in run_set.front:
        cells = ", ".join(f"{o} {p.mean[o]:.4g} [{p.ci[o][0]:.4g}, {p.ci[o][1]:.4g}]" for o in objs)
        print(f"  {cells}  {p.config}", file=out)
    if run_dir is not None:
        from autorag_hp._io import atomic_write_text

        Path(run_dir).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(run_dir) / "pareto.json", json.dumps(payload, indent=2, default=str) + "\n")
        if plots:
            try:
                from autorag_hp.report import plot_pareto

                plot_pareto(Path(run_dir) / "pareto.png", run_set, grid_set, title="run's front vs grid's front")
            except ModuleNotFoundError as exc:  # matplotlib is the plot extra
                print(f"no pareto.png: {exc}", file=out)
    return payload
