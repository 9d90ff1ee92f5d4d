"""Issue #11 point 1: why a strategy misses the needles of the ``nonadditive`` surfaces.

For each seed, one run at ``--budget`` of grid search's calls: how many configurations the strategy
pulled, how often it pulled the best configuration (a needle: its knob values predict a
below-median value), and where ``best()`` ranks it.

    python evals/needle_diagnostic.py --seeds 5        # ~1 min

Writes ``evals/results/needle_diagnostic.json`` and prints one line per strategy.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autorag_hp.bench import make_surface  # noqa: E402
from autorag_hp.strategies import make_strategy, parse_strategy_spec  # noqa: E402
from autorag_hp.tuner import tune  # noqa: E402


def diagnose(spec_text: str, seed: int, budget: float, batch: int) -> dict[str, Any]:
    table = make_surface("nonadditive", seed=seed)
    best = int(np.argmax(table.means))
    spec = parse_strategy_spec(spec_text)
    strategy = make_strategy(spec.name, table.space, seed=seed, **dict(spec.options))
    counts = np.zeros(len(table.space), dtype=int)

    def count(rec) -> None:
        counts[table.space.index(rec.config)] += 1

    tune(strategy, table.objective(batch=batch, seed=seed), budget_calls=int(budget * table.grid_calls),
         calls_per_pull=batch, callback=count)
    ranked = [table.space.index(r.config) for r in strategy.best(len(table.space))]
    return {"strategy": spec_text, "seed": seed, "configs_pulled": int((counts > 0).sum()),
            "needle_pulls": int(counts[best]), "needle_rank": ranked.index(best) + 1 if best in ranked else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget", type=float, default=0.2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--strategies", default="structured-tt,structured-ts,flat-ts")
    ap.add_argument("--out", default=str(ROOT / "evals" / "results" / "needle_diagnostic.json"))
    args = ap.parse_args(argv)
    rows = [diagnose(s, seed, args.budget, args.batch) for s in args.strategies.split(",") if s
            for seed in range(args.seeds)]
    for s in dict.fromkeys(r["strategy"] for r in rows):
        mine = [r for r in rows if r["strategy"] == s]
        print(f"{s:<40} configurations pulled {[r['configs_pulled'] for r in mine]}, "
              f"pulls of the needle {[r['needle_pulls'] for r in mine]}, its rank in best() {[r['needle_rank'] for r in mine]}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": "python evals/needle_diagnostic.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                               "budget": args.budget, "batch": args.batch, "rows": rows}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
