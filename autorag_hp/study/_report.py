"""What a study writes after tuning: the regret log against the grid, regret.csv, the plots, the printed result."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence, TextIO

from autorag_hp._io import atomic_write_text

__all__ = ["regret_log", "write_regret_csv", "write_plots", "format_config", "print_result"]


def regret_log(strategy_spec: str, seed: int, space, truth, records: Sequence[Any], grid_calls: int,
               best_after: Mapping[int, Mapping[str, Any]] | None = None) -> list[dict]:
    """Each pull's regret and the simple regret of the strategy's best(1) after it.

    ``best_after[pull]`` is best(1) recorded live after that pull's tell (``best`` never
    changes what a strategy asks next); pulls without it (a resumed run's journaled ones)
    are replayed by a fresh strategy to get the same value.
    """
    from autorag_hp.regret import RegretLog
    from autorag_hp.strategies import make_strategy

    log = RegretLog(truth, grid_calls)
    if best_after is not None and all(rec.pull in best_after for rec in records):
        for rec in records:
            best = dict(best_after[rec.pull])
            row = log.add(rec.pull, rec.config, rec.reward, rec.calls, best_config=best)
            row["config_index"] = space.index(rec.config)
            row["best_config_index"] = space.index(best)
        return log.rows
    replay = make_strategy(strategy_spec, space, seed=seed)
    i = 0
    while i < len(records):
        rnd, size = records[i].round, records[i].round_size
        j = i
        while j < len(records) and records[j].round == rnd:
            j += 1
        replay.ask_batch(size)
        for rec in records[i:j]:
            replay.tell(rec.config, rec.reward)
            best = replay.best(1)[0].config
            row = log.add(rec.pull, rec.config, rec.reward, rec.calls, best_config=best)
            row["config_index"] = space.index(rec.config)
            row["best_config_index"] = space.index(best)
        i = j
    return log.rows


def write_regret_csv(path: Path, space, rows: Sequence[dict]) -> None:
    cols = ["pull", "config_index", *space.names, "config", "reward", "true_mean", "regret", "cumulative_regret",
            "best_config_index", "simple_regret", "calls", "calls_share"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({**r, **r["config"], "config": json.dumps(r["config"], sort_keys=True)})
    atomic_write_text(path, buf.getvalue())


def write_plots(run_dir: Path, space, truth, records, regret_rows, name: str, say) -> dict[str, str]:
    """regret.png (with a grid) and pulls.png; {} when matplotlib is missing."""
    try:
        from autorag_hp.report import plot_pulls, plot_regret
    except ModuleNotFoundError:
        return {}
    files: dict[str, str] = {}
    try:
        if regret_rows:
            plot_regret(regret_rows, run_dir / "regret.png", title=f"{name}: regret against the full grid")
            files["regret_plot"] = "regret.png"
        counts = [0] * len(space)
        for rec in records:
            counts[space.index(rec.config)] += 1
        labels = [",".join(str(v) for v in space.config(i).values()) for i in range(len(space))]
        plot_pulls(labels, counts, None if truth is None else truth.means.tolist(), run_dir / "pulls.png",
                   title=f"{name}: pulls per configuration ({len(records)} pulls)")
        files["pulls_plot"] = "pulls.png"
    except ModuleNotFoundError as exc:
        say(f"skipping plots: {exc}")
    return files


def format_config(config: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in config.items())


def tuning_label(seconds: dict[str, Any]) -> str:
    """What the tuning seconds include: a warm cache (the grid ran just before), the questions
    a wrapped stack's outcome cache answered, no outcome cache, or the reference pipeline's
    caches in whatever state the run found them."""
    cache = seconds.get("tune_cache", "unknown")
    if cache == "warm":
        return "(warm cache: the grid baseline ran first)"
    if cache == "counted":
        hit, miss = seconds["tune_questions_cached"], seconds["tune_questions_to_stack"]
        return f"({hit} of {hit + miss} questions from the outcome cache)"
    if cache == "none":
        return "(no outcome cache: every question ran through the stack)"
    return "(caches as found: not measured cold)"


def print_result(summary: dict[str, Any], best, truth, run_dir: Path | None, out: TextIO | None = None) -> None:
    """The result as ``autorag-hp tune`` prints it."""
    out = out or sys.stdout
    print(f"\n{summary['pulls']} pulls, {summary['calls_used']} calls "
          f"({summary['calls_share']:.1%} of grid search's {summary['grid_calls']}), "
          f"{summary['seconds']['tune']:.1f} s tuning {tuning_label(summary['seconds'])}" +
          (f" + {summary['seconds']['grid']:.1f} s grid baseline" if truth is not None else ""), file=out)
    print(f"\nbest configurations ({summary['strategy']['strategy']}, mean reward with 95% interval):", file=out)
    for k, rec in enumerate(best, start=1):
        line = (f"  {k}. {format_config(rec.config):<60} {rec.mean:.3f} [{rec.ci_low:.3f}, {rec.ci_high:.3f}] "
                f"{rec.pulls:>4} pulls")
        if truth is not None:
            line += f"   true {truth.value(rec.config):.3f}, grid rank {truth.rank(rec.config)}"
        print(line, file=out)
    if truth is not None:
        g = summary["grid"]
        r = summary["regret"]
        print(f"\ngrid search's best: {format_config(g['best_config'])}  {g['best_mean']:.3f}", file=out)
        print(f"simple regret {r['simple_regret']:.4f}, cumulative regret {r['cumulative_regret']:.2f}, "
              f"Recall@1/3/5 {r['recall@1']:.2f}/{r['recall@3']:.2f}/{r['recall@5']:.2f}", file=out)
    if run_dir is not None:
        print(f"\nrun folder: {run_dir}", file=out)
