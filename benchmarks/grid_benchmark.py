"""Full-grid benchmark of the reference pipeline (retrieval-only reward) on the SQuAD subset.

Measures, each phase in a fresh Python process:

1. ``unavoidable``: import and load each dense model once, then embed each distinct text
   the grid needs (chunks, questions, sentences the extractive compressor scores) exactly
   once per dense model, in one batch per role. Run before and after the grid (the mean
   is used, which evens out load drift on a shared machine).
2. ``grid`` (cold cache): ``run_grid`` over the whole space, empty cache folder. Wall
   time, peak memory (max RSS), and the split between shared work (chunking, retrieval,
   sentence similarities, embedding, answer spans per chunking and question) and
   configuration-dependent work (slicing, compression, scoring, table columns).
3. ``grid`` (warm cache): the same, run again on the filled cache (models never load).
4. ``naive``: a few configurations, each run as if alone (fresh pipeline, no cache, so the
   corpus, questions and sentences are re-embedded per configuration), extrapolated to
   the whole grid per embedder.

Targets (issue #3): wall(grid, cold) / wall(unavoidable) <= 1.3, and configuration-
dependent work < 50 us per configuration x question.

    python benchmarks/grid_benchmark.py [--data ../shared/data/squad2-dev-5-articles.json]
        [--space pipelines/squad_space.toml] [--out bench_out/grid_benchmark.json] [--naive-per-embedder 1]
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()  # before any heavy import: phases count their imports

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT / ".." / "shared" / "data" / "squad2-dev-5-articles.json"


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _record_encoders() -> dict[str, dict[str, list[str]]]:
    """Patch the built-in encoders so every text sent to a model is recorded (by fingerprint, role)."""
    from autorag_hp.pipeline import _retrievers as r

    seen: dict[str, dict[str, list[str]]] = {}
    for cls in (r.MiniLMEncoder, r.WordLlamaEncoder, r.E5Encoder):
        for role, meth in (("query", "encode_queries"), ("passage", "encode_passages")):
            orig = getattr(cls, meth)

            def wrapped(self, texts, _orig=orig, _role=role):
                seen.setdefault(self.fingerprint, {}).setdefault(_role, []).extend(texts)
                return _orig(self, texts)

            setattr(cls, meth, wrapped)
    return seen


def phase_grid(args: argparse.Namespace) -> dict:
    seen = _record_encoders()
    from autorag_hp.pipeline import ReferencePipeline, load_dataset, run_grid
    from autorag_hp.space import SearchSpace

    t_import = time.perf_counter() - _T0
    dataset = load_dataset(args.data)
    space = SearchSpace.from_file(args.space)
    pipe = ReferencePipeline.from_space(dataset, space, cache_dir=args.cache)
    t1 = time.perf_counter()
    result = run_grid(pipe, dataset, space)
    grid_s = time.perf_counter() - t1
    wall = time.perf_counter() - _T0
    st = pipe.stats
    shared = st["chunking_s"] + st["retrieval_s"] + st["similarity_s"] + st["spans_s"]
    n_cells = len(space) * len(dataset.questions)
    config_dep = grid_s - shared  # everything in run_grid not shared: slicing, compression, scoring, rows
    embedded = {fp: {role: len(t) for role, t in roles.items()} for fp, roles in seen.items()}
    distinct = {fp: {role: len(set(t)) for role, t in roles.items()} for fp, roles in seen.items()}
    if args.texts_out:
        Path(args.texts_out).write_text(
            json.dumps({fp: {role: sorted(set(t)) for role, t in roles.items()} for fp, roles in seen.items()})
        )
    best_cfg, best_reward = result.best(1)[0]
    return {
        "wall_s": wall,
        "import_s": t_import,
        "run_grid_s": grid_s,
        "shared_s": {k: st[k] for k in ("chunking_s", "retrieval_s", "similarity_s", "spans_s")},
        "config_dependent_s": config_dep,
        "config_dependent_us_per_cell": 1e6 * config_dep / n_cells,
        "scoring_loop_us_per_cell": 1e6 * st["scoring_s"] / max(1, st["scored"]),
        "cells": n_cells,
        "configurations": len(space),
        "questions": len(dataset.questions),
        "passages": len(dataset.corpus),
        "texts_sent_to_models": embedded,
        "distinct_texts_sent_to_models": distinct,
        "peak_rss_mib": _peak_rss_mib(),
        "best": {"config": best_cfg, "mean_reward": best_reward},
    }


def phase_unavoidable(args: argparse.Namespace) -> dict:
    from autorag_hp.pipeline import _retrievers as r

    texts = json.loads(Path(args.texts_in).read_text())
    encoders = {e.fingerprint: e for e in (r.MiniLMEncoder(), r.WordLlamaEncoder(), r.E5Encoder())}
    load_s: dict[str, float] = {}
    embed_s: dict[str, float] = {}
    counts: dict[str, int] = {}
    for fp, roles in texts.items():
        enc = encoders[fp]
        t = time.perf_counter()
        enc.encode_passages(["warm up the model"])  # loads the model (imports included)
        load_s[fp] = time.perf_counter() - t
        t = time.perf_counter()
        for role, items in roles.items():
            (enc.encode_queries if role == "query" else enc.encode_passages)(items)
        embed_s[fp] = time.perf_counter() - t
        counts[fp] = sum(len(v) for v in roles.values())
    return {
        "wall_s": time.perf_counter() - _T0,
        "load_s": load_s,
        "embed_s": embed_s,
        "texts": counts,
        "peak_rss_mib": _peak_rss_mib(),
    }


def phase_naive(args: argparse.Namespace) -> dict:
    import random

    from autorag_hp.pipeline import ReferencePipeline, load_dataset, score_result
    from autorag_hp.space import SearchSpace

    dataset = load_dataset(args.data)
    space = SearchSpace.from_file(args.space)
    configs = list(space)
    rng = random.Random(0)
    by_emb: dict[str, list[dict]] = {}
    for c in configs:
        by_emb.setdefault(c.get("embedder", "bm25"), []).append(c)
    # models load once per process in any approach; exclude that from the per-config cost
    ReferencePipeline(dataset, cache_dir=None).run({"embedder": "minilm", "top_k": 1}, dataset.questions[:1])
    measured: dict[str, list[float]] = {}
    samples = []
    for emb, cs in sorted(by_emb.items()):
        for c in rng.sample(cs, min(args.naive_per_embedder, len(cs))):
            t = time.perf_counter()
            pipe = ReferencePipeline.from_space(dataset, space, cache_dir=None)  # nothing shared
            res = pipe.run(c, dataset.questions)
            for q, r_ in zip(dataset.questions, res):
                score_result(q, r_, t_max=pipe.t_max)
            dt = time.perf_counter() - t
            measured.setdefault(emb, []).append(dt)
            samples.append({"config": c, "seconds": dt})
    extrapolated = sum(sum(v) / len(v) * len(by_emb[e]) for e, v in measured.items())
    return {"samples": samples, "extrapolated_s": extrapolated,
            "per_embedder_mean_s": {e: sum(v) / len(v) for e, v in measured.items()}}


def _child(phase: str, args: argparse.Namespace, **extra: str) -> dict:
    with tempfile.NamedTemporaryFile("r", suffix=".json", delete=False) as f:
        out = f.name
    cmd = [sys.executable, __file__, "--phase", phase, "--data", str(args.data), "--space", str(args.space),
           "--phase-out", out, "--naive-per-embedder", str(args.naive_per_embedder)]
    for k, v in extra.items():
        cmd += [f"--{k.replace('_', '-')}", v]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    res = json.loads(Path(out).read_text())
    res["process_wall_s"] = time.perf_counter() - t  # includes interpreter start-up
    os.unlink(out)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--space", default=str(ROOT / "pipelines" / "squad_space.toml"))
    ap.add_argument("--out", default=str(ROOT / "bench_out" / "grid_benchmark.json"))
    ap.add_argument("--naive-per-embedder", type=int, default=1, help="configurations timed per embedder (naive)")
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--phase", choices=["grid", "unavoidable", "naive"], help=argparse.SUPPRESS)
    ap.add_argument("--phase-out", help=argparse.SUPPRESS)
    ap.add_argument("--cache", help=argparse.SUPPRESS)
    ap.add_argument("--texts-out", help=argparse.SUPPRESS)
    ap.add_argument("--texts-in", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        fn = {"grid": phase_grid, "unavoidable": phase_unavoidable, "naive": phase_naive}[args.phase]
        Path(args.phase_out).write_text(json.dumps(fn(args), default=str))
        return
    if not Path(args.data).is_file():
        sys.exit(f"grid_benchmark: data file {args.data} not found (the SQuAD subset lives in ../shared/data/)")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="arhp-bench-") as tmp:
        cache = str(Path(tmp) / "cache")
        texts = str(Path(tmp) / "texts.json")
        print("phase 1/4: grid, cold cache ...", flush=True)
        cold = _child("grid", args, cache=cache, texts_out=texts)
        print("phase 2/4: unavoidable work (x2) ...", flush=True)
        un1 = _child("unavoidable", args, texts_in=texts)
        un2 = _child("unavoidable", args, texts_in=texts)
        print("phase 3/4: grid, warm cache ...", flush=True)
        warm = _child("grid", args, cache=cache)
        naive = None
        if not args.skip_naive:
            print("phase 4/4: naive re-embedding per configuration ...", flush=True)
            naive = _child("naive", args)
    unavoidable = (un1["wall_s"] + un2["wall_s"]) / 2
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "data": str(args.data),
        "space": str(args.space),
        "configurations": cold["configurations"],
        "questions": cold["questions"],
        "passages": cold["passages"],
        "grid_cold": cold,
        "grid_warm": warm,
        "unavoidable": [un1, un2],
        "unavoidable_wall_s": unavoidable,
        "ratio_wall_to_unavoidable": cold["wall_s"] / unavoidable,
        "config_dependent_us_per_cell": cold["config_dependent_us_per_cell"],
        "naive": naive,
        "naive_vs_grid": (naive["extrapolated_s"] / cold["wall_s"]) if naive else None,
        "targets": {"ratio_max": 1.3, "config_dependent_us_max": 50},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2, default=str) + "\n")
    print()
    print(f"grid: {cold['configurations']} configurations x {cold['questions']} questions "
          f"({cold['passages']} passages) = {cold['cells']} cells")
    print(f"  cold-cache wall           {cold['wall_s']:8.1f} s   (process incl. start-up {cold['process_wall_s']:.1f} s)")
    print(f"  warm-cache wall           {warm['wall_s']:8.1f} s")
    print(f"  unavoidable work (mean)   {unavoidable:8.1f} s   (runs: {un1['wall_s']:.1f}, {un2['wall_s']:.1f})")
    print(f"  ratio wall/unavoidable    {report['ratio_wall_to_unavoidable']:8.2f}     (target <= 1.3)")
    print(f"  config-dependent work     {cold['config_dependent_us_per_cell']:8.1f} us per configuration x question "
          f"(target < 50; scoring loop alone {cold['scoring_loop_us_per_cell']:.1f} us)")
    print(f"  peak memory (max RSS)     {cold['peak_rss_mib']:8.0f} MiB")
    print(f"  texts sent to models      {cold['texts_sent_to_models']}")
    if naive:
        print(f"  naive (re-embed per config, extrapolated) {naive['extrapolated_s']:.0f} s = "
              f"{report['naive_vs_grid']:.0f}x the cached grid; measured {[round(s['seconds'], 1) for s in naive['samples']]}")
    print(f"  best: {cold['best']}")
    print(f"  load average before/after: {load_before} / {report['machine']['loadavg_after']}")
    print(f"figures written to {args.out}")


if __name__ == "__main__":
    main()
