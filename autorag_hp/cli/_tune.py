"""`autorag-hp tune`: tune a RAG pipeline, then measure the run against the full grid.

With no arguments: the reference pipeline on the embedded default evaluation set,
``structured-tt`` (our best strategy; ``--strategy hier-ucb`` for the paper's), a budget of 20% of grid search's calls. The run folder gets the journal,
the grid table, a per-pull regret log, a summary and two plots. ``--resume RUN_DIR``
continues an interrupted run (or extends it with a larger ``--budget``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

__all__ = ["add_parser", "run", "TuneSettings", "parse_budget"]

RUN_FILE = "run.json"
JOURNAL = "journal.jsonl"

_EPILOG = """\
examples:
  autorag-hp tune                                   # the default: structured-tt, 20% of grid's calls
  autorag-hp tune --strategy hier-ucb:alpha_upper=1.5:alpha_lower=0.5   # the paper's Hier-UCB (best ablation)
  autorag-hp tune --strategy random --budget 0.1 --seed 3
  autorag-hp tune --data ../shared/data/squad2-dev-5-articles.json --batch 8
  autorag-hp tune --generator openai -G model=llama3.2 -G base_url=http://localhost:11434/v1 --metric f1
  autorag-hp tune --resume runs/20260101-120000 --budget 0.3   # continue, with a larger budget
"""


@dataclass
class TuneSettings:
    """Everything that determines a run; saved as ``run.json`` so ``--resume`` rebuilds it."""

    data: str = "default"
    space: str | None = None
    strategy: str = "structured-tt"
    budget: str = "0.2"
    batch: int = 4
    parallel: int = 1
    w: float = 0.9
    metric: str = "answer_in_context"
    generator: str = "none"
    generator_options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    grid: str = "auto"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# Options that may differ on --resume (everything else must match the saved run).
_RESUME_MAY_CHANGE = ("budget",)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "tune",
        help="tune a RAG pipeline's hyperparameters (the main job)",
        description=(
            "Tune a RAG pipeline's hyperparameters, then measure the run against the full grid. "
            "With no arguments: the reference pipeline on the embedded default evaluation set, structured-tt, "
            "a budget of 20%% of grid search's calls. The run folder gets run.json, journal.jsonl, grid.csv, "
            "regret.csv, summary.json, regret.png and pulls.png."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = TuneSettings()
    p.add_argument("--data", help=f"evaluation set: 'default' (embedded), a SQuAD JSON file, a JSON-lines "
                                  f"folder or file, or hf:<name>[@split] (default {d.data!r})")
    p.add_argument("--space", help="search space file (.toml, .json, .yaml); default: the reference pipeline's "
                                   "default space (pipelines/default_space.toml)")
    p.add_argument("--strategy", help=f"strategy name, or name:key=value:... (default {d.strategy!r}); "
                                      f"see --list-strategies")
    p.add_argument("--budget", help="share of grid search's calls in (0, 1] (0.2 or 20%%), or a number of "
                                    f"calls (an integer > 1) (default {d.budget})")
    p.add_argument("--batch", type=int, help=f"questions per pull (default {d.batch})")
    p.add_argument("--parallel", type=int, help=f"configurations asked per round, ask_batch (default {d.parallel})")
    p.add_argument("--w", type=float, help=f"quality weight of the reward w*quality - (1-w)*tokens/t_max "
                                          f"(default {d.w})")
    p.add_argument("--metric", help=f"quality metric: answer_in_context, em, f1, gold_recall (default {d.metric!r}; "
                                    f"em and f1 need a generator)")
    p.add_argument("--generator", help=f"answer generator: none, smollm2, openai, ... (default {d.generator!r})")
    p.add_argument("-G", "--generator-option", action="append", metavar="KEY=VALUE",
                   help="generator option, repeatable (e.g. -G model=gpt-4o-mini -G timeout_s=30); "
                        "values are parsed as JSON where they can be")
    p.add_argument("--grid", choices=("auto", "always", "never"),
                   help="compute the full grid for the regret log: auto = only for retrieval-only scoring "
                        "(with a generator the grid costs an answer per configuration and question)")
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
    p.set_defaults(func=run)


# --------------------------------------------------------------------------- settings


def parse_budget(text: Any) -> tuple[str, float]:
    """``("share", s)`` for a share of grid's calls, or ``("calls", n)``.

    A value with a ``%``, a decimal point, or at most 1 is a share in (0, 1]; an integer
    above 1 is a number of calls.
    """
    raw = str(text).strip()
    try:
        if raw.endswith("%"):
            share = float(raw[:-1]) / 100.0
            kind = "share"
        elif "." in raw or "e" in raw.lower() or float(raw) <= 1:
            share = float(raw)
            kind = "share"
        else:
            return "calls", float(int(raw))
    except ValueError:
        raise ValueError(f"--budget must be a share like 0.2 or 20% or a number of calls like 5000, got {raw!r}") from None
    if kind == "share" and not (0 < share <= 1 and math.isfinite(share)):
        raise ValueError(f"--budget as a share of grid's calls must be in (0, 1], got {raw!r}")
    return "share", share


def _parse_options(items: Sequence[str] | None) -> dict[str, Any]:
    from autorag_hp.bench import parse_key_value

    pairs = (parse_key_value(item, what="--generator-option") for item in items or ())
    return {key.replace("-", "_"): value for key, value in pairs}


def _settings_from_args(args: argparse.Namespace) -> TuneSettings:
    s = TuneSettings()
    for name in ("data", "space", "strategy", "budget", "batch", "parallel", "w", "metric", "generator", "seed", "grid"):
        value = getattr(args, name, None)
        if value is not None:
            setattr(s, name, value)
    if args.generator_option:
        s.generator_options = _parse_options(args.generator_option)
    if s.data != "default" and "://" not in s.data and not s.data.startswith("hf:"):
        s.data = str(Path(s.data).expanduser().resolve())
    if s.space is not None:
        s.space = str(Path(s.space).expanduser().resolve())
    return s


def _resume_settings(args: argparse.Namespace, run_dir: Path) -> TuneSettings:
    path = run_dir / RUN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"--resume: {str(run_dir)!r} is not a run folder (no {RUN_FILE})")
    try:
        saved = TuneSettings(**json.loads(path.read_text(encoding="utf-8"))["settings"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"--resume: {path} is not a readable run file ({exc})") from None
    given = _settings_from_args(args)
    for name in TuneSettings.__dataclass_fields__:
        flag = "--generator-option" if name == "generator_options" else f"--{name}"
        explicit = args.generator_option if name == "generator_options" else getattr(args, name, None)
        if explicit is None or name in _RESUME_MAY_CHANGE:
            continue
        if getattr(given, name) != getattr(saved, name):
            raise ValueError(
                f"{flag}: the run in {str(run_dir)!r} used {getattr(saved, name)!r}, got {getattr(given, name)!r}; "
                f"resume with the saved settings (only --budget may change)"
            )
    if args.budget is not None:
        saved.budget = args.budget
    return saved


def _validate(s: TuneSettings) -> None:
    from autorag_hp.pipeline import QUALITY_METRICS, list_generators
    from autorag_hp.strategies import list_strategies

    parse_budget(s.budget)
    for name in ("batch", "parallel"):
        v = getattr(s, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"--{name} must be a positive integer, got {v!r}")
    if not (isinstance(s.w, (int, float)) and 0.0 <= s.w <= 1.0):
        raise ValueError(f"--w must be a number with 0 <= w <= 1, got {s.w!r}")
    if s.metric not in QUALITY_METRICS:
        raise ValueError(f"--metric must be one of {list(QUALITY_METRICS)}, got {s.metric!r}")
    if s.generator not in list_generators():
        raise ValueError(f"--generator must be one of {list_generators()}, got {s.generator!r}")
    if s.metric in ("em", "f1") and s.generator == "none":
        raise ValueError(f"--metric {s.metric} scores generated answers: give --generator (smollm2, openai, ...)")
    if s.generator_options and s.generator == "none":
        raise ValueError("--generator-option needs --generator (the 'none' generator takes no options)")
    if isinstance(s.seed, bool) or not isinstance(s.seed, int) or s.seed < 0:
        raise ValueError(f"--seed must be a non-negative integer, got {s.seed!r}")
    name = s.strategy.split(":", 1)[0]
    if name not in list_strategies():
        raise ValueError(f"--strategy must be one of {list_strategies()} (optionally name:key=value), got {s.strategy!r}")


def _new_run_dir(out: str | None) -> Path:
    if out:
        path = Path(out)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise ValueError(
                f"--out: {str(path)!r} already exists and is not an empty folder; "
                f"use --resume {path} to continue that run, or choose another folder"
            )
        return path
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path("runs") / stamp
    n = 2
    while path.exists():
        path = Path("runs") / f"{stamp}-{n}"
        n += 1
    return path


# --------------------------------------------------------------------------- the run


def run(args: argparse.Namespace) -> int:
    """Entry point of ``autorag-hp tune``; returns the exit code."""
    if getattr(args, "list_strategies", False):
        from autorag_hp.strategies import list_strategies

        print("\n".join(list_strategies()))
        return 0
    from autorag_hp.pipeline._generators import GeneratorError

    if args.top < 1:
        raise ValueError(f"--top must be a positive integer, got {args.top!r}")
    if args.resume:
        if args.out and Path(args.out).resolve() != Path(args.resume).resolve():
            raise ValueError(f"--out and --resume name different folders ({args.out!r}, {args.resume!r}); give one")
        run_dir = Path(args.resume)
        settings = _resume_settings(args, run_dir)
    else:
        settings = _settings_from_args(args)
        run_dir = None
    _validate(settings)
    if run_dir is None:
        run_dir = _new_run_dir(args.out)
    _quiet_libraries()
    try:
        return _tune(settings, run_dir, resume=bool(args.resume), quiet=args.quiet, top=args.top,
                     plots=not args.no_plots, executor=args.executor, address=args.address)
    except GeneratorError as exc:
        print(f"autorag-hp tune: generator failed: {exc}", file=sys.stderr)
        print(f"autorag-hp tune: finished pulls are journaled; continue with --resume {run_dir}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(f"\nautorag-hp tune: interrupted; continue with --resume {run_dir}", file=sys.stderr)
        raise


def _quiet_libraries() -> None:
    """Keep the terminal to our two progress bars: model loading and embedding batches of
    transformers / sentence-transformers would otherwise draw their own (some libraries
    switch the root logger to INFO, which turns sentence-transformers' bars on)."""
    import logging

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in ("sentence_transformers", "transformers", "wordllama"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _say(quiet: bool, *parts: Any) -> None:
    if not quiet:
        print(*parts, file=sys.stderr, flush=True)


def _tune(settings: TuneSettings, run_dir: Path, *, resume: bool, quiet: bool, top: int, plots: bool,
          executor: str = "local", address: str | None = None) -> int:
    from autorag_hp import make_strategy
    from autorag_hp.bench import parse_strategy_spec
    from autorag_hp.pipeline import (
        PipelineObjective,
        ReferencePipeline,
        default_space,
        load_dataset,
        make_generator,
        run_grid,
    )
    from autorag_hp.pipeline._cache import atomic_write_text
    from autorag_hp.space import SearchSpace
    from autorag_hp.tuner import tune

    t_start = time.perf_counter()
    if settings.data.startswith("hf:"):  # a Hugging Face dataset: hf:<hub name or local files>[@split]
        source, _, split = settings.data[3:].partition("@")
        dataset = load_dataset(source, format="hf", **({"split": split} if split else {}))
    else:
        dataset = load_dataset(settings.data)
    space = SearchSpace.from_file(settings.space) if settings.space else default_space()
    spec = parse_strategy_spec(settings.strategy)
    grid_calls = len(space) * len(dataset)
    kind, value = parse_budget(settings.budget)
    budget_calls = int(math.floor(value * grid_calls)) if kind == "share" else int(value)
    if budget_calls < settings.batch:
        raise ValueError(
            f"--budget gives {budget_calls} calls, fewer than one pull of --batch {settings.batch} questions "
            f"(grid search spends {grid_calls})"
        )

    # Everything that can be wrong with the settings fails here, before the run folder is touched.
    generator = make_generator(settings.generator, **settings.generator_options)
    pipeline = ReferencePipeline.from_space(dataset, space, generator=generator)
    base = space.config(0)
    for name in space.names:  # every value of every knob, so a bad one fails now, not mid-run
        for value in space.values(name):
            try:
                pipeline.resolve({**base, name: value})
            except ValueError as exc:
                raise ValueError(f"search space {settings.space or 'default'}: {name}={value!r}: {exc}") from None
    run_file = run_dir / RUN_FILE
    identity = {"dataset": dataset.fingerprint, "space": space.to_dict()}
    if resume:
        saved = json.loads(run_file.read_text(encoding="utf-8"))
        for key, what in (("dataset", "the evaluation set"), ("space", "the search space")):
            if saved.get(key) != identity[key]:
                raise ValueError(f"--resume: {what} changed since the run in {str(run_dir)!r} started; "
                                 f"start a new run instead")
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {"settings": settings.to_json(), **identity, "version": 1,
              "started": datetime.now().isoformat(timespec="seconds"), "command": sys.argv}
    if resume:
        record["started"] = saved.get("started")
        record["resumed"] = [*saved.get("resumed", []), datetime.now().isoformat(timespec="seconds")]
    atomic_write_text(run_file, json.dumps(record, indent=2, default=str) + "\n")

    gen_note = "retrieval-only" if not generator.generates else repr(generator)
    _say(quiet, f"tuning {len(space)} configurations x {len(dataset)} questions ({dataset.name}, {gen_note}) "
                f"with {spec.name}: budget {budget_calls} calls = {budget_calls / grid_calls:.0%} of grid search; "
                f"run folder {run_dir}")

    do_grid = settings.grid == "always" or (settings.grid == "auto" and not generator.generates)
    grid = None
    t_grid = 0.0
    if do_grid:
        # The grid goes first: one batched pass fills the pipeline's caches, so it costs
        # little more than the tuning alone, and each pull afterwards is a cache lookup.
        t0 = time.perf_counter()
        grid = run_grid(pipeline, dataset, space, metric=settings.metric, w=settings.w, t_max=pipeline.t_max,
                        progress=not quiet)
        grid.to_csv(run_dir / "grid.csv")
        t_grid = time.perf_counter() - t0
    elif settings.grid == "auto":
        _say(quiet, "no grid baseline with a generator (it would generate an answer for every configuration and "
                    "question); pass --grid always to compute it")

    strategy = make_strategy(spec.name, space, seed=settings.seed, **dict(spec.options))
    objective = PipelineObjective(pipeline, dataset, metric=settings.metric, w=settings.w, batch=settings.batch,
                                  seed=settings.seed)
    t0 = time.perf_counter()
    from autorag_hp.executors import make_executor

    ex = make_executor(executor, **({"address": address} if executor == "ray" else {}))
    try:
        result = tune(
            strategy, objective,
            budget_calls=budget_calls, parallel=settings.parallel, calls_per_pull=settings.batch,
            journal=run_dir / JOURNAL, resume=resume, progress=not quiet, executor=ex,
            meta={"data": settings.data, "metric": settings.metric, "w": settings.w, "batch": settings.batch,
                  "t_max": pipeline.t_max, "generator": generator.fingerprint()},
        )
    finally:
        ex.close()
    t_tune = time.perf_counter() - t0
    best = result.best(min(top, len(space)))

    summary: dict[str, Any] = {
        "settings": settings.to_json(),
        "dataset": {"name": dataset.name, "questions": len(dataset), "passages": len(dataset.corpus),
                    "fingerprint": dataset.fingerprint},
        "space": {"configurations": len(space), **space.to_dict()},
        "strategy": strategy.describe(),
        "reward": {"metric": settings.metric, "w": settings.w, "t_max": pipeline.t_max,
                   "formula": "w * quality - (1 - w) * prompt_tokens / t_max"},
        "generator": generator.fingerprint(),
        "budget_calls": budget_calls,
        "grid_calls": grid_calls,
        "pulls": len(result.records),
        "calls_used": result.calls_used,
        "calls_share": result.calls_used / grid_calls,
        "stop_reason": result.stop_reason or ("resumed: nothing left to do" if resume else ""),
        "seconds": {"tune": round(t_tune, 3), "grid": round(t_grid, 3),
                    "total": round(time.perf_counter() - t_start, 3)},
        "best": [r.to_dict() for r in best],
        "files": {"journal": JOURNAL, "run": RUN_FILE},
    }

    truth = None
    if grid is not None:
        truth, regret_rows = _regret(settings, spec, space, grid, result.records, grid_calls)
        _write_regret_csv(run_dir / "regret.csv", space, regret_rows)
        summary["files"].update(grid="grid.csv", regret="regret.csv")
        g_best = grid.best(1)[0]
        for entry, rec in zip(summary["best"], best):
            entry["true_mean"] = truth.value(rec.config)
            entry["grid_rank"] = truth.rank(rec.config)
        final = regret_rows[-1] if regret_rows else None
        summary["grid"] = {"best_config": g_best[0], "best_mean": g_best[1], "seconds": round(grid.seconds, 3),
                           "top": [{"config": c, "mean": m} for c, m in grid.best(min(top, len(space)))]}
        summary["regret"] = {
            "simple_regret": truth.regret(best[0].config) if best else None,
            "cumulative_regret": final["cumulative_regret"] if final else 0.0,
            "mean_regret_per_pull": final["cumulative_regret"] / len(regret_rows) if final else 0.0,
            **{f"recall_at_{x}": truth.recall_at([r.config for r in result.best(min(x, len(space)))], min(x, len(space)))
               for x in (1, 3, 5)},
        }
        if plots:
            summary["files"].update(_plots(run_dir, space, truth, result.records, regret_rows, spec.name, quiet))
    elif plots and result.records:
        summary["files"].update(_plots(run_dir, space, None, result.records, [], spec.name, quiet))
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    _print_result(summary, best, truth, run_dir)
    return 0


def _regret(settings, spec, space, grid, records, grid_calls):
    """Ground truth from the grid, then each pull's regret and the simple regret of the
    strategy's best(1) after it (a fresh strategy replays the run, so best() never
    perturbs the live strategy's random stream)."""
    import numpy as np

    from autorag_hp import make_strategy
    from autorag_hp.regret import GroundTruth, RegretLog

    means = grid.mean_rewards()
    truth = GroundTruth(space, np.array([means[i] for i in range(len(space))]))
    log = RegretLog(truth, grid_calls)
    replay = make_strategy(spec.name, space, seed=settings.seed, **dict(spec.options))
    i = 0
    while i < len(records):
        rnd, size = records[i].round, records[i].round_size
        j = i
        while j < len(records) and records[j].round == rnd:
            j += 1
        replay.ask_batch(size)
        for rec in records[i:j]:
            replay.tell(rec.config, rec.reward)
            row = log.add(rec.pull, rec.config, rec.reward, rec.calls, best_config=replay.best(1)[0].config)
            row["config_index"] = space.index(rec.config)
            row["best_config_index"] = space.index(replay.best(1)[0].config)
        i = j
    return truth, log.rows


def _write_regret_csv(path: Path, space, rows) -> None:
    from autorag_hp.pipeline._cache import atomic_write_text

    cols = ["pull", "config_index", *space.names, "config", "reward", "true_mean", "regret", "cumulative_regret",
            "best_config_index", "simple_regret", "calls", "calls_share"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({**r, **r["config"], "config": json.dumps(r["config"], sort_keys=True)})
    atomic_write_text(path, buf.getvalue())


def _plots(run_dir, space, truth, records, regret_rows, name, quiet) -> dict[str, str]:
    try:
        from autorag_hp.plots import plot_pulls, plot_regret
    except ModuleNotFoundError:
        return {}
    files: dict[str, str] = {}
    try:
        if regret_rows:
            plot_regret(regret_rows, run_dir / "regret.png", title=f"{name}: regret against the full grid")
            files["regret_plot"] = "regret.png"
        counts = [0] * len(space)
        for rec in records:
            counts[space.index(rec.config)] += 1
        labels = [",".join(str(v) for v in space.config(i).values()) for i in range(len(space))]
        plot_pulls(labels, counts, None if truth is None else truth.means.tolist(), run_dir / "pulls.png",
                   title=f"{name}: pulls per configuration ({len(records)} pulls)")
        files["pulls_plot"] = "pulls.png"
    except ModuleNotFoundError as exc:
        _say(quiet, f"skipping plots: {exc}")
    return files


def _fmt_config(config: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in config.items())


def _print_result(summary: dict[str, Any], best, truth, run_dir: Path) -> None:
    out = sys.stdout
    print(f"\n{summary['pulls']} pulls, {summary['calls_used']} calls "
          f"({summary['calls_share']:.1%} of grid search's {summary['grid_calls']}), "
          f"{summary['seconds']['tune']:.1f} s tuning" +
          (f" + {summary['seconds']['grid']:.1f} s grid baseline" if truth is not None else ""), file=out)
    print(f"\nbest configurations ({summary['strategy']['strategy']}, mean reward with 95% interval):", file=out)
    for k, rec in enumerate(best, start=1):
        line = (f"  {k}. {_fmt_config(rec.config):<60} {rec.mean:.3f} [{rec.ci_low:.3f}, {rec.ci_high:.3f}] "
                f"{rec.pulls:>4} pulls")
        if truth is not None:
            line += f"   true {truth.value(rec.config):.3f}, grid rank {truth.rank(rec.config)}"
        print(line, file=out)
    if truth is not None:
        g = summary["grid"]
        r = summary["regret"]
        print(f"\ngrid search's best: {_fmt_config(g['best_config'])}  {g['best_mean']:.3f}", file=out)
        print(f"simple regret {r['simple_regret']:.4f}, cumulative regret {r['cumulative_regret']:.2f}, "
              f"Recall@1/3/5 {r['recall_at_1']:.2f}/{r['recall_at_3']:.2f}/{r['recall_at_5']:.2f}", file=out)
    print(f"\nrun folder: {run_dir}", file=out)
