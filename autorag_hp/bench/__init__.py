"""The bandit-vs-grid benchmark: grid tables replayed as objectives, synthetic surfaces, runs, suites.

- tables: :class:`ReplayTable` (a complete grid), :class:`TableObjective` (one pull samples
  questions from it), :func:`load_grid` (a grid CSV and its JSON sidecar, in the order the
  grid was made with);
- synthetic surfaces of controlled difficulty: :func:`make_surface`, :func:`make_proxy`;
- runs: :func:`run_one` (one strategy, one seed), :func:`run_budgets` (several budgets from
  one run), :func:`run_replay` (every strategy and seed on one table);
- suites: :func:`load_suite` and :func:`run_suite` (tables x strategies x budgets x seeds);
- statistics and tables: :func:`summarise`, :func:`summarise_buckets`, :func:`format_table`,
  :func:`format_suite_table`, :func:`markdown_suite_table`.
"""

from __future__ import annotations

from autorag_hp.bench._format import format_suite_table, format_table, markdown_suite_table
from autorag_hp.bench._run import recommendation_metrics, run_budgets, run_one, run_replay, write_results
from autorag_hp.bench._stats import (
    ALPHA,
    METRICS,
    RECALL_AT,
    holm,
    mean_ci,
    summarise,
    summarise_buckets,
    summarise_tables,
    wilcoxon,
)
from autorag_hp.bench._suite import (
    SuiteSpec,
    TableSpec,
    TableUnavailable,
    find_suite,
    list_suites,
    load_suite,
    load_table,
    run_suite,
)
from autorag_hp.bench._synthetic import DEFAULT_PARAMS, DIFFICULTIES, make_proxy, make_surface
from autorag_hp.bench._table import (
    LoadedGrid,
    ReplayTable,
    TableObjective,
    default_grid_path,
    describe_table,
    load_grid,
    load_rows,
    read_sidecar,
)

__all__ = [
    # tables
    "ReplayTable",
    "TableObjective",
    "LoadedGrid",
    "load_grid",
    "load_rows",
    "read_sidecar",
    "default_grid_path",
    "describe_table",
    # synthetic surfaces
    "DIFFICULTIES",
    "DEFAULT_PARAMS",
    "make_surface",
    "make_proxy",
    # runs
    "recommendation_metrics",
    "run_one",
    "run_budgets",
    "run_replay",
    "write_results",
    # suites
    "SuiteSpec",
    "TableSpec",
    "TableUnavailable",
    "find_suite",
    "list_suites",
    "load_suite",
    "load_table",
    "run_suite",
    # statistics and tables
    "METRICS",
    "RECALL_AT",
    "ALPHA",
    "mean_ci",
    "wilcoxon",
    "holm",
    "summarise",
    "summarise_tables",
    "summarise_buckets",
    "format_table",
    "format_suite_table",
    "markdown_suite_table",
]
