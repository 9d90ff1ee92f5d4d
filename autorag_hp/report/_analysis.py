"""What a grid or a run says about its knobs: marginal effects and parameter importance (numpy only)."""

from __future__ import annotations

import itertools
import math
from typing import Any, Mapping, Sequence

import numpy as np

from autorag_hp.space import SearchSpace

__all__ = ["grid_importance", "grid_marginals", "pull_importance", "pull_marginals", "mean_ci", "band"]


def _tensor(space: SearchSpace, means: Sequence[float] | np.ndarray) -> np.ndarray:
    m = np.asarray(means, dtype=float)
    if m.shape != (len(space),):
        raise ValueError(f"means must have one value per configuration ({len(space)}), got shape {m.shape}")
    return m.reshape(space.sizes)  # mixed radix, last parameter fastest == C order


def grid_importance(space: SearchSpace, means: Sequence[float] | np.ndarray, *, pairs: bool = True) -> dict[str, Any]:
    """Functional ANOVA of a complete grid under the uniform measure over configurations.

    The variance of the grid means splits into main effects (one knob) and pairwise
    interactions; the rest is higher-order. Returns ``{"main": {knob: share}, "pairs":
    {(a, b): share}, "higher": share, "variance": total}``, shares of the total variance
    (the decomposition of Hutter et al., 2014, computed exactly on the grid instead of a
    random-forest surrogate).
    """
    t = _tensor(space, means)
    mu = float(t.mean())
    var = float(((t - mu) ** 2).mean())
    names = space.names
    axes = range(len(names))
    main_f: dict[int, np.ndarray] = {}
    out_main: dict[str, float] = {}
    for i in axes:
        others = tuple(a for a in axes if a != i)
        f = t.mean(axis=others) - mu if others else t - mu
        main_f[i] = f
        out_main[names[i]] = float((f**2).mean() / var) if var > 0 else 0.0
    out_pairs: dict[tuple[str, str], float] = {}
    if pairs and len(names) >= 2:
        for i, j in itertools.combinations(axes, 2):
            others = tuple(a for a in axes if a not in (i, j))
            g = t.mean(axis=others) if others else t
            f = g - mu - main_f[i][:, None] - main_f[j][None, :]
            out_pairs[(names[i], names[j])] = float((f**2).mean() / var) if var > 0 else 0.0
    higher = max(0.0, 1.0 - sum(out_main.values()) - sum(out_pairs.values())) if var > 0 else 0.0
    return {"main": out_main, "pairs": out_pairs, "higher": higher, "variance": var}


def grid_marginals(space: SearchSpace, means: Sequence[float] | np.ndarray) -> dict[str, dict[str, list[float]]]:
    """Per knob and value: the mean, best and worst grid mean over every other knob's values."""
    t = _tensor(space, means)
    out = {}
    for i, name in enumerate(space.names):
        moved = np.moveaxis(t, i, 0).reshape(space.sizes[i], -1)
        out[name] = {"values": list(space.values(name)), "mean": moved.mean(axis=1).tolist(),
                     "max": moved.max(axis=1).tolist(), "min": moved.min(axis=1).tolist()}
    return out


def _pull_arrays(space: SearchSpace, configs: Sequence[Mapping[str, Any]], rewards: Sequence[float]):
    coords = np.array([space.coords(c) for c in configs], dtype=int).reshape(len(configs), len(space.names))
    r = np.asarray(rewards, dtype=float)
    if len(r) != len(coords):
        raise ValueError(f"configs and rewards must have the same length, got {len(coords)} and {len(r)}")
    return coords, r


def pull_importance(space: SearchSpace, configs: Sequence[Mapping[str, Any]], rewards: Sequence[float]) -> dict[str, Any]:
    """Correlation ratio (eta squared) of pull rewards with each knob: the share of the rewards'
    variance explained by that knob's value alone.

    A tuner samples knobs unevenly and together, so shares can overlap and need not sum
    to 1; read them as a ranking, not a decomposition.
    """
    coords, r = _pull_arrays(space, configs, rewards)
    if len(r) < 2:
        return {"main": {n: 0.0 for n in space.names}, "pairs": {}, "higher": 0.0, "variance": 0.0}
    mu = r.mean()
    ss = float(((r - mu) ** 2).sum())
    main = {}
    for i, name in enumerate(space.names):
        between = 0.0
        for v in range(space.sizes[i]):
            sel = coords[:, i] == v
            if sel.any():
                between += sel.sum() * (r[sel].mean() - mu) ** 2
        main[name] = float(between / ss) if ss > 0 else 0.0
    return {"main": main, "pairs": {}, "higher": math.nan, "variance": ss / (len(r) - 1)}


def mean_ci(values: Sequence[float] | np.ndarray, *, confidence: float = 0.95) -> tuple[float, float]:
    """Mean and Student-t half-width (0 for fewer than two values)."""
    from scipy import stats

    a = np.asarray(values, dtype=float)
    if len(a) == 0:
        return math.nan, math.nan
    if len(a) < 2:
        return float(a.mean()), 0.0
    return float(a.mean()), float(stats.t.ppf(0.5 + confidence / 2, len(a) - 1) * a.std(ddof=1) / math.sqrt(len(a)))


def pull_marginals(space: SearchSpace, configs: Sequence[Mapping[str, Any]], rewards: Sequence[float]) -> dict[str, dict[str, list[float]]]:
    """Per knob and value: pulls, mean reward and 95% CI half-width of the pulls with that value."""
    coords, r = _pull_arrays(space, configs, rewards)
    out = {}
    for i, name in enumerate(space.names):
        n, mean, half = [], [], []
        for v in range(space.sizes[i]):
            sel = r[coords[:, i] == v]
            m, h = mean_ci(sel)
            n.append(int(len(sel)))
            mean.append(m)
            half.append(h)
        out[name] = {"values": list(space.values(name)), "pulls": n, "mean": mean, "ci": half}
    return out


def band(xs: Sequence[Sequence[float]], ys: Sequence[Sequence[float]], grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and 95% CI half-width over runs of curves interpolated on ``grid`` (NaN outside a run's range)."""
    from scipy import stats

    rows = []
    for x, y in zip(xs, ys):
        x, y = np.asarray(x, float), np.asarray(y, float)
        if len(x) == 0:
            continue
        v = np.interp(grid, x, y)
        v[(grid > x[-1] + 1e-12) | (grid < x[0] - 1e-12)] = np.nan
        rows.append(v)
    if not rows:
        return np.full(len(grid), np.nan), np.full(len(grid), np.nan)
    a = np.vstack(rows)
    n = np.sum(~np.isnan(a), axis=0)
    import warnings

    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(a, axis=0)
        sd = np.nanstd(a, axis=0, ddof=1)
    tq = np.where(n >= 2, stats.t.ppf(0.975, np.maximum(n - 1, 1)), 0.0)
    half = np.where(n >= 2, tq * np.nan_to_num(sd) / np.sqrt(np.maximum(n, 1)), 0.0)
    mean[n == 0] = np.nan
    return mean, half
