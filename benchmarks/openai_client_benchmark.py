"""The HTTP client of the ``openai`` generator and judge: the official SDK against a bare
urllib POST, and RetryPolicy's loop against the SDK's own retries, on a loopback server.

Measures (per call, median over ``--calls`` calls to a canned-answer server on 127.0.0.1):

* ``urllib_ms``: one hand-written urllib POST + json parse (what the generator did before);
* ``sdk_ms``: ``OpenAIGenerator._complete`` through the SDK (``max_retries=0``, our loop);
* ``import_openai_s``: the one-off cost of ``import openai`` in a fresh interpreter;
* 2 x HTTP 503 then success: wall time and attempts with RetryPolicy (default and
  ``backoff_s=0.05``) and with the SDK's built-in retries (``max_retries=2``; its backoff is
  fixed at 0.5 s * 2^n, capped at 8 s, by module constants), and whether each can count retries.

    python benchmarks/openai_client_benchmark.py            # JSON to bench_out/openai_client.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from _chat_server import ChatServer  # noqa: E402

from autorag_hp.pipeline._generators import OpenAIGenerator, RetryPolicy  # noqa: E402
from autorag_hp.bench import write_results  # noqa: E402

MESSAGES = [{"role": "user", "content": "Context: Paris is the capital of France.\nQuestion: capital?\nAnswer:"}]


def _urllib_call(url: str) -> str:
    body = json.dumps({"model": "m", "messages": MESSAGES, "max_tokens": 8, "temperature": 0.0}).encode()
    req = urllib.request.Request(url + "/chat/completions", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=10) as resp:
        return json.loads(resp.read())["choices"][0]["message"]["content"]


def _median_ms(fn, n: int) -> float:
    fn()  # warm (connection, lazy imports)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--out", default="bench_out/openai_client.json")
    args = ap.parse_args(argv)
    out: dict = {"calls": args.calls}

    t = [float(subprocess.run([sys.executable, "-c", "import time; t=time.perf_counter(); import openai; "
                               "print(time.perf_counter()-t)"], capture_output=True, text=True, check=True).stdout)
         for _ in range(3)]
    out["import_openai_s"] = round(statistics.median(t), 3)

    with ChatServer(mode="echo", lifetime_s=120) as srv:
        out["urllib_ms"] = round(_median_ms(lambda: _urllib_call(srv.base_url), args.calls), 3)
        g = OpenAIGenerator(base_url=srv.base_url, model="m", cache_dir=None, use_cache=False)
        out["sdk_ms"] = round(_median_ms(lambda: g._complete(MESSAGES), args.calls), 3)

    import openai

    retry: dict = {}
    for name, policy in (("retrypolicy_default", RetryPolicy()), ("retrypolicy_fast", RetryPolicy(backoff_s=0.05))):
        with ChatServer(mode="flaky", fail_first=2, lifetime_s=60) as srv:
            g = OpenAIGenerator(base_url=srv.base_url, model="m", retry=policy, use_cache=False)
            t0 = time.perf_counter()
            g._complete(MESSAGES)
            retry[name] = {"seconds": round(time.perf_counter() - t0, 3), "attempts": srv.requests,
                           "retries_counted": g.stats["retries"]}
    with ChatServer(mode="flaky", fail_first=2, lifetime_s=60) as srv:
        c = openai.OpenAI(base_url=srv.base_url, api_key="x", max_retries=2,
                          http_client=openai.DefaultHttpxClient(trust_env=False))
        t0 = time.perf_counter()
        c.chat.completions.create(model="m", messages=MESSAGES, max_tokens=8)
        retry["sdk_builtin"] = {"seconds": round(time.perf_counter() - t0, 3), "attempts": srv.requests,
                                "retries_counted": None}
    out["two_503_then_ok"] = retry

    print(f"import openai: {out['import_openai_s']:.3f} s (once per process)")
    print(f"per call, median of {args.calls}: urllib {out['urllib_ms']:.2f} ms, SDK {out['sdk_ms']:.2f} ms")
    for k, v in retry.items():
        print(f"2 x 503 then 200, {k:20s}: {v['seconds']:.3f} s, {v['attempts']} attempts, retries counted: "
              f"{v['retries_counted']}")
    path = ROOT / args.out
    write_results(path, out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
