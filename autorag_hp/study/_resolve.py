"""Find a pipeline named ``MODULE:ATTR`` (``autorag-hp tune --pipeline``) and probe it with one question."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Any, Mapping

__all__ = ["load_pipeline", "probe_pipeline", "open_pipeline"]


def _is_pipeline(obj: Any) -> bool:
    return not inspect.isclass(obj) and callable(getattr(obj, "run", None))


def load_pipeline(spec: str) -> Any:
    """The pipeline ``spec`` (``MODULE:ATTR``) names, from the current folder and ``PYTHONPATH``.

    ``ATTR`` is a pipeline (anything with ``run(config, questions)``, e.g. a
    :class:`~autorag_hp.pipeline.FunctionPipeline`) or a zero-argument factory that returns
    one. Every failure is a one-line ``ValueError`` naming the spec and what is wrong.
    """
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise ValueError(f"--pipeline must look like MODULE:ATTR (e.g. mystack:build), got {spec!r}")
    module_name, attr = spec.split(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ValueError(f"--pipeline {spec}: module {module_name!r} not found (searched the current folder "
                             f"and PYTHONPATH)") from None
        raise ValueError(f"--pipeline {spec}: importing {module_name!r} failed: module {exc.name!r} not found "
                         f"(install it)") from None
    except Exception as exc:  # an error inside the user's module
        raise ValueError(f"--pipeline {spec}: importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = [n for n in dir(module) if not n.startswith("_")]
            raise ValueError(f"--pipeline {spec}: module {module_name!r} has no attribute {attr!r} "
                             f"(it has: {', '.join(public[:12])}{', ...' if len(public) > 12 else ''})")
        obj = getattr(obj, part)
    if _is_pipeline(obj):
        return obj
    if callable(obj):
        try:
            sig = inspect.signature(obj)
            sig.bind()
        except TypeError:
            names = [p.name.lower() for p in sig.parameters.values()]
            hint = ""
            if len(names) == 2:
                order = "(questions, config)" if names[0].startswith(("q", "text", "prompt")) else "(config, questions)"
                hint = (f"; to tune a stack function, wrap it: pipeline = FunctionPipeline("
                        f"{'lambda config, questions: ' + attr + '(questions, config)' if order[1] == 'q' else attr}"
                        f", batch=True) and name that")
            raise ValueError(f"--pipeline {spec}: {attr} is a callable with signature {sig}, not a pipeline nor a "
                             f"zero-argument factory returning one{hint}") from None
        except ValueError:
            pass
        try:
            built = obj()
        except Exception as exc:
            raise ValueError(f"--pipeline {spec}: calling the factory {attr}() failed: "
                             f"{type(exc).__name__}: {exc}") from None
        if _is_pipeline(built):
            return built
        raise ValueError(f"--pipeline {spec}: the factory {attr}() returned a {type(built).__name__}, not a "
                         f"pipeline (an object with run(config, questions), e.g. a FunctionPipeline)")
    raise ValueError(f"--pipeline {spec}: {attr} is a {type(obj).__name__}, not a pipeline (an object with "
                     f"run(config, questions)), a FunctionPipeline, or a zero-argument factory returning one")


def probe_pipeline(pipeline: Any, config: Mapping[str, Any], question: Any, *, metric: str, label: str) -> None:
    """Run ``pipeline`` once on one question and score it, so a stack that does not fit fails
    before the run starts, in one line (a swapped ``(questions, config)`` order is named)."""
    from autorag_hp.pipeline import PipelineOutputError, PipelineResult, PipelineSignatureError, score_result

    where = f"{label}: probing with one question ({question.id!r}) under {dict(config)}"
    try:
        results = pipeline.run(dict(config), [question])
    except (PipelineOutputError, PipelineSignatureError) as exc:  # what FunctionPipeline found wrong
        raise ValueError(f"{where}: {exc}") from None
    except Exception as exc:
        raise ValueError(f"{where} failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(results, (list, tuple)) or len(results) != 1:
        raise ValueError(f"{where}: run(config, questions) must return a list with one result per question, "
                         f"got {type(results).__name__} {results!r:.120}")
    if not isinstance(results[0], PipelineResult):
        raise ValueError(f"{where}: run(config, questions) must return PipelineResult objects, "
                         f"got {type(results[0]).__name__}")
    try:
        score_result(question, results[0], metric=metric, t_max=1.0)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def open_pipeline(pipeline: Any, dataset: Any, space: Any, *, cache: Any = True, metric: str = "answer_in_context",
                  name: str = "pipeline") -> tuple[Any, str]:
    """A wrapped stack ready for a grid or a study: resolved (a ``MODULE:ATTR`` spec), wrapped in the
    outcome cache (unless ``cache=False`` or it has its own ``evaluate_grid``), and probed with one
    question. Returns (pipeline, label for messages)."""
    from autorag_hp.pipeline import CachedPipeline

    if isinstance(pipeline, str):
        label = f"--pipeline {pipeline}" if name.startswith("--") else pipeline
        pipeline = load_pipeline(pipeline)
    else:
        if not _is_pipeline(pipeline):
            raise ValueError(f"{name} must have run(config, questions), got {type(pipeline).__name__}")
        label = f"pipeline {getattr(pipeline, 'name', type(pipeline).__name__)}"
    if cache is not False and not hasattr(pipeline, "evaluate_grid"):
        pipeline = CachedPipeline(pipeline, scope=dataset.fingerprint, cache_dir=None if cache is True else cache)
    questions = list(dataset.questions)
    probe_pipeline(pipeline, space.config(0), questions[0], metric=metric, label=label)
    return pipeline, label
