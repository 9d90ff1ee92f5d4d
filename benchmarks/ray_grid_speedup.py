"""Speed-up of a full grid evaluated as Ray tasks: 2 workers against 1 (and against no Ray).

    python benchmarks/ray_grid_speedup.py [--data default|PATH_TO_SQUAD_JSON] [--questions 120]
        [--embedders bm25,static] [--split chunk_size] [--repeats 1] [--out bench_out/ray_speedup.json]

The grid of the reference pipeline is split by one knob (default ``chunk_size``: nothing is
shared across chunk sizes, so the split loses no work) and each part is one task running
:func:`autorag_hp.pipeline.run_grid` with in-memory caches only (so no run profits from
another's disk cache). The same tasks run in this process (no Ray), then on a local Ray
instance with ``num_cpus=1`` and with ``num_cpus=2``; the rows are checked to be identical.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any


def _dataset(data: str, n: int):
    from autorag_hp.pipeline import QADataset, load_default_dataset, load_squad

    ds = load_default_dataset() if data == "default" else load_squad(data)
    return QADataset(ds.name, ds.corpus, ds.questions[:n])


def evaluate_part(task: dict[str, Any]) -> list[tuple]:
    """One part of the grid: rows as (config..., question, quality, prompt_tokens) tuples."""
    from autorag_hp.pipeline import ReferencePipeline, run_grid
    from autorag_hp.space import SearchSpace

    space = SearchSpace(task["params"])
    ds = _dataset(task["data"], task["questions"])
    pipe = ReferencePipeline.from_space(ds, space, cache_dir=None, t_max=task["t_max"])
    res = run_grid(pipe, ds, space, metric="answer_in_context", w=0.9, t_max=task["t_max"])
    return [(*(r[p] for p in space.names), r["question_id"], r["quality"], r["prompt_tokens"]) for r in res.rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="default", help="'default' (embedded set) or a SQuAD JSON path")
    ap.add_argument("--questions", type=int, default=120)
    ap.add_argument("--embedders", default="bm25,static", help="embedders of the grid (no model download needed)")
    ap.add_argument("--split", default="chunk_size", help="knob whose values become separate tasks")
    ap.add_argument("--repeats", type=int, default=1, help="timings per setting (the minimum is reported)")
    ap.add_argument("--out", default="bench_out/ray_speedup.json")
    args = ap.parse_args()

    import ray

    from autorag_hp.executors._ray import RayExecutor, map_cells
    from autorag_hp.pipeline import default_space

    base = default_space().to_dict()["params"]
    base["embedder"] = [e for e in args.embedders.split(",") if e]
    if args.split not in base:
        raise SystemExit(f"--split must be one of {sorted(base)}, got {args.split!r}")
    t_max = float(max(base["top_k"]) * max(base.get("chunk_size", [512])))
    tasks = [{"params": {**base, args.split: [v]}, "data": args.data, "questions": args.questions, "t_max": t_max}
             for v in base[args.split]]
    n_configs = 1
    for v in base.values():
        n_configs *= len(v)
    print(f"grid: {n_configs} configurations x {args.questions} questions, {len(tasks)} tasks (split by {args.split})")

    evaluate_part(tasks[0])  # warm imports and tokenizers in this process
    timings: dict[str, float] = {}
    reference = None
    mismatches: dict[str, int] = {}
    for label, workers in (("no Ray (in process)", None), ("Ray, 1 worker", 1), ("Ray, 2 workers", 2)):
        best = float("inf")
        for _ in range(args.repeats):
            if workers is None:
                t0 = time.perf_counter()
                rows = map_cells(evaluate_part, tasks)
                best = min(best, time.perf_counter() - t0)
            else:
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False,
                         runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(Path(__file__).parent),
                                                                                  os.environ.get("PYTHONPATH", "")])}})
                with RayExecutor() as ex:
                    ex.map(len, [[]] * workers)  # start the worker processes before timing
                    t0 = time.perf_counter()
                    rows = ex.map(evaluate_part, tasks)
                    best = min(best, time.perf_counter() - t0)
                ray.shutdown()
            if reference is None:
                reference = rows
            elif rows != reference:
                diff = [(a, b) for pa, pb in zip(reference, rows) for a, b in zip(pa, pb) if a != b]
                mismatches[label] = len(diff)
                print(f"WARNING {label}: {len(diff)} of {sum(map(len, rows))} rows differ from the in-process "
                      f"grid, e.g. {diff[:2]}")
        timings[label] = best
        print(f"{label:<22} {best:7.2f} s")
    speedup = timings["Ray, 1 worker"] / timings["Ray, 2 workers"]
    same = "rows identical in all three" if not mismatches else f"rows differing: {mismatches}"
    print(f"speed-up, 2 workers vs 1: {speedup:.2f}x ({same}); load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs (other processes distort the figure)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"configs": n_configs, "questions": args.questions, "tasks": len(tasks),
                               "split": args.split, "embedders": base["embedder"], "seconds": timings,
                               "speedup_2_vs_1": speedup, "mismatched_rows": mismatches, "cpus": os.cpu_count(), "load_average_after": os.getloadavg(), "machine": platform.platform()},
                              indent=1))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
