"""Reports people would rather look at: one self-contained HTML page and its PNGs.

``build_report(path)`` reads a suite folder (``suite.json``), a bench JSON or a ``tune``
run folder (``journal.jsonl``) and draws regret curves with bands over seeds, Recall@x
against budget, pulls per configuration over two knobs, per-knob marginal effects,
parameter importance and the best configurations with intervals. ``plot_regret`` and
``plot_pulls`` draw a tuning run's regret curve and pulls per configuration. matplotlib
(the ``plot`` extra) is imported only when figures are drawn.
"""

from __future__ import annotations

from autorag_hp.report._analysis import grid_importance, grid_marginals, pull_importance, pull_marginals
from autorag_hp.report._build import build_report, figures_for
from autorag_hp.report._figures import plot_pulls, plot_regret
from autorag_hp.report._load import Results, TableInfo, load_results
from autorag_hp.report._pareto import plot_pareto

__all__ = [
    "build_report",
    "figures_for",
    "load_results",
    "Results",
    "TableInfo",
    "grid_importance",
    "grid_marginals",
    "pull_importance",
    "pull_marginals",
    "plot_regret",
    "plot_pulls",
    "plot_pareto",
]
