"""Issue #11 point 5: reach at 10% of grid calls what ``structured-tt`` reached at 20%.

An *arm* is a strategy spec run with a question-sampling mode and a number of questions per
pull, written ``SPEC@SAMPLING/bBATCH`` (``structured-tt@paired/b4``). Every arm is replayed
once per (table, seed) at the largest budget and read off at each smaller one
(:func:`autorag_hp.bench.run_one` with ``at_budgets``: a strategy never knows its budget, so
this is exactly what a run with the smaller budget ends with).

The bar (``BASELINE``): ``structured-tt`` as it was before issue #11 point 5, pinned
(``residual_tail=0``, ``iid`` sampling, 4 questions per pull), at 20% of grid calls. A candidate meets it on a table
family when, at 10%, its mean simple regret is <= the baseline's and its mean Recall@5 >= the
baseline's; the paired two-sided Wilcoxon signed-rank test over seeds
(:func:`autorag_hp.bench.wilcoxon`) says whether a difference is more than noise.

Two sets, never mixed (docs/strategies.md, "10% of grid calls"):

* ``--set tuning`` (choosing): synthetic ``easy``, ``medium``, ``hard`` and ``nonadditive``
  surfaces with seeds 1000.. (a surface per seed) and the shipped default grid with
  question-draw seeds 1000..;
* ``--set evaluation`` (reporting): the SQuAD grid (``evals/grids/squad.csv``), the shipped
  default grid and the wrapped LangChain stack grid (``bench_out/langchain_work2/grid.csv``)
  with seeds 0-9, and the synthetic ``nonadditive`` surfaces with seeds 0-9 for the check that
  a new default loses nothing significant there against the old one.

Rule for the default (``RULE``, applied by :func:`choose` to the tuning set only). A candidate
qualifies when (1) on the tuning set's real grid (the shipped default grid, question seeds
1000..) it meets the bar by its means, and (2) no paired two-sided Wilcoxon test (p < 0.05)
finds it worse than the old default at the same budget (10% and 20%), in simple regret or
Recall@5, on any tuning family, nor over all tuning (family, seed) pairs pooled. The qualifying
candidate with the lowest simple regret at 10%, averaged over the families, wins (ties: higher
Recall@5, then fewer changes from the old default); if none qualifies, the old default stays.
A first version of the rule asked for the bar's means on *every* family; on the synthetic
surfaces (50 questions, 384 configurations) even the old default read at 10% against itself
at 20% swings by more than the effects between arms at 5 seeds, so nothing could qualify and
it was replaced by (1) + (2) before the default grid's tuning runs were read.

    python evals/ten_percent.py --set tuning --families easy,medium,hard,nonadditive --seeds 10 \
        --out evals/results/ten_percent_tuning_synthetic.json
    python evals/ten_percent.py --set tuning --families default-grid --seeds 20 \
        --out evals/results/ten_percent_tuning_default_grid.json
    python evals/ten_percent.py --set tuning --from-runs evals/results/ten_percent_tuning_synthetic.json \
        evals/results/ten_percent_tuning_default_grid.json           # the rule
    python evals/ten_percent.py --set evaluation --seeds 10         # the bar and the chosen arm

Writes ``evals/results/ten_percent_<set>.json``.

``structured-tt``'s ``population`` option defaults to ``"auto"`` (the finite-population correction,
N / batch pulls per pass under paired sampling; docs/strategies.md, "Finite-population
correction"). The stored tuning runs of the ``@paired`` arms above predate it (``population=0``);
rerun today the same labels mean ``population="auto"``: add ``:population=0`` to reproduce them.
Likewise ``batch_effects`` (the question-batch offsets, ``structured-tt``'s default since it won
on the tuning set; same docs, "Question-batch offsets"): the stored ``@paired`` runs made before
it have it off; add ``:batch_effects=false`` to reproduce them. The rule over every stored tuning
run, which chose ``batch_effects`` with 2 questions per pull, is ``evals/results/ten_percent_tuning_fx.json``
(``ten_percent_tuning.json`` keeps the first choice, which ``--set evaluation`` without ``--arms`` reads).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import functools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autorag_hp.bench import (  # noqa: E402
    ReplayTable,
    default_grid_path,
    load_grid,
    make_surface,
    run_one,
    wilcoxon,
    write_results,
)
from autorag_hp.objective import SAMPLING_MODES  # noqa: E402

ALPHA = 0.05
# structured-tt as it was before point 5, pinned (CALIBRATION's residual_tail, 0 then, may become its default)
TT = "structured-tt:residual_tail=0"
BASELINE = f"{TT}@iid/b4"  # the bar: that structured-tt at 20% of grid calls
BASELINE_BUDGET = 0.2
TARGET_BUDGET = 0.1
OLD_DEFAULT = BASELINE  # the same arm read at 10%: what `tune` did before point 5
CANDIDATES = [
    BASELINE,
    f"{TT}@paired/b2",
    f"{TT}@paired/b4",
    f"{TT}@paired/b8",
    f"{TT}:residual_scale=0.05@paired/b4",
    f"{TT}:residual_scale=0.05@paired/b2",
    "structured-tt:residual_tail=0.02@paired/b4",
    "structured-tt:residual_tail=0.05@paired/b4",
    f"{TT}:population=auto@paired/b4",  # finite-population correction (pulls per pass = N / batch)
    # + the question-batch offsets of paired sampling (docs/strategies.md, "Question-batch offsets")
    f"{TT}:population=auto:batch_effects=true@paired/b4",
    f"{TT}:population=auto:batch_effects=true@paired/b2",
]
RULE = ("a candidate qualifies if (1) at 10% of grid calls on the tuning set's real grid (the shipped default grid, "
        "question seeds 1000..) its mean simple regret is <= and its mean Recall@5 >= the bar's (structured-tt, iid, "
        "4 questions per pull, at 20%), and (2) no paired two-sided Wilcoxon test over seeds (p < "
        f"{ALPHA}) finds it worse than the old default (the same arm as the bar) at the same budget, 10% or 20%, in "
        "simple regret or Recall@5, on any tuning family or over all tuning (family, seed) pairs pooled; the "
        "qualifying candidate with the lowest simple regret at 10%, averaged over the families, wins (then higher "
        "Recall@5, then fewer changes from the old default); none qualifying: the old default stays")
REAL_TUNING_FAMILY = "default-grid"

SYNTHETIC = ("easy", "medium", "hard", "nonadditive")
SETS = {
    "tuning": {"families": [*SYNTHETIC, "default-grid"], "first_seed": 1000},
    "evaluation": {"families": ["squad", "default-grid", "langchain", "nonadditive"], "first_seed": 0},
}
REAL = {
    "default-grid": None,  # the shipped grid: autorag_hp/data/default_grid.csv
    "squad": "evals/grids/squad.csv",
    "langchain": "bench_out/langchain_work2/grid.csv",
}
REGENERATE = {
    "squad": "autorag-hp grid --data ../shared/data/squad2-dev-5-articles.json --space pipelines/squad_space.toml "
             "--out evals/grids/squad.csv",
    "langchain": "python benchmarks/langchain_stack.py --work bench_out/langchain_work2 --strategies structured-tt "
                 "--seeds 1 (it writes grid.csv + grid.json there, then makes one tuning run)",
}


def parse_arm(arm: str) -> tuple[str, str, int]:
    """``SPEC@SAMPLING/bBATCH`` -> (spec, sampling, batch)."""
    try:
        spec, rest = arm.rsplit("@", 1)
        sampling, b = rest.split("/b")
        batch = int(b)
    except ValueError:
        raise ValueError(f"arm must be written SPEC@SAMPLING/bBATCH (e.g. structured-tt@paired/b4), got {arm!r}") from None
    if sampling not in SAMPLING_MODES or batch < 1 or not spec:
        raise ValueError(f"arm {arm!r}: sampling must be iid or paired and the batch a positive integer")
    return spec, sampling, batch


@functools.lru_cache(maxsize=None)
def _real(family: str) -> ReplayTable:
    path = default_grid_path() if REAL[family] is None else ROOT / REAL[family]
    if not path.is_file():
        raise SystemExit(f"{family}: {path} is missing; regenerate it with: {REGENERATE[family]}")
    return load_grid(path).table


def table_of(family: str, seed: int) -> ReplayTable:
    """A synthetic family's surface for ``seed`` (a new surface per seed), or a real grid (seed = question draws)."""
    return make_surface(family, seed=seed) if family in SYNTHETIC else _real(family)


def run_arm(family: str, arm: str, seed: int, budgets: tuple[float, ...]) -> list[dict[str, Any]]:
    spec, sampling, batch = parse_arm(arm)
    run = run_one(table_of(family, seed), spec, seed, budget=max(budgets), batch=batch, checkpoints=1,
                  at_budgets=budgets, sampling=sampling)
    return [{"family": family, "arm": arm, "seed": seed, "budget": a["budget"], "simple_regret": a["simple_regret"],
             "recall@5": a["recall@5"], "recall@1": a["recall@1"], "calls_share": a["calls_share"],
             "seconds": run["seconds"]} for a in run["at_budgets"]]


def _values(rows: list[dict[str, Any]], family: str, arm: str, budget: float, metric: str) -> dict[int, float]:
    return {r["seed"]: r[metric] for r in rows
            if r["family"] == family and r["arm"] == arm and abs(r["budget"] - budget) < 1e-9}


def compare(rows: list[dict[str, Any]], family: str, arm: str, budget: float, ref: str, ref_budget: float) -> dict[str, Any]:
    """Means of ``arm`` at ``budget`` and ``ref`` at ``ref_budget`` on ``family``, with paired two-sided
    Wilcoxon p-values over the seeds both have."""
    out: dict[str, Any] = {"family": family, "arm": arm, "budget": budget, "ref": ref, "ref_budget": ref_budget}
    for m in ("simple_regret", "recall@5"):
        a, b = _values(rows, family, arm, budget, m), _values(rows, family, ref, ref_budget, m)
        seeds = sorted(set(a) & set(b))
        d = np.array([a[s] - b[s] for s in seeds], dtype=float)
        out[m] = float(np.mean([a[s] for s in seeds])) if seeds else float("nan")
        out["ref_" + m] = float(np.mean([b[s] for s in seeds])) if seeds else float("nan")
        out["p_" + m] = wilcoxon(d) if len(seeds) else float("nan")
        out["seeds"] = len(seeds)
    out["meets_bar"] = bool(out["simple_regret"] <= out["ref_simple_regret"] + 1e-12
                            and out["recall@5"] >= out["ref_recall@5"] - 1e-12)
    worse = (out["simple_regret"] > out["ref_simple_regret"] and out["p_simple_regret"] < ALPHA) or \
            (out["recall@5"] < out["ref_recall@5"] and out["p_recall@5"] < ALPHA)
    out["significantly_worse"] = bool(worse)
    return out


def _changes(arm: str) -> int:
    spec, sampling, batch = parse_arm(arm)
    old_spec, old_sampling, old_batch = parse_arm(OLD_DEFAULT)
    return (spec != old_spec) + (sampling != old_sampling) + (batch != old_batch)


def pooled(rows: list[dict[str, Any]], arm: str, budget: float, ref: str = OLD_DEFAULT) -> dict[str, Any]:
    """``arm`` against ``ref`` over every (family, seed) pair both have at ``budget``: mean difference and
    paired two-sided Wilcoxon p-value of simple regret and Recall@5, and whether ``arm`` is significantly worse."""
    out: dict[str, Any] = {"budget": budget, "ref": ref}
    worse = False
    for m, higher in (("simple_regret", False), ("recall@5", True)):
        mine = {(r["family"], r["seed"]): r[m] for r in rows if r["arm"] == arm and abs(r["budget"] - budget) < 1e-9}
        base = {(r["family"], r["seed"]): r[m] for r in rows if r["arm"] == ref and abs(r["budget"] - budget) < 1e-9}
        keys = sorted(set(mine) & set(base))
        d = np.array([mine[k] - base[k] for k in keys], dtype=float)
        p = wilcoxon(d) if len(keys) else float("nan")
        diff = float(d.mean()) if len(keys) else 0.0
        out[m], out["ref_" + m] = (float(np.mean([mine[k] for k in keys])) if keys else float("nan"),
                                   float(np.mean([base[k] for k in keys])) if keys else float("nan"))
        out[m + "_diff"], out["p_" + m], out["pairs"] = diff, p, len(keys)
        worse = worse or (p < ALPHA and (diff < 0 if higher else diff > 0))
    out["significantly_worse"] = bool(worse)
    return out


def choose(rows: list[dict[str, Any]], families: list[str], candidates: list[str]) -> dict[str, Any]:
    """Apply :data:`RULE` to tuning-set runs."""
    table = []
    for arm in candidates:
        bar = [compare(rows, f, arm, TARGET_BUDGET, BASELINE, BASELINE_BUDGET) for f in families]
        old = [compare(rows, f, arm, b, OLD_DEFAULT, b) for f in families for b in (TARGET_BUDGET, BASELINE_BUDGET)]
        pooled_old = [pooled(rows, arm, b) for b in (TARGET_BUDGET, BASELINE_BUDGET)]
        real = [c for c in bar if c["family"] == REAL_TUNING_FAMILY]
        losses = [] if arm == OLD_DEFAULT else (
            [f"{c['family']} at {c['budget']:.0%}" for c in old if c["significantly_worse"]]
            + [f"pooled at {p['budget']:.0%}" for p in pooled_old if p["significantly_worse"]])
        table.append({
            "arm": arm,
            "simple_regret": float(np.mean([c["simple_regret"] for c in bar])),
            "recall@5": float(np.mean([c["recall@5"] for c in bar])),
            "meets_bar_on_real_grid": bool(real) and all(c["meets_bar"] for c in real),
            "meets_bar_on": [c["family"] for c in bar if c["meets_bar"]],
            "worse_than_old_default": losses,
            "vs_bar": bar, "vs_old_default": old, "pooled_vs_old_default": pooled_old,
        })
    ok = [t for t in table if t["meets_bar_on_real_grid"] and not t["worse_than_old_default"]]
    winner = min(ok, key=lambda t: (t["simple_regret"], -t["recall@5"], _changes(t["arm"])))["arm"] if ok else OLD_DEFAULT
    return {"rule": RULE, "chosen": winner, "qualifying": [t["arm"] for t in ok], "candidates": table}

def _fmt_row(c: dict[str, Any]) -> str:
    return (f"  {c['family']:<13} {c['arm']:<34} {c['simple_regret']:>8.4f} vs {c['ref_simple_regret']:<8.4f} "
            f"(p={c['p_simple_regret']:.3f})  R@5 {c['recall@5']:.2f} vs {c['ref_recall@5']:.2f} "
            f"(p={c['p_recall@5']:.3f})  {'meets' if c['meets_bar'] else 'misses'}"
            f"{'  WORSE' if c['significantly_worse'] else ''}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", choices=tuple(SETS), required=True)
    ap.add_argument("--seeds", type=int, default=None, help="seeds per family (default: tuning 5, evaluation 10)")
    ap.add_argument("--first-seed", type=int, default=None, help="default: tuning 1000, evaluation 0")
    ap.add_argument("--families", default=None, help="comma-separated (default: the set's)")
    ap.add_argument("--arms", default=None,
                    help="comma-separated SPEC@SAMPLING/bBATCH (tuning default: CANDIDATES; evaluation default: the "
                         "baseline and the arm chosen in evals/results/ten_percent_tuning.json)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--from-runs", nargs="*", default=(), help="re-apply the rule / tables to stored runs")
    ap.add_argument("--pooled", default=None, metavar="ARM,REF",
                    help="also print ARM against REF over every (family, seed) pair, per family and pooled")
    args = ap.parse_args(argv)

    s = SETS[args.set]
    first = s["first_seed"] if args.first_seed is None else args.first_seed
    if args.set == "tuning" and first < 1000:
        raise SystemExit(f"--first-seed must be >= 1000 for the tuning set (seeds 0-999 are the evaluation set's), got {first}")
    n_seeds = args.seeds or (5 if args.set == "tuning" else 10)
    seeds = list(range(first, first + n_seeds))
    families = args.families.split(",") if args.families else list(s["families"])
    out = Path(args.out) if args.out else ROOT / "evals" / "results" / f"ten_percent_{args.set}.json"
    chosen_from = None
    if args.arms:
        arms = [a for a in args.arms.split(",") if a]
    elif args.set == "tuning":
        arms = list(CANDIDATES)
    else:
        tuned = ROOT / "evals" / "results" / "ten_percent_tuning.json"
        chosen_from = json.loads(tuned.read_text())["choice"]["chosen"]
        arms = list(dict.fromkeys([BASELINE, chosen_from]))
    for a in arms:
        parse_arm(a)
    budgets = (TARGET_BUDGET, BASELINE_BUDGET)
    t0 = time.time()
    rows: list[dict[str, Any]] = []
    if args.from_runs:
        for path in args.from_runs:
            rows.extend(json.loads(Path(path).read_text())["runs"])
        families = [f for f in families if any(r["family"] == f for r in rows)]
        arms = [a for a in arms if any(r["arm"] == a for r in rows)]
    else:
        jobs = [(f, a, seed) for f in families for a in arms for seed in seeds]
        for i, (f, a, seed) in enumerate(jobs, start=1):
            rows.extend(run_arm(f, a, seed, budgets))
            if i % 20 == 0 or i == len(jobs):
                print(f"runs {i}/{len(jobs)} ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    elapsed = time.time() - t0

    payload: dict[str, Any] = {
        "command": "python evals/ten_percent.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "set": args.set, "families": families, "seeds": seeds, "arms": arms, "baseline": BASELINE,
        "baseline_budget": BASELINE_BUDGET, "target_budget": TARGET_BUDGET, "seconds": elapsed,
        "load_average": os.getloadavg(),
    }
    print(f"\nbar: {BASELINE} at {BASELINE_BUDGET:.0%}; arms at {TARGET_BUDGET:.0%} "
          f"({args.set} set, seeds {seeds[0]}-{seeds[-1]})")
    bar = [compare(rows, f, a, TARGET_BUDGET, BASELINE, BASELINE_BUDGET) for a in arms for f in families]
    old = [compare(rows, f, a, b, OLD_DEFAULT, b) for a in arms if a != OLD_DEFAULT for b in budgets
           for f in families]
    for c in bar:
        print(_fmt_row(c))
    print(f"\nagainst the old default ({OLD_DEFAULT}) at the same budget:")
    for c in old:
        print(f"  [{c['budget']:.0%}]" + _fmt_row(c))
    payload.update(vs_bar=bar, vs_old_default=old)
    if args.pooled:
        arm, ref = args.pooled.split(",")
        payload["pooled"] = []
        for b in budgets:
            for f in [*families, None]:
                part = rows if f is None else [r for r in rows if r["family"] == f]
                c = {"family": f or "pooled", **pooled(part, arm, b, ref)}
                payload["pooled"].append(c)
                print(f"  [{b:.0%}] {c['family']:<13} {arm} vs {ref}: simple regret {c['simple_regret']:.4f} vs "
                      f"{c['ref_simple_regret']:.4f} (p={c['p_simple_regret']:.3f}), Recall@5 {c['recall@5']:.2f} vs "
                      f"{c['ref_recall@5']:.2f} (p={c['p_recall@5']:.3f}), {c['pairs']} pairs")
    if args.set == "tuning":
        choice = choose(rows, families, arms)
        payload["choice"] = choice
        print(f"\nrule: {RULE}")
        print(f"\n{'arm':<46} {'regret@10%':>10} {'R@5@10%':>8}  bar on the real grid  losses vs the old default")
        for t in choice["candidates"]:
            print(f"{t['arm']:<46} {t['simple_regret']:>10.4f} {t['recall@5']:>8.2f}  "
                  f"{'met' if t['meets_bar_on_real_grid'] else 'missed':<20}  {', '.join(t['worse_than_old_default']) or '-'}")
        print(f"qualifying: {choice['qualifying']}\nchosen: {choice['chosen']}")
    else:
        payload["evaluated_choice"] = chosen_from
    if args.from_runs:  # the runs stay in the files they came from
        payload["runs_from"] = [str(p) for p in args.from_runs]
    else:
        payload["runs"] = rows
    print(f"\n{len(rows)} rows in {elapsed:.0f} s (load average {os.getloadavg()[0]:.1f})")
    write_results(out, payload)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
