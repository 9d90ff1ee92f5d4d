"""`autorag-hp tune`: tune a RAG pipeline, then measure the run against the full grid.

With no arguments: the reference pipeline on the embedded default evaluation set,
``structured-tt`` (our best strategy; ``--strategy hier-ucb`` for the paper's), a budget of 20% of grid search's calls. The run folder gets the journal,
the grid table, a per-pull regret log, a summary and two plots. ``--resume RUN_DIR``
continues an interrupted run (or extends it with a larger ``--budget``).
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

from autorag_hp.study import parse_budget

from autorag_hp.cli import _objectives

__all__ = ["add_parser", "run", "parse_budget"]

_EPILOG = """\
examples:
  autorag-hp tune                                   # the default: structured-tt, 20% of grid's calls
  autorag-hp tune --strategy hier-ucb:alpha_upper=1.5:alpha_lower=0.5   # the paper's Hier-UCB (best ablation)
  autorag-hp tune --strategy random --budget 0.1 --seed 3
  autorag-hp tune --data ../shared/data/squad2-dev-5-articles.json --batch 8
  autorag-hp tune --generator openai -G model=llama3.2 -G base_url=http://localhost:11434/v1 --metric f1
  autorag-hp tune --resume runs/20260101-120000 --budget 0.3   # continue, with a larger budget
  autorag-hp tune --pipeline mystack:build --space space.toml --data squad.json   # your own stack
"""


# flag -> Study keyword (the settings run.json records; --resume checks explicit flags against them)
_FLAGS = {"data": "data", "space": "space", "strategy": "strategy", "budget": "budget", "batch": "batch",
          "sampling": "sampling", "parallel": "parallel", "w": "w", "metric": "metric", "generator": "generator", "seed": "seed",
          "grid": "grid", "pipeline": "pipeline", "t_max": "t_max"}
_NAMES = {"generator_options": "--generator-option", "run_dir": "--out", "t_max": "--t-max", "cache": "--no-cache"}
_GRID = {"always": "full", "never": "none", "auto": "auto"}


def _flag(name: str) -> str:
    return _NAMES.get(name, f"--{name}")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "tune",
        help="tune a RAG pipeline's hyperparameters (the main job)",
        description=(
            "Tune a RAG pipeline's hyperparameters, then measure the run against the full grid. "
            "With no arguments: the reference pipeline on the embedded default evaluation set, structured-tt, "
            "a budget of 20% of grid search's calls; --pipeline MODULE:ATTR tunes a stack of your own. The run "
            "folder gets run.json, journal.jsonl, grid.csv, regret.csv, summary.json, regret.png and pulls.png."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = argparse.Namespace(data="default", strategy="structured-tt", budget="0.2", batch=4, parallel=1, w=0.9,
                           metric="answer_in_context", generator="none", seed=0)
    p.add_argument("--data", help=f"evaluation set: 'default' (embedded), a SQuAD JSON file, a JSON-lines "
                                  f"folder or file, or hf:<name>[@split] (default {d.data!r})")
    p.add_argument("--pipeline", metavar="MODULE:ATTR",
                   help="tune your own stack: a pipeline, a FunctionPipeline, or a zero-argument factory returning "
                        "one, found in the current folder or on PYTHONPATH (needs --space); default: the reference "
                        "pipeline")
    p.add_argument("--space", help="search space file (.toml, .json, .yaml); default: the reference pipeline's "
                                   "default space (pipelines/default_space.toml)")
    p.add_argument("--strategy", help=f"strategy name, or name:key=value:... (default {d.strategy!r}); "
                                      f"see --list-strategies")
    p.add_argument("--budget", help="share of grid search's calls in (0, 1] (0.2 or 20%%), or a number of "
                                    f"calls (an integer > 1) (default {d.budget})")
    p.add_argument("--batch", type=int, help="questions per pull (default: the strategy's, 2 for structured-tt, "
                                             f"{d.batch} for the others)")
    p.add_argument("--sampling", choices=("iid", "paired"),
                   help="how a pull picks its questions: iid = drawn afresh per pull; paired = the k-th pull of "
                        "every configuration gets the same questions (common random numbers: contenders are "
                        "compared on the same questions) (default: the strategy's, paired for structured-tt and "
                        "pareto-ts, iid for the others)")
    p.add_argument("--parallel", type=int, help=f"configurations asked per round, ask_batch (default {d.parallel})")
    p.add_argument("--w", type=float, help=f"quality weight of the reward w*quality - (1-w)*tokens/t_max "
                                          f"(default {d.w})")
    p.add_argument("--metric", help=f"quality metric: answer_in_context, em, f1, gold_recall, semantic, "
                                    f"judge_correctness, judge_faithfulness (default {d.metric!r}; all but "
                                    f"answer_in_context and gold_recall need a generator; the judge_* metrics read "
                                    f"AUTORAG_HP_JUDGE_BASE_URL / _MODEL / _API_KEY, see docs/metrics.md)")
    p.add_argument("--generator", help=f"answer generator: none, smollm2, openai, ... (default {d.generator!r})")
    p.add_argument("-G", "--generator-option", action="append", metavar="KEY=VALUE",
                   help="generator option, repeatable (e.g. -G model=gpt-4o-mini -G timeout_s=30); "
                        "values are parsed as JSON where they can be")
    p.add_argument("--grid", metavar="auto|always|never|GRID.csv",
                   help="the full grid for the regret log: auto = only for retrieval-only scoring (with a generator "
                        "the grid costs an answer per configuration and question), or a grid CSV written by "
                        "`autorag-hp grid` to reuse")
    p.add_argument("--t-max", type=float, help="token scale of the reward's cost term (default: the pipeline's, "
                                               "else the grid's largest prompt); grid and tuning share it")
    p.add_argument("--no-cache", action="store_true",
                   help="with --pipeline: do not cache the stack's outcomes per (stack, configuration, question)")
    p.add_argument("--cache", metavar="DIR", help="with --pipeline: the outcome cache folder (default: "
                                                  "$AUTORAG_HP_CACHE or ~/.cache/autorag_hp, as for `grid --cache`)")
    p.add_argument("--seed", type=int, help=f"master seed (default {d.seed})")
    p.add_argument("--out", help="run folder (default runs/<timestamp>/)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR with its saved settings")
    p.add_argument("--top", type=int, default=5, help="best configurations to print (default 5)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--quiet", action="store_true", help="no progress bars; print only the result")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="where each round's pulls (--parallel) are evaluated: this process, or Ray tasks")
    p.add_argument("--address", default=None, help="with --executor ray: cluster address (default: a local Ray)")
    p.add_argument("--list-strategies", action="store_true", help="print the strategy names and exit")
    _objectives.add_argument(p)
    p.set_defaults(func=run)


# --------------------------------------------------------------------------- the run


def _parse_options(items: Sequence[str] | None) -> dict[str, Any]:
    from autorag_hp.strategies import parse_key_value

    pairs = (parse_key_value(item, what="--generator-option") for item in items or ())
    return {key.replace("-", "_"): value for key, value in pairs}


def _given(args: argparse.Namespace) -> dict[str, Any]:
    """The Study keywords the command line gives explicitly."""
    out: dict[str, Any] = {}
    for flag, key in _FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            out[key] = value
    if "grid" in out:
        out["grid"] = _GRID.get(out["grid"], out["grid"])
        if out["grid"] not in _GRID.values() and not str(out["grid"]).endswith(".csv"):
            raise ValueError(f"--grid must be auto, always, never or a grid .csv path, got {args.grid!r}")
    if args.generator_option:
        out["generator_options"] = _parse_options(args.generator_option)
    if args.no_cache and args.cache:
        raise ValueError(f"--no-cache and --cache {args.cache} contradict each other; give one")
    if args.no_cache:
        out["cache"] = False
    elif args.cache:
        out["cache"] = str(Path(args.cache).expanduser().resolve())
    return out


def _new_run_dir(out: str | None) -> Path:
    if out:
        return Path(out)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path("runs") / stamp
    n = 2
    while path.exists():
        path = Path("runs") / f"{stamp}-{n}"
        n += 1
    return path


def run(args: argparse.Namespace) -> int:
    """Entry point of ``autorag-hp tune``; returns the exit code."""
    if getattr(args, "list_strategies", False):
        from autorag_hp.strategies import list_strategies

        print("\n".join(list_strategies()))
        return 0
    from autorag_hp.executors import make_executor
    from autorag_hp.pipeline import GeneratorError
    from autorag_hp._validation import check_positive_int
    from autorag_hp.study import Study

    check_positive_int("--top", args.top)
    given = _given(args)
    if getattr(args, "objectives", None) and "strategy" not in given and not args.resume:
        given["strategy"] = _objectives.default_strategy(args.objectives)
    runtime = {"progress": not args.quiet, "plots": not args.no_plots, "top": args.top, "name_of": _flag}
    if args.resume:
        if args.out and Path(args.out).resolve() != Path(args.resume).resolve():
            raise ValueError(f"--out and --resume name different folders ({args.out!r}, {args.resume!r}); give one")
        run_dir = Path(args.resume)
        study = Study.resume(run_dir, budget=given.get("budget"), cache=given.get("cache"), **runtime)
        saved = study.saved_settings
        now = Study(**{**_as_kwargs(saved), **given}, name_of=_flag).settings()
        for key in given:
            if key in Study.RESUME_MAY_CHANGE or key not in saved:
                continue
            if now[key] != saved[key]:
                raise ValueError(
                    f"{_flag(key)}: the run in {str(run_dir)!r} used {saved[key]!r}, got {now[key]!r}; "
                    f"resume with the saved settings (only --budget and the cache options may change)"
                )
    else:
        if "pipeline" in given and "space" not in given:
            raise ValueError("--space is required with --pipeline (the default space is the reference pipeline's)")
        run_dir = _new_run_dir(args.out)
        study = Study(given.pop("pipeline", None), given.pop("data", "default"), given.pop("space", None),
                      run_dir=run_dir, **given, **runtime)
    _quiet_libraries()
    ex = make_executor(args.executor, **({"address": args.address} if args.executor == "ray" else {}))
    study.executor = ex
    try:
        study.run()
    except GeneratorError as exc:
        print(f"autorag-hp tune: generator failed: {exc}", file=sys.stderr)
        print(f"autorag-hp tune: finished pulls are journaled; continue with --resume {run_dir}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(f"\nautorag-hp tune: interrupted; continue with --resume {run_dir}", file=sys.stderr)
        raise
    finally:
        ex.close()
    study.print_result()
    if getattr(args, "objectives", None):
        _objectives.report_front(study.result, args.objectives, run_dir, plots=not args.no_plots)
    return 0


def _as_kwargs(settings: dict[str, Any]) -> dict[str, Any]:
    """run.json settings -> Study keywords (for comparing a resume's flags in the same normal form)."""
    s = dict(settings)
    pipeline = s.pop("pipeline", "reference")
    s.pop("cache", None)
    return {"pipeline": None if pipeline == "reference" or str(pipeline).startswith("object:") else pipeline,
            "data": s.pop("data"), "space": s.pop("space"), **s}


def _quiet_libraries() -> None:
    """Keep the terminal to our two progress bars: model loading and embedding batches of
    transformers / sentence-transformers would otherwise draw their own (some libraries
    switch the root logger to INFO, which turns sentence-transformers' bars on)."""
    import logging

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in ("sentence_transformers", "transformers", "wordllama"):
        logging.getLogger(name).setLevel(logging.WARNING)
