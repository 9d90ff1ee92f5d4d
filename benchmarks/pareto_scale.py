"""How ``pareto-ts`` scales with the size of the space: seconds per pull, ``best(w)`` and
``pareto_set()``, and the process's peak memory.

A space of ``--sizes`` knob values (all combinations, up to the strategy's 250,000), random
per-question outcomes (quality 0/1 with probability 0.7, tokens uniform on 100-900, 4
questions a pull), ``--pulls`` pulls. The figures are the strategy's own work, no pipeline.
``peak_rss_mb`` is the process's high-water mark after each step (Linux ``ru_maxrss``), so
a step's peak shows only if it is above the steps before.

    python benchmarks/pareto_scale.py                         # 12^5 = 248,832 configurations
    python benchmarks/pareto_scale.py --sizes 6,6,6,6,6 --out bench_out/pareto_scale_small.json
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autorag_hp._threads import one_blas_thread  # noqa: E402
from autorag_hp.space import SearchSpace  # noqa: E402
from autorag_hp.strategies import make_strategy  # noqa: E402


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@one_blas_thread
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="12,12,12,12,12", help="comma-separated number of values per knob")
    ap.add_argument("--pulls", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench_out" / "pareto_scale.json"))
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    space = SearchSpace({f"k{i}": list(range(s)) for i, s in enumerate(sizes)})
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    s = make_strategy("pareto-ts", space, seed=args.seed, t_max=1000.0)
    result = {"configurations": len(space), "sizes": sizes, "pulls": args.pulls,
              "construct_s": round(time.perf_counter() - t0, 3), "peak_rss_mb": {"construct": round(_peak_mb())}}
    t0 = time.perf_counter()
    for _ in range(args.pulls):
        p = s.propose()
        s.commit(p)
        s.tell_objectives(space.config_from_coords(p.coords), quality=(rng.random(4) < 0.7).astype(float),
                          tokens=rng.uniform(100, 900, 4), tag=p.tag)
    result["seconds_per_pull"] = round((time.perf_counter() - t0) / args.pulls, 4)
    result["peak_rss_mb"]["pulls"] = round(_peak_mb())
    for name, call in (("best", lambda: s.best(3, w=0.7)), ("pareto_set", s.pareto_set)):
        t0 = time.perf_counter()
        call()
        result[f"{name}_s"] = round(time.perf_counter() - t0, 3)
        result["peak_rss_mb"][name] = round(_peak_mb())
    print(f"{len(space):,} configurations: {result['seconds_per_pull']} s a pull, best() {result['best_s']} s, "
          f"pareto_set() {result['pareto_set_s']} s; peak RSS {result['peak_rss_mb']} MB")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
