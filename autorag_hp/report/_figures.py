"""The report's figures and a tuning run's plots (matplotlib, Agg backend).

Each function saves one PNG (atomically) and returns its path. matplotlib (the ``plot``
extra) is imported on first use with the non-interactive Agg backend, so plotting works on
a server with no display.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from autorag_hp._io import atomic_write_bytes
from autorag_hp.report._analysis import band, grid_marginals, pull_marginals
from autorag_hp.space import SearchSpace

__all__ = ["regret_curves", "recall_vs_budget", "recall_curves", "pull_heatmaps", "marginals", "importance",
           "best_forest", "run_regret", "plot_regret", "plot_pulls"]

DPI = 90


def _plt():
    try:
        import matplotlib
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
        raise ModuleNotFoundError("plots need matplotlib: pip install 'autorag-hp[plot]'", name="matplotlib") from exc

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 8, "axes.titlesize": 9, "legend.fontsize": 7, "figure.dpi": DPI,
                         "axes.spines.top": False, "axes.spines.right": False})
    return plt


def _colors(strategies: Sequence[str]) -> dict[str, Any]:
    plt = _plt()
    cmap = plt.get_cmap("tab10")
    return {s: cmap(i % 10) for i, s in enumerate(strategies)}


def _save(fig, path: Path, *, dpi: int = DPI, close: bool = True) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically (and close it unless ``close=False``)."""
    if path.suffix.lower() != ".png":
        raise ValueError(f"path must end in .png, got {str(path)!r}")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    if close:
        _plt().close(fig)
    return atomic_write_bytes(path, buf.getvalue(), fsync=False)


def _grid(n: int, ncols: int = 4) -> tuple[int, int]:
    ncols = min(ncols, n)
    return math.ceil(n / ncols), ncols


def regret_curves(runs: Sequence[Mapping[str, Any]], *, group: str, strategies: Sequence[str], path: Path,
                  title: str = "") -> Path:
    """Cumulative regret against the share of grid calls: mean and 95% band over seeds, a panel per ``group``."""
    plt = _plt()
    groups = list(dict.fromkeys(r[group] for r in runs))
    nrows, ncols = _grid(len(groups))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.5 * nrows), squeeze=False)
    colors = _colors(strategies)
    for ax, g in zip(axes.flat, groups):
        sel = [r for r in runs if r[group] == g and r.get("regret_curve")]
        xmax = max((r["regret_curve_calls_share"][-1] for r in sel if r.get("regret_curve_calls_share")), default=1.0)
        xs = np.linspace(0, xmax, 80)
        for s in strategies:
            rs = [r for r in sel if r["strategy"] == s and r.get("regret_curve_calls_share")]
            if not rs:
                continue
            # the band is over the group's runs (its tables x seeds)
            mean, half = band([[0.0, *r["regret_curve_calls_share"]] for r in rs], [[0.0, *r["regret_curve"]] for r in rs], xs)
            ax.plot(100 * xs, mean, color=colors[s], lw=1.2, label=s)
            ax.fill_between(100 * xs, mean - half, mean + half, color=colors[s], alpha=0.15, lw=0)
        ax.set_title(str(g))
        ax.set_xlabel("% of grid search's calls")
        ax.set_ylabel("cumulative regret")
    for ax in list(axes.flat)[len(groups):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=max(1, min(len(labels), 8)), frameon=False, bbox_to_anchor=(0.5, -0.02))
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return _save(fig, path)


def recall_vs_budget(rows: Sequence[Mapping[str, Any]], *, strategies: Sequence[str], buckets: Sequence[str],
                     path: Path, metrics: Sequence[str] = ("recall@3", "recall@5"), bands: bool | None = None) -> Path:
    """Recall@x at each budget (mean over seeds, with 95% CI bands unless more than 5 strategies
    would make them unreadable: the tables carry the intervals), a column per bucket."""
    if bands is None:
        bands = len(strategies) <= 5
    plt = _plt()
    colors = _colors(strategies)
    fig, axes = plt.subplots(len(metrics), len(buckets), figsize=(2.6 * len(buckets), 2.3 * len(metrics)),
                             squeeze=False, sharey=True)
    n = len(strategies)
    for j, b in enumerate(buckets):
        for i, m in enumerate(metrics):
            ax = axes[i, j]
            for k, s in enumerate(strategies):
                rs = sorted((r for r in rows if r["bucket"] == b and r["strategy"] == s), key=lambda r: r["budget"])
                if not rs:
                    continue
                x = np.array([100 * r["budget"] for r in rs])
                y = np.array([r[m] for r in rs])
                h = np.array([r[m + "_ci"] for r in rs])
                ax.plot(x, y, color=colors[s], marker="o", ms=3, lw=1.2, label=s)
                if bands:
                    ax.fill_between(x, np.clip(y - h, 0, 1), np.clip(y + h, 0, 1), color=colors[s], alpha=0.08, lw=0)
            ax.set_xscale("log")
            budgets = sorted({r["budget"] for r in rows})
            ax.set_xticks([100 * b_ for b_ in budgets], [f"{100 * b_:.0f}%" for b_ in budgets])
            ax.minorticks_off()
            ax.set_ylim(-0.03, 1.03)
            if i == 0:
                ax.set_title(str(b))
            if j == 0:
                ax.set_ylabel(m.replace("recall", "Recall"))
            if i == len(metrics) - 1:
                ax.set_xlabel("budget (% of grid calls)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=max(1, min(len(labels), 8)), frameon=False, bbox_to_anchor=(0.5, -0.03))
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return _save(fig, path)


def recall_curves(runs: Sequence[Mapping[str, Any]], *, strategies: Sequence[str], path: Path,
                  metrics: Sequence[str] = ("recall@3", "recall@5")) -> Path:
    """Recall@x along a run (its checkpoints) against the share of grid calls, band over seeds."""
    plt = _plt()
    colors = _colors(strategies)
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.4 * len(metrics), 2.6), squeeze=False)
    xmax = max((c["calls_share"] for r in runs for c in r.get("checkpoints", [])), default=1.0)
    xs = np.linspace(0, xmax, 60)
    for ax, m in zip(axes.flat, metrics):
        for s in strategies:
            rs = [r for r in runs if r["strategy"] == s and r.get("checkpoints")]
            if not rs:
                continue
            mean, half = band([[c["calls_share"] for c in r["checkpoints"]] for r in rs],
                              [[c[m] for c in r["checkpoints"]] for r in rs], xs)
            ax.plot(100 * xs, mean, color=colors[s], lw=1.2, label=s)
            ax.fill_between(100 * xs, mean - half, mean + half, color=colors[s], alpha=0.15, lw=0)
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("% of grid search's calls")
        ax.set_ylabel(m.replace("recall", "Recall"))
    axes.flat[-1].legend(frameon=False, loc="best")
    fig.tight_layout()
    return _save(fig, path)


def _two_knobs(space: SearchSpace, knobs: Sequence[str] | None, ranking: Sequence[str] | None) -> tuple[str, str]:
    if knobs:
        if len(knobs) != 2 or not all(k in space.names for k in knobs):
            raise ValueError(f"knobs must name two parameters of {list(space.names)}, got {list(knobs)!r}")
        return knobs[0], knobs[1]
    order = [k for k in (ranking or []) if k in space.names and space.sizes[space.names.index(k)] > 1]
    order += [k for k in space.names if k not in order]
    return order[0], order[1]


def pull_heatmaps(space: SearchSpace, counts: Mapping[str, np.ndarray], *, path: Path, knobs: Sequence[str] | None = None,
                  ranking: Sequence[str] | None = None, title: str = "") -> Path:
    """Share of each strategy's pulls at each value pair of two knobs (summed over the other knobs)."""
    plt = _plt()
    if len(space.names) < 2:
        raise ValueError(f"a pull heatmap needs two knobs, the space has {list(space.names)}")
    a, b = _two_knobs(space, knobs, ranking)
    ia, ib = space.names.index(a), space.names.index(b)
    names = list(counts)
    nrows, ncols = _grid(len(names))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.7 * ncols + 0.8, 2.6 * nrows), squeeze=False,
                             layout="constrained")
    im = None
    shares = {}
    for s in names:
        t = np.asarray(counts[s], dtype=float).reshape(space.sizes)
        others = tuple(k for k in range(len(space.names)) if k not in (ia, ib))
        m = t.sum(axis=others) if others else t
        if ia > ib:
            m = m.T
        shares[s] = m / m.sum() if m.sum() > 0 else m
    vmax = max((float(m.max()) for m in shares.values()), default=1.0) or 1.0
    for ax, s in zip(axes.flat, names):
        im = ax.imshow(shares[s], cmap="viridis", aspect="auto", vmin=0, vmax=vmax)
        ax.set_title(s)
        ax.set_yticks(range(space.sizes[ia]), [str(v) for v in space.values(a)])
        ax.set_xticks(range(space.sizes[ib]), [str(v) for v in space.values(b)], rotation=35, ha="right")
        ax.set_ylabel(a)
        ax.set_xlabel(b)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="share of pulls")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def marginals(space: SearchSpace, *, path: Path, means: np.ndarray | None = None,
              pulls: Sequence[tuple[Mapping[str, Any], float]] | None = None, title: str = "") -> Path:
    """Per knob: the grid's mean (and best/worst) over the other knobs, or the pulls' mean reward with 95% CI."""
    plt = _plt()
    names = list(space.names)
    nrows, ncols = _grid(len(names), 5)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.4 * ncols, 2.2 * nrows), squeeze=False, sharey=True)
    if means is not None:
        data = grid_marginals(space, means)
    else:
        data = pull_marginals(space, [c for c, _ in pulls or []], [r for _, r in pulls or []])
    for ax, name in zip(axes.flat, names):
        d = data[name]
        x = np.arange(len(d["values"]))
        if means is not None:
            ax.fill_between(x, d["min"], d["max"], color="tab:blue", alpha=0.12, lw=0, label="worst..best")
            ax.plot(x, d["max"], color="tab:blue", lw=0.8, ls="--", label="best")
            ax.plot(x, d["mean"], color="tab:blue", marker="o", ms=3, lw=1.3, label="mean")
        else:
            ax.errorbar(x, d["mean"], yerr=np.nan_to_num(d["ci"]), color="tab:blue", marker="o", ms=3, capsize=2)
            for xi, (n, m) in enumerate(zip(d["pulls"], d["mean"])):
                if not math.isnan(m):
                    ax.annotate(str(n), (xi, m), textcoords="offset points", xytext=(3, 3), fontsize=6, color="gray")
        ax.set_xticks(x, [str(v) for v in d["values"]], rotation=45 if len(x) > 4 else 0)
        ax.set_title(name)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes[0, 0].set_ylabel("grid mean reward" if means is not None else "mean reward of pulls")
    if means is not None:
        axes[0, 0].legend(frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def importance(results: Mapping[str, Mapping[str, Any]], *, path: Path, title: str = "") -> Path:
    """Parameter importance: bars for one table (main effects and the largest interactions), a
    table x knob heatmap of main-effect shares for several."""
    plt = _plt()
    names = list(results)
    if len(names) == 1:
        imp = results[names[0]]
        items = sorted(imp["main"].items(), key=lambda kv: -kv[1])
        pairs = sorted(imp.get("pairs", {}).items(), key=lambda kv: -kv[1])[:4]
        labels = [k for k, _ in items] + [f"{a} x {b}" for (a, b), _ in pairs]
        vals = [v for _, v in items] + [v for _, v in pairs]
        fig, ax = plt.subplots(figsize=(4.6, 0.3 * len(labels) + 0.8))
        ax.barh(range(len(vals)), vals, color=["tab:blue"] * len(items) + ["tab:orange"] * len(pairs))
        ax.set_yticks(range(len(vals)), labels)
        ax.invert_yaxis()
        ax.set_xlabel("share of variance" if pairs else "share of reward variance (eta squared)")
        ax.set_title(title or names[0])
    else:
        knobs = list(dict.fromkeys(k for n in names for k in results[n]["main"]))
        m = np.array([[results[n]["main"].get(k, np.nan) for k in knobs] + [sum(results[n].get("pairs", {}).values())]
                      for n in names])
        fig, ax = plt.subplots(figsize=(0.9 * (len(knobs) + 1) + 2.5, 0.32 * len(names) + 1.2))
        im = ax.imshow(m, cmap="Blues", vmin=0, vmax=1, aspect="auto")
        for (i, j), v in np.ndenumerate(m):
            if not np.isnan(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v > 0.6 else "black")
        ax.set_xticks(range(len(knobs) + 1), knobs + ["pairwise\ninteractions"], rotation=30, ha="right")
        ax.set_yticks(range(len(names)), names)
        fig.colorbar(im, ax=ax, shrink=0.8, label="share of grid variance")
        ax.set_title(title or "parameter importance (functional ANOVA of the grid means)")
    fig.tight_layout()
    return _save(fig, path)


def best_forest(rows: Sequence[Mapping[str, Any]], *, path: Path, title: str = "") -> Path:
    """Configurations with point estimates and intervals (``label``, ``mean``, ``low``, ``high``, optional ``true``)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 0.28 * len(rows) + 0.9))
    y = np.arange(len(rows))
    mean = np.array([r["mean"] for r in rows], float)
    low = np.array([r["low"] for r in rows], float)
    high = np.array([r["high"] for r in rows], float)
    ax.errorbar(mean, y, xerr=[np.nan_to_num(mean - low), np.nan_to_num(high - mean)], fmt="o", ms=3, capsize=2,
                color="tab:blue", label="estimate, 95% interval")
    if any("true" in r for r in rows):
        ax.scatter([r.get("true", np.nan) for r in rows], y, marker="x", color="tab:red", s=14, label="grid mean", zorder=3)
    ax.set_yticks(y, [r["label"] for r in rows], fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel("reward")
    ax.legend(frameon=True, framealpha=0.8, loc="best", fontsize=6)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def run_regret(rows: Sequence[Mapping[str, Any]], pulls: Sequence[tuple[Mapping[str, Any], float]], *, path: Path) -> Path:
    """One run: cumulative regret against calls (when a ground truth was known), else rewards per pull."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.0, 2.6))
    if rows and "cumulative_regret" in rows[0]:
        x = [100 * float(r.get("calls_share", i)) for i, r in enumerate(rows)]
        ax.plot(x, [float(r["cumulative_regret"]) for r in rows], color="tab:blue", label="cumulative regret")
        ax.set_xlabel("% of grid search's calls" if "calls_share" in rows[0] else "pull")
        ax.set_ylabel("cumulative regret")
        if "simple_regret" in rows[0]:
            ax2 = ax.twinx()
            ax2.plot(x, [float(r["simple_regret"]) if r["simple_regret"] != "" else np.nan for r in rows],
                     color="tab:orange", lw=1, label="simple regret")
            ax2.set_ylabel("simple regret", color="tab:orange")
    else:
        r = np.array([v for _, v in pulls], float)
        ax.plot(r, ".", ms=2, color="gray", alpha=0.5, label="reward")
        if len(r):
            k = max(1, len(r) // 20)
            ax.plot(np.convolve(r, np.ones(k) / k, mode="valid"), color="tab:blue", label=f"moving mean ({k})")
        ax.set_xlabel("pull")
        ax.set_ylabel("reward")
        ax.legend(frameon=False)
    fig.tight_layout()
    return _save(fig, path)


# -- a tuning run's plots -----------------------------------------------------------------------------
def plot_regret(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str], *, title: str = "") -> Path:
    """Simple regret of the recommended configuration and cumulative regret, per pull.

    ``rows`` are :class:`~autorag_hp.regret.RegretLog` rows (``calls_share``, ``regret``,
    ``cumulative_regret`` and ``simple_regret``).
    """
    if not rows:
        raise ValueError("rows must hold at least one pull, got none")
    plt = _plt()
    share = [100.0 * r["calls_share"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    try:
        ax1.step(share, [r["simple_regret"] for r in rows], where="post", color="tab:blue")
        ax1.set_xlabel("calls spent (% of grid search)")
        ax1.set_ylabel("simple regret of best(1)")
        ax1.set_title("regret of the recommended configuration")
        ax1.set_ylim(bottom=0)
        ax1.grid(alpha=0.3)
        pulls = [r["pull"] + 1 for r in rows]
        ax2.plot(pulls, [r["cumulative_regret"] for r in rows], color="tab:red", label="cumulative regret")
        ax2.set_xlabel("pull")
        ax2.set_ylabel("cumulative regret")
        ax2.set_title("regret of the configurations pulled")
        ax2.grid(alpha=0.3)
        if title:
            fig.suptitle(title)
        return _save(fig, Path(path), dpi=120, close=False)
    finally:
        plt.close(fig)


def plot_pulls(
    labels: Sequence[str],
    pulls: Sequence[int],
    true_means: Sequence[float] | None,
    path: str | os.PathLike[str],
    *,
    title: str = "",
    annotate: int = 5,
) -> Path:
    """Pulls per configuration; with ``true_means`` the configurations are ordered best first
    and the true mean is drawn over the bars, so a good run shows its pulls on the left."""
    if len(labels) != len(pulls) or (true_means is not None and len(true_means) != len(pulls)):
        raise ValueError(
            f"labels, pulls and true_means must have the same length, got {len(labels)}, {len(pulls)}, "
            f"{None if true_means is None else len(true_means)}"
        )
    if not labels:
        raise ValueError("labels must hold at least one configuration, got none")
    plt = _plt()
    n = len(labels)
    order = (sorted(range(n), key=lambda i: -true_means[i]) if true_means is not None
             else sorted(range(n), key=lambda i: -pulls[i]))
    fig, ax = plt.subplots(figsize=(max(8.0, min(20.0, n * 0.06 + 6)), 4.5))
    try:
        xs = list(range(1, n + 1))
        ax.bar(xs, [pulls[i] for i in order], width=1.0, color="tab:blue", alpha=0.75, label="pulls")
        ax.set_xlabel("configuration, by true mean reward (1 = best)" if true_means is not None
                      else "configuration, by pulls")
        ax.set_ylabel("pulls")
        ax.set_xlim(0.5, n + 0.5)
        if max(pulls) > 20:  # bandits pile pulls on a few arms: keep the small bars visible
            ax.set_yscale("symlog", linthresh=1)
            ax.set_ylabel("pulls (log scale above 1)")
        if true_means is not None:
            ax2 = ax.twinx()
            ax2.plot(xs, [true_means[i] for i in order], color="tab:orange", label="true mean reward")
            ax2.set_ylabel("true mean reward (grid)")
            handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
            ax.legend(handles, ["pulls", "true mean reward"], loc="upper right")
        most = sorted(range(n), key=lambda i: -pulls[i])[: max(0, annotate)]
        pos = {c: k + 1 for k, c in enumerate(order)}
        for i in most:
            if pulls[i] > 0:
                ax.annotate(labels[i], (pos[i], pulls[i]), fontsize=6, rotation=60, ha="left", va="bottom")
        if title:
            ax.set_title(title)
        return _save(fig, Path(path), dpi=120, close=False)
    finally:
        plt.close(fig)
