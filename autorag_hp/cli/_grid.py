"""`autorag-hp grid`: evaluate every configuration on every question, write the per-question table."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "grid",
        help="evaluate the full grid of the reference pipeline and write a per-question CSV table",
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
    p.add_argument("--space", default=None,
                   help="search space TOML/JSON/YAML (default: the embedded default space)")
    p.add_argument("--out", default="grid.csv", help="output CSV (a .json sidecar is written beside it)")
    p.add_argument("--w", type=float, default=0.9, help="quality weight w in [0, 1] of the reward")
    p.add_argument("--t-max", type=float, default=None,
                   help="token scale of the cost term (default: max top_k x largest chunk)")
    p.add_argument("--metric", default="answer_in_context",
                   help="quality metric: answer_in_context, em, f1 or gold_recall")
    p.add_argument("--tokenizer", default="cl100k_base", help="tokenizer for chunk sizes and prompt tokens")
    p.add_argument("--cache", default=None, help="cache folder (default: $AUTORAG_HP_CACHE or ~/.cache/autorag_hp)")
    p.add_argument("--quiet", action="store_true", help="no progress bar, only the output path")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from autorag_hp.pipeline import ReferencePipeline, default_space, load_dataset, run_grid
    from autorag_hp.space import SearchSpace

    kwargs = {"corpus": args.corpus} if args.corpus else {}
    dataset = load_dataset(args.data, **kwargs)
    space = default_space() if args.space is None else SearchSpace.from_file(args.space)
    pipe_kwargs = {"tokenizer": args.tokenizer}
    if args.cache is not None:
        pipe_kwargs["cache_dir"] = args.cache
    pipeline = ReferencePipeline.from_space(dataset, space, **pipe_kwargs)
    if not args.quiet:
        print(f"grid: {len(space)} configurations x {len(dataset.questions)} questions "
              f"({len(dataset.corpus)} passages) from {args.data}")
    result = run_grid(pipeline, dataset, space, out=Path(args.out), metric=args.metric, w=args.w,
                      t_max=args.t_max, progress=not args.quiet)
    if not args.quiet:
        print(f"done in {result.seconds:.1f} s; best configurations (mean reward):")
        for cfg, value in result.best(5):
            print(f"  {value:+.4f}  " + ", ".join(f"{k}={v}" for k, v in cfg.items()))
    print(args.out)
    return 0
