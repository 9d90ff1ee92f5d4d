"""`autorag-hp grid`: evaluate every configuration on every question, write the per-question table."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "grid",
        help="evaluate the full grid of a pipeline (the reference one, or --pipeline) and write a per-question CSV table",
        description=(
            "Run every configuration of a search space on every question of an evaluation set with the "
            "reference pipeline (shared work cached on disk) and write one row per (configuration, question). "
            "'autorag-hp bench --table TABLE.csv' replays the table."
        ),
    )
    p.add_argument("--data", default="default",
                   help="evaluation set: 'default' (embedded), a SQuAD .json, a questions .jsonl (corpus.jsonl beside "
                        "it), a folder with questions.jsonl + corpus.jsonl, or a saved Hugging Face dataset")
    p.add_argument("--corpus", default=None, help="corpus file for a questions .jsonl (default: corpus.jsonl beside it)")
    p.add_argument("--pipeline", default=None, metavar="MODULE:ATTR",
                   help="evaluate your own stack: a pipeline, a FunctionPipeline, or a zero-argument factory "
                        "returning one, found in the current folder or on PYTHONPATH (needs --space); its outcomes "
                        "are cached per (stack, configuration, question) so a later tune reuses them")
    p.add_argument("--no-cache", action="store_true", help="with --pipeline: do not cache the stack's outcomes")
    p.add_argument("--space", default=None,
                   help="search space TOML/JSON/YAML (default: the embedded default space)")
    p.add_argument("--out", default="grid.csv", help="output CSV (a .json sidecar is written beside it)")
    p.add_argument("--w", type=float, default=0.9, help="quality weight w in [0, 1] of the reward")
    p.add_argument("--t-max", type=float, default=None,
                   help="token scale of the cost term (default: the pipeline's t_max, for the reference pipeline "
                        "max top_k x largest chunk; else the table's largest prompt)")
    p.add_argument("--metric", default="answer_in_context",
                   help="quality metric: answer_in_context, em, f1 or gold_recall")
    p.add_argument("--tokenizer", default="cl100k_base", help="tokenizer for chunk sizes and prompt tokens")
    p.add_argument("--cache", default=None, help="cache folder (default: $AUTORAG_HP_CACHE or ~/.cache/autorag_hp)")
    p.add_argument("--quiet", action="store_true", help="no progress bar, only the output path")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="ray: evaluate the grid in parts (one per value of the space's first parameter) as Ray tasks")
    p.add_argument("--address", default=None, help="with --executor ray: cluster address (default: a local Ray)")
    p.set_defaults(func=run)


def _grid_part(task):
    """One Ray task: the grid of a sub-space (the first parameter fixed to one value)."""
    from autorag_hp.pipeline import run_grid

    pipeline, dataset, sub_space, metric, w, t_max = task
    return run_grid(pipeline, dataset, sub_space, metric=metric, w=w, t_max=t_max)


def run_grid_parts(pipeline, dataset, space, *, metric, w, t_max, executor="ray", address=None):
    """The full grid evaluated in parts by ``map_cells`` and merged in configuration order.

    No shared work is lost when the split parameter is the chunk size (the default space's
    first knob): each chunking is embedded and retrieved in exactly one part.
    """
    import numpy as np

    from autorag_hp.executors._ray import map_cells
    from autorag_hp.pipeline import GridResult
    from autorag_hp.space import SearchSpace

    params = space.to_dict()["params"]
    first = space.names[0]
    t_max = getattr(pipeline, "t_max", None) if t_max is None else t_max
    if t_max is None:  # each part would pick its own largest prompt: one scale is needed up front
        raise ValueError("--t-max is required with --executor ray when the pipeline declares no t_max")
    tasks = [(pipeline, dataset, SearchSpace({**params, first: [v]}), metric, w, t_max) for v in params[first]]
    parts = map_cells(_grid_part, tasks, executor=executor, address=address)
    columns = {}
    for part in parts:
        local = part.columns["config_index"]
        full = np.array([space.index(part.space.config(int(i))) for i in local], dtype=local.dtype)
        for name, col in part.columns.items():
            columns.setdefault(name, []).append(full if name == "config_index" else col)
    merged = {name: np.concatenate(cols) for name, cols in columns.items()}
    order = np.argsort(merged["config_index"], kind="stable")
    merged = {name: col[order] for name, col in merged.items()}
    return GridResult(space, merged, parts[0].metric, parts[0].w, parts[0].t_max,
                      seconds=sum(p.seconds for p in parts), extra={"executor": executor, "parts": len(parts)})


def run(args: argparse.Namespace) -> int:
    from autorag_hp.pipeline import ReferencePipeline, default_space, load_dataset, run_grid
    from autorag_hp.space import SearchSpace

    if args.pipeline is not None and args.space is None:
        raise ValueError("--space is required with --pipeline (the default space is the reference pipeline's)")
    kwargs = {"corpus": args.corpus} if args.corpus else {}
    dataset = load_dataset(args.data, **kwargs)
    space = default_space() if args.space is None else SearchSpace.from_file(args.space)
    if args.pipeline is not None:
        from autorag_hp.study import open_pipeline

        cache = False if args.no_cache else (args.cache if args.cache is not None else True)
        pipeline, _ = open_pipeline(args.pipeline, dataset, space, cache=cache, metric=args.metric,
                                    name="--pipeline")
    else:
        pipe_kwargs = {"tokenizer": args.tokenizer}
        if args.cache is not None:
            pipe_kwargs["cache_dir"] = args.cache
        pipeline = ReferencePipeline.from_space(dataset, space, **pipe_kwargs)
    if not args.quiet:
        print(f"grid: {len(space)} configurations x {len(dataset.questions)} questions "
              f"({len(dataset.corpus)} passages) from {args.data}")
    if getattr(args, "executor", "local") == "ray":
        result = run_grid_parts(pipeline, dataset, space, metric=args.metric, w=args.w, t_max=args.t_max,
                                executor="ray", address=args.address)
        result.to_csv(Path(args.out))
    else:
        result = run_grid(pipeline, dataset, space, out=Path(args.out), metric=args.metric, w=args.w,
                          t_max=args.t_max, progress=not args.quiet)
    if not args.quiet:
        print(f"done in {result.seconds:.1f} s; best configurations (mean reward):")
        for cfg, value in result.best(5):
            print(f"  {value:+.4f}  " + ", ".join(f"{k}={v}" for k, v in cfg.items()))
    print(args.out)
    return 0
