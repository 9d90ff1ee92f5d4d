"""The tuning run: data, space, strategy, budget, grid baseline, journal, regret log and report in one object."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from autorag_hp._budget import budget_calls as calls_of_budget
from autorag_hp._budget import parse_budget
from autorag_hp._io import atomic_write_text
from autorag_hp._validation import check_int, check_positive_int
from autorag_hp.objective import check_sampling, check_t_max, check_w, paired_population

__all__ = ["Study", "StudyResult", "parse_budget", "RUN_FILE", "JOURNAL"]

RUN_FILE = "run.json"
JOURNAL = "journal.jsonl"
GRID_MODES = ("auto", "full", "none")
# The run's journal is flushed after every pull (it survives kill -9) and fsync'd at most this many
# seconds later: a pull lost to a power cut is evaluated again, identically, by the resumed run, and
# an fsync per pull cost 2-8 ms, more than the strategy's own work (benchmarks/langchain_stack.py).
JOURNAL_FSYNC_INTERVAL = 1.0

# Settings that may differ when a run is resumed (everything else must match the saved run).
RESUME_MAY_CHANGE = ("budget", "cache")


@dataclass
class _Questions:
    """Questions without a corpus (enough for a wrapped stack that owns its retrieval)."""

    questions: tuple
    name: str = "questions"

    def __len__(self) -> int:
        return len(self.questions)

    @property
    def fingerprint(self) -> str:
        from autorag_hp.pipeline import dataset_fingerprint

        return dataset_fingerprint(self.questions)


@dataclass
class StudyResult:
    """What :meth:`Study.run` returns (``summary`` is what ``summary.json`` holds)."""

    strategy: Any
    records: list
    calls_used: int
    stop_reason: str
    summary: dict[str, Any]
    regret: list[dict[str, Any]] = field(default_factory=list)
    truth: Any = None
    grid: Any = None
    run_dir: Path | None = None

    def best(self, n: int = 1, *, w: float | None = None):
        """The strategy's ``n`` best configurations (Recommendation: config, mean, ci_low, ci_high, pulls).

        ``w``: rank by ``w * quality - (1 - w) * prompt_tokens / t_max`` for that ``w`` instead,
        from this run's numbers, without new calls: the model of a multi-objective strategy
        (``pareto-ts``), else the pulls' per-question records (pulled configurations only).
        """
        if w is None:
            return self.strategy.best(n)
        if hasattr(self.strategy, "pareto_set"):
            return self.strategy.best(n, w=w, t_max=self.summary["reward"]["t_max"])
        from autorag_hp.strategies import Recommendation

        out = []
        for p in self.pareto().rank(w, n=n):
            r = w * p.mean["quality"] - (1 - w) * p.mean["tokens"] / self.summary["reward"]["t_max"]
            out.append(Recommendation(p.config, float(r), p.n, float("nan"), float("nan")))
        return out

    def pareto(self, objectives: Any = ("quality", "tokens"), *, confidence: float = 0.95):
        """The cost-quality :class:`~autorag_hp.pareto.ParetoSet` of this run (front with
        confidence intervals): the model's of ``pareto-ts`` for quality and tokens, else one
        from the pulls' per-question records (``quality``, ``prompt_tokens``, ``latency_s``)."""
        from autorag_hp.pareto import ParetoSet, check_objectives

        objectives = check_objectives(objectives)
        if hasattr(self.strategy, "pareto_set") and objectives == ("quality", "tokens"):
            return self.strategy.pareto_set(confidence=confidence)
        space = self.strategy.space
        by_config: dict[int, list] = {}
        for rec in self.records:
            if rec.details:
                by_config.setdefault(space.index(rec.config), []).extend(rec.details)
        if not by_config:
            raise ValueError("pareto needs pulls with per-question records (a PipelineObjective run); this run has none")
        return ParetoSet.from_records(by_config, space=space, objectives=objectives,
                                      t_max=self.summary["reward"]["t_max"], confidence=confidence)

    @property
    def simple_regret(self) -> float | None:
        """Grid's best mean minus the true mean of ``best(1)``; None without a grid."""
        if self.truth is None or not self.records:
            return None
        return self.truth.regret(self.best(1)[0].config)

    def recall(self, x: int) -> float:
        """Recall@x: the share of ``best(x)`` inside grid search's top-x (AutoRAG-HP, Sec. 4)."""
        if self.truth is None:
            raise ValueError("recall needs the grid baseline: run the study with grid='full' or a grid CSV")
        check_positive_int("x", x)
        x = min(x, len(self.truth.space))
        return self.truth.recall_at([r.config for r in self.best(x)], x)


def _flag(name: str) -> str:
    return name


class Study:
    """One tuning run of a RAG pipeline: grid baseline, bandit tuning, regret log and report.

    ``pipeline`` is anything with ``run(config, questions)`` (e.g. a
    :class:`~autorag_hp.pipeline.FunctionPipeline`), a ``"MODULE:ATTR"`` spec
    (see :func:`load_pipeline`), or None for the reference pipeline (built from ``data``
    and ``space``, with ``generator``). ``data`` is a dataset, ``"default"``, a path,
    ``"hf:<name>[@split]"``, or a list of :class:`~autorag_hp.pipeline.Question`.
    ``budget`` is a share of grid search's calls in (0, 1] (``0.2``, ``"20%"``) or a
    number of calls (an integer > 1); it is never overrun (the last pull is trimmed).
    ``sampling``: ``"paired"`` (the k-th pull of every configuration is scored on the same
    questions) or ``"iid"`` (a pull's questions drawn afresh); ``None`` takes the strategy's
    ``default_sampling``: ``"paired"`` for ``structured-tt`` (chosen on the tuning set in issue
    #11 point 5; docs/strategies.md, "10% of grid calls") and ``pareto-ts`` (docs/metrics.md),
    ``"iid"`` for the paper's baselines and the rest. See :data:`~autorag_hp.objective.SAMPLING_MODES`.
    ``batch``: questions per pull; ``None`` takes the strategy's ``default_batch``: 2 for
    ``structured-tt`` (chosen with its question-batch offsets on the tuning set; docs/strategies.md,
    "Question-batch offsets"), 4 for the rest.

    ``grid``: ``"full"`` evaluates every configuration on every question first (the
    ground truth of the regret log and Recall@x), ``"none"`` skips it, a path reuses a
    grid CSV written by ``autorag-hp grid`` / :meth:`GridResult.to_csv`, and ``"auto"``
    is ``"full"`` unless the pipeline generates answers (``pipeline.generates``, or the
    reference pipeline's generator). ``t_max`` (the reward's token scale) is computed
    once and shared by grid and live objective: the one given, else the pipeline's
    ``t_max``, else the grid's largest prompt.

    ``cache`` keeps a wrapped stack's outcomes on disk per (stack fingerprint, dataset,
    configuration, question), so a grid, a tune after it, or a resumed tune never calls
    the stack twice for one cell (``True``: ``$AUTORAG_HP_CACHE``; a folder; ``False``: off).
    The reference pipeline caches its own shared work and is not wrapped.

    ``run_dir`` receives run.json, journal.jsonl, grid.csv (+ grid.json), regret.csv,
    summary.json, regret.png and pulls.png; None keeps the run in memory (no resume).
    """

    RESUME_MAY_CHANGE = RESUME_MAY_CHANGE  # settings a resumed run may change

    def __init__(
        self,
        pipeline: Any = None,
        data: Any = "default",
        space: Any = None,
        *,
        strategy: str = "structured-tt",
        budget: float | int | str = 0.2,
        batch: int | None = None,
        sampling: str | None = None,
        parallel: int = 1,
        w: float = 0.9,
        metric: str = "answer_in_context",
        t_max: float | None = None,
        grid: str | os.PathLike[str] = "auto",
        seed: int = 0,
        run_dir: str | os.PathLike[str] | None = None,
        cache: bool | str | os.PathLike[str] = True,
        generator: str = "none",
        generator_options: Mapping[str, Any] | None = None,
        executor: Any = None,
        progress: bool = False,
        plots: bool = True,
        top: int = 5,
        name_of: Callable[[str], str] = _flag,
    ) -> None:
        self._name = name_of  # how errors name an option (the CLI passes "--budget" for "budget")
        self.pipeline_arg = pipeline
        self.data_arg = data
        self.space_arg = space
        self.strategy = strategy
        self.budget = budget
        self.batch = batch
        self.sampling = sampling
        self.parallel = parallel
        self.w = w
        self.metric = metric
        self.t_max = t_max
        self.grid = {"always": "full", "never": "none"}.get(grid, grid) if isinstance(grid, str) else grid
        self.seed = seed
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.cache = cache
        self.generator = generator
        self.generator_options = dict(generator_options or {})
        self.executor = executor
        self.progress = progress
        self.plots = plots
        self.top = top
        self._resume = False
        self._saved: dict[str, Any] | None = None
        self.pipeline: Any = None  # the pipeline the run uses (wrapped in the cache), set by run()
        self.result: StudyResult | None = None
        self.validate()

    # ------------------------------------------------------------------ settings

    def validate(self) -> None:
        """Check every setting that needs no data; errors name the option and the value."""
        from autorag_hp.pipeline import list_generators
        from autorag_hp.pipeline._metrics import list_metrics, needs_answer
        from autorag_hp.strategies import list_strategies, parse_strategy_spec, strategy_class

        n = self._name
        parse_budget(self.budget, name=n("budget"))
        for name in ("parallel", "top"):
            v = getattr(self, name)
            check_positive_int(f"{n(name)}", v)
        check_w(self.w, name=n("w"))
        if self.metric not in list_metrics():
            raise ValueError(f"{n('metric')} must be one of {list_metrics()}, got {self.metric!r}")
        if self.t_max is not None:
            check_t_max(self.t_max, name=n("t_max"))
        reference = self.pipeline_arg is None
        if reference:
            if self.generator not in list_generators():
                raise ValueError(f"{n('generator')} must be one of {list_generators()}, got {self.generator!r}")
            if self.generator == "none" and needs_answer(self.metric):
                raise ValueError(f"{n('metric')} {self.metric} scores generated answers: give "
                                 f"{n('generator')} (smollm2, openai, ...)")
        elif self.generator != "none":
            raise ValueError(f"{n('generator')} applies to the reference pipeline only; a pipeline of your own "
                             f"generates its answers itself, got {self.generator!r}")
        if self.generator_options and self.generator == "none":
            raise ValueError(f"{n('generator_options')} needs {n('generator')} (the 'none' generator takes no options)")
        check_int(n("seed"), self.seed, minimum=0)
        spec = parse_strategy_spec(self.strategy)
        if spec.name not in list_strategies():
            raise ValueError(f"{n('strategy')} must be one of {list_strategies()} (optionally name:key=value), "
                             f"got {self.strategy!r}")
        if self.sampling is None:
            self.sampling = getattr(strategy_class(spec.name), "default_sampling", "iid")
        check_sampling(self.sampling, name=n("sampling"))
        if self.batch is None:
            self.batch = getattr(strategy_class(spec.name), "default_batch", 4)
        check_positive_int(n("batch"), self.batch)
        if not isinstance(self.grid, (str, os.PathLike)) or (
            isinstance(self.grid, str) and self.grid not in GRID_MODES and not self.grid.endswith(".csv")
        ):
            raise ValueError(f"{n('grid')} must be one of {list(GRID_MODES)} or a grid .csv path, got {self.grid!r}")
        if not isinstance(self.cache, (bool, str, os.PathLike)):
            raise ValueError(f"{n('cache')} must be True, False or a cache folder, got {self.cache!r}")

    def settings(self) -> dict[str, Any]:
        """The settings as saved in run.json (what :meth:`resume` rebuilds the study from)."""
        p = self.pipeline_arg
        pipeline = "reference" if p is None else p if isinstance(p, str) else f"object:{getattr(p, 'name', type(p).__name__)}"
        d = self.data_arg
        if isinstance(d, (str, os.PathLike)):
            d = str(d)
            if d != "default" and "://" not in d and not d.startswith("hf:"):
                d = str(Path(d).expanduser().resolve())
        else:
            d = f"object:{getattr(d, 'name', type(d).__name__)}"
        s = self.space_arg
        space = str(Path(s).expanduser().resolve()) if isinstance(s, (str, os.PathLike)) else (
            None if s is None else "object")
        grid = str(self.grid) if self.grid in GRID_MODES else str(Path(self.grid).expanduser().resolve())
        return {"data": d, "space": space, "strategy": self.strategy, "budget": str(self.budget), "batch": self.batch,
                "sampling": self.sampling, "parallel": self.parallel, "w": self.w, "metric": self.metric, "generator": self.generator,
                "generator_options": self.generator_options, "seed": self.seed, "grid": grid,
                "pipeline": pipeline, "t_max": self.t_max,
                "cache": self.cache if isinstance(self.cache, bool) else str(self.cache)}

    @classmethod
    def resume(cls, run_dir: str | os.PathLike[str], *, pipeline: Any = None, data: Any = None,
               budget: float | int | str | None = None, cache: Any = None, **options: Any) -> "Study":
        """The study saved in ``run_dir``; :meth:`run` continues it exactly (or extends it with a larger ``budget``).

        ``pipeline`` (and ``data``) are needed when the run was started with Python objects rather than
        the reference pipeline / a ``MODULE:ATTR`` spec (and a data path). ``budget`` and ``cache`` may
        differ from the saved run's (the cache changes no result). ``options`` are the run-time
        options (``executor``, ``progress``, ``plots``, ``top``, ``name_of``).
        """
        run_dir = Path(run_dir)
        path = run_dir / RUN_FILE
        name_of = options.get("name_of", _flag)
        if not path.is_file():
            raise FileNotFoundError(f"{name_of('resume')}: {str(run_dir)!r} is not a run folder (no {RUN_FILE})")
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            s = dict(saved["settings"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{name_of('resume')}: {path} is not a readable run file ({exc})") from None
        kind = s.get("pipeline", "reference")
        if pipeline is None:
            if str(kind).startswith("object:"):
                raise ValueError(f"the run in {str(run_dir)!r} tuned a pipeline object ({kind[7:]}); "
                                 f"pass it again: Study.resume(..., pipeline=...)")
            pipeline = None if kind == "reference" else kind
        if data is None:
            if str(s["data"]).startswith("object:"):
                raise ValueError(f"the run in {str(run_dir)!r} used a dataset object ({s['data'][7:]}); "
                                 f"pass it again: Study.resume(..., data=...)")
            data = s["data"]
        from autorag_hp.space import SearchSpace

        space = SearchSpace.from_dict(saved["space"])
        cache = s.get("cache", True) if cache is None else cache
        study = cls(pipeline, data, space, strategy=s["strategy"], budget=s["budget"] if budget is None else budget,
                    batch=s["batch"], sampling=s.get("sampling", "iid"),  # runs saved before it was recorded were iid
                    parallel=s["parallel"], w=s["w"], metric=s["metric"], t_max=s.get("t_max"),
                    grid=s.get("grid", "auto"), seed=s["seed"], run_dir=run_dir, cache=cache,
                    generator=s.get("generator", "none"), generator_options=s.get("generator_options") or {},
                    **options)
        study.space_arg = space
        study._resume = True
        study._saved = saved
        return study

    @property
    def saved_settings(self) -> dict[str, Any] | None:
        """The settings in run.json of a resumed study (None for a new one)."""
        return None if self._saved is None else dict(self._saved["settings"])

    # ------------------------------------------------------------------ the run

    def _say(self, *parts: Any) -> None:
        if self.progress:
            print(*parts, file=sys.stderr, flush=True)

    def _load_data(self):
        from autorag_hp.pipeline import Question, load_dataset

        d = self.data_arg
        if isinstance(d, (str, os.PathLike)):
            d = str(d)
            if d.startswith("hf:"):  # a Hugging Face dataset: hf:<hub name or local files>[@split]
                source, _, split = d[3:].partition("@")
                return load_dataset(source, format="hf", **({"split": split} if split else {}))
            return load_dataset(d)
        if hasattr(d, "questions"):
            return d
        if isinstance(d, Sequence) and d and all(isinstance(q, Question) for q in d):
            return _Questions(tuple(d))
        raise ValueError(f"{self._name('data')} must be a dataset, 'default', a path, 'hf:<name>', or a list of "
                         f"Question, got {type(d).__name__}")

    def _load_space(self):
        from autorag_hp.pipeline import default_space
        from autorag_hp.space import SearchSpace

        s = self.space_arg
        if s is None:
            if self.pipeline_arg is not None:
                raise ValueError(f"{self._name('space')} is required with a pipeline of your own (the default space "
                                 f"is the reference pipeline's)")
            return default_space()
        if isinstance(s, SearchSpace):
            return s
        if isinstance(s, (str, os.PathLike)):
            return SearchSpace.from_file(str(s))
        if isinstance(s, Mapping):
            return SearchSpace.from_dict(s) if "params" in s else SearchSpace(dict(s))
        raise ValueError(f"{self._name('space')} must be a SearchSpace, a mapping or a space file, got {s!r}")

    def _build_pipeline(self, dataset, space):
        """(pipeline the run uses, label, generator or None, generates)."""
        from autorag_hp.pipeline import ReferencePipeline, make_generator

        if self.pipeline_arg is None:
            if not hasattr(dataset, "corpus"):
                raise ValueError(f"{self._name('data')}: the reference pipeline needs a dataset with a corpus")
            generator = make_generator(self.generator, **self.generator_options)
            pipeline = ReferencePipeline.from_space(dataset, space, generator=generator)
            base = space.config(0)
            label = self.space_arg if isinstance(self.space_arg, (str, os.PathLike)) else "default"
            for name in space.names:  # every value of every knob, so a bad one fails now, not mid-run
                for value in space.values(name):
                    try:
                        pipeline.resolve({**base, name: value})
                    except ValueError as exc:
                        raise ValueError(f"search space {label}: {name}={value!r}: {exc}") from None
            return pipeline, "reference", generator, bool(generator.generates)
        from autorag_hp.study._resolve import open_pipeline

        pipeline, label = open_pipeline(self.pipeline_arg, dataset, space, cache=self.cache, metric=self.metric,
                                        name=self._name("pipeline"))
        return pipeline, label, None, bool(getattr(pipeline, "generates", False))

    def run(self) -> StudyResult:
        """Run (or continue) the study; returns its :class:`StudyResult`."""
        from autorag_hp.pipeline import GridResult, PipelineObjective, run_grid
        from autorag_hp.regret import GroundTruth
        from autorag_hp.strategies import StrategySpec, make_strategy, parse_strategy_spec, strategy_class
        from autorag_hp.tuner import tune

        n = self._name
        t_start = time.perf_counter()
        dataset = self._load_data()
        space = self._load_space()
        questions = list(dataset.questions)
        spec = parse_strategy_spec(self.strategy)
        grid_calls = len(space) * len(questions)
        budget_calls = calls_of_budget(self.budget, grid_calls=grid_calls, batch=self.batch, name=n("budget"),
                                       batch_name=n("batch"))

        # Everything that can be wrong with the settings fails here, before the run folder is touched.
        pipeline, label, generator, generates = self._build_pipeline(dataset, space)
        self.pipeline = pipeline
        loaded = None
        grid_mode = self.grid if self.grid in GRID_MODES else "path"
        if grid_mode == "path":
            loaded = GridResult.from_csv(self.grid)
            self._check_grid(loaded, space, questions)
        t_max = self.t_max if self.t_max is not None else getattr(pipeline, "t_max", None)
        if t_max is None and loaded is not None:
            t_max = loaded.t_max
        do_grid = grid_mode == "full" or (grid_mode == "auto" and not generates)
        if t_max is None and not do_grid and loaded is None:
            raise ValueError(f"{n('t_max')} must be given (or set on the pipeline) when there is no grid to take "
                             f"the largest prompt from ({n('grid')} {self.grid})")
        if loaded is not None and t_max is not None and float(t_max) != loaded.t_max:
            raise ValueError(f"{n('t_max')}: the grid {str(self.grid)!r} was scored with t_max={loaded.t_max}, got "
                             f"{t_max}; grid and live rewards must share one scale")
        run_dir = self.run_dir
        identity = {"dataset": dataset.fingerprint, "space": space.to_dict()}
        if run_dir is not None:
            record = self._record(run_dir, identity)
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(run_dir / RUN_FILE, json.dumps(record, indent=2, default=str) + "\n")

        gen_note = ("retrieval-only" if generator is not None and not generates else
                    repr(generator) if generator is not None else label)
        self._say(f"tuning {len(space)} configurations x {len(questions)} questions "
                  f"({getattr(dataset, 'name', 'questions')}, {gen_note}) with {spec.name}: budget {budget_calls} "
                  f"calls = {budget_calls / grid_calls:.0%} of grid search" +
                  (f"; run folder {run_dir}" if run_dir is not None else ""))

        grid = loaded
        t_grid = 0.0
        saved_grid = None if run_dir is None else run_dir / "grid.csv"
        if (do_grid and loaded is None and self._resume and saved_grid.is_file()
                and not hasattr(pipeline, "evaluate_grid")):
            # a wrapped stack's resumed run reads its own grid back instead of asking the stack (or the cache) again
            grid = GridResult.from_csv(saved_grid)
            if grid.space.to_dict() != space.to_dict() or (grid.metric, grid.w) != (self.metric, float(self.w)) or (
                    t_max is not None and grid.t_max != float(t_max)):
                grid = None
        if do_grid and grid is None:
            # The grid goes first: it fills the caches (the reference pipeline's shared work, a wrapped
            # stack's outcomes), so it costs little more than the tuning alone, and each pull is a lookup.
            t0 = time.perf_counter()
            grid = run_grid(pipeline, dataset, space, metric=self.metric, w=self.w, t_max=t_max,
                            progress=self.progress)
            t_grid = time.perf_counter() - t0
        elif grid_mode == "auto" and not do_grid:
            self._say("no grid baseline with a generator (it would generate an answer for every configuration and "
                      f"question); pass {n('grid')} {'always' if n('grid').startswith('--') else 'full'} to compute it")
        if grid is not None:
            t_max = grid.t_max  # one scale for grid and live rewards
            if run_dir is not None:
                grid.to_csv(run_dir / "grid.csv")
        self.t_max_used = float(t_max)

        spec = parse_strategy_spec(self.strategy)
        fields = getattr(getattr(strategy_class(spec.name), "Options", None), "__dataclass_fields__", {})
        # a multi-objective strategy scalarises on the run's reward scale, and its best(n) answers for the run's w
        extra = {k: v for k, v in (("t_max", float(t_max)), ("w", self.w)) if k in fields and k not in spec.options}
        extra.update(paired_population(strategy_class(spec.name), spec.options, sampling=self.sampling,
                                       n_questions=len(questions), batch=self.batch))
        strategy = make_strategy(spec, space, seed=self.seed, **extra)
        objective = PipelineObjective(pipeline, dataset, metric=self.metric, w=self.w, t_max=t_max,
                                      batch=self.batch, seed=self.seed, sampling=self.sampling)
        meta = {"data": self.settings()["data"], "metric": self.metric, "w": self.w, "batch": self.batch,
                "sampling": self.sampling,
                "t_max": t_max, "pipeline": self.settings()["pipeline"]}
        if generator is not None:
            meta["generator"] = generator.fingerprint()
        best_after: dict[int, dict[str, Any]] = {}

        def on_pull(rec) -> None:  # best(1) after each pull, for the regret log (best never changes asks)
            if grid is not None:
                best_after[rec.pull] = strategy.best(1)[0].config

        # what the tuning seconds include: a grid computed just before left every cache warm; a
        # wrapped stack's outcome cache also says how many questions it answered during the tuning
        warm = grid is not None and t_grid > 0
        counted = hasattr(pipeline, "stack_questions")
        before = (pipeline.hits, pipeline.stack_questions) if counted else (0, 0)
        t0 = time.perf_counter()
        result = tune(strategy, objective, budget_calls=budget_calls, parallel=self.parallel,
                      calls_per_pull=self.batch, journal=None if run_dir is None else run_dir / JOURNAL,
                      resume=self._resume, progress=self.progress, executor=self.executor, meta=meta,
                      fsync_interval=JOURNAL_FSYNC_INTERVAL,
                      callback=on_pull)
        t_tune = time.perf_counter() - t0
        top = min(self.top, len(space))
        best = result.best(top)

        summary: dict[str, Any] = {
            "settings": self.settings(),
            "dataset": {"name": getattr(dataset, "name", "questions"), "questions": len(questions),
                        "passages": len(getattr(dataset, "corpus", ())), "fingerprint": dataset.fingerprint},
            "space": {"configurations": len(space), **space.to_dict()},
            "strategy": strategy.describe(),
            "reward": {"metric": self.metric, "w": self.w, "t_max": t_max,
                       "formula": "w * quality - (1 - w) * prompt_tokens / t_max"},
            "pipeline": self.settings()["pipeline"],
            "generator": generator.fingerprint() if generator is not None else None,
            "budget_calls": budget_calls,
            "grid_calls": grid_calls,
            "pulls": len(result.records),
            "calls_used": result.calls_used,
            "calls_share": result.calls_used / grid_calls,
            "stop_reason": result.stop_reason or ("resumed: nothing left to do" if self._resume else ""),
            "seconds": {"tune": round(t_tune, 3), "grid": round(t_grid, 3),
                        "total": round(time.perf_counter() - t_start, 3),
                        "tune_cache": "warm" if warm else ("counted" if counted else
                                                           "unknown" if hasattr(pipeline, "evaluate_grid") else "none")},
            "best": [r.to_dict() for r in best],
            "files": {"journal": JOURNAL, "run": RUN_FILE} if run_dir is not None else {},
        }
        if counted:
            summary["seconds"]["tune_questions_cached"] = pipeline.hits - before[0]
            summary["seconds"]["tune_questions_to_stack"] = pipeline.stack_questions - before[1]
        if hasattr(pipeline, "stack_calls"):
            summary["cache"] = {"folder": str(pipeline.store.dir), "hits": pipeline.hits,
                                "stack_calls": pipeline.stack_calls, "stack_questions": pipeline.stack_questions}

        from autorag_hp.study._report import print_result, regret_log, write_plots, write_regret_csv

        truth, rows = None, []
        if grid is not None:
            means = grid.mean_rewards()
            truth = GroundTruth(space, [means[i] for i in range(len(space))])
            replay_spec = StrategySpec(spec.name, {**spec.options, **extra})  # the options the run's strategy had
            rows = regret_log(replay_spec, self.seed, space, truth, result.records, grid_calls, best_after)
            g_best = grid.best(1)[0]
            for entry, rec in zip(summary["best"], best):
                entry["true_mean"] = truth.value(rec.config)
                entry["grid_rank"] = truth.rank(rec.config)
            final = rows[-1] if rows else None
            summary["grid"] = {"best_config": g_best[0], "best_mean": g_best[1], "seconds": round(grid.seconds, 3),
                               "top": [{"config": c, "mean": m} for c, m in grid.best(top)]}
            if grid_mode == "path":
                summary["grid"]["source"] = str(Path(self.grid).resolve())
            summary["regret"] = {
                "simple_regret": truth.regret(best[0].config) if best else None,
                "cumulative_regret": final["cumulative_regret"] if final else 0.0,
                "mean_regret_per_pull": final["cumulative_regret"] / len(rows) if final else 0.0,
                **{f"recall@{x}": truth.recall_at([r.config for r in result.best(min(x, len(space)))],
                                                     min(x, len(space)))
                   for x in (1, 3, 5)},
            }
        if run_dir is not None:
            if grid is not None:
                write_regret_csv(run_dir / "regret.csv", space, rows)
                summary["files"].update(grid="grid.csv", regret="regret.csv")
            if self.plots and (grid is not None or result.records):
                summary["files"].update(write_plots(run_dir, space, truth, result.records, rows, spec.name, self._say))
            atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
        self.result = StudyResult(strategy=strategy, records=result.records, calls_used=result.calls_used,
                                  stop_reason=summary["stop_reason"], summary=summary, regret=rows, truth=truth,
                                  grid=grid, run_dir=run_dir)
        self._print = lambda out=None: print_result(summary, best, truth, run_dir, out)
        return self.result

    def print_result(self, out=None) -> None:
        """Print the last run's result as ``autorag-hp tune`` does."""
        if self.result is None:
            raise ValueError("print_result needs a finished run: call run() first")
        self._print(out)

    # ------------------------------------------------------------------ helpers

    def _record(self, run_dir: Path, identity: dict[str, Any]) -> dict[str, Any]:
        now = datetime.now().isoformat(timespec="seconds")
        if self._resume:
            saved = self._saved or json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
            for key, what in (("dataset", "the evaluation set"), ("space", "the search space")):
                if saved.get(key) != identity[key]:
                    raise ValueError(f"{self._name('resume')}: {what} changed since the run in {str(run_dir)!r} "
                                     f"started; start a new run instead")
            return {"settings": self.settings(), **identity, "version": 1, "started": saved.get("started"),
                    "resumed": [*saved.get("resumed", []), now], "command": sys.argv}
        if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
            raise ValueError(f"{self._name('run_dir')}: {str(run_dir)!r} already exists and is not an empty folder; "
                             f"use {self._name('resume')} {run_dir} to continue that run, or choose another folder")
        return {"settings": self.settings(), **identity, "version": 1, "started": now, "command": sys.argv}

    def _check_grid(self, grid, space, questions) -> None:
        n = self._name
        where = f"{n('grid')} {str(self.grid)!r}"
        if grid.space.to_dict() != space.to_dict():
            raise ValueError(f"{where}: its search space {grid.space.to_dict()} differs from the study's "
                             f"{space.to_dict()}")
        qids = {q.id for q in questions}
        got = set(grid.columns["question_id"].tolist())
        if got != qids:
            raise ValueError(f"{where}: its questions differ from the study's ({len(got)} vs {len(qids)}; e.g. "
                             f"{sorted(got ^ qids)[:3]})")
        if grid.metric != self.metric:
            raise ValueError(f"{where} was scored with metric {grid.metric!r}, the study uses {self.metric!r}")
        if grid.w != float(self.w):
            raise ValueError(f"{where} was scored with w={grid.w}, the study uses w={self.w}")
