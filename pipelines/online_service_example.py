"""Worked example: a RAG service that asks the tuner service which configuration to use for
every request and reports back how well the answer did.

Two processes, as in production:

* the tuner: ``autorag-hp serve --space pipelines/online_space.toml --journal runs/online.jsonl``
  (this script starts one on a free loopback port unless ``--tuner-url`` is given);
* the RAG service (this file): for each incoming question it calls ``POST /suggest``,
  answers with the suggested ``top_k`` / ``chunk_size`` / ``retriever``, and later calls
  ``POST /feedback`` with the reward -- here token-level F1 against the gold answer,
  standing in for a user's thumbs-up or an LLM judge. Some feedback never arrives and some
  is sent twice (retries): the tuner expires the first and counts the second once.

The RAG pipeline itself is deliberately small and dependency-free (BM25 or word-overlap
retrieval over a few paragraphs; the "generator" returns the best-matching sentence) so the
example runs anywhere in seconds; swap ``answer`` for your own stack.

    python pipelines/online_service_example.py --requests 400
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]

SPACE_TOML = """[params]
top_k = [1, 2, 3, 5]
chunk_size = [8, 16, 32, 64]
retriever = ["bm25", "overlap"]
"""

CORPUS = """
The Amazon rainforest covers much of the Amazon basin of South America. The basin spans
seven million square kilometres. The rainforest is home to about 390 billion trees.
Brazil holds about sixty percent of the rainforest, followed by Peru with thirteen percent.
The Eiffel Tower is a wrought-iron lattice tower in Paris. It was designed by the company of
Gustave Eiffel and completed in 1889 for the World's Fair. The tower is 330 metres tall.
Photosynthesis converts light energy into chemical energy stored in glucose. It takes place in
the chloroplasts of plant cells. Oxygen is released as a by-product of photosynthesis.
The Great Wall of China was built over many centuries to protect against invasions. Its best
known sections were built by the Ming dynasty. The wall stretches over 21,000 kilometres.
Mount Everest is the highest mountain above sea level at 8,849 metres. It lies in the
Himalayas on the border between Nepal and China. Tenzing Norgay and Edmund Hillary first
reached the summit in 1953.
"""

QA = [
    ("How many trees are in the Amazon rainforest?", "390 billion"),
    ("Which country holds most of the Amazon rainforest?", "Brazil"),
    ("When was the Eiffel Tower completed?", "1889"),
    ("How tall is the Eiffel Tower?", "330 metres"),
    ("Where does photosynthesis take place?", "chloroplasts"),
    ("What is released by photosynthesis?", "Oxygen"),
    ("Which dynasty built the best known sections of the Great Wall?", "Ming dynasty"),
    ("How long is the Great Wall of China?", "21,000 kilometres"),
    ("How high is Mount Everest?", "8,849 metres"),
    ("Who first reached the summit of Everest?", "Tenzing Norgay and Edmund Hillary"),
]

WORD = re.compile(r"[\w,]+")


def tokens(text: str) -> list[str]:
    return [w.lower().strip(",") for w in WORD.findall(text)]


def chunks(size: int) -> list[list[str]]:
    words = CORPUS.split()
    return [words[i : i + size] for i in range(0, len(words), size)]


def retrieve(question: str, config: dict) -> list[list[str]]:
    q = set(tokens(question))
    docs = chunks(config["chunk_size"])
    if config["retriever"] == "overlap":
        scores = [len(q & set(tokens(" ".join(d)))) for d in docs]
    else:  # BM25
        n = len(docs)
        df = Counter(t for d in docs for t in set(tokens(" ".join(d))))
        avg = sum(len(d) for d in docs) / n
        scores = []
        for d in docs:
            tf = Counter(tokens(" ".join(d)))
            s = 0.0
            for t in q:
                if t in tf:
                    idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
                    s += idf * tf[t] * 2.2 / (tf[t] + 1.2 * (0.25 + 0.75 * len(d) / avg))
            scores.append(s)
    order = sorted(range(len(docs)), key=lambda i: -scores[i])
    return [docs[i] for i in order[: config["top_k"]]]


def answer(question: str, config: dict) -> str:
    """The "generator": the retrieved sentence sharing most words with the question, minus them."""
    context = " ".join(" ".join(d) for d in retrieve(question, config))
    q = set(tokens(question))
    sentences = [s for s in re.split(r"(?<=\.)\s", context) if s.strip()]
    if not sentences:
        return ""
    best = max(sentences, key=lambda s: len(q & set(tokens(s))))
    return " ".join(w for w in best.split() if w.lower().strip(".,") not in q)


def f1(prediction: str, gold: str) -> float:
    p, g = tokens(prediction), tokens(gold)
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


class TunerClient:
    """Keep-alive JSON client for the tuner service."""

    def __init__(self, url: str, token: str | None = None) -> None:
        u = urlparse(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
        self.headers = {"content-type": "application/json"}
        if token:
            self.headers["authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        self.conn.request(method, path, body=None if body is None else json.dumps(body), headers=self.headers)
        resp = self.conn.getresponse()
        return resp.status, json.loads(resp.read())


def start_tuner(workdir: Path) -> tuple[subprocess.Popen, str]:
    space = workdir / "space.toml"
    space.write_text(SPACE_TOML)
    port_file = workdir / "port"
    cmd = [sys.executable, "-m", "autorag_hp", "serve", "--space", str(space), "--journal", str(workdir / "online.jsonl"),
           "--port", "0", "--port-file", str(port_file), "--expiry", "2", "--lifetime", "600"]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 120
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the tuner service did not start")
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port_file.read_text()}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--tuner-url", help="an already running `autorag-hp serve` (default: start one)")
    ap.add_argument("--token-env", default="AUTORAG_HP_TOKEN")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    proc = None
    tmp = tempfile.TemporaryDirectory()
    try:
        url = args.tuner_url
        if url is None:
            proc, url = start_tuner(Path(tmp.name))
        tuner = TunerClient(url, os.environ.get(args.token_env))
        late: list[tuple[str, float]] = []
        rewards = []
        for n in range(args.requests):
            question, gold = rng.choice(QA)
            status, s = tuner.call("POST", "/suggest")  # one configuration per request
            assert status == 200, s
            reply = answer(question, s["config"])
            reward = f1(reply, gold)
            rewards.append(reward)
            fate = rng.random()
            if fate < 0.05:
                continue  # the user never told us: the suggestion expires, nothing is counted
            if fate < 0.25:
                late.append((s["id"], reward))  # feedback arrives later, out of order
            else:
                status, body = tuner.call("POST", "/feedback", {"id": s["id"], "reward": reward})
                assert status == 200, body
                if fate < 0.30:  # a retry of the same feedback is refused and counted once
                    status, body = tuner.call("POST", "/feedback", {"id": s["id"], "reward": reward})
                    assert status == 409, body
            if len(late) >= 8:
                rng.shuffle(late)
                for sid, r in late:
                    tuner.call("POST", "/feedback", {"id": sid, "reward": r})
                late.clear()
            if (n + 1) % 100 == 0:
                print(f"requests {n + 1:5d}  mean F1 of the last 100: {sum(rewards[-100:]) / 100:.3f}")
        time.sleep(2.1)  # let unanswered suggestions expire
        _, stats = tuner.call("GET", "/stats")
        _, best = tuner.call("GET", "/best?n=3")
        print(f"tuner: {stats['suggestions']} suggestions, {stats['feedback']} feedback counted, "
              f"{stats['expired']} expired, rejected {stats['rejected']}")
        for r in best["best"]:
            print(f"  {r['config']}  mean F1 {r['mean']:.3f} over {r['pulls']:.0f} requests")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
