"""PNG plots of a tuning run: the regret curve and the pulls each configuration got.

matplotlib (the ``plot`` extra) is imported on first use with the non-interactive Agg
backend, so plotting works on a server with no display. Files are written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = ["plot_regret", "plot_pulls"]


def _pyplot():
    try:
        import matplotlib
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
        raise ModuleNotFoundError("plots need matplotlib: pip install 'autorag-hp[plot]'", name="matplotlib") from exc
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"path must end in .png, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
    try:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def plot_regret(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str], *, title: str = "") -> Path:
    """Simple regret of the recommended configuration and cumulative regret, per pull.

    ``rows`` are :class:`~autorag_hp.regret.RegretLog` rows (``calls_share``, ``regret``,
    ``cumulative_regret`` and ``simple_regret``).
    """
    if not rows:
        raise ValueError("rows must hold at least one pull, got none")
    plt = _pyplot()
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
        return _save(fig, path)
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
    plt = _pyplot()
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
        return _save(fig, path)
    finally:
        plt.close(fig)
