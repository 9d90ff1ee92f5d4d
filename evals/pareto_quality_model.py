"""Issue #13 point 4: how well the model class of ``pareto-ts``' quality model fits the grids' true
quality, and what a covariate in the configuration's prompt tokens would add.

A diagnostic of model classes, not a strategy: each model is fitted by least squares to the
grid's true mean quality of every configuration (so it measures what the class can express,
not what a run learns), and scored by its leave-one-out error (each configuration predicted by
the fit to the others), over all configurations, over the grid's Pareto front, and at the cheap
end (mean prompt tokens < 30) where ``pareto-ts`` misses most front members (docs/metrics.md).

* ``main``: the knobs' main effects (one-hot), as ``structured-*`` without interactions;
* ``main+pairs``: with every pairwise interaction, the class of ``interactions="auto"``;
* ``main+spline``: main effects plus a linear spline of log mean prompt tokens (knots at the
  20/40/60/80% quantiles): quality as a function of how much context the prompt carries;
* ``main+pairs+spline``: both.

    python evals/pareto_quality_model.py        # a few seconds

Writes ``evals/results/pareto_quality_model.json`` and prints one line per grid and model.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from pareto_benchmark import TABLES, _arrays  # noqa: E402

from autorag_hp.pareto import pareto_mask  # noqa: E402


def _one_hot(lg) -> list[np.ndarray]:
    """Per knob, the one-hot columns of its values but the first (an intercept goes separately)."""
    coords = np.array([lg.space.coords_of_index(c) for c in range(len(lg.space))])
    return [np.column_stack([(coords[:, k] == v).astype(float) for v in range(1, size)])
            for k, size in enumerate(lg.space.sizes)]


def _loo(design: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Leave-one-out residuals of the least-squares fit (r_i / (1 - h_ii), minimum-norm fit)."""
    pinv = np.linalg.pinv(design)
    hat = np.einsum("ij,ji->i", design, pinv)
    resid = y - design @ (pinv @ y)
    return resid / np.maximum(1.0 - hat, 1e-9)


def designs(lg, tokens: np.ndarray) -> dict[str, np.ndarray]:
    mains = _one_hot(lg)
    ones = np.ones((len(tokens), 1))
    pairs = [np.einsum("ni,nj->nij", a, b).reshape(len(tokens), -1) for a, b in itertools.combinations(mains, 2)]
    log_t = np.log(tokens)
    knots = np.quantile(log_t, [0.2, 0.4, 0.6, 0.8])
    spline = np.column_stack([log_t] + [np.maximum(log_t - k, 0.0) for k in knots])
    return {"main": np.hstack([ones, *mains]),
            "main+pairs": np.hstack([ones, *mains, *pairs]),
            "main+spline": np.hstack([ones, *mains, spline]),
            "main+pairs+spline": np.hstack([ones, *mains, *pairs, spline])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tables", default="squad,default", help="comma-separated: squad, default")
    ap.add_argument("--cheap", type=float, default=30.0, help="the cheap end: mean prompt tokens below this")
    ap.add_argument("--out", default=str(ROOT / "evals" / "results" / "pareto_quality_model.json"))
    args = ap.parse_args(argv)
    out: dict[str, Any] = {"command": " ".join(["python", "evals/pareto_quality_model.py", *(argv or sys.argv[1:])]),
                           "tables": {}}
    for name in args.tables.split(","):
        lg, quality, tokens = _arrays(TABLES[name])
        q, t = quality.mean(axis=1), tokens.mean(axis=1)
        front = pareto_mask(np.column_stack([q, t]), [1, -1])
        cheap = t < args.cheap
        rows = {}
        for label, x in designs(lg, t).items():
            r = _loo(x, q)
            rows[label] = {"columns": int(x.shape[1]),
                           "loo_rmse": float(np.sqrt(np.mean(r ** 2))),
                           "loo_rmse_front": float(np.sqrt(np.mean(r[front] ** 2))),
                           "loo_rmse_cheap": float(np.sqrt(np.mean(r[cheap] ** 2))),
                           "loo_mean_error_cheap": float(np.mean(r[cheap]))}
            print(f"{name:8s} {label:18s} columns {x.shape[1]:3d}  leave-one-out RMSE {rows[label]['loo_rmse']:.3f}, "
                  f"front {rows[label]['loo_rmse_front']:.3f}, cheap end {rows[label]['loo_rmse_cheap']:.3f} "
                  f"(mean true - predicted {rows[label]['loo_mean_error_cheap']:+.3f})")
        out["tables"][name] = {"configurations": len(q), "front": int(front.sum()), "cheap": int(cheap.sum()),
                               "models": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
