"""Drift: the reward surface changes halfway (the paper's GPT-3.5 -> GPT-4 switch).

A replayed grid: every configuration of a 75-point space has a per-phase accuracy
(synthesised here, seeded); a pull returns 1 with that probability. After
``--steps/2`` pulls the surface changes: accuracy rises overall and the best
configuration moves toward more context (more chunks, less compression), as a
stronger model uses more context. Compared over ``--seeds`` seeds, with the
cumulative regret (sum of best mean - served mean) of each variant:

* continue: phase 2 warm-starts from phase 1's journal (``WarmStart(mode="continue")``);
* reset: phase 2 starts fresh (``WarmStart(mode="reset")``);
* stationary vs discounted (gamma) vs sliding-window statistics.

    python benchmarks/drift_simulation.py               # 10 seeds, JSON to bench_out/
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autorag_hp.online import Discounted, OnlineTuner, Persistence, SlidingWindow, Stationary, WarmStart  # noqa: E402
from autorag_hp.space import SearchSpace  # noqa: E402

SPACE = SearchSpace({
    "top_k": [1, 3, 5, 7, 10],
    "compression": [0.2, 0.4, 0.6, 0.8, 1.0],
    "embedder": ["bm25", "minilm", "e5"],
})


def surfaces(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-configuration accuracy before and after the switch (index order of SPACE)."""
    rng = np.random.default_rng(10_000 + seed)
    emb_a = {"bm25": 0.0, "minilm": 0.04, "e5": 0.07}
    emb_b = {"bm25": 0.02, "minilm": 0.05, "e5": 0.06}
    a, b = np.zeros(len(SPACE)), np.zeros(len(SPACE))
    for i in range(len(SPACE)):
        c = SPACE.config(i)
        k, comp = c["top_k"], c["compression"]
        # weaker model: best with few chunks, compressed (long contexts confuse it)
        a[i] = 0.45 + emb_a[c["embedder"]] - 0.012 * (k - 3) ** 2 - 0.25 * (comp - 0.4) ** 2
        # stronger model: uses more context, little compression
        b[i] = 0.62 + emb_b[c["embedder"]] - 0.006 * (k - 7) ** 2 - 0.25 * (comp - 0.8) ** 2
    a += rng.normal(0, 0.01, len(SPACE))
    b += rng.normal(0, 0.01, len(SPACE))
    return np.clip(a, 0.02, 0.98), np.clip(b, 0.02, 0.98)


VARIANTS = {
    "stationary / continue": (Stationary(), "continue"),
    "stationary / reset": (Stationary(), "reset"),
    "discounted 0.99 / continue": (Discounted(0.99), "continue"),
    "discounted 0.99 / reset": (Discounted(0.99), "reset"),
    "window 300 / continue": (SlidingWindow(300), "continue"),
}


def run_phase(tuner: OnlineTuner, means: np.ndarray, steps: int, rng: np.random.Generator) -> np.ndarray:
    regret = np.empty(steps)
    best = means.max()
    for t in range(steps):
        s = tuner.suggest()
        i = SPACE.index(s.config)
        tuner.feedback(s.id, float(rng.random() < means[i]))
        regret[t] = best - means[i]
    return regret


def simulate(strategy: str, rule, mode: str, seed: int, steps: int, workdir: Path) -> np.ndarray:
    a, b = surfaces(seed)
    rng = np.random.default_rng(seed)
    journal = workdir / f"{strategy}-{seed}-{id(rule)}-{mode}.jsonl"
    journal.unlink(missing_ok=True)
    Path(str(journal) + ".snapshot").unlink(missing_ok=True)
    half = steps // 2
    with OnlineTuner(SPACE, strategy=strategy, stats=rule, seed=seed,
                     persistence=Persistence(journal, fsync="never", snapshot_every=0)) as phase1:
        r1 = run_phase(phase1, a, half, rng)
    phase2 = OnlineTuner(SPACE, strategy=strategy, stats=rule, seed=seed + 1, warm_start=WarmStart(str(journal), mode))
    r2 = run_phase(phase2, b, steps - half, rng)
    return np.concatenate([r1, r2])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--steps", type=int, default=2_000, help="total pulls; the surface changes at steps/2")
    ap.add_argument("--strategies", default="hier-ts,flat-ts")
    ap.add_argument("--out", default=str(ROOT / "bench_out" / "drift_simulation.json"))
    args = ap.parse_args()
    half = args.steps // 2
    result: dict = {"command": " ".join(sys.argv), "steps": args.steps, "switch_at": half, "seeds": args.seeds,
                    "configs": len(SPACE), "rows": []}
    t0 = time.perf_counter()
    print(f"{'strategy':9s} {'statistics / phase 2 start':28s} {'regret total':>18s} {'regret after switch':>20s} "
          f"{'last 200 pulls':>16s}")
    with tempfile.TemporaryDirectory() as d:
        for strategy in args.strategies.split(","):
            for name, (rule, mode) in VARIANTS.items():
                runs = np.stack([simulate(strategy, rule, mode, s, args.steps, Path(d)) for s in range(args.seeds)])
                total = runs.sum(axis=1)
                after = runs[:, half:].sum(axis=1)
                tail = runs[:, -200:].sum(axis=1)
                row = {"strategy": strategy, "variant": name,
                       "regret_total_mean": round(float(total.mean()), 2), "regret_total_std": round(float(total.std()), 2),
                       "regret_after_switch_mean": round(float(after.mean()), 2),
                       "regret_after_switch_std": round(float(after.std()), 2),
                       "regret_last200_mean": round(float(tail.mean()), 2),
                       "curve_mean": [round(float(x), 3) for x in runs.cumsum(axis=1).mean(axis=0)[::50]]}
                result["rows"].append(row)
                print(f"{strategy:9s} {name:28s} {total.mean():9.1f} +- {total.std():5.1f} "
                      f"{after.mean():11.1f} +- {after.std():5.1f} {tail.mean():16.1f}", flush=True)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out} ({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
