"""Every quality metric on the same answers: what each scores and what it costs.

The reference pipeline answers ``--questions`` questions of the embedded default set with
SmolLM2-135M (local, greedy) under two configurations (a rich and a lean context); every
metric then scores the same answers, cold (fresh caches) and warm (the same call again).
The judge is SmolLM2 behind a loopback OpenAI-compatible server (tests/_chat_server.py),
so the judge's calls go through the same HTTP client as a vLLM / Ollama judge would;
``unparsable_score=0`` keeps the run going where the 135M judge breaks the format
(counted in the ``unparsable`` column).

    python benchmarks/metrics_example.py                 # JSON to bench_out/metrics_example.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from autorag_hp.pipeline import (  # noqa: E402
    ReferencePipeline,
    make_generator,
    make_metric,
    score_batch,
)
from autorag_hp.pipeline._default import load_default_dataset  # noqa: E402
from autorag_hp.bench import write_results  # noqa: E402

CONFIGS = {
    "rich": {"chunk_size": 128, "embedder": "minilm", "top_k": 3, "compression": 1.0},
    "lean": {"chunk_size": 32, "embedder": "bm25", "top_k": 1, "compression": 0.5},
}
METRICS = ("answer_in_context", "em", "f1", "semantic", "judge_correctness", "judge_faithfulness")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=12)
    ap.add_argument("--out", default="bench_out/metrics_example.json")
    args = ap.parse_args(argv)
    from _chat_server import ChatServer

    data = load_default_dataset()
    questions = list(data.questions)[: args.questions]
    tmp = Path(tempfile.mkdtemp(prefix="metrics-example-"))
    gen = make_generator("smollm2", max_new_tokens=24, cache_dir=tmp / "gen")
    pipe = ReferencePipeline(data, generator=gen, cache_dir=tmp / "pipe")
    t0 = time.perf_counter()
    results = {name: pipe.run(cfg, questions) for name, cfg in CONFIGS.items()}
    gen_s = time.perf_counter() - t0
    print(f"generated {sum(len(r) for r in results.values())} answers in {gen_s:.1f} s", flush=True)
    n_answers = sum(len(r) for r in results.values())
    rows: list[dict] = []
    with ChatServer(mode="model", lifetime_s=900) as srv:
        for metric in METRICS:
            scorer = None
            if metric == "semantic":
                scorer = make_metric("semantic", cache_dir=tmp / "metric")
            elif metric.startswith("judge"):
                scorer = make_metric(metric, base_url=srv.base_url, model="smollm2", cache_dir=tmp / "metric",
                                     timeout_s=120, unparsable_score=0.0)
            means, cold, warm = {}, 0.0, 0.0
            for name, res in results.items():
                t = time.perf_counter()
                scored = score_batch(questions, res, metric=metric, w=0.9, t_max=pipe.t_max, scorer=scorer)
                cold += time.perf_counter() - t
                t = time.perf_counter()
                score_batch(questions, res, metric=metric, w=0.9, t_max=pipe.t_max, scorer=scorer)
                warm += time.perf_counter() - t
                means[name] = sum(r["quality"] for r in scored) / len(scored)
            stats = dict(scorer.stats) if scorer is not None else {}
            print(f"{metric}: cold {cold:.1f} s, warm {warm:.2f} s", flush=True)
            rows.append({
                "metric": metric,
                **{f"mean_{k}": round(v, 3) for k, v in means.items()},
                "cold_ms_per_answer": round(1000 * cold / n_answers, 2),
                "warm_ms_per_answer": round(1000 * warm / n_answers, 2),
                "model_calls": stats.get("calls", 0),
                "judge_prompt_tokens": stats.get("prompt_tokens", 0),
                "unparsable": stats.get("unparsable", 0),
            })
    out = {"questions": len(questions), "configs": CONFIGS, "answers": n_answers,
           "generator_calls": gen.stats["calls"], "generation_s": round(gen_s, 2),
           "prompt_tokens_mean": {k: round(sum(r.prompt_tokens for r in v) / len(v), 1) for k, v in results.items()},
           "rows": rows}
    print(f"{n_answers} answers by SmolLM2 ({gen.stats['calls']} generator calls, {gen_s:.1f} s); mean prompt "
          f"tokens {out['prompt_tokens_mean']}")
    head = f"{'metric':20s} {'rich':>6s} {'lean':>6s} {'cold ms/ans':>12s} {'warm ms/ans':>12s} {'calls':>6s} " \
           f"{'judge tok':>9s} {'unpars.':>7s}"
    print(head)
    for r in rows:
        print(f"{r['metric']:20s} {r['mean_rich']:6.3f} {r['mean_lean']:6.3f} {r['cold_ms_per_answer']:12.2f} "
              f"{r['warm_ms_per_answer']:12.2f} {r['model_calls']:6d} {r['judge_prompt_tokens']:9d} "
              f"{r['unparsable']:7d}")
    path = ROOT / args.out
    write_results(path, out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
