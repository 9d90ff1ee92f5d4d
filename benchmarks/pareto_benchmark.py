"""Does one multi-objective run find the cost-quality front, and answer best(w) for any w?

For each grid table (the shipped default grid and the SQuAD grid of ``autorag-hp grid``),
``--seeds`` seeds, a budget of ``--budget`` of grid search's calls:

* ``pareto-ts`` (random scalarisations of two structured models) runs once per seed, told
  each pull's mean quality and mean prompt tokens. Its front (non-dominated posterior means)
  is scored by **Pareto recall**: the share of the grid's Pareto configurations (true means
  of quality and tokens) it holds, a configuration within 0.005 of a Pareto one on quality
  and on tokens / t_max counting as found (a tie); and by its size and **precision** (the
  share of its configurations that are grid-front ones or ties of one), since recall alone
  does not charge for a larger set.
* For w in ``--weights``: the simple regret of ``best(w)`` of that same run, against the
  simple regret of a dedicated ``structured-tt`` run tuned for that w alone (same seed,
  budget and batch; reward ``w * quality - (1 - w) * tokens / t_max`` as in the grid).

Pulls replay the grid as :class:`autorag_hp.bench.TableObjective` does: with ``--sampling
iid`` a pull draws ``batch`` questions from the seed stream ("questions", seed, pull); with
``--sampling paired`` the k-th pull of every configuration takes the same questions
(:func:`autorag_hp.objective.paired_questions`), for the single-w runs too, and both
strategies' ``population="auto"`` becomes N / batch (:func:`autorag_hp.objective.paired_population`,
as ``tune`` and Study resolve it). The batch is the larger of 4 and budget / ``--max-pulls``.
``--oracle front|refute`` replaces ``pareto-ts``' proposals by an allocation that knows the
grid's front (a reference for what the estimator makes of the best-informed pulls, not a strategy).

    python benchmarks/pareto_benchmark.py                    # JSON to bench_out/pareto.json
    python benchmarks/pareto_benchmark.py --tables default --seeds 3
    # tune options on seeds other than the reported 0-9; also score {P(Pareto-optimal) >= p}
    python benchmarks/pareto_benchmark.py --first-seed 100 --seeds 20 --strategy pareto-ts:scalarisation=chebyshev
    python benchmarks/pareto_benchmark.py --first-seed 100 --no-single --prob-front 0.2,0.3
    python benchmarks/pareto_benchmark.py --sampling paired     # common random numbers, also for structured-tt
    # why the recall falls short: the front with the true quality / tokens, and grids on 20-60% of the questions
    python benchmarks/pareto_benchmark.py --no-single --diagnose --subsample-grid 0.2,0.4,0.6
    # what an allocation that knows the grid's front reaches with pareto-ts' estimator
    python benchmarks/pareto_benchmark.py --no-single --diagnose --sampling paired --oracle refute
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autorag_hp._seeds import generator  # noqa: E402
from autorag_hp.bench import ReplayTable, default_grid_path, load_grid, load_rows, run_one, write_results  # noqa: E402
from autorag_hp.objective import SAMPLING_MODES, paired_population, paired_questions, reward  # noqa: E402
from autorag_hp.pareto import pareto_mask, pareto_recall  # noqa: E402
from autorag_hp.strategies import make_strategy, parse_strategy_spec, strategy_class  # noqa: E402
from autorag_hp.strategies._base import Proposal  # noqa: E402

TABLES = {"default": default_grid_path(), "squad": ROOT / "evals" / "grids" / "squad.csv"}


def _arrays(path: Path):
    """(loaded grid, quality[c, q], tokens[c, q]) in the grid's configuration order."""
    lg = load_grid(path)
    if not lg.cost:
        raise ValueError(f"{path}: the grid has no cost column; the benchmark needs prompt tokens")
    rows = load_rows(path)
    qids: dict[str, int] = {}
    n_q = len({r["question_id"] for r in rows})
    quality = np.full((len(lg.space), n_q), np.nan)
    tokens = np.full((len(lg.space), n_q), np.nan)
    for r in rows:
        c = lg.space.index({p: r[p] for p in lg.space.names})
        q = qids.setdefault(str(r["question_id"]), len(qids))
        quality[c, q] = float(r[lg.metric])
        tokens[c, q] = float(r[lg.cost])
    if np.isnan(quality).any() or np.isnan(tokens).any():
        raise ValueError(f"{path}: the grid is not complete")
    return lg, quality, tokens


def _run_pareto(lg, quality, tokens, seed: int, batch: int, budget_calls: int, spec: str = "pareto-ts",
                sampling: str = "iid", final_phase: float = 0.0, final_pick: str = "uniform",
                oracle: str = "", truth: np.ndarray | None = None, t_max: float = 1.0, tol: float = 0.005) -> dict:
    """One ``pareto-ts`` run. ``final_phase``: the last such share of the pulls (a budget the
    strategy itself does not know) instead plays a member of the front of one joint posterior
    draw, picked uniformly (``final_pick="uniform"``) or the least-pulled (``"fewest"``): a
    Pareto-set identification phase (cf. Auer et al. 2016). ``oracle`` (with ``truth``, the
    grid's true (quality, tokens) per configuration): after the space-filling pulls, an
    allocation that knows the grid's front replaces the strategy's proposals (see
    :func:`_oracle_pick`); the strategy's models still estimate, so its front measures what
    the estimator makes of the best-informed pulls."""
    spec = parse_strategy_spec(spec)
    # as Study and run_one: population="auto" becomes N / batch under paired sampling, 0 under iid
    options = {**spec.options, **paired_population(strategy_class(spec.name), spec.options, sampling=sampling,
                                                    n_questions=quality.shape[1], batch=batch)}
    s = make_strategy(spec.name, lg.space, seed=seed, t_max=lg.t_max, **options)
    t0 = time.perf_counter()
    ordinal = np.zeros(len(lg.space), dtype=int)  # pulls so far per configuration (sampling="paired")
    n_pulls = budget_calls // batch
    for pull in range(n_pulls):
        if oracle and not s._init_plan:
            c = _oracle_pick(s, oracle, truth, ordinal, t_max=t_max, tol=tol)
            proposal = Proposal(lg.space.coords_of_index(c), "oracle")
        elif pull >= n_pulls - int(final_phase * n_pulls) and not s._init_plan:
            front = np.flatnonzero(pareto_mask(np.column_stack([s._draw(s.quality), s._draw(s.cost)]), [1, -1]))
            if final_pick == "fewest":
                n = s.quality.n_c[front]
                front = front[n == n.min()]
            proposal = Proposal(lg.space.coords_of_index(int(front[s.rng.integers(len(front))])), "front")
        else:
            proposal = s.propose()
        s.commit(proposal)
        c = lg.space.index_of_coords(proposal.coords)
        if sampling == "paired":  # as TableObjective(sampling="paired"): the c's k-th pull sees batch k
            q = paired_questions(quality.shape[1], batch, seed=seed, ordinal=int(ordinal[c]))
        else:
            q = generator("questions", seed, pull).choice(quality.shape[1], size=batch, replace=False)
        ordinal[c] += 1
        # per-question values, as tune's tell_details: the covariate quality model learns each one's variance
        s.tell_objectives(lg.space.config(c), quality=quality[c, q], tokens=tokens[c, q], tag=proposal.tag)
    return {"strategy": s, "seconds": time.perf_counter() - t0}


def _oracle_pick(s, oracle: str, truth: np.ndarray, ordinal: np.ndarray, *, t_max: float, tol: float) -> int:
    """The next pull of an allocation that knows the grid's front (``truth``: true quality and
    tokens), never re-pulling a configuration whose pulls cover every question:

    * ``"front"``: the least-pulled grid-front configuration (all pulls on the front);
    * ``"refute"``: while a grid-front configuration is missing from the run's front of
      posterior means (no tie of it there), the less-pulled of it and the configuration whose
      estimate dominates it with the highest estimated quality (pull the missing one up, or the
      false dominator down); otherwise as ``"front"``. A greedy upper reference for any allocation
      paired with this estimator, not a strategy."""
    done = ordinal >= math.floor(s.quality._population) if s.quality._population else np.zeros(len(ordinal), bool)
    front = np.flatnonzero(pareto_mask(truth, [1, -1]))
    if oracle == "refute":
        eq, et = s._posterior(s.quality)[0], s._tokens()[0]
        est = np.flatnonzero(pareto_mask(np.column_stack([eq, et]), [1, -1]))
        scale = np.array([1.0, t_max])
        for c in front[np.argsort(ordinal[front], kind="stable")]:
            if np.all(np.abs(truth[est] - truth[c]) / scale <= tol + 1e-12, axis=1).any():
                continue
            dom = np.flatnonzero((eq >= eq[c]) & (et <= et[c]) & ~done)
            dom = dom[dom != c]
            cand = ([int(c)] if not done[c] else []) + ([int(dom[np.argmax(eq[dom])])] if len(dom) else [])
            if cand:
                return min(cand, key=lambda i: ordinal[i])
    left = front[~done[front]]
    if not len(left):
        left = np.flatnonzero(~done) if (~done).any() else np.arange(len(ordinal))
    return int(left[np.argmin(ordinal[left])])


def _precision(found, truth: np.ndarray, t_max: float, tol: float) -> float:
    """Share of ``found`` (a run's front) that are grid-front configurations or ties of one (within
    ``tol`` in quality and in tokens / t_max, the recall's own tie rule): recall does not charge
    for a larger set, precision does."""
    if not len(found):
        return 0.0
    front = truth[pareto_mask(truth, [1, -1])]
    scale = np.array([1.0, t_max])
    return float(np.mean([np.all(np.abs(front - truth[c]) / scale <= tol + 1e-12, axis=1).any() for c in found]))


def _eps_front(means: np.ndarray, eps: float) -> np.ndarray:
    """Indices of the (quality, tokens) rows that no other row beats by more than ``eps`` in
    quality while costing no more tokens (a front that keeps near-ties in quality)."""
    q, t = means[:, 0], means[:, 1]
    return np.array([b for b in range(len(means)) if not np.any((q > q[b] + eps) & (t <= t[b]))], dtype=int)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tables", default="default,squad")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1 (tune on others than 0-9)")
    ap.add_argument("--no-single", action="store_true", help="skip the dedicated single-w runs (development)")
    ap.add_argument("--prob-front", default="", help="also score the sets {P(Pareto-optimal) >= p} (256 posterior "
                    "draws) for these comma-separated p, e.g. 0.2,0.3 (pareto-ts only)")
    ap.add_argument("--diagnose", action="store_true", help="also score the front of the run's model with the "
                    "grid's true quality (or true tokens) in place of that model's posterior mean")
    ap.add_argument("--subsample-grid", default="", help="baseline: the front of a grid that scores every "
                    "configuration on the same random share of the questions, for these comma-separated shares")
    ap.add_argument("--final-phase", type=float, default=0.0, help="the last such share of the pulls plays the "
                    "front of a posterior draw (see _run_pareto); 0: none")
    ap.add_argument("--final-pick", default="uniform", choices=("uniform", "fewest"))
    ap.add_argument("--oracle", default="", choices=("", "front", "refute"), help="reference, not a strategy: "
                    "after the space-filling pulls an allocation that knows the grid's front picks the pulls "
                    "(front: its configurations only; refute: also the false dominators); pareto-ts' models estimate")
    ap.add_argument("--eps-front", default="", help="also score the fronts that keep configurations within eps "
                    "in quality of a cheaper better one, for these comma-separated eps (posterior means)")
    ap.add_argument("--budget", type=float, default=0.2)
    ap.add_argument("--weights", default="0.1,0.5,0.9")
    ap.add_argument("--max-pulls", type=int, default=1700, help="the batch is max(4, budget / this): 20 questions "
                    "per pull on SQuAD, 4 on the default grid (tune's batch for pareto-ts is 4); until issue #13's "
                    "third session it was 600 (batch 57 and 10)")
    ap.add_argument("--tol", type=float, default=0.005)
    ap.add_argument("--strategy", default="pareto-ts", help="the multi-objective strategy spec")
    ap.add_argument("--sampling", default="iid", choices=SAMPLING_MODES,
                    help="how a pull picks its questions, for both pareto-ts and the single-w runs")
    ap.add_argument("--out", default="bench_out/pareto.json")
    args = ap.parse_args(argv)
    weights = [float(x) for x in args.weights.split(",")]
    out: dict = {"strategy": args.strategy, "sampling": args.sampling, "final_phase": args.final_phase, "oracle": args.oracle,
                 "final_pick": args.final_pick, "budget": args.budget, "seeds": args.seeds, "first_seed": args.first_seed, "weights": weights, "tol": args.tol, "tables": {}}
    for name in args.tables.split(","):
        path = TABLES.get(name, Path(name))
        if not Path(path).is_file():
            print(f"{name}: {path} is missing (make it with `autorag-hp grid --data ... --out {path}`); skipped")
            continue
        lg, quality, tokens = _arrays(Path(path))
        t_max = float(lg.t_max)
        n_c, n_q = quality.shape
        budget_calls = int(args.budget * n_c * n_q)
        batch = max(4, math.ceil(budget_calls / args.max_pulls))
        mq, mt = quality.mean(axis=1), tokens.mean(axis=1)
        truth = np.column_stack([mq, mt])
        grid_front = np.flatnonzero(pareto_mask(truth, [1, -1]))
        rows_all = load_rows(path)
        tables_w = {w: ReplayTable.from_rows(rows_all, params=list(lg.space.names), metric=lg.metric, cost=lg.cost,
                                             w=w, t_max=t_max, space=lg.space, source=str(path)) for w in weights}
        per_seed = []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            run = _run_pareto(lg, quality, tokens, seed, batch, budget_calls, args.strategy, args.sampling,
                              args.final_phase, args.final_pick, args.oracle, truth, t_max, args.tol)
            s = run["strategy"]
            ps = s.pareto_set()
            front = [p.index for p in ps.front]
            plausible = [p.index for p in ps.plausible]
            rec = {"seed": seed, "front_size": len(front), "seconds": round(run["seconds"], 2),
                   "recall": pareto_recall(front, truth, [1, -1], scale=(1.0, t_max), tol=args.tol),
                   "precision": _precision(front, truth, t_max, args.tol),
                   "plausible_size": len(plausible),
                   "plausible_recall": pareto_recall(plausible, truth, [1, -1], scale=(1.0, t_max), tol=args.tol)}
            if args.diagnose:  # which objective's estimate costs the recall
                mq_post, mt_post = s._posterior(s.quality)[0], s._tokens()[0]
                for key, m in (("true_quality", np.column_stack([mq, mt_post])),
                               ("true_tokens", np.column_stack([mq_post, mt]))):
                    f = np.flatnonzero(pareto_mask(m, [1, -1]))
                    rec[f"{key}_size"] = len(f)
                    rec[f"{key}_recall"] = pareto_recall(f, truth, [1, -1], scale=(1.0, t_max), tol=args.tol)
                pulled = np.flatnonzero(s.quality.n_c > 0)  # the front of the measured configurations only
                f = pulled[pareto_mask(np.column_stack([mq_post, mt_post])[pulled], [1, -1])]
                rec["pulled_front_size"] = len(f)
                rec["pulled_front_recall"] = pareto_recall(f, truth, [1, -1], scale=(1.0, t_max), tol=args.tol)
            for eps in [float(x) for x in args.eps_front.split(",") if x]:
                f = _eps_front(np.column_stack([s._posterior(s.quality)[0], s._tokens()[0]]), eps)
                rec[f"eps_{eps}_size"] = len(f)
                rec[f"eps_{eps}_recall"] = pareto_recall(f, truth, [1, -1], scale=(1.0, t_max), tol=args.tol)
            for share in [float(x) for x in args.subsample_grid.split(",") if x]:
                qs = paired_questions(n_q, max(1, round(share * n_q)), seed=seed, ordinal=0)  # the same for all
                sub = np.column_stack([quality[:, qs].mean(axis=1), tokens[:, qs].mean(axis=1)])
                f = np.flatnonzero(pareto_mask(sub, [1, -1]))
                rec[f"subsample_{share}_size"] = len(f)
                rec[f"subsample_{share}_recall"] = pareto_recall(f, truth, [1, -1], scale=(1.0, t_max), tol=args.tol)
            p_front = s.front_probability(256, eps=0.0) if args.prob_front else None
            for p_min in [float(x) for x in args.prob_front.split(",") if x]:
                chosen = np.flatnonzero(p_front >= p_min)
                rec[f"prob_front_{p_min}_size"] = len(chosen)
                rec[f"prob_front_{p_min}_recall"] = pareto_recall(chosen, truth, [1, -1], scale=(1.0, t_max), tol=args.tol)
            if seed == args.first_seed:
                try:
                    from autorag_hp.pareto import ParetoSet
                    from autorag_hp.report import plot_pareto

                    grid_set = ParetoSet.from_means(truth, space=lg.space, t_max=t_max)
                    png = ROOT / Path(args.out).with_name(f"{Path(args.out).stem}_{name}.png")
                    plot_pareto(png, ps, grid_set, title=f"{name} grid: pareto-ts at {args.budget:.0%} of grid calls, seed 0")
                    print(f"wrote {png}")
                except ModuleNotFoundError as exc:  # matplotlib is the plot extra
                    print(f"no plot: {exc}")
            for w in weights:
                true_r = reward(mq, mt, w=w, t_max=t_max)
                pick = lg.space.index(s.best(1, w=w)[0].config)
                rec[f"regret_w{w}"] = float(true_r.max() - true_r[pick])
                # where the run spent its pulls: share on configurations within 0.01 of the best reward at w
                pulls = np.asarray(s.quality.n_c, dtype=float)
                rec[f"near_share_w{w}"] = float(pulls[true_r >= true_r.max() - 0.01].sum() / pulls.sum())
                rec[f"single_regret_w{w}"] = (float("nan") if args.no_single else float(
                    run_one(tables_w[w], "structured-tt", seed, budget=args.budget, batch=batch,
                            sampling=args.sampling)["simple_regret"]))
            per_seed.append(rec)
            print(f"{name} seed {seed}: recall {rec['recall']:.3f} (front {len(front)}), "
                  + ", ".join(f"w={w}: {rec[f'regret_w{w}']:.4f} vs {rec[f'single_regret_w{w}']:.4f}" for w in weights)
                  + f"  [{rec['seconds']:.1f} s]", flush=True)
        summary = {"recall_mean": float(np.mean([r["recall"] for r in per_seed])),
                   "precision_mean": float(np.mean([r["precision"] for r in per_seed])),
                   "front_size_mean": float(np.mean([r["front_size"] for r in per_seed])),
                   "plausible_recall_mean": float(np.mean([r["plausible_recall"] for r in per_seed])),
                   "plausible_size_mean": float(np.mean([r["plausible_size"] for r in per_seed]))}
        for w in weights:
            summary[f"regret_w{w}_mean"] = float(np.mean([r[f"regret_w{w}"] for r in per_seed]))
            summary[f"single_regret_w{w}_mean"] = float(np.mean([r[f"single_regret_w{w}"] for r in per_seed]))
            summary[f"near_share_w{w}_mean"] = float(np.mean([r[f"near_share_w{w}"] for r in per_seed]))
            summary[f"ok_w{w}"] = None if args.no_single else (
                summary[f"regret_w{w}_mean"] <= summary[f"single_regret_w{w}_mean"] + 0.002)
        for key in [k for k in per_seed[0] if k.startswith(("prob_front_", "true_", "subsample_", "eps_", "pulled_"))]:
            summary[f"{key}_mean"] = float(np.mean([r[key] for r in per_seed]))
        summary["ok_recall"] = summary["recall_mean"] >= 0.8
        out["tables"][name] = {"path": str(path), "configurations": n_c, "questions": n_q, "t_max": t_max,
                               "batch": batch, "budget_calls": budget_calls, "grid_front": grid_front.tolist(),
                               "summary": summary, "seeds": per_seed}
        print(f"{name}: {n_c} configurations x {n_q} questions, batch {batch}, {budget_calls} calls; "
              f"grid front {len(grid_front)} configurations")
        print(f"  Pareto recall {summary['recall_mean']:.3f} (target >= 0.8: {summary['ok_recall']}; front of "
              f"{summary['front_size_mean']:.1f}, precision {summary['precision_mean']:.3f}); plausible set: recall "
              f"{summary['plausible_recall_mean']:.3f}, "
              f"{summary['plausible_size_mean']:.1f} configurations")
        for p_min in [x for x in args.prob_front.split(",") if x]:
            print(f"  P(Pareto-optimal) >= {p_min}: recall {summary[f'prob_front_{float(p_min)}_recall_mean']:.3f}, "
                  f"{summary[f'prob_front_{float(p_min)}_size_mean']:.1f} configurations")
        if args.diagnose:
            rel_sd = tokens.std(axis=1) / np.maximum(tokens.mean(axis=1), 1e-9)
            summary["tokens_rel_sd_median"] = float(np.median(rel_sd))
            print(f"  prompt tokens vary by {summary['tokens_rel_sd_median']:.1%} from question to question "
                  "(sd / mean, median over configurations)")
            print(f"  front with the grid's true quality: recall {summary['true_quality_recall_mean']:.3f} "
                  f"({summary['true_quality_size_mean']:.1f}); with its true tokens: "
                  f"{summary['true_tokens_recall_mean']:.3f} "
                  f"({summary['true_tokens_size_mean']:.1f})")
            print(f"  front of the pulled configurations only: recall {summary['pulled_front_recall_mean']:.3f} "
                  f"({summary['pulled_front_size_mean']:.1f})")
        for eps in [float(x) for x in args.eps_front.split(",") if x]:
            print(f"  front keeping quality near-ties within {eps}: recall {summary[f'eps_{eps}_recall_mean']:.3f} "
                  f"({summary[f'eps_{eps}_size_mean']:.1f})")
        for share in [float(x) for x in args.subsample_grid.split(",") if x]:
            print(f"  grid on {share:.0%} of the questions ({share / args.budget:.1f}x the budget): recall "
                  f"{summary[f'subsample_{share}_recall_mean']:.3f} ({summary[f'subsample_{share}_size_mean']:.1f})")
        for w in weights:
            print(f"  w={w}: best(w) regret {summary[f'regret_w{w}_mean']:.4f} vs structured-tt "
                  f"{summary[f'single_regret_w{w}_mean']:.4f} (+0.002 target: {summary[f'ok_w{w}']}); "
                  f"{summary[f'near_share_w{w}_mean']:.3f} of the pulls within 0.01 of the best at w")
    p = ROOT / args.out
    write_results(p, out)
    print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
