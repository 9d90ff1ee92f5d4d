"""Strategy overhead: microseconds per ask+tell at 100, 10,000 and 1,000,000 configurations.

    python benchmarks/overhead.py [--steps 2000] [--tpe-steps 300] [--out bench_out/overhead.json]

Rewards are synthetic (an additive surface plus noise), so this measures only the
strategy's own cost. Optuna's TPE runs in the same process for comparison; its cost
grows with the number of trials rather than with the size of the space.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from autorag_hp import SearchSpace, list_strategies, make_strategy

SPACES = {100: (2, 10), 10_000: (4, 10), 1_000_000: (6, 10)}


def measure(name: str, space: SearchSpace, steps: int, seed: int = 0) -> float:
    s = make_strategy(name, space, seed=seed)
    rng = np.random.default_rng(seed)
    weights = [rng.random(size) for size in space.sizes]
    t0 = time.perf_counter()
    for _ in range(steps):
        c = s.ask()
        r = sum(w[space.value_index(n, c[n])] for w, n in zip(weights, space.names)) / len(weights)
        s.tell(c, r + rng.normal(0, 0.1))
    return (time.perf_counter() - t0) / steps * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--tpe-steps", type=int, default=300)
    # grid is a fixed order, and pareto-ts learns from per-question quality and tokens (its cost is in
    # benchmarks/pareto_benchmark.py): both are left out by default
    ap.add_argument("--strategies", default=",".join(n for n in list_strategies() if n not in ("grid", "pareto-ts")))
    ap.add_argument("--out", default="bench_out/overhead.json")
    args = ap.parse_args()
    names = args.strategies.split(",")
    results: dict[str, dict[str, float]] = {}
    print(f"{'strategy':<16}" + "".join(f"{n:>16,}" for n in SPACES) + "   (µs per ask+tell)")
    for name in names:
        row = {}
        for size, (k, v) in SPACES.items():
            space = SearchSpace({f"p{i}": list(range(v)) for i in range(k)})
            steps = args.tpe_steps if name == "tpe" else args.steps
            row[str(size)] = measure(name, space, steps)
        results[name] = row
        print(f"{name:<16}" + "".join(f"{row[str(s)]:>16.1f}" for s in SPACES), flush=True)
    if "tpe" in results:
        print("\nratio of TPE's cost to each strategy's (same run):")
        for name, row in results.items():
            if name != "tpe":
                print(f"{name:<16}" + "".join(f"{results['tpe'][str(s)] / row[str(s)]:>15.1f}x" for s in SPACES))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"steps": args.steps, "tpe_steps": args.tpe_steps, "us_per_ask_tell": results}, indent=1))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
