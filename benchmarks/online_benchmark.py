"""Throughput and latency of the online tuner, in process and over HTTP.

In process: suggest+feedback pairs per second and p50/p99 latency of a pair at 1,000 and
100,000 configurations, with Optuna's ask/tell (TPE and random samplers) measured in the
same run. Over HTTP: `autorag-hp serve` with every feedback fsynced before it is
acknowledged (group commit), driven over loopback by 1, 8 and 32 concurrent keep-alive
clients from a separate process; a bare FastAPI app with two trivial endpoints is measured
the same way for scale.

    python benchmarks/online_benchmark.py                 # everything, JSON to bench_out/
    python benchmarks/online_benchmark.py --skip-http     # in-process part only
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autorag_hp.online import OnlineTuner  # noqa: E402
from autorag_hp.space import SearchSpace  # noqa: E402


def space_of(size: int) -> SearchSpace:
    digits = {1_000: 3, 100_000: 5}[size]
    names = ["top_k", "chunk_size", "embedder", "compression", "temperature"][:digits]
    return SearchSpace({n: list(range(10)) for n in names})


def reward(config: dict) -> float:
    return sum(config.values()) / (9 * len(config))


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def summarize(lat_s: list[float], wall: float) -> dict:
    us = [x * 1e6 for x in lat_s]
    return {"pairs": len(lat_s), "pairs_per_s": round(len(lat_s) / wall, 1),
            "p50_us": round(pct(us, 50), 1), "p99_us": round(pct(us, 99), 1)}


def bench_tuner(size: int, strategy: str, pairs: int) -> dict:
    t = OnlineTuner(space_of(size), strategy=strategy, seed=0)
    lat = []
    start = time.perf_counter()
    for _ in range(pairs):
        t0 = time.perf_counter()
        s = t.suggest()
        t.feedback(s.id, reward(s.config))
        lat.append(time.perf_counter() - t0)
    return summarize(lat, time.perf_counter() - start)


def bench_optuna(size: int, sampler: str, pairs: int) -> dict:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = space_of(size)
    dists = {n: optuna.distributions.CategoricalDistribution(list(space.values(n))) for n in space.names}
    smp = optuna.samplers.TPESampler(seed=0) if sampler == "tpe" else optuna.samplers.RandomSampler(seed=0)
    study = optuna.create_study(direction="maximize", sampler=smp)
    lat = []
    start = time.perf_counter()
    for _ in range(pairs):
        t0 = time.perf_counter()
        trial = study.ask(dists)
        study.tell(trial, reward(trial.params))
        lat.append(time.perf_counter() - t0)
    return summarize(lat, time.perf_counter() - start)


# -- HTTP --------------------------------------------------------------------------------------
SPACE_TOML = """[params]
top_k = [1, 3, 5, 8, 10]
chunk_size = [128, 256, 512, 1024]
embedder = ["bm25", "minilm", "e5"]
compression = [0.2, 0.4, 0.6, 0.8, 1.0]
"""


def bare_app():
    """Two trivial endpoints: the floor that FastAPI/uvicorn set on this machine."""
    from fastapi import FastAPI
    from starlette.requests import Request
    from starlette.responses import Response

    app = FastAPI()
    counter = iter(range(10**12))

    async def suggest() -> Response:
        return Response(b'{"id":"1-%d","config":{"top_k":5}}' % next(counter), media_type="application/json")

    async def feedback(request: Request) -> Response:
        await request.body()
        return Response(b'{"accepted":true}', media_type="application/json")

    feedback.__annotations__["request"] = Request  # postponed annotations: give FastAPI the class
    app.post("/suggest")(suggest)
    app.post("/feedback")(feedback)
    return app


def serve_bare(port_file: str) -> None:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    Path(port_file).write_text(str(sock.getsockname()[1]))
    uvicorn.Server(uvicorn.Config(bare_app(), log_level="warning", access_log=False)).run(sockets=[sock])


async def _read(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return status, await reader.readexactly(length)


async def _client(port: int, t_start: float, t_stop: float, pair_lat: list, req_lat: list, errors: list) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sug = b"POST /suggest HTTP/1.1\r\nHost: b\r\nContent-Length: 0\r\n\r\n"
    n = 0
    try:
        while True:
            t0 = time.perf_counter()
            if t0 >= t_stop:
                break
            writer.write(sug)
            status, body = await _read(reader)
            t1 = time.perf_counter()
            if status != 200:
                errors.append(status)
                break
            sid = json.loads(body)["id"]
            payload = b'{"id":"%s","reward":%.3f}' % (sid.encode(), (n % 9) / 8)
            n += 1
            writer.write(b"POST /feedback HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(payload), payload))
            status, _ = await _read(reader)
            t2 = time.perf_counter()
            if status != 200:
                errors.append(status)
                break
            if t0 >= t_start:
                pair_lat.append(t2 - t0)
                req_lat.extend((t1 - t0, t2 - t1))
    finally:
        writer.close()


def drive(port: int, clients: int, seconds: float, warmup: float) -> dict:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    pair_lat: list[float] = []
    req_lat: list[float] = []
    errors: list[int] = []

    async def main() -> None:
        now = time.perf_counter()
        await asyncio.gather(*(_client(port, now + warmup, now + warmup + seconds, pair_lat, req_lat, errors)
                               for _ in range(clients)))

    asyncio.run(main())
    if errors:
        raise RuntimeError(f"server answered {errors[:5]}")
    us = [x * 1e6 for x in req_lat]
    pus = [x * 1e6 for x in pair_lat]
    return {"clients": clients, "pairs": len(pair_lat), "pairs_per_s": round(len(pair_lat) / seconds, 1),
            "request_p50_ms": round(pct(us, 50) / 1000, 3), "request_p99_ms": round(pct(us, 99) / 1000, 3),
            "pair_p50_ms": round(pct(pus, 50) / 1000, 3), "pair_p99_ms": round(pct(pus, 99) / 1000, 3)}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its threads (Linux /proc; nan elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def _start(cmd: list[str], port_file: Path) -> tuple[subprocess.Popen, int]:
    port_file.unlink(missing_ok=True)
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 120
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"server did not start: {cmd}")
        time.sleep(0.05)
    time.sleep(0.2)
    return proc, int(port_file.read_text())


def bench_http(levels: list[int], seconds: float, warmup: float, workdir: Path) -> dict:
    import urllib.request

    out: dict = {}
    space = workdir / "space.toml"
    space.write_text(SPACE_TOML)
    port_file = workdir / "port"
    servers = {
        "autorag-hp serve (fsync=always, group commit)": [
            sys.executable, "-m", "autorag_hp", "serve", "--space", str(space), "--journal", str(workdir / "run.jsonl"),
            "--port", "0", "--port-file", str(port_file), "--fsync", "always"],
        "bare FastAPI pair (no tuner, no journal)": [
            sys.executable, str(Path(__file__).resolve()), "--serve-bare", str(port_file)],
    }
    for name, cmd in servers.items():
        proc, port = _start(cmd, port_file)
        try:
            rows = []
            for c in levels:
                cpu0 = _cpu_seconds(proc.pid)
                row = drive(port, c, seconds, warmup)
                # CPU the server spent per pair (warm-up included): robust to other load on the machine
                done = row["pairs"] * (seconds + warmup) / seconds
                row["server_cpu_us_per_pair"] = round((_cpu_seconds(proc.pid) - cpu0) / max(done, 1) * 1e6, 1)
                rows.append(row)
                print(f"  {name:48s} clients={c:3d}  {row['pairs_per_s']:8.1f} pairs/s  "
                      f"request p50 {row['request_p50_ms']:.2f} ms  p99 {row['request_p99_ms']:.2f} ms  "
                      f"pair p99 {row['pair_p99_ms']:.2f} ms  server CPU {row['server_cpu_us_per_pair']:.0f} us/pair", flush=True)
            if "serve" in name:
                stats = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/stats").read())
                total_pairs = stats["feedback"]
                j = stats["journal"]
                out["journal"] = {"feedback": total_pairs, "records": 2 * total_pairs, "fsyncs": j["syncs"],
                                  "records_per_fsync": round(2 * total_pairs / max(j["syncs"], 1), 1)}
                print(f"  journal: {2 * total_pairs} records in {j['syncs']} fsyncs "
                      f"({out['journal']['records_per_fsync']} records per fsync)")
            out[name] = rows
        finally:
            proc.terminate()
            proc.wait(30)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=5_000, help="in-process pairs per autorag-hp strategy")
    ap.add_argument("--optuna-pairs", type=int, default=1_000, help="pairs for Optuna (TPE slows as trials grow)")
    ap.add_argument("--seconds", type=float, default=6.0, help="measured seconds per HTTP concurrency level")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--skip-http", action="store_true")
    ap.add_argument("--skip-inprocess", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "bench_out" / "online_benchmark.json"))
    ap.add_argument("--serve-bare", metavar="PORT_FILE", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return 0
    result: dict = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                                "loadavg_at_start": os.getloadavg()},
                    "command": " ".join(sys.argv)}
    if not args.skip_inprocess:
        rows = []
        for size in (1_000, 100_000):
            for name, fn, n in [
                ("autorag-hp hier-ts", lambda: bench_tuner(size, "hier-ts", args.pairs), args.pairs),
                ("autorag-hp hier-ucb", lambda: bench_tuner(size, "hier-ucb", args.pairs), args.pairs),
                ("autorag-hp flat-ts", lambda: bench_tuner(size, "flat-ts", args.pairs), args.pairs),
                ("optuna TPESampler ask/tell", lambda: bench_optuna(size, "tpe", args.optuna_pairs), args.optuna_pairs),
                ("optuna RandomSampler ask/tell", lambda: bench_optuna(size, "random", args.pairs), args.pairs),
            ]:
                row = {"configs": size, "method": name, **fn()}
                rows.append(row)
                print(f"{size:>7,d} configs  {name:32s} {row['pairs_per_s']:9.1f} pairs/s  "
                      f"p50 {row['p50_us']:8.1f} us  p99 {row['p99_us']:9.1f} us  ({row['pairs']} pairs)", flush=True)
        result["in_process"] = rows
    if not args.skip_http:
        levels = [int(c) for c in args.clients.split(",")]
        with tempfile.TemporaryDirectory() as d:
            result["http"] = bench_http(levels, args.seconds, args.warmup, Path(d))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
