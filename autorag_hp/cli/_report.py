"""`autorag-hp report`: an HTML report (and PNGs) of a suite, a bench result or a tuning run."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "report",
        help="write a self-contained HTML report (and PNGs) of a bench/suite result or a tune run folder",
        description="Read a suite folder (suite.json), a bench JSON or a tune run folder (journal.jsonl) and write "
                    "report.html with regret curves, Recall@x against budget, pull heatmaps, marginal effects, "
                    "parameter importance and the best configurations.",
    )
    p.add_argument("source", metavar="RUN_OR_BENCH_DIR", help="suite/bench/run folder, or a results .json file")
    p.add_argument("--out", default=None, help="output folder (default: <source folder>/report)")
    p.add_argument("--table", default=None, help="suite table for the heatmap, marginals and best configurations")
    p.add_argument("--knobs", default=None, help="two comma-separated knobs for the pull heatmap (default: the two most important)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from autorag_hp.report import build_report

    knobs = [k.strip() for k in args.knobs.split(",")] if args.knobs else None
    page = build_report(args.source, out=args.out, table=args.table, knobs=knobs)
    print(f"report written to {page}")
    return 0
