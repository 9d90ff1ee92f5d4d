"""Plain-text and Markdown tables of benchmark summaries."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

__all__ = ["format_table", "format_suite_table", "markdown_suite_table"]


def format_table(summary: Sequence[Mapping[str, Any]]) -> str:
    """Plain-text table of :func:`autorag_hp.bench.summarise` rows (mean ± 95% CI over seeds)."""
    header = f"{'strategy':<34} {'seeds':>5} {'Recall@3':>14} {'Recall@5':>14} {'simple regret':>17} {'cum. regret':>16} {'grid calls':>12}"
    lines = [header, "-" * len(header)]
    for r in summary:
        lines.append(
            f"{r['strategy']:<34} {r['seeds']:>5} "
            f"{r['recall@3']:>7.3f}±{r['recall@3_ci']:<6.3f} {r['recall@5']:>7.3f}±{r['recall@5_ci']:<6.3f} "
            f"{r['simple_regret']:>9.4f}±{r['simple_regret_ci']:<7.4f} {r['cumulative_regret']:>9.2f}±{r['cumulative_regret_ci']:<6.2f} "
            f"{100 * r['calls_share']:>11.1f}%"
        )
    return "\n".join(lines)


_MARK = {"better": "▲", "worse": "▼", "": ""}


def _cell(row: Mapping[str, Any], m: str, fmt: str) -> str:
    mark = _MARK[row.get("sig_" + m, "")]
    return f"{row[m]:{fmt}}±{row[m + '_ci']:{fmt}}{mark}"


def _bucket_order(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    pref = ["real", "easy", "medium", "hard", "nonadditive"]
    names = list(dict.fromkeys(r["bucket"] for r in rows))
    return sorted(names, key=lambda b: (pref.index(b) if b in pref else len(pref), b))


def format_suite_table(payload: Mapping[str, Any]) -> str:
    """Plain-text per-bucket table (mean ± 95% CI; ▲/▼ significantly better/worse than the reference)."""
    rows = payload["bucket_summary"]
    ref = payload.get("reference")
    lines = []
    for bucket in _bucket_order(rows):
        for budget in sorted({r["budget"] for r in rows if r["bucket"] == bucket}):
            sel = [r for r in rows if r["bucket"] == bucket and r["budget"] == budget]
            tables = sorted({t for r in sel for t in r["tables"]})
            lines.append(f"\n[{bucket}] budget {budget:.0%} of grid calls; tables: {', '.join(tables)}")
            header = f"{'strategy':<26} {'Recall@3':>15} {'Recall@5':>15} {'simple regret':>17} {'cum. regret':>17} {'calls':>7}"
            lines += [header, "-" * len(header)]
            for r in sorted(sel, key=lambda r: (-r["recall@3"], r["simple_regret"])):
                name = r["strategy"] + (" (ref)" if r["strategy"] == ref else "")
                lines.append(f"{name:<26} {_cell(r, 'recall@3', '.3f'):>15} {_cell(r, 'recall@5', '.3f'):>15} "
                             f"{_cell(r, 'simple_regret', '.4f'):>17} {_cell(r, 'cumulative_regret', '.2f'):>17} "
                             f"{100 * r['calls_share']:>6.1f}%")
    return "\n".join(lines)


def markdown_suite_table(payload: Mapping[str, Any], *, budgets: Sequence[float] | None = None) -> str:
    """Markdown version of :func:`format_suite_table`, one table per bucket with a column group per budget."""
    rows = payload["bucket_summary"]
    ref = payload.get("reference")
    out = []
    for bucket in _bucket_order(rows):
        bs = sorted({r["budget"] for r in rows if r["bucket"] == bucket})
        if budgets is not None:
            bs = [b for b in bs if b in budgets]
        tables = sorted({t for r in rows if r["bucket"] == bucket for t in r["tables"]})
        out.append(f"\n**{bucket}** ({', '.join(tables)})\n")
        out.append("| budget | strategy | Recall@3 | Recall@5 | simple regret | cumulative regret | grid calls |")
        out.append("|---|---|---|---|---|---|---|")
        for b in bs:
            sel = sorted((r for r in rows if r["bucket"] == bucket and r["budget"] == b),
                         key=lambda r: (-r["recall@3"], r["simple_regret"]))
            for r in sel:
                name = f"**{r['strategy']}** (ref)" if r["strategy"] == ref else r["strategy"]
                out.append(f"| {b:.0%} | {name} | {_cell(r, 'recall@3', '.2f')} | {_cell(r, 'recall@5', '.2f')} | "
                           f"{_cell(r, 'simple_regret', '.3f')} | {_cell(r, 'cumulative_regret', '.1f')} | "
                           f"{100 * r['calls_share']:.1f}% |")
    return "\n".join(out)
