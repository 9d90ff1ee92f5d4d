"""The cost-quality figure: a run's Pareto front, with intervals, against the grid's front."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from autorag_hp.report._figures import _plt, _save

__all__ = ["plot_pareto"]


def plot_pareto(path: str | os.PathLike[str], run, grid=None, *, title: str = "") -> Path:
    """Save a PNG: every configuration of ``run`` (a :class:`~autorag_hp.pareto.ParetoSet`) as a
    dot, its front as a step line with ``confidence`` intervals on both axes, and, when given,
    the front of ``grid`` (the true means of a full grid) as a dashed step line. The cost axis
    (the first minimised objective, e.g. prompt tokens) is logarithmic."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    cost = run.objectives[1]
    ax.scatter(run.means[:, 1], run.means[:, 0], s=6, color="0.75", label="configurations (run's estimates)")
    front = run.front
    x = np.array([p.mean[cost] for p in front])
    y = np.array([p.mean["quality"] for p in front])
    xerr = np.array([[p.mean[cost] - p.ci[cost][0], p.ci[cost][1] - p.mean[cost]] for p in front]).T
    yerr = np.array([[p.mean["quality"] - p.ci["quality"][0], p.ci["quality"][1] - p.mean["quality"]] for p in front]).T
    ax.errorbar(x, y, xerr=np.maximum(xerr, 0), yerr=np.maximum(yerr, 0), fmt="o", ms=3, color="C0", lw=0.8,
                label=f"run's front ({len(front)}, {run.confidence:.0%} intervals)")
    ax.step(x, y, where="post", color="C0", lw=1)
    if grid is not None:
        gf = grid.front
        gx = [p.mean[cost] for p in gf]
        gy = [p.mean["quality"] for p in gf]
        ax.step(gx, gy, where="post", color="C3", lw=1, ls="--", label=f"grid's front ({len(gf)})")
        ax.scatter(gx, gy, s=10, color="C3", marker="x")
    ax.set_xscale("log")
    ax.set_xlabel({"tokens": "prompt tokens (mean per question)", "latency": "latency (s per question)"}.get(cost, cost))
    ax.set_ylabel("quality (mean)")
    if title:
        ax.set_title(title)
    ax.legend(loc="lower right")
    return _save(fig, Path(path))
