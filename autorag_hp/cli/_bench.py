"""`autorag-hp bench`: replay a full grid and compare strategies over seeds."""

from __future__ import annotations

import argparse
import json
import time
from importlib import resources
from pathlib import Path

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
    p.add_argument("--strategies", default=",".join(s for s in list_strategies()),
                   help="comma-separated strategy specs: name or name:key=value:key=value")
    p.add_argument("--seeds", type=int, default=10, help="number of seeds (0..N-1)")
    p.add_argument("--budget", type=float, default=None, help="share of grid search's calls to spend, in (0, 1] (default 0.2)")
    p.add_argument("--batch", type=int, default=4, help="questions per pull")
    p.add_argument("--parallel", type=int, default=1, help="configurations asked per round (ask_batch)")
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


def default_table_path() -> Path:
    return Path(str(resources.files("autorag_hp") / "data" / "default_grid.csv"))


def _sidecar(path: Path) -> dict:
    side = path.with_suffix(".json")
    return json.loads(side.read_text()) if side.is_file() else {}


def load_table_from_args(args):
    from autorag_hp.replay import ReplayTable

    path = default_table_path() if args.table == DEFAULT_TABLE else Path(args.table)
    meta = _sidecar(path)
    params = args.params.split(",") if args.params else meta.get("params")
    metric = args.metric or meta.get("metric")
    if not params:
        raise ValueError("--params is required (comma-separated parameter columns) when the table has no .json sidecar")
    if not metric:
        raise ValueError("--metric is required (the quality column) when the table has no .json sidecar")
    cost = args.cost if args.cost is not None else meta.get("cost")
    w = args.w if args.w is not None else meta.get("w", 0.9 if cost else 1.0)
    table = ReplayTable.from_file(
        path, params=[p.strip() for p in params], metric=metric, cost=cost or None, w=w,
        t_max=args.t_max if args.t_max is not None else meta.get("t_max"),
        question_col=args.question_col, grid_questions=args.grid_questions,
        groups=(meta.get("space") or {}).get("groups") if not args.params else None,
    )
    return path, table, {"params": params, "metric": metric, "cost": cost, "w": w}


def run(args: argparse.Namespace) -> int:
    from autorag_hp.bench import format_table, parse_strategy_spec, run_replay, summarise, write_results

    if args.suite is not None:
        from autorag_hp.suite import run_suite_cli  # issue #4's suite runner

        return run_suite_cli(args)
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    budget = 0.2 if args.budget is None else args.budget
    specs = [parse_strategy_spec(s) for s in args.strategies.split(",") if s.strip()]
    known = set(list_strategies())
    for s in specs:
        if s.name not in known:
            raise ValueError(f"--strategies: unknown strategy {s.name!r}; available: {', '.join(sorted(known))}")
    path, table, meta = load_table_from_args(args)
    print(f"table {path}: {len(table.space)} configurations x {table.n_questions} questions "
          f"({'per-question' if table.outcomes is not None else 'mean-only'}), best true reward {table.means.max():.4f}")
    t0 = time.time()
    from autorag_hp.executors import make_executor

    executor = make_executor(args.executor, **({"address": args.address} if args.executor == "ray" else {}))
    log = open(args.log, "a", encoding="utf-8") if args.log else None

    def on_result(r: dict) -> None:
        if log is not None:
            keys = ("strategy", "seed", "pulls", "calls", "recall@3", "recall@5", "simple_regret",
                    "cumulative_regret", "calls_share", "seconds")
            log.write(json.dumps({"event": "run", "time": time.time(), **{k: r[k] for k in keys}}) + "\n")
            log.flush()

    try:
        runs = run_replay(table, specs, list(range(args.seeds)), budget=budget, batch=args.batch,
                          parallel=args.parallel, progress=not args.quiet, executor=executor, on_result=on_result)
    finally:
        executor.close()
        if log is not None:
            log.close()
    summary = summarise(runs)
    print(f"\nbudget {budget:.0%} of grid calls, batch {args.batch}, {args.seeds} seeds (mean ± 95% CI):")
    print(format_table(summary))
    out = Path(args.out) if args.out else Path("bench_out") / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    write_results(out, {
        "table": str(path), **meta, "n_configs": len(table.space), "n_questions": table.n_questions,
        "budget": budget, "batch": args.batch, "parallel": args.parallel, "seeds": args.seeds,
        "seconds": time.time() - t0, "summary": summary, "runs": runs,
    })
    print(f"\nresults written to {out}")
    return 0
