"""Issue #11 point 4: where the hierarchical strategies' ``best(5)`` intervals miss, and why.

Replays the runs of ``evals/calibration.py`` (same tables, seeds, checkpoints, 4 questions per
pull, ``iid``) and reports, per strategy:

* coverage of ``best(5)`` entries by the entry's pull count, with the share of entries whose true
  mean lies *below* the interval (the winner's curse) and *above* it;
* the group estimate's error: for every pulled configuration at every checkpoint, true mean minus
  its group estimate from the other configurations (``_Hierarchical._group_view``), with each
  configuration's own mean weighted by its pulls (what the lower-level arm tables do) and by the
  random-effects weight ``n / (sigma^2 + n tau2)`` that the interval uses (tau2 at the posterior
  mean of ``_spread_posterior``), by the configuration's pull count.

    python evals/hier_interval_diagnostic.py --first-seed 300 --seeds 15     # development seeds

Writes ``evals/results/hier_interval_diagnostic.json`` (``--out``) and prints the tables. On code
without ``_spread_posterior`` (the two-component interval, commit 44a20a2) it reports coverage only.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "evals"))

from calibration import CHECKPOINTS, REAL, SYNTHETIC, TOP, _make, _table  # noqa: E402

from autorag_hp.tuner import tune  # noqa: E402

STRATEGIES = ["hier-ucb", "hier-ucb:alpha_upper=1.5:alpha_lower=0.5", "hier-ts"]
PULL_BINS = ((1, 1), (2, 3), (4, 7), (8, 15), (16, 40), (41, 10**9))


def _bin(n: float) -> str:
    for lo, hi in PULL_BINS:
        if lo <= n <= hi:
            return str(lo) if lo == hi else f"{lo}-{hi}" if hi < 10**9 else f">{lo - 1}"
    return "0"


def _run(bucket: str, spec: str, seed: int, batch: int, marks: tuple[float, ...]) -> tuple[list, list]:
    table = _table(bucket, seed)
    truth = np.asarray(table.truth().means, dtype=float)
    s = _make(spec, table, seed, batch, "iid")
    at = {max(1, int(m * table.grid_calls) // batch): m for m in marks}
    entries: list[dict[str, Any]] = []
    groups: list[dict[str, Any]] = []
    n = [0]

    def on_pull(_rec) -> None:
        n[0] += 1
        if n[0] not in at:
            return
        for r in s.best(TOP):
            true = float(truth[table.space.index(r.config)])
            entries.append({"pulls": r.pulls, "covered": r.ci_low <= true <= r.ci_high,
                            "below": true < r.ci_low, "above": true > r.ci_high})
        if not hasattr(s, "_spread_posterior"):  # the code before the random-effects group estimate
            return
        items = list(s.stats.items())
        coords = np.array([c for c, _ in items], dtype=np.int64)
        cnt = np.array([v[0] for _, v in items], dtype=float)
        mean = np.array([v[1] / v[0] for _, v in items], dtype=float)
        s2 = s.stats.noise_std() ** 2
        arms = s._arm_matrix(coords)
        grid, log_post = s._spread_posterior(arms, cnt, mean, s2, float(s.options.shrinkage))
        tau2 = float(np.exp(log_post) @ grid)
        true = truth[[table.space.index_of_coords(list(c)) for c in coords]]
        p_pull, _ = s._group_view(arms, cnt, mean, arms, cnt, mean)
        vote = cnt / (s2 + cnt * tau2)
        p_re, _ = s._group_view(arms, vote, mean, arms, vote, mean)
        for i in np.flatnonzero(np.isfinite(p_pull) & np.isfinite(p_re)):
            groups.append({"pulls": cnt[i], "err_pull": float(true[i] - p_pull[i]), "err_re": float(true[i] - p_re[i])})

    tune(s, table.objective(batch=batch, seed=seed), budget_calls=int(max(marks) * table.grid_calls),
         calls_per_pull=batch, callback=on_pull)
    return entries, groups


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=15)
    ap.add_argument("--first-seed", type=int, default=300)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--buckets", default=",".join([*SYNTHETIC, *REAL]))
    ap.add_argument("--out", default=str(ROOT / "evals" / "results" / "hier_interval_diagnostic.json"))
    args = ap.parse_args(argv)
    specs = [s for s in args.strategies.split(",") if s]
    buckets = [b for b in args.buckets.split(",") if b]
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    t0 = time.time()
    out: dict[str, Any] = {}
    for spec in specs:
        entries: list[dict[str, Any]] = []
        groups: list[dict[str, Any]] = []
        for b in buckets:
            for seed in seeds:
                e, g = _run(b, spec, seed, args.batch, CHECKPOINTS)
                entries += e
                groups += g
        by_pulls = {}
        for label in ["0", *(_bin(lo) for lo, _ in PULL_BINS)]:
            sel = [e for e in entries if _bin(e["pulls"]) == label]
            if sel:
                by_pulls[label] = {"entries": len(sel), "coverage": float(np.mean([e["covered"] for e in sel])),
                                   "below": float(np.mean([e["below"] for e in sel])),
                                   "above": float(np.mean([e["above"] for e in sel]))}
        group_error = {}
        for label in (_bin(lo) for lo, _ in PULL_BINS):
            sel = [g for g in groups if _bin(g["pulls"]) == label]
            if sel:
                group_error[label] = {"configurations": len(sel),
                                      "mean_err_pull_weighted": float(np.mean([g["err_pull"] for g in sel])),
                                      "mean_err_random_effects": float(np.mean([g["err_re"] for g in sel]))}
        out[spec] = {"coverage": float(np.mean([e["covered"] for e in entries])),
                     "below": float(np.mean([e["below"] for e in entries])),
                     "above": float(np.mean([e["above"] for e in entries])),
                     "by_pulls": by_pulls, "group_error": group_error,
                     "group_error_all": {"pull_weighted": float(np.mean([g["err_pull"] for g in groups])),
                                         "random_effects": float(np.mean([g["err_re"] for g in groups]))}
                     if groups else {}}
        print(f"\n`{spec}`: coverage {out[spec]['coverage']:.3f} (below {out[spec]['below']:.3f}, "
              f"above {out[spec]['above']:.3f})")
        print("| pulls | entries | coverage | below | above |\n|---|---|---|---|---|")
        for label, v in by_pulls.items():
            print(f"| {label} | {v['entries']} | {v['coverage']:.3f} | {v['below']:.3f} | {v['above']:.3f} |")
        if groups:
            print("| pulls | configurations | true - group estimate, pull-weighted | random-effects |\n|---|---|---|---|")
            for label, v in group_error.items():
                print(f"| {label} | {v['configurations']} | {v['mean_err_pull_weighted']:+.3f} | "
                      f"{v['mean_err_random_effects']:+.3f} |")
            a = out[spec]["group_error_all"]
            print(f"| all | {len(groups)} | {a['pull_weighted']:+.3f} | {a['random_effects']:+.3f} |")
    elapsed = time.time() - t0
    print(f"\n{len(specs) * len(buckets) * len(seeds)} runs in {elapsed:.0f} s (load average {os.getloadavg()[0]:.1f})")
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"command": "python evals/hier_interval_diagnostic.py " + " ".join(
        argv if argv is not None else sys.argv[1:]), "seeds": seeds, "buckets": buckets, "checkpoints": CHECKPOINTS,
        "batch": args.batch, "seconds": elapsed, "strategies": out}, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
