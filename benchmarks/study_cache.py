"""A wrapped stack's outcome cache: stack calls and time of the same `Study` run twice.

    python benchmarks/study_cache.py [--data default] [--budget 0.2] [--batch 8] [--out bench_out/study_cache.json]

The "stack" is the reference pipeline called through a plain function (so the library sees
an opaque `FunctionPipeline`, as it sees a LangChain or Haystack stack). Run 1 starts from an
empty outcome cache (grid, then tuning); run 2 is the same study on the warm cache and must
make zero stack calls. "library" is everything but the time spent inside the stack function.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from autorag_hp import Study
from autorag_hp.bench import write_results
from autorag_hp.pipeline import FunctionPipeline, ReferencePipeline, default_space, load_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="default")
    ap.add_argument("--budget", default="0.2")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--strategy", default="structured-tt")
    ap.add_argument("--out", default="bench_out/study_cache.json")
    args = ap.parse_args()

    dataset = load_dataset(args.data)
    space = default_space()
    reference = ReferencePipeline.from_space(dataset, space)
    stats = {"calls": 0, "questions": 0, "seconds": 0.0}

    def stack(config, questions):
        t0 = time.perf_counter()
        out = reference.run(config, questions)
        stats["calls"] += 1
        stats["questions"] += len(questions)
        stats["seconds"] += time.perf_counter() - t0
        return out

    runs = []
    with tempfile.TemporaryDirectory() as cache:
        for label in ("cold cache", "warm cache"):
            stats.update(calls=0, questions=0, seconds=0.0)
            pipe = FunctionPipeline(stack, batch=True, pass_question=True, t_max=reference.t_max,
                                    fingerprint="reference-through-a-function")
            t0 = time.perf_counter()
            result = Study(pipe, dataset, space, strategy=args.strategy, budget=args.budget, batch=args.batch,
                           cache=cache).run()
            total = time.perf_counter() - t0
            s = result.summary
            row = {"run": label, "stack_calls": stats["calls"], "stack_questions": stats["questions"],
                   "stack_seconds": round(stats["seconds"], 3), "total_seconds": round(total, 3),
                   "grid_seconds": s["seconds"]["grid"], "tune_seconds": s["seconds"]["tune"],
                   "pulls": s["pulls"], "calls_used": s["calls_used"], "budget_calls": s["budget_calls"],
                   "simple_regret": s["regret"]["simple_regret"], "cache_hits": s["cache"]["hits"]}
            runs.append(row)
            print(f"{label}: {row['stack_calls']} stack calls ({row['stack_questions']} questions, "
                  f"{row['stack_seconds']:.1f} s in the stack), {row['total_seconds']:.1f} s in all; "
                  f"{row['pulls']} pulls, {row['calls_used']}/{row['budget_calls']} calls, "
                  f"simple regret {row['simple_regret']:.4f}")
    payload = {"command": "python benchmarks/study_cache.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"),
        "configurations": len(space), "questions": len(dataset), "runs": runs}
    write_results(args.out, payload)
    print(args.out)


if __name__ == "__main__":
    main()
