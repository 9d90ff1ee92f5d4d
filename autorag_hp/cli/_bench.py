"""`autorag-hp bench`: replay a full grid and compare strategies over seeds, or run a benchmark suite."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from autorag_hp.strategies import list_strategies

DEFAULT_TABLE = "default"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="replay a full grid table and compare strategies (bandit vs grid)",
        description="Replay a ground-truth grid (per-question or mean-only rows) with many strategies and seeds.",
    )
    p.add_argument("--table", default=DEFAULT_TABLE,
                   help="CSV or Parquet grid table; 'default' = the embedded default grid shipped in the package")
    p.add_argument("--params", help="comma-separated parameter columns (default: from the table's .json sidecar)")
    p.add_argument("--metric", help="quality column (default: from the sidecar)")
    p.add_argument("--cost", help="cost column, e.g. prompt_tokens (reward = w*metric - (1-w)*cost/t_max)")
    p.add_argument("--w", type=float, default=None, help="quality weight w in [0, 1] (default 0.9 with --cost)")
    p.add_argument("--t-max", type=float, default=None, help="cost normaliser (default: the table's largest cost)")
    p.add_argument("--question-col", default="question_id", help="question column of per-question tables")
    p.add_argument("--grid-questions", type=int, default=10,
                   help="mean-only tables: questions grid search spends per configuration")
    p.add_argument("--strategies", default=None,
                   help="comma-separated strategy specs: name or name:key=value:key=value "
                        "(default: every registered strategy; --suite: the suite file's)")
    p.add_argument("--seeds", type=int, default=None,
                   help="number of seeds (0..N-1) (default 10; --suite: the suite file's)")
    p.add_argument("--budget", type=float, default=None, help="share of grid search's calls to spend, in (0, 1] (default 0.2)")
    p.add_argument("--batch", type=int, default=4,
                   help="questions per pull (default 4, as the suite's tables; `tune` takes the strategy's own: 2 for "
                        "structured-tt)")
    p.add_argument("--parallel", type=int, default=1, help="configurations asked per round (ask_batch)")
    p.add_argument("--sampling", choices=("iid", "paired"), default="iid",
                   help="how a pull picks its questions: iid = afresh per pull; paired = the k-th pull of every "
                        "configuration gets the same questions (per-question tables only) (default iid, as the suite's "
                        "tables; `tune` takes the strategy's own: paired for structured-tt and pareto-ts)")
    p.add_argument("--suite", default=None, help="run a named benchmark suite instead of one table (see evals/)")
    p.add_argument("--out", default=None, help="JSON results path (default bench_out/bench-<time>.json)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--log", default=None, metavar="FILE",
                   help="append machine-readable JSON-lines events (one per run) to FILE")
    p.add_argument("--workers", type=int, default=None,
                   help="--suite: worker processes (default: CPU count); results do not depend on it")
    p.add_argument("--tables", default=None, help="--suite: comma-separated table names to run (default: all)")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="where pulls execute: this process, or Ray tasks (pip install 'autorag-hp[ray]')")
    p.add_argument("--address", default=None,
                   help="with --executor ray: cluster address, e.g. auto or ray://host:10001 (default: a local Ray)")
    p.set_defaults(func=run)


def load_table_from_args(args):
    """The grid table ``--table`` names (with its sidecar and the flags that override it)."""
    from autorag_hp.bench import default_grid_path, load_grid, read_sidecar

    path = default_grid_path() if args.table == DEFAULT_TABLE else Path(args.table)
    meta = read_sidecar(path)
    if not (args.params or meta.get("params")):
        raise ValueError("--params is required (comma-separated parameter columns) when the table has no .json sidecar")
    if not (args.metric or meta.get("metric")):
        raise ValueError("--metric is required (the quality column) when the table has no .json sidecar")
    grid = load_grid(path, params=args.params.split(",") if args.params else None, metric=args.metric,
                     cost=args.cost, w=args.w, t_max=args.t_max, question_col=args.question_col,
                     grid_questions=args.grid_questions)
    return path, grid.table, {"params": list(grid.space.names), "metric": grid.metric, "cost": grid.cost, "w": grid.w}


def run(args: argparse.Namespace) -> int:
    from autorag_hp._budget import budget_calls
    from autorag_hp._validation import check_positive_int
    from autorag_hp.bench import METRICS, format_table, run_replay, summarise, write_results

    if args.suite is not None:
        return run_suite_cli(args)
    seeds = check_positive_int("--seeds", 10 if args.seeds is None else args.seeds)
    check_positive_int("--batch", args.batch)
    check_positive_int("--parallel", args.parallel)
    budget = 0.2 if args.budget is None else args.budget
    specs = _parse_specs(args.strategies or ",".join(list_strategies()))
    path, table, meta = load_table_from_args(args)
    budget_calls(budget, grid_calls=table.grid_calls, batch=args.batch, name="--budget")
    print(f"table {path}: {len(table.space)} configurations x {table.n_questions} questions "
          f"({'per-question' if table.outcomes is not None else 'mean-only'}), best true reward {table.means.max():.4f}")
    t0 = time.time()
    from autorag_hp.executors import make_executor

    executor = make_executor(args.executor, **({"address": args.address} if args.executor == "ray" else {}))
    log = open(args.log, "a", encoding="utf-8") if args.log else None

    def on_result(r: dict) -> None:
        if log is not None:
            keys = ("strategy", "seed", "pulls", "calls", *METRICS, "seconds")
            log.write(json.dumps({"event": "run", "time": time.time(), **{k: r[k] for k in keys}}) + "\n")
            log.flush()

    try:
        runs = run_replay(table, specs, list(range(seeds)), budget=budget, batch=args.batch,
                          parallel=args.parallel, progress=not args.quiet, executor=executor, on_result=on_result,
                          sampling=args.sampling)
    finally:
        executor.close()
        if log is not None:
            log.close()
    runs = [{k: v for k, v in r.items() if k != "config_pulls"} for r in runs]
    summary = summarise(runs)
    print(f"\nbudget {budget:.0%} of grid calls, batch {args.batch}, {args.sampling} sampling, {seeds} seeds "
          "(mean ± 95% CI):")
    print(format_table(summary))
    out = Path(args.out) if args.out else Path("bench_out") / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    write_results(out, {
        "table": str(path), **meta, "n_configs": len(table.space), "n_questions": table.n_questions,
        "budget": budget, "batch": args.batch, "sampling": args.sampling, "parallel": args.parallel, "seeds": seeds,
        "seconds": time.time() - t0, "summary": summary, "runs": runs,
    })
    print(f"\nresults written to {out}")
    return 0


def _parse_specs(text: str):
    """``--strategies``: comma-separated specs, every name registered."""
    from autorag_hp.strategies import list_strategies, parse_strategy_spec

    specs = [parse_strategy_spec(s) for s in text.split(",") if s.strip()]
    known = list_strategies()
    for s in specs:
        if s.name not in known:
            raise ValueError(f"--strategies: unknown strategy {s.name!r}; available: {', '.join(sorted(known))}")
    return specs


def run_suite_cli(args: Any) -> int:
    """``autorag-hp bench --suite NAME``: run, write ``suite.json`` and the HTML report into ``--out``."""
    from autorag_hp.bench import ALPHA, format_suite_table, load_suite, run_suite, write_results

    suite = load_suite(args.suite)
    given = getattr(args, "strategies", None)
    strategies = [s for s in given.split(",") if s.strip()] if given else None
    seeds = suite.seeds if getattr(args, "seeds", None) is None else args.seeds
    if getattr(args, "budget", None) is not None or getattr(args, "batch", 4) != 4:
        print("suite: --budget and --batch are set by the suite file (budgets, min_batch, max_pulls); ignoring them",
              file=sys.stderr)
    out = Path(args.out) if getattr(args, "out", None) else Path("bench_out") / f"suite-{suite.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if out.suffix == ".json":
        raise ValueError(f"--out must be a folder for a suite (it gets suite.json and the report), got {str(out)!r}")
    tables = getattr(args, "tables", None)
    if isinstance(tables, str):
        tables = [t for t in tables.split(",") if t.strip()]
    quiet = bool(getattr(args, "quiet", False))
    print(f"suite {suite.name!r}: {len(suite.tables)} tables, budgets {', '.join(f'{b:.0%}' for b in suite.budgets)}, "
          f"{seeds} seeds -> {out}", file=sys.stderr)
    executor = getattr(args, "executor", None) or "processes"
    payload = run_suite(suite, seeds=seeds, strategies=strategies, tables=tables,
                        parallel=getattr(args, "parallel", 1) or 1, workers=getattr(args, "workers", None),
                        executor="ray" if executor == "ray" else "processes", address=getattr(args, "address", None),
                        progress=not quiet, log=getattr(args, "log", None))
    path = write_results(out / "suite.json", payload)
    print(format_suite_table(payload))
    print(f"\n▲/▼: significantly better/worse than {payload['reference']} (paired Wilcoxon over tables x seeds, "
          f"Holm, alpha {ALPHA}); ± is a 95% CI over seeds.")
    print(f"suite finished in {payload['seconds'] / 60:.1f} min; results written to {path}")
    try:
        from autorag_hp.report import build_report
    except ModuleNotFoundError as exc:  # pragma: no cover - the report package ships with the library
        print(f"no report: {exc}", file=sys.stderr)
        return 0
    try:
        html = build_report(out)
    except ModuleNotFoundError as exc:  # matplotlib missing
        print(f"no report ({exc}); install the plot extra: pip install 'autorag-hp[plot]'", file=sys.stderr)
        return 0
    print(f"report written to {html}")
    return 0
