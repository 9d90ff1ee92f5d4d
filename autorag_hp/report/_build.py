"""Assemble a report: figures as PNG files plus one self-contained HTML page (images inlined)."""

from __future__ import annotations

import base64
import html
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from autorag_hp.report import _figures as F
from autorag_hp.report._analysis import grid_importance, mean_ci, pull_importance
from autorag_hp.report._load import Results, TableInfo, load_results

__all__ = ["build_report", "figures_for"]

_MARK = {"better": "▲", "worse": "▼"}
_BUCKET_ORDER = ["real", "easy", "medium", "hard"]


def _buckets(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    names = list(dict.fromkeys(r["bucket"] for r in rows))
    return sorted(names, key=lambda b: (_BUCKET_ORDER.index(b) if b in _BUCKET_ORDER else len(_BUCKET_ORDER), b))


def _label(config: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items())


def _strategies(res: Results) -> list[str]:
    names = res.payload.get("strategies") if res.kind == "suite" else None
    return list(names) if names else list(dict.fromkeys(r["strategy"] for r in res.runs))


def _focus(res: Results, table: str | None) -> TableInfo | None:
    if table is not None:
        if table not in res.tables:
            raise ValueError(f"table must be one of {sorted(res.tables)}, got {table!r}")
        return res.tables[table]
    with_means = [t for t in res.tables.values() if t.means is not None]
    for t in with_means:
        if t.bucket == "real":
            return t
    for t in with_means:  # the middle synthetic surface shows structure best
        if t.extra.get("difficulty") == "medium" and (t.extra.get("w") in (None, 1.0)):
            return t
    return with_means[0] if with_means else next(iter(res.tables.values()), None)


def _importances(res: Results) -> dict[str, dict[str, Any]]:
    out = {}
    for name, t in res.tables.items():
        if t.means is not None and len(t.space) > 1:
            out[name] = grid_importance(t.space, t.means)
    if not out and res.pulls:
        t = next(iter(res.tables.values()))
        out["pulls"] = pull_importance(t.space, [c for c, _ in res.pulls], [r for _, r in res.pulls])
    return out


def _best_rows_grid(t: TableInfo, n: int = 10) -> list[dict[str, Any]]:
    order = np.argsort(-t.means, kind="stable")[:n]
    rows = []
    for rank, i in enumerate(order, start=1):
        m = float(t.means[i])
        half = 1.96 * float(t.sems[i]) if t.sems is not None else math.nan
        rows.append({"rank": rank, "label": _label(t.space.config(int(i))), "mean": m, "low": m - half, "high": m + half})
    return rows


def _best_rows_pulls(res: Results, n: int = 10) -> list[dict[str, Any]]:
    if res.recommendations:
        return [{"rank": i + 1, "label": _label(r["config"]), "mean": float(r.get("mean", math.nan)),
                 "low": float(r.get("ci_low", math.nan)), "high": float(r.get("ci_high", math.nan)),
                 "pulls": r.get("pulls"), **({"true": float(r["true_mean"])} if "true_mean" in r else {})}
                for i, r in enumerate(res.recommendations[:n])]
    by: dict[str, list[float]] = {}
    for c, r in res.pulls:
        by.setdefault(_label(c), []).append(r)
    stats = []
    for label, rs in by.items():
        m, h = mean_ci(rs)
        stats.append({"label": label, "mean": m, "low": m - h if len(rs) > 1 else math.nan,
                      "high": m + h if len(rs) > 1 else math.nan, "pulls": len(rs)})
    stats.sort(key=lambda s: (-(s["pulls"] > 1), -s["mean"]))
    return [{"rank": i + 1, **s} for i, s in enumerate(stats[:n])]


def _recommended(res: Results, t: TableInfo, budget: float | None) -> list[dict[str, Any]]:
    """Per strategy, its most frequent top recommendation over seeds on table ``t``."""
    out = []
    for s in _strategies(res):
        rs = [r for r in res.runs if r["strategy"] == s and r.get("table", t.name) == t.name
              and (budget is None or r.get("budget") == budget) and r.get("best")]
        if not rs:
            continue
        picks = Counter(_label(r["best"][0]["config"]) for r in rs)
        label, k = picks.most_common(1)[0]
        first = next(r["best"][0] for r in rs if _label(r["best"][0]["config"]) == label)
        row = {"strategy": s, "label": label, "seeds": f"{k}/{len(rs)}", "mean": first["mean"],
               "low": first["ci_low"], "high": first["ci_high"], "pulls": first["pulls"]}
        if t.means is not None and not (res.kind == "suite" and t.extra.get("per_seed_surface")):
            i = t.space.index(first["config"])
            row["true"] = float(t.means[i])
            row["true_rank"] = int((t.means > t.means[i] + 1e-12).sum()) + 1
        out.append(row)
    return out


def figures_for(res: Results, out: Path, *, table: str | None = None, knobs: Sequence[str] | None = None) -> dict[str, Path]:
    """Draw every figure the results support into ``out``; returns {name: path}."""
    figs: dict[str, Path] = {}
    strategies = _strategies(res)
    top = max((b for b in res.budgets if b is not None), default=None)
    imps = _importances(res)
    focus = _focus(res, table)
    if res.kind in ("suite", "bench") and res.runs:
        top_runs = [r for r in res.runs if top is None or r.get("budget") == top]
        group = "bucket" if res.kind == "suite" else "table"
        figs["regret"] = F.regret_curves(top_runs, group=group, strategies=strategies, path=out / "regret_curves.png")
        if res.kind == "suite" and res.bucket_summary:
            figs["recall"] = F.recall_vs_budget(res.bucket_summary, strategies=strategies,
                                                buckets=_buckets(res.bucket_summary), path=out / "recall_vs_budget.png")
        else:
            figs["recall"] = F.recall_curves(top_runs, strategies=strategies, path=out / "recall_curves.png")
    elif res.kind == "run":
        figs["regret"] = F.run_regret(res.regret_rows, res.pulls, path=out / "run_curve.png")
    if focus is not None:
        ranking = None
        if focus.name in imps:
            ranking = sorted(imps[focus.name]["main"], key=lambda k: -imps[focus.name]["main"][k])
        elif "pulls" in imps:
            ranking = sorted(imps["pulls"]["main"], key=lambda k: -imps["pulls"]["main"][k])
        counts = {c["strategy"]: c["counts"] for c in res.pull_counts
                  if c["table"] == focus.name and (c["budget"] == top or c["budget"] is None)}
        if counts and len(focus.space.names) >= 2:
            counts = {s: counts[s] for s in strategies if s in counts} or counts
            figs["heatmap"] = F.pull_heatmaps(focus.space, counts, path=out / "pull_heatmap.png", knobs=knobs,
                                              ranking=ranking)
        if focus.means is not None:
            figs["marginals"] = F.marginals(focus.space, means=focus.means, path=out / "marginals.png")
        elif res.pulls:
            figs["marginals"] = F.marginals(focus.space, pulls=res.pulls, path=out / "marginals.png")
    if imps:
        figs["importance"] = F.importance(imps, path=out / "importance.png")
    if res.kind == "run" and res.pulls:
        rows = _best_rows_pulls(res)
        if rows:
            figs["best"] = F.best_forest(rows, path=out / "best_configs.png", title="the run's best configurations")
    elif focus is not None and focus.means is not None:
        rows = _best_rows_grid(focus)
        figs["best"] = F.best_forest(rows, path=out / "best_configs.png", title=f"grid's best configurations ({focus.name})")
    return figs


# -- HTML --------------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;font-size:.82em;margin:.5em 0 1.2em} th,td{padding:.2em .6em;border-bottom:1px solid #eee;text-align:right}
th{background:#f6f6f6} td:first-child,th:first-child,td.l{text-align:left} img{max-width:100%;height:auto}
.ref{font-weight:600} .better{color:#0a7d28} .worse{color:#b3261e} .note{color:#666;font-size:.85em}
"""


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>'


def _fmt(v: Any, nd: int = 3) -> str:
    if isinstance(v, float):
        return "–" if math.isnan(v) else f"{v:.{nd}f}"
    return html.escape(str(v))


def _cell(row: Mapping[str, Any], m: str, nd: int) -> str:
    sig = row.get("sig_" + m, "")
    mark = f' <span class="{sig}">{_MARK[sig]}</span>' if sig in _MARK else ""
    return f"<td>{row[m]:.{nd}f} ± {row[m + '_ci']:.{nd}f}{mark}</td>"


def _summary_table(rows: Sequence[Mapping[str, Any]], reference: str | None) -> str:
    head = ("<tr><th>strategy</th><th>seeds</th><th>Recall@3</th><th>Recall@5</th><th>simple regret</th>"
            "<th>cumulative regret</th><th>grid calls</th></tr>")
    body = []
    for r in sorted(rows, key=lambda r: (-r["recall@3"], r["simple_regret"])):
        ref = r["strategy"] == reference
        body.append(f'<tr{" class=ref" if ref else ""}><td>{html.escape(r["strategy"])}{" (reference)" if ref else ""}</td>'
                    f'<td>{r.get("seeds", "")}</td>{_cell(r, "recall@3", 3)}{_cell(r, "recall@5", 3)}'
                    f'{_cell(r, "simple_regret", 4)}{_cell(r, "cumulative_regret", 2)}<td>{100 * r["calls_share"]:.1f}%</td></tr>')
    return f"<table>{head}{''.join(body)}</table>"


def _rows_table(rows: Sequence[Mapping[str, Any]], cols: Sequence[tuple[str, str]]) -> str:
    head = "".join(f"<th>{html.escape(t)}</th>" for _, t in cols)
    body = "".join("<tr>" + "".join(f'<td{" class=l" if k in ("label", "strategy") else ""}>{_fmt(r.get(k, ""), 4)}</td>'
                                    for k, _ in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _settings(res: Results) -> str:
    items = "".join(f"<tr><td>{html.escape(str(k))}</td><td class=l>{_fmt(v)}</td></tr>"
                    for k, v in res.settings.items() if v is not None)
    return f"<table>{items}</table>"


def _html(res: Results, figs: Mapping[str, Path], *, table: str | None) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(res.title)}</title>",
             f"<style>{_CSS}</style></head><body><h1>{html.escape(res.title)}</h1>",
             f"<p class=note>Made by <code>autorag-hp report</code> from {html.escape(str(res.source))} on "
             f"{time.strftime('%Y-%m-%d %H:%M')}. Images are inlined; this file is self-contained.</p>",
             "<h2>Settings</h2>", _settings(res)]
    if res.skipped:
        parts.append("<p class=note>Skipped tables: " + "; ".join(
            f"<b>{html.escape(s['table'])}</b> ({html.escape(s['reason'])})" for s in res.skipped) + "</p>")
    if res.kind == "suite" and res.bucket_summary:
        parts.append("<h2>Results per difficulty bucket</h2><p class=note>Mean ± 95% CI over seeds (each seed's value "
                     f"averaged over the bucket's tables). ▲/▼: significantly better/worse than the reference "
                     f"({html.escape(str(res.reference))}) by a paired Wilcoxon signed-rank test over tables × seeds, "
                     "Holm-corrected across strategies, α = 0.05.</p>")
        for b in _buckets(res.bucket_summary):
            for budget in sorted({r["budget"] for r in res.bucket_summary if r["bucket"] == b}):
                sel = [r for r in res.bucket_summary if r["bucket"] == b and r["budget"] == budget]
                tables = sorted({t for r in sel for t in r.get("tables", [])})
                parts.append(f"<h3>{html.escape(b)} — budget {budget:.0%} <span class=note>({html.escape(', '.join(tables))})</span></h3>")
                parts.append(_summary_table(sel, res.reference))
    elif res.table_summary:
        parts.append("<h2>Summary</h2><p class=note>Mean ± 95% CI over seeds.</p>")
        parts.append(_summary_table(res.table_summary, None))
    captions = {
        "regret": ("Regret", "Cumulative regret (true mean of the best configuration minus that of each pulled one, "
                             "summed over pulls) against the share of grid search's calls; mean and 95% band over seeds."),
        "recall": ("Recall@x against budget", "Share of a strategy's top-x recommendations among grid search's top-x "
                                              "(AutoRAG-HP's Recall@x); mean and 95% CI over seeds."),
        "heatmap": ("Where the pulls went", "Share of each strategy's pulls at each value pair of two knobs (summed over "
                                            "the other knobs and over seeds), at the largest budget."),
        "marginals": ("Marginal effects", "Per knob: the grid's mean reward over all other knobs (line) and the best and "
                                          "worst configuration with that value (band); for a run, the pulls' mean reward "
                                          "with 95% CI and the number of pulls."),
        "importance": ("Parameter importance", "Functional ANOVA of the grid means: each knob's share of the variance "
                                               "(main effect) and of pairwise interactions; from a run's pulls, the "
                                               "correlation ratio (eta squared) of rewards with each knob."),
        "best": ("Best configurations", "Grid means with 95% intervals over the table's questions (or the run's "
                                        "estimates with the strategy's 95% intervals)."),
    }
    for key in ("regret", "recall", "heatmap", "marginals", "importance", "best"):
        if key in figs:
            h, cap = captions[key]
            parts.append(f"<h2>{h}</h2><p class=note>{cap}</p>{_img(figs[key], h)}")
    focus = _focus(res, table)
    if focus is not None and res.kind in ("suite", "bench") and res.runs:
        top = max((b for b in res.budgets if b is not None), default=None)
        rec = _recommended(res, focus, top)
        if rec:
            cols = [("strategy", "strategy"), ("label", "most frequent recommendation"), ("seeds", "seeds"),
                    ("mean", "estimate"), ("low", "95% low"), ("high", "95% high"), ("pulls", "pulls")]
            if any("true" in r for r in rec):
                cols += [("true", "grid mean"), ("true_rank", "grid rank")]
            parts.append(f"<h3>Recommendations on {html.escape(focus.name)}"
                         f"{f' at budget {top:.0%}' if top else ''}</h3>" + _rows_table(rec, cols))
    if res.kind == "run":
        cols = [("rank", "rank"), ("label", "configuration"), ("mean", "estimate"), ("low", "95% low"),
                ("high", "95% high"), ("pulls", "pulls")]
        rows = _best_rows_pulls(res)
        if any("true" in r for r in rows):
            cols.append(("true", "grid mean"))
        parts.append("<h3>Best configurations</h3>" + _rows_table(rows, cols))
    if focus is not None and focus.means is not None:
        parts.append(f"<h3>Grid's top configurations ({html.escape(focus.name)})</h3>" + _rows_table(
            _best_rows_grid(focus), [("rank", "rank"), ("label", "configuration"), ("mean", "grid mean"),
                                     ("low", "95% low"), ("high", "95% high")]))
    parts.append("</body></html>")
    return "\n".join(parts)


def build_report(source: str | Path, *, out: str | Path | None = None, table: str | None = None,
                 knobs: Sequence[str] | None = None) -> Path:
    """Write ``report.html`` (self-contained) and its PNGs for a suite folder, a bench JSON or a tune run folder.

    ``out`` defaults to ``<source folder>/report``; ``table`` picks the table whose heatmap,
    marginals and best configurations are shown (default: the first real grid); ``knobs``
    names the two knobs of the pull heatmap (default: the two most important).
    Returns the HTML file's path.
    """
    res = load_results(source)
    base = res.source if res.source.is_dir() else res.source.parent
    out_dir = Path(out) if out is not None else base / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    figs = figures_for(res, out_dir, table=table, knobs=knobs)
    page = out_dir / "report.html"
    page.write_text(_html(res, figs, table=table), encoding="utf-8")
    return page
