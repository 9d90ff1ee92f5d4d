"""Issue #13 point 4: ``pareto-ts`` with a quality model that has the prompt tokens as a covariate.

A measurement prototype for the next step, not a strategy of the library: ``pareto-ts`` at its
defaults (hull and identification pulls) with its quality model replaced by

* main effects and every pairwise interaction of the knobs (as ``pareto-ts``' quality model),
* plus a linear spline (knots at the 20/40/60/80% quantiles) of the cost model's posterior mean
  log prompt tokens: on SQuAD quality is mostly a function of how much context the prompt
  carries, which the additive + pairwise class expresses only in part
  (``evals/pareto_quality_model.py``),
* a configuration random effect (sd ``r`` = 0.03) around that regression, and per-configuration
  noise from the per-question records (each configuration's own question variance, shrunk to
  the pooled one with ``k0`` = 10 questions' weight), with the finite-population correction of
  paired sampling (``1 - questions seen / N``).

The regression is refitted from per-configuration sufficient statistics after every pull (the
token covariate moves as the cost model learns). The hull pulls, the identification pulls,
``best(w)`` and the front all read this model; the cost model is ``pareto-ts``' own. The grid is
replayed as ``benchmarks/pareto_benchmark.py`` does (paired questions, 20% of grid calls, batch
max(4, budget / ``--max-pulls``)), and ``--baseline`` also runs ``pareto-ts`` itself on the same
seeds. First written in issue #13's third session (the "token covariate" of docs/metrics.md,
then at batch 57); this version runs it with today's defaults.

    python evals/pareto_covariate_model.py --tables squad --first-seed 100 --seeds 20 --baseline
    python evals/pareto_covariate_model.py --tables squad --strategy pareto-ts:hull_prob=0.7

Writes ``evals/results/pareto_covariate_model.json`` (``--out``) and prints one line per seed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from pareto_benchmark import TABLES, _arrays, _precision  # noqa: E402

from autorag_hp.objective import paired_population, paired_questions, reward  # noqa: E402
from autorag_hp.pareto import pareto_recall  # noqa: E402
from autorag_hp.strategies import parse_strategy_spec  # noqa: E402
from autorag_hp.strategies.pareto import ParetoTS  # noqa: E402


class CovariateQuality:
    """The quality model above, over every configuration of an enumerated space."""

    def __init__(self, space, n_questions: int, *, r: float = 0.03, main_sd: float = 0.3, pair_sd: float = 0.1,
                 spline_sd: float = 0.3, knots: int = 4, k0: float = 10.0) -> None:
        coords = np.stack(np.unravel_index(np.arange(len(space)), space.sizes), axis=1)
        mains = [np.column_stack([(coords[:, k] == v).astype(float) for v in range(s)])
                 for k, s in enumerate(space.sizes)]
        cols, sds = [np.ones((len(coords), 1))] + mains, [np.array([1.0])] + [np.full(a.shape[1], main_sd) for a in mains]
        for a, b in itertools.combinations(mains, 2):
            p = np.einsum("ni,nj->nij", a, b).reshape(len(coords), -1)
            cols.append(p)
            sds.append(np.full(p.shape[1], pair_sd))
        self.x0, self.sd0 = np.hstack(cols), np.concatenate(sds)
        self.n_questions, self.r, self.k0, self.knots, self.spline_sd = n_questions, r, k0, knots, spline_sd
        c = len(space)
        self.nq, self.sum, self.sq = np.zeros(c), np.zeros(c), np.zeros(c)
        self.log_tokens: np.ndarray | None = None
        self._fit: tuple | None = None

    def observe(self, c: int, values: np.ndarray) -> None:
        self.nq[c] += len(values)
        self.sum[c] += values.sum()
        self.sq[c] += (values ** 2).sum()
        self._fit = None

    def set_log_tokens(self, log_tokens: np.ndarray) -> None:
        self.log_tokens = log_tokens
        self._fit = None

    def _design(self) -> tuple[np.ndarray, np.ndarray]:
        if self.log_tokens is None:
            return self.x0, self.sd0
        x = self.log_tokens - self.log_tokens.mean()
        ks = np.quantile(x, np.linspace(0, 1, self.knots + 2)[1:-1])
        s = np.column_stack([x] + [np.maximum(x - k, 0) for k in ks])
        return np.hstack([self.x0, s]), np.concatenate([self.sd0, np.full(s.shape[1], self.spline_sd)])

    def fit(self) -> tuple:
        if self._fit is not None:
            return self._fit
        x, sd = self._design()
        seen = self.nq > 0
        ybar = np.where(seen, self.sum / np.maximum(self.nq, 1), 0.0)
        var_q = np.where(seen, self.sq / np.maximum(self.nq, 1) - ybar ** 2, 0.0)
        pooled = max(float(np.sum(var_q * self.nq) / self.nq.sum()) if seen.any() else 0.25, 0.01)
        v = (var_q * self.nq + self.k0 * pooled) / (self.nq + self.k0)
        fpc = np.clip(1 - self.nq / self.n_questions, 0.0, 1.0)
        e = np.where(seen, v / np.maximum(self.nq, 1) * np.maximum(fpc, 1e-4), np.inf)  # own mean's noise variance
        r2 = self.r ** 2
        w = np.where(seen, 1.0 / (r2 + e), 0.0)
        a = (x[seen].T * w[seen]) @ x[seen] + np.diag(1.0 / sd ** 2)
        prior = np.zeros(x.shape[1])
        prior[0] = 0.5
        b = (x[seen].T * w[seen]) @ ybar[seen] + prior / sd ** 2
        chol = np.linalg.cholesky(a)
        mu = np.linalg.solve(a, b)
        k = np.where(seen, r2 / (r2 + e), 0.0)  # weight of the own mean
        cvar = np.where(seen, r2 * e / (r2 + np.where(seen, e, 1.0)), r2)
        self._fit = (x, chol, mu, k, cvar, ybar)
        return self._fit

    def mean(self) -> np.ndarray:
        x, _, mu, k, _, ybar = self.fit()
        f = x @ mu
        return f + k * (ybar - f)

    def sd(self) -> np.ndarray:
        x, chol, _, k, cvar, _ = self.fit()
        z = np.linalg.solve(chol, x.T)
        return np.sqrt((1 - k) ** 2 * np.einsum("ij,ij->j", z, z) + cvar)

    def draws(self, rng: np.random.Generator, n: int) -> np.ndarray:
        x, chol, mu, k, cvar, ybar = self.fit()
        beta = mu[:, None] + np.linalg.solve(chol.T, rng.standard_normal((len(mu), n)))
        f = x @ beta
        return (f + k[:, None] * (ybar[:, None] - f) + np.sqrt(cvar)[:, None] * rng.standard_normal(f.shape)).T


class CovariateParetoTS(ParetoTS):
    """``pareto-ts`` whose every read of the quality model goes to a :class:`CovariateQuality`."""

    def __init__(self, space, *, n_questions: int, seed: int = 0, r: float = 0.03, **options: Any) -> None:
        super().__init__(space, seed=seed, **options)
        self.qm = CovariateQuality(space, n_questions, r=r)
        self.quality.posterior_mean = self.qm.mean  # what the hull and identification picks read

    def _draw(self, model):
        return self.qm.draws(self.rng, 1)[0] if model is self.quality else super()._draw(model)

    def _draws(self, model, k):
        return self.qm.draws(self.rng, k) if model is self.quality else super()._draws(model, k)

    def _posterior(self, model):
        return (self.qm.mean(), self.qm.sd()) if model is self.quality else super()._posterior(model)


def run(lg, quality, tokens, seed: int, batch: int, budget_calls: int, *, covariate: bool, r: float = 0.03,
        options: dict[str, Any] | None = None) -> ParetoTS:
    """One run; ``options``: ``pareto-ts`` options (its defaults when None)."""
    n_q = quality.shape[1]
    options = dict(options or {})
    options.update(paired_population(ParetoTS, options, sampling="paired", n_questions=n_q, batch=batch))
    if covariate:
        s = CovariateParetoTS(lg.space, n_questions=n_q, seed=seed, r=r, t_max=lg.t_max, **options)
    else:
        s = ParetoTS(lg.space, seed=seed, t_max=lg.t_max, **options)
    ordinal = np.zeros(len(lg.space), dtype=int)
    for _ in range(budget_calls // batch):
        p = s.propose()
        s.commit(p)
        c = lg.space.index_of_coords(p.coords)
        q = paired_questions(n_q, batch, seed=seed, ordinal=int(ordinal[c]))
        ordinal[c] += 1
        if covariate:
            s.qm.observe(c, quality[c, q])
        s.tell_objectives(lg.space.config(c), quality=float(quality[c, q].mean()), tokens=float(tokens[c, q].mean()),
                          tag=p.tag)
        if covariate:
            s.qm.set_log_tokens(s.cost.posterior_mean())
    return s


def score(s: ParetoTS, lg, quality, tokens, weights=(0.1, 0.5, 0.9)) -> dict[str, float]:
    mq, mt, t_max = quality.mean(axis=1), tokens.mean(axis=1), float(lg.t_max)
    truth = np.column_stack([mq, mt])
    front = [p.index for p in s.pareto_set().front]
    out = {"recall": pareto_recall(front, truth, [1, -1], scale=(1.0, t_max), tol=0.005),
           "front_size": len(front), "precision": _precision(front, truth, t_max, 0.005)}
    for w in weights:
        r = reward(mq, mt, w=w, t_max=t_max)
        out[f"regret_w{w}"] = float(r.max() - r[lg.space.index(s.best(1, w=w)[0].config)])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tables", default="squad,default")
    ap.add_argument("--first-seed", type=int, default=100, help="tuning seeds by default (100-119)")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--max-pulls", type=int, default=1700, help="as the pareto benchmark: batch max(4, budget / this)")
    ap.add_argument("--baseline", action="store_true", help="also run pareto-ts itself on the same seeds")
    ap.add_argument("--strategy", default="pareto-ts", help="pareto-ts with options, e.g. pareto-ts:hull_prob=0.7 "
                    "(for both the covariate runs and --baseline)")
    ap.add_argument("--r", type=float, default=0.03, help="sd of a configuration's random effect around the regression")
    ap.add_argument("--out", default=str(ROOT / "evals" / "results" / "pareto_covariate_model.json"))
    args = ap.parse_args(argv)
    spec = parse_strategy_spec(args.strategy)
    if spec.name != "pareto-ts":
        ap.error(f"--strategy must be pareto-ts with options, got {args.strategy!r}")
    result: dict[str, Any] = {"strategy": args.strategy, "r": args.r, "first_seed": args.first_seed, "seeds": args.seeds,
                              "max_pulls": args.max_pulls, "budget": 0.2, "sampling": "paired", "tables": {}}
    for name in args.tables.split(","):
        lg, quality, tokens = _arrays(Path(TABLES[name]))
        budget_calls = int(0.2 * quality.size)
        batch = max(4, math.ceil(budget_calls / args.max_pulls))
        table: dict[str, Any] = {"batch": batch}
        for label, covariate in [("covariate", True)] + ([("pareto-ts", False)] if args.baseline else []):
            rows = []
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                t0 = time.perf_counter()
                s = run(lg, quality, tokens, seed, batch, budget_calls, covariate=covariate, r=args.r,
                        options=spec.options)
                rec = {"seed": seed, **score(s, lg, quality, tokens), "seconds": round(time.perf_counter() - t0, 1)}
                rows.append(rec)
                print(name, label, " ".join(f"{k} {v:.4g}" for k, v in rec.items()), flush=True)
            mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "seed"}
            table[label] = {"mean": mean, "per_seed": rows}
            print(f"{name} {label} MEAN: recall {mean['recall']:.3f} (front {mean['front_size']:.1f}, precision "
                  f"{mean['precision']:.3f}); regret w=0.1/0.5/0.9 {mean['regret_w0.1']:.4f} / "
                  f"{mean['regret_w0.5']:.4f} / {mean['regret_w0.9']:.4f}", flush=True)
        result["tables"][name] = table
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
