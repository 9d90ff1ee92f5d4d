"""Statistics over seeds: means with 95% CIs, paired Wilcoxon signed-rank tests, Holm's correction."""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "METRICS",
    "HIGHER_IS_BETTER",
    "SIG_METRICS",
    "ALPHA",
    "RECALL_AT",
    "mean_ci",
    "wilcoxon",
    "holm",
    "summarise",
    "summarise_tables",
    "summarise_buckets",
]

RECALL_AT = (1, 3, 5)
"""Recall@x is reported for these x (keys ``recall@1``, ``recall@3``, ``recall@5``)."""

METRICS = (*(f"recall@{x}" for x in RECALL_AT), "simple_regret", "cumulative_regret", "calls_share")
"""Every metric a run reports and the summaries average over seeds."""

HIGHER_IS_BETTER = {**{f"recall@{x}": True for x in RECALL_AT}, "simple_regret": False,
                    "cumulative_regret": False, "calls_share": False}
SIG_METRICS = ("recall@3", "recall@5", "simple_regret", "cumulative_regret")
ALPHA = 0.05


def mean_ci(values: Iterable[float]) -> tuple[float, float]:
    """Mean and 95% half-width (Student t); the half-width is 0 for one value, the mean NaN for none."""
    from scipy import stats

    a = np.asarray(list(values), dtype=float)
    if len(a) < 2:
        return float(a.mean()) if len(a) else math.nan, 0.0
    return float(a.mean()), float(stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / math.sqrt(len(a)))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (NaN stays NaN)."""
    p = np.asarray(pvalues, dtype=float)
    ok = np.flatnonzero(~np.isnan(p))
    adj = np.full(len(p), math.nan)
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return adj.tolist()


def wilcoxon(d: Sequence[float] | np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences ``d`` (zeros split, ties mid-ranked).

    Exact (every sign assignment enumerated) for up to 16 non-zero differences, else the
    normal approximation; scipy's exact path for ties runs a slow permutation test.
    """
    from scipy import stats

    d = np.asarray(d, dtype=float)
    if len(d) < 2 or np.allclose(d, 0.0):
        return 1.0
    nonzero = d[d != 0]
    if len(nonzero) > 16:
        return float(stats.wilcoxon(d, zero_method="zsplit", method="approx").pvalue)
    ranks = stats.rankdata(np.abs(d))
    fixed = 0.5 * ranks[d == 0].sum()  # a zero's rank counts half on each side
    r = ranks[d != 0]
    observed = ranks[d > 0].sum() + fixed
    signs = (np.arange(2 ** len(r))[:, None] >> np.arange(len(r))) & 1
    null = signs @ r + fixed
    centre = r.sum() / 2 + fixed
    return float(np.mean(np.abs(null - centre) >= abs(observed - centre) - 1e-9))


def summarise(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per strategy: mean and 95% CI half-width of each metric over seeds."""
    by: dict[str, list[Mapping[str, Any]]] = {}
    for r in runs:
        by.setdefault(r["strategy"], []).append(r)
    out = []
    for name, rs in by.items():
        row: dict[str, Any] = {"strategy": name, "seeds": len(rs)}
        for m in METRICS:
            row[m], row[m + "_ci"] = mean_ci(r[m] for r in rs)
        out.append(row)
    return out


def summarise_tables(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per (table, budget, strategy): :func:`summarise` of the suite runs."""
    groups: dict[tuple[str, float], list[Mapping[str, Any]]] = {}
    buckets: dict[str, str] = {}
    for r in runs:
        groups.setdefault((r["table"], r["budget"]), []).append(r)
        buckets[r["table"]] = r["bucket"]
    out = []
    for (table, budget), rs in groups.items():
        for row in summarise(rs):
            out.append({"table": table, "bucket": buckets[table], "budget": budget, **row})
    return out


def summarise_buckets(runs: Sequence[Mapping[str, Any]], *, reference: str | None = None,
                      alpha: float = ALPHA) -> list[dict[str, Any]]:
    """Per (bucket, budget, strategy): mean and 95% CI over seeds of each metric averaged over
    the bucket's tables, and significance against ``reference``.

    For each metric in :data:`SIG_METRICS`, ``p_<metric>`` is the Holm-adjusted p-value of a
    Wilcoxon signed-rank test of the strategy's values minus the reference's over paired
    (table, seed) units; ``sig_<metric>`` is "better", "worse" or "" at ``alpha``.
    """
    by: dict[tuple[str, float], dict[str, dict[tuple[str, int], Mapping[str, Any]]]] = {}
    for r in runs:
        by.setdefault((r["bucket"], r["budget"]), {}).setdefault(r["strategy"], {})[(r["table"], r["seed"])] = r
    out = []
    for (bucket, budget), per_strat in by.items():
        rows: dict[str, dict[str, Any]] = {}
        for strat, units in per_strat.items():
            seeds = sorted({s for _, s in units})
            tables = sorted({t for t, _ in units})
            row: dict[str, Any] = {"bucket": bucket, "budget": budget, "strategy": strat, "seeds": len(seeds),
                                   "tables": tables}
            for m in METRICS:
                per_seed = [np.mean([u[m] for (t, s), u in units.items() if s == seed]) for seed in seeds]
                row[m], row[m + "_ci"] = mean_ci(per_seed)
            rows[strat] = row
        if reference is not None and reference in per_strat:
            ref = per_strat[reference]
            others = [s for s in per_strat if s != reference]
            for m in SIG_METRICS:
                raw = []
                for strat in others:
                    keys = sorted(set(per_strat[strat]) & set(ref))
                    d = np.array([per_strat[strat][k][m] - ref[k][m] for k in keys], dtype=float)
                    raw.append(wilcoxon(d) if len(keys) else math.nan)
                    rows[strat]["_diff_" + m] = float(d.mean()) if len(d) else 0.0
                for strat, p in zip(others, holm(raw)):
                    diff = rows[strat].pop("_diff_" + m)
                    sig = ""
                    if not math.isnan(p) and p < alpha and diff != 0:
                        better = (diff > 0) == HIGHER_IS_BETTER[m]
                        sig = "better" if better else "worse"
                    rows[strat]["p_" + m] = p
                    rows[strat]["sig_" + m] = sig
            rows[reference]["reference"] = True
        out.extend(rows.values())
    return out
