"""Issue #11 point 4: are the 95% intervals of ``best(n)`` and the stopping rule calibrated?

For every (bucket, strategy, seed) the script replays a tuning run on a ground-truth table and,
at each checkpoint (a share of grid search's calls), asks ``best(5)``: an entry is *covered*
when its interval ``[ci_low, ci_high]`` contains the configuration's true mean (its mean over
every question of the table). Coverage is reported per strategy and bucket, and split by how
many pulls the entry had (0 = recommended from the model alone) and, under paired sampling, for
the entries that have not yet seen every question (one that has knows its true mean exactly).

The stopping rule: ``structured-tt:stop=true`` (or ``--stop-strategy``'s spec with ``stop=true``;
ε = ``stop_epsilon``, 95%) runs until it stops or reaches ``--stop-cap`` of grid calls; a *false
stop* is a stop whose ``best(1)`` is worse than the best configuration by more than ε. The target
is ≤ 5% of runs.

    python evals/calibration.py --seeds 10                    # ~6 min on a loaded 2-core machine
    python evals/calibration.py --seeds 3 --buckets easy      # smoke run

Writes ``evals/results/calibration.json`` (``--out``) and prints the tables.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small matrices: BLAS threads only contend
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import math
import sys
import time
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autorag_hp.bench import DIFFICULTIES, ReplayTable, default_grid_path, load_grid, make_surface  # noqa: E402
from autorag_hp.objective import paired_population  # noqa: E402
from autorag_hp.strategies import make_strategy, parse_strategy_spec, strategy_class  # noqa: E402
from autorag_hp.tuner import tune  # noqa: E402

STRATEGIES = [
    "structured-tt",
    "structured-ts",
    "hier-ucb",
    "hier-ucb:alpha_upper=1.5:alpha_lower=0.5",
    "hier-ts",
]
SYNTHETIC = DIFFICULTIES  # easy, medium, hard, nonadditive
REAL = {"default_grid": default_grid_path()}
CHECKPOINTS = (0.05, 0.1, 0.2)
TOP = 5


def _table(bucket: str, seed: int) -> ReplayTable:
    if bucket in SYNTHETIC:
        return make_surface(bucket, seed=seed)
    return load_grid(REAL[bucket]).table


def _make(spec_text: str, table: ReplayTable, seed: int, batch: int, sampling: str, **extra: Any):
    """The strategy as ``bench.run_one`` builds it (``population`` resolved for ``sampling``)."""
    spec = parse_strategy_spec(spec_text)
    options = {**dict(spec.options), **extra}
    options.update(paired_population(strategy_class(spec.name), options, sampling=sampling,
                                     n_questions=table.n_questions, batch=batch))
    return make_strategy(spec.name, table.space, seed=seed, **options)


def _coverage_job(args: tuple[str, str, int, int, tuple[float, ...], str]) -> list[dict[str, Any]]:
    """One run; at each checkpoint, one row per ``best(TOP)`` entry."""
    bucket, spec_text, seed, batch, marks, sampling = args
    table = _table(bucket, seed)
    truth = table.truth()
    strategy = _make(spec_text, table, seed, batch, sampling)
    at = {max(1, int(m * table.grid_calls) // batch): m for m in marks}
    rows: list[dict[str, Any]] = []
    n = [0]

    def on_pull(_rec) -> None:
        n[0] += 1
        share = at.get(n[0])
        if share is None:
            return
        top = strategy.best(TOP)
        regret = truth.regret(top[0].config)
        recall = truth.recall_at([r.config for r in top], TOP)
        for rank, r in enumerate(top, start=1):
            true = float(truth.means[table.space.index(r.config)])
            rows.append({
                "bucket": bucket, "strategy": spec_text, "seed": seed, "share": share, "rank": rank,
                "pulls": r.pulls, "mean": r.mean, "true": true, "half": (r.ci_high - r.ci_low) / 2,
                "covered": bool(r.ci_low <= true <= r.ci_high), "below": bool(true < r.ci_low),
                # paired sampling: a configuration that saw every question knows its true mean exactly
                "seen_all": bool(sampling == "paired" and r.pulls * min(batch, table.n_questions) >= table.n_questions),
                "simple_regret": regret, "recall@5": recall,
            })

    tune(strategy, table.objective(batch=batch, seed=seed, sampling=sampling),
         budget_calls=int(max(marks) * table.grid_calls), calls_per_pull=batch, callback=on_pull)
    return rows


def _stop_job(args: tuple[str, int, int, float, float, str, str]) -> dict[str, Any]:
    bucket, seed, batch, cap, epsilon, spec_text, sampling = args
    table = _table(bucket, seed)
    truth = table.truth()
    s = _make(spec_text, table, seed, batch, sampling, stop=True, stop_epsilon=epsilon, stop_level=0.95)
    res = tune(s, table.objective(batch=batch, seed=seed, sampling=sampling), budget_calls=int(cap * table.grid_calls),
               calls_per_pull=batch)
    regret = truth.regret(s.best(1)[0].config)
    stopped = res.stop_reason.startswith("exhausted")
    return {"bucket": bucket, "seed": seed, "stopped": stopped, "calls_share": res.calls_used / table.grid_calls,
            "simple_regret": regret, "false_stop": bool(stopped and regret > epsilon)}


def _wilson(k: int, n: int) -> tuple[float, float]:
    """95% Wilson interval of a proportion (the coverage estimate's own uncertainty)."""
    if n == 0:
        return (math.nan, math.nan)
    z = 1.959964
    p = k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (c - h, c + h)


def summarise(rows: list[dict[str, Any]], stops: list[dict[str, Any]], specs: list[str],
              buckets: list[str]) -> dict[str, Any]:
    def cov(sel: list[dict[str, Any]]) -> dict[str, Any]:
        k = sum(r["covered"] for r in sel)
        lo, hi = _wilson(k, len(sel))
        return {"entries": len(sel), "coverage": k / len(sel) if sel else math.nan, "wilson_low": lo,
                "wilson_high": hi,
                # misses with the true mean below the interval (the winner's curse), as a share of entries
                "below": sum(r.get("below", False) for r in sel) / len(sel) if sel else math.nan,
                "median_half_width": float(np.median([r["half"] for r in sel if math.isfinite(r["half"])]))
                if sel else math.nan}

    out: dict[str, Any] = {"coverage": {}, "stopping": {}}
    for spec in specs:
        mine = [r for r in rows if r["strategy"] == spec]
        entry = {"all": cov(mine),
                 "by_bucket": {b: cov([r for r in mine if r["bucket"] == b]) for b in buckets},
                 "by_share": {str(m): cov([r for r in mine if r["share"] == m]) for m in sorted({r["share"] for r in mine})},
                 "unpulled": cov([r for r in mine if r["pulls"] == 0]),
                 "pulled": cov([r for r in mine if r["pulls"] > 0]),
                 "partial": cov([r for r in mine if not r.get("seen_all")]),
                 "top1": cov([r for r in mine if r["rank"] == 1])}
        out["coverage"][spec] = entry
        first = [r for r in mine if r["rank"] == 1]
        out.setdefault("quality", {})[spec] = {
            f"{b}@{m}": {"simple_regret": float(np.mean([r["simple_regret"] for r in first if r["bucket"] == b and r["share"] == m])),
                         "recall@5": float(np.mean([r["recall@5"] for r in first if r["bucket"] == b and r["share"] == m]))}
            for b in buckets for m in sorted({r["share"] for r in first}) if any(r["bucket"] == b and r["share"] == m for r in first)}
    for b in buckets:
        sel = [s for s in stops if s["bucket"] == b]
        if sel:
            out["stopping"][b] = {"runs": len(sel), "stopped": sum(s["stopped"] for s in sel),
                                  "false_stops": sum(s["false_stop"] for s in sel),
                                  "median_calls_share_at_stop": float(np.median([s["calls_share"] for s in sel if s["stopped"]]))
                                  if any(s["stopped"] for s in sel) else None}
    if stops:
        out["stopping"]["all"] = {"runs": len(stops), "stopped": sum(s["stopped"] for s in stops),
                                  "false_stops": sum(s["false_stop"] for s in stops),
                                  "false_stop_rate": sum(s["false_stop"] for s in stops) / len(stops)}
    return out


def format_summary(summary: dict[str, Any], buckets: list[str]) -> str:
    lines = ["coverage of the 95% interval of best(5)'s true means (all checkpoints pooled)"]
    head = ["strategy", "all", *buckets, "pulled", "unpulled", "best(1)", "not every question seen"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for spec, e in summary["coverage"].items():
        def c(x: dict[str, Any]) -> str:
            return "—" if not x["entries"] else f"{x['coverage']:.3f} (n={x['entries']})"
        cells = [f"`{spec}`", f"{e['all']['coverage']:.3f} [{e['all']['wilson_low']:.3f}, {e['all']['wilson_high']:.3f}]",
                 *[c(e["by_bucket"][b]) for b in buckets], c(e["pulled"]), c(e["unpulled"]), c(e["top1"]), c(e["partial"])]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("\nsimple regret / Recall@5 at the last checkpoint (mean over seeds)")
    lines.append("| strategy | " + " | ".join(buckets) + " |")
    lines.append("|" + "---|" * (len(buckets) + 1))
    for spec, q in summary.get("quality", {}).items():
        last = max(float(k.rsplit("@", 1)[1]) for k in q)
        cells = [f"{q[f'{b}@{last}']['simple_regret']:.4f} / {q[f'{b}@{last}']['recall@5']:.2f}"
                 if f"{b}@{last}" in q else "—" for b in buckets]
        lines.append(f"| `{spec}` | " + " | ".join(cells) + " |")
    if summary["stopping"]:
        lines.append("\nstopping rule (stop=true): false stop = stopped with best(1) worse than the best by > ε")
        lines.append("| bucket | runs | stopped | false stops | median share of grid calls at stop |")
        lines.append("|---|---|---|---|---|")
        for b, s in summary["stopping"].items():
            if b == "all":
                continue
            med = s["median_calls_share_at_stop"]
            lines.append(f"| {b} | {s['runs']} | {s['stopped']} | {s['false_stops']} | "
                         f"{'—' if med is None else f'{100 * med:.1f}%'} |")
        a = summary["stopping"]["all"]
        lines.append(f"| all | {a['runs']} | {a['stopped']} | {a['false_stops']} ({100 * a['false_stop_rate']:.1f}%) | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--first-seed", type=int, default=100,
                    help="seeds first-seed .. first-seed+seeds-1 (default 100: not the seeds the defaults were tuned on)")
    ap.add_argument("--batch", type=int, default=4, help="questions per pull")
    ap.add_argument("--checkpoints", default=",".join(str(c) for c in CHECKPOINTS),
                    help="shares of grid calls at which best(5) is checked")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--buckets", default=",".join([*SYNTHETIC, *REAL]))
    ap.add_argument("--stop-cap", type=float, default=0.6, help="stopping runs end here if the rule has not fired")
    ap.add_argument("--stop-epsilon", type=float, default=0.01)
    ap.add_argument("--stop-strategy", default="structured-tt", help="the strategy spec the stopping runs use")
    ap.add_argument("--sampling", choices=("iid", "paired"), default="iid",
                    help="how pulls pick questions (paired also sets structured-tt's finite-population term)")
    ap.add_argument("--skip-stop", action="store_true")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--label", default="", help="stored in the JSON (e.g. 'before' / 'after')")
    ap.add_argument("--out", default=str(ROOT / "evals" / "results" / "calibration.json"))
    args = ap.parse_args(argv)

    specs = [s for s in args.strategies.split(",") if s]
    buckets = [b for b in args.buckets.split(",") if b]
    for b in buckets:
        if b not in SYNTHETIC and b not in REAL:
            raise SystemExit(f"--buckets: unknown bucket {b!r}; known: {[*SYNTHETIC, *REAL]}")
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    marks = tuple(float(x) for x in args.checkpoints.split(","))
    t0 = time.time()
    jobs = [(b, s, seed, args.batch, marks, args.sampling) for s in specs for b in buckets for seed in seeds]
    stop_jobs = [] if args.skip_stop else [(b, seed, args.batch, args.stop_cap, args.stop_epsilon, args.stop_strategy,
                                            args.sampling) for b in buckets for seed in seeds]
    rows: list[dict[str, Any]] = []
    stops: list[dict[str, Any]] = []
    with Pool(args.workers) as pool:
        for i, chunk in enumerate(pool.imap(_coverage_job, jobs, chunksize=1), start=1):
            rows.extend(chunk)
            if i % 20 == 0 or i == len(jobs):
                print(f"coverage runs {i}/{len(jobs)} ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
        for i, stop in enumerate(pool.imap(_stop_job, stop_jobs, chunksize=1), start=1):
            stops.append(stop)
            if i % 10 == 0 or i == len(stop_jobs):
                print(f"stopping runs {i}/{len(stop_jobs)} ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    summary = summarise(rows, stops, specs, buckets)
    elapsed = time.time() - t0
    print(format_summary(summary, buckets))
    print(f"\n{len(jobs)} coverage runs + {len(stop_jobs)} stopping runs in {elapsed:.0f} s "
          f"(workers={args.workers}, load average {os.getloadavg()[0]:.1f})")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "label": args.label, "command": "python evals/calibration.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "seeds": seeds, "batch": args.batch, "checkpoints": marks, "buckets": buckets, "strategies": specs,
        "stop_cap": args.stop_cap, "stop_epsilon": args.stop_epsilon, "stop_strategy": args.stop_strategy, "sampling": args.sampling,
        "seconds": elapsed,
        "summary": summary, "stops": stops,
    }, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
