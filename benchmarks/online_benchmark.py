"""Throughput and latency of the online tuner, in process and over HTTP.

In process: suggest+feedback pairs per second and p50/p99 latency of a pair at 1,000 and
100,000 configurations, with Optuna's ask/tell (TPE and random samplers) measured in the
same run. Over HTTP: `autorag-hp serve` with every feedback fsynced before it is
acknowledged (group commit), driven over loopback by 1, 8 and 32 concurrent keep-alive
clients from a separate process; a bare FastAPI app with two trivial endpoints is measured
the same way in the same run, and the ratios service/bare are printed. At each level the apps
compared are measured in alternating slices of the same seconds (``--slices``), with the
servers pinned to one CPU and the load generator to another where there are two (``--pin``). Batch clients
(``--batch 32``: ``POST /suggest {"n": 32}`` then one ``POST /feedback`` with a list of 32)
are measured against unbatched clients at the same concurrency. ``--profile`` runs the
server under cProfile and prints where its CPU goes.

    python benchmarks/online_benchmark.py                 # everything, JSON to bench_out/
    python benchmarks/online_benchmark.py --skip-http     # in-process part only
    python benchmarks/online_benchmark.py --skip-inprocess --clients 1,8 --batch 32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
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


def summarize(lat_s: list[float], wall: float, cpu: float | None = None) -> dict:
    us = [x * 1e6 for x in lat_s]
    out = {"pairs": len(lat_s), "pairs_per_s": round(len(lat_s) / wall, 1),
           "p50_us": round(pct(us, 50), 1), "p99_us": round(pct(us, 99), 1)}
    if cpu is not None:  # CPU time per pair: less sensitive than wall time to other jobs on the machine
        out["cpu_us_per_pair"] = round(cpu / max(len(lat_s), 1) * 1e6, 1)
    return out


def bench_tuner(size: int, strategy: str, pairs: int) -> dict:
    t = OnlineTuner(space_of(size), strategy=strategy, seed=0)
    lat = []
    start, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(pairs):
        t0 = time.perf_counter()
        s = t.suggest()
        t.feedback(s.id, reward(s.config))
        lat.append(time.perf_counter() - t0)
    return summarize(lat, time.perf_counter() - start, time.process_time() - cpu0)


def bench_snapshot(remembered: int, workdir: Path) -> dict:
    """CPU time of one snapshot of a tuner that remembers ``remembered`` answered ids (the service
    writes one every ``snapshot_every`` records, in a background thread, part of it under the lock)."""
    from autorag_hp.online import Persistence

    import tomllib

    space = SearchSpace.from_dict(tomllib.loads(SPACE_TOML))  # the HTTP benchmark's space
    path = workdir / f"snapshot_{remembered}.jsonl"
    t = OnlineTuner(space, strategy="hier-ts", persistence=Persistence(path, fsync="never", snapshot_every=0))
    try:
        for _ in range(remembered // 32):
            got = t.suggest_many(32)
            t.feedback_many([(x.id, 0.5) for x in got])
        cpu0, wall0 = time.process_time(), time.perf_counter()
        t.snapshot()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        size = Path(str(path) + ".snapshot").stat().st_size
    finally:
        t.close()
    row = {"remembered_ids": remembered, "snapshot_cpu_ms": round(cpu * 1e3, 1), "snapshot_wall_ms": round(wall * 1e3, 1),
           "snapshot_bytes": size}
    print(f"  snapshot with {remembered:,d} remembered ids: CPU {row['snapshot_cpu_ms']} ms, wall "
          f"{row['snapshot_wall_ms']} ms, {size:,d} bytes", flush=True)
    return row


def bench_optuna(size: int, sampler: str, pairs: int) -> dict:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = space_of(size)
    dists = {n: optuna.distributions.CategoricalDistribution(list(space.values(n))) for n in space.names}
    smp = optuna.samplers.TPESampler(seed=0) if sampler == "tpe" else optuna.samplers.RandomSampler(seed=0)
    study = optuna.create_study(direction="maximize", sampler=smp)
    lat = []
    start, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(pairs):
        t0 = time.perf_counter()
        trial = study.ask(dists)
        study.tell(trial, reward(trial.params))
        lat.append(time.perf_counter() - t0)
    return summarize(lat, time.perf_counter() - start, time.process_time() - cpu0)


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
    # the same uvicorn settings as `autorag-hp serve` (cli/_serve.py): no proxy-header rewriting, no Server header
    uvicorn.Server(uvicorn.Config(bare_app(), log_level="warning", access_log=False, backlog=2048,
                                  proxy_headers=False, server_header=False)).run(sockets=[sock])


try:  # the load generator parses with orjson when it can: less client CPU on the 2 shared cores
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - depends on the environment
    _loads = json.loads


async def _read(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return status, await reader.readexactly(length)


def _post(path: bytes, payload: bytes) -> bytes:
    return (b"POST %s HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (path, len(payload), payload))


async def _client(port: int, t_start: float, t_stop: float, pair_lat: list, req_lat: list, errors: list,
                  batch: int = 1) -> None:
    """One keep-alive connection doing suggest -> feedback pairs; with ``batch`` > 1 each round trip
    carries ``batch`` pairs (``pair_lat`` then gets one entry per pair, the batch's latency)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sug = b"POST /suggest HTTP/1.1\r\nHost: b\r\nContent-Length: 0\r\n\r\n" if batch == 1 else \
        _post(b"/suggest", b'{"n":%d}' % batch)
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
            if batch > 1:
                ids = [s["id"] for s in _loads(body)["suggestions"]]
                payload = b"[" + b",".join(b'{"id":"%s","reward":%.3f}' % (i.encode(), ((n + k) % 9) / 8)
                                            for k, i in enumerate(ids)) + b"]"
                n += batch
                writer.write(_post(b"/feedback", payload))
                status, body = await _read(reader)
                t2 = time.perf_counter()
                if status != 200 or _loads(body)["accepted"] != batch:
                    errors.append(status)
                    break
                if t0 >= t_start:
                    pair_lat.extend([t2 - t0] * batch)
                    req_lat.extend((t1 - t0, t2 - t1))
                continue
            sid = _loads(body)["id"]
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


def pin_plan(mode: str) -> dict | None:
    """CPUs for the server and for the load generator: with two or more CPUs allowed, the server
    gets the first and the generator the second, so that neither preempts the other (the same
    for the service and the bare app); None when ``mode`` is "off" or there is one CPU."""
    if mode == "off" or not hasattr(os, "sched_getaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    return {"server": [cpus[0]], "client": [cpus[1]]}


_PIN: dict | None = None  # set by bench_http from --pin


def drive(port: int, clients: int, seconds: float, warmup: float, batch: int = 1) -> dict:
    """``clients`` keep-alive clients for ``warmup`` + ``seconds``; the summary of the measured seconds."""
    pair_lat, req_lat, cpu = drive_raw(port, clients, seconds, warmup, batch)
    return _summary(clients, batch, pair_lat, req_lat, seconds, seconds + warmup, cpu)


def drive_raw(port: int, clients: int, seconds: float, warmup: float, batch: int = 1) -> tuple[list, list, float]:
    """(pair latencies, request latencies, the load generator's CPU seconds), on the generator's CPU."""
    if _PIN is not None:  # the load generator on its own CPU (restored afterwards)
        before = os.sched_getaffinity(0)
        os.sched_setaffinity(0, _PIN["client"])
        try:
            return _drive(port, clients, seconds, warmup, batch)
        finally:
            os.sched_setaffinity(0, before)
    return _drive(port, clients, seconds, warmup, batch)


def _summary(clients: int, batch: int, pair_lat: list, req_lat: list, seconds: float, total: float, cpu: float) -> dict:
    """Figures of ``seconds`` measured (``total``: with the warm-ups, whose pairs are estimated at the same rate)."""
    us = [x * 1e6 for x in req_lat]
    pus = [x * 1e6 for x in pair_lat]
    done = len(pair_lat) * total / seconds  # pairs including the warm-up's
    return {"clients": clients, "batch": batch, "pairs": len(pair_lat), "pairs_per_s": round(len(pair_lat) / seconds, 1),
            "request_p50_ms": round(pct(us, 50) / 1000, 3), "request_p99_ms": round(pct(us, 99) / 1000, 3),
            "pair_p50_ms": round(pct(pus, 50) / 1000, 3), "pair_p99_ms": round(pct(pus, 99) / 1000, 3),
            "client_cpu_us_per_pair": round(cpu / max(done, 1) * 1e6, 1)}


def _drive(port: int, clients: int, seconds: float, warmup: float, batch: int = 1) -> tuple[list, list, float]:
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
        await asyncio.gather(*(_client(port, now + warmup, now + warmup + seconds, pair_lat, req_lat, errors, batch)
                               for _ in range(clients)))

    cpu0 = time.process_time()
    asyncio.run(main())
    cpu = time.process_time() - cpu0
    if errors:
        raise RuntimeError(f"server answered {errors[:5]}")
    return pair_lat, req_lat, cpu


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its threads (Linux /proc; nan elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def _start(cmd: list[str], port_file: Path) -> tuple[subprocess.Popen, int]:
    port_file.unlink(missing_ok=True)
    server_cpus = None if _PIN is None else set(_PIN["server"])
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": path},
                            # before exec: every thread the server starts inherits its CPU
                            preexec_fn=None if server_cpus is None else (lambda: os.sched_setaffinity(0, server_cpus)))
    deadline = time.monotonic() + 120
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"server did not start: {cmd}")
        time.sleep(0.05)
    time.sleep(0.2)
    return proc, int(port_file.read_text())


SERVE = "autorag-hp serve (fsync=always, group commit)"
BARE = "bare FastAPI pair (no tuner, no journal)"


def _journal_stats(port: int) -> dict | None:
    """The service's journal counters (/stats), None for the bare app."""
    import urllib.error
    import urllib.request

    try:
        return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=30).read()).get("journal")
    except (urllib.error.URLError, ValueError):
        return None


def _measure_level(steps: list[tuple[str, subprocess.Popen, int, int]], clients: int, seconds: float, warmup: float,
                   slices: int) -> list[tuple[str, dict]]:
    """Measure each step (app name, server process, port, batch) at ``clients`` clients for ``seconds`` in
    all, in ``slices`` slices taken in turn, the order reversed every other turn (A B C, C B A, ...), so
    that the apps compared share the same minutes of this shared machine, whose speed drifts within
    seconds (the same work can take 20-30% more CPU time half a minute later). Each slice has its own
    warm-up (the first one the whole ``warmup``, the others at most 0.2 s), which is not measured."""
    acc = [{"pair": [], "req": [], "client_cpu": 0.0, "server_cpu": 0.0, "measured": 0.0, "total": 0.0,
            "syncs": 0, "sync_s": 0.0, "journal": False} for _ in steps]
    for k in range(slices):
        order = list(enumerate(steps))
        for i, (name, proc, port, batch) in (order if k % 2 == 0 else order[::-1]):
            a = acc[i]
            w = warmup if k == 0 else min(warmup, 0.2)
            j0 = _journal_stats(port) if name == SERVE else None
            cpu0 = _cpu_seconds(proc.pid)
            pair, req, client_cpu = drive_raw(port, clients, seconds / slices, w, batch)
            a["server_cpu"] += _cpu_seconds(proc.pid) - cpu0
            j1 = _journal_stats(port) if j0 is not None else None
            if j0 is not None and j1 is not None and "sync_seconds" in j1:  # how fast the disk was
                a["journal"] = True
                a["syncs"] += j1["syncs"] - j0["syncs"]
                a["sync_s"] += j1["sync_seconds"] - j0["sync_seconds"]
            a["pair"] += pair
            a["req"] += req
            a["client_cpu"] += client_cpu
            a["measured"] += seconds / slices
            a["total"] += seconds / slices + w
    rows = []
    for (name, _, _, batch), a in zip(steps, acc):
        row = _summary(clients, batch, a["pair"], a["req"], a["measured"], a["total"], a["client_cpu"])
        done = row["pairs"] * a["total"] / a["measured"]
        # CPU the server spent per pair (warm-ups included): less sensitive than pairs/s to other load
        row["server_cpu_us_per_pair"] = round(a["server_cpu"] / max(done, 1) * 1e6, 1)
        # share of one CPU the server used: near 1.0 means the server's CPU was the limit
        row["server_cpu_busy"] = round(a["server_cpu"] / a["total"], 3)
        row["slices"] = slices
        extra = ""
        if a["journal"]:
            row["fsyncs"] = a["syncs"]
            row["fsync_ms_mean"] = round(a["sync_s"] / max(a["syncs"], 1) * 1e3, 3)
            extra = f"  fsyncs {a['syncs']} (mean {row['fsync_ms_mean']:.3f} ms)"
        print(f"  {name:48s} clients={clients:3d} batch={batch:3d}  {row['pairs_per_s']:9.1f} pairs/s  "
              f"request p50 {row['request_p50_ms']:.2f} ms  p99 {row['request_p99_ms']:.2f} ms  "
              f"pair p99 {row['pair_p99_ms']:.2f} ms  server CPU {row['server_cpu_us_per_pair']:.0f} us/pair  "
              f"(busy {row['server_cpu_busy']:.2f})  client CPU {row['client_cpu_us_per_pair']:.0f} us/pair{extra}",
              flush=True)
        rows.append((name, row))
    return rows


def fsync_probe(workdir: Path, n: int = 200) -> dict:
    """Latency of appending 100 bytes + fdatasync on the journal's file system: with
    fsync=always a lone client waits for one per feedback, whatever the server's speed."""
    path = workdir / "fsync_probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    lat = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            os.write(fd, b"x" * 99 + b"\n")
            os.fdatasync(fd)
            lat.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink()
    ms = [x * 1e3 for x in lat]
    out = {"p50_ms": round(pct(ms, 50), 3), "p99_ms": round(pct(ms, 99), 3)}
    print(f"  fsync probe ({n} x write+fdatasync): p50 {out['p50_ms']:.3f} ms  p99 {out['p99_ms']:.3f} ms", flush=True)
    return out


def bench_http(levels: list[int], seconds: float, warmup: float, workdir: Path, *, batch: int = 0,
               rounds: int = 1, profile: Path | None = None, profile_timer: str = "wall",
               batch_only: bool = False, pin: str = "auto", slices: int = 5) -> dict:
    """Service and bare app, measured alternately ``rounds`` times (so both see the same load);
    the ratios compare figures of the same round."""
    import urllib.request

    global _PIN
    _PIN = pin_plan(pin)
    if _PIN is not None:
        print(f"  pinned: server on CPU {_PIN['server']}, load generator on CPU {_PIN['client']}", flush=True)
    out: dict = {"rounds": [], "pinning": _PIN, "slices": slices, "fsync_probe_start": fsync_probe(workdir)}
    space = workdir / "space.toml"
    space.write_text(SPACE_TOML)
    port_files = {SERVE: workdir / "port_service", BARE: workdir / "port_bare"}
    prefix = [sys.executable, "-m", "autorag_hp"] if profile is None else \
        [sys.executable, str(Path(__file__).resolve()), "--serve-profiled", str(profile), profile_timer]
    servers = {
        SERVE: [*prefix, "serve", "--space", str(space), "--journal", str(workdir / "run.jsonl"),
                "--port", "0", "--port-file", str(port_files[SERVE]), "--fsync", "always"],
        BARE: [sys.executable, str(Path(__file__).resolve()), "--serve-bare", str(port_files[BARE])],
    }
    names = [SERVE] if (profile is not None or batch_only) else [SERVE, BARE]
    for r in range(rounds):
        got: dict = {}
        (workdir / "run.jsonl").unlink(missing_ok=True)
        Path(str(workdir / "run.jsonl") + ".snapshot").unlink(missing_ok=True)
        procs: dict[str, tuple[subprocess.Popen, int]] = {}
        try:
            for name in names:  # both servers run through the round (the idle one uses no CPU)
                procs[name] = _start(servers[name], port_files[name])
            proc, port = procs[SERVE]
            if profile is not None:  # profile the measured levels only, not start-up and warm-up
                drive(port, levels[0], warmup, 0.0)
                proc.send_signal(signal.SIGUSR1)
            rows: dict[str, list] = {name: [] for name in names}
            batched = [c for c in (1, 8) if batch > 1 and (c == 1 or c in levels)]
            for c in [*levels, *(c for c in batched if c not in levels)]:
                # At each level the bare app, the service and the service's batching client (1 and 8
                # clients) are measured in alternating slices of the same seconds (see _measure_level).
                steps = [(BARE, *procs[BARE], 1)] if BARE in procs and c in levels else []
                if not batch_only and c in levels:
                    steps.append((SERVE, proc, port, 1))
                if c in batched:
                    steps.append((SERVE, proc, port, batch))
                for name, row in _measure_level(steps, c, seconds, warmup, slices):
                    rows[name].append(row)
            stats = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/stats").read())
            total_pairs = stats["feedback"]
            j = stats["journal"]
            got["journal"] = {"feedback": total_pairs, "fsyncs": j["syncs"],
                              "feedbacks_per_fsync": round(total_pairs / max(j["syncs"], 1), 1)}
            print(f"  journal: {total_pairs} feedbacks in {j['syncs']} fsyncs "
                  f"({got['journal']['feedbacks_per_fsync']} per fsync)")
            got.update(rows)
            if profile is not None:
                profile.unlink(missing_ok=True)
                proc.send_signal(signal.SIGUSR2)
                deadline = time.monotonic() + 60
                while not profile.exists() and time.monotonic() < deadline:
                    time.sleep(0.1)
        finally:
            for p, _ in procs.values():
                p.terminate()
            for p, _ in procs.values():
                p.wait(30)
        got["ratios"] = _ratios(got)
        for k, v in got["ratios"].items():
            print(f"  round {r + 1}: {k} = {v}")
        out["rounds"].append(got)
    out["fsync_probe_end"] = fsync_probe(workdir)
    if profile is not None:
        out["profile"] = _profile_summary(profile)
    return out


def _ratios(got: dict) -> dict:
    ratios: dict = {}
    serve = {(x["clients"], x["batch"]): x for x in got.get(SERVE, [])}
    bare = {(x["clients"], x["batch"]): x for x in got.get(BARE, [])}
    for (c, b), row in serve.items():
        if b == 1 and (c, 1) in bare:
            ratios[f"service/bare pairs/s, {c} clients"] = round(row["pairs_per_s"] / bare[(c, 1)]["pairs_per_s"], 3)
            ratios[f"service pair p99 ms, {c} clients"] = row["pair_p99_ms"]
        if b > 1 and (c, 1) in serve:
            ratios[f"batch {b}/unbatched pairs/s, {c} clients"] = round(row["pairs_per_s"] / serve[(c, 1)]["pairs_per_s"], 2)
    return ratios


_PARTS = [  # (part, substrings of the file path), first match wins
    ("HTTP server (uvicorn, httptools, asyncio)", ("uvicorn", "httptools", "asyncio", "uvloop", "h11")),
    ("FastAPI / Starlette / pydantic", ("fastapi", "starlette", "pydantic")),
    ("service layer (online/_service.py)", ("online/_service.py",)),
    ("journal (online/_persistence.py)", ("online/_persistence.py",)),
    ("tuner bookkeeping (online/_tuner.py)", ("online/_tuner.py",)),
    ("strategy (strategies/; before the move online/_policies.py, _stats.py, random)",
     ("strategies/", "online/_policies.py", "online/_stats.py", "/random.py")),
    ("search space (space.py)", ("autorag_hp/space.py",)),
    ("numpy", ("numpy",)),
    ("JSON", ("json", "orjson")),
]


def _part(file: str) -> str | None:
    for name, keys in _PARTS:
        if any(k in file for k in keys):
            return name
    return None


def _profile_summary(path: Path, top: int = 15) -> dict:
    """Where the server's event-loop thread spends its CPU, by part of the stack and by function.

    Built-in functions (file ``~``) are charged to the part of their callers, in proportion to
    the time each caller spent in them; the event loop's own time (waiting in epoll) is left out.
    """
    import pstats

    st = pstats.Stats(str(path))
    parts: dict[str, float] = {}
    funcs = []
    for (file, line, fn), (cc, nc, tt, ct, callers) in st.stats.items():
        if fn in ("run", "run_forever", "run_until_complete") and "asyncio" in file or \
                fn.startswith(("<method 'run_forever'", "<built-in method select.epoll", "<method 'run' of 'uvloop")):
            continue  # the event loop's own time: waiting for the network
        part = _part(file)
        if part is None and file == "~" and callers:
            total_c = sum(v[2] for v in callers.values()) or 1.0
            for (cfile, _, _), v in callers.items():
                p = _part(cfile) or "other"
                parts[p] = parts.get(p, 0.0) + tt * v[2] / total_c
        else:
            parts[part or "other"] = parts.get(part or "other", 0.0) + tt
        where = f"{Path(file).name}:{line}({fn})" if line else fn
        funcs.append((tt, nc, where))
    total = sum(parts.values()) or 1.0
    print("  profile (event-loop thread, measured levels only; share of its busy CPU):")
    out_parts = {k: round(v / total, 3) for k, v in sorted(parts.items(), key=lambda kv: -kv[1])}
    for k, v in out_parts.items():
        print(f"    {v:6.1%}  {k}")
    out_funcs = []
    for tt, nc, where in sorted(funcs, reverse=True)[:top]:
        out_funcs.append({"function": where, "own_share": round(tt / total, 3), "calls": nc})
        print(f"    {tt / total:6.1%}  {nc:9d}  {where}")
    return {"parts": out_parts, "top_functions": out_funcs}


def serve_profiled(profile: str, timer: str, argv: list[str]) -> int:
    """`autorag-hp serve` with cProfile on the event-loop thread: SIGUSR1 starts, SIGUSR2 stops and writes.
    ``timer``: "wall" (cProfile's default clock) or "cpu" (the thread's CPU time: waits for the disk and
    preemption by other processes are not counted, but each call then costs a system call more)."""
    import cProfile

    from autorag_hp.cli import main as cli_main

    prof = cProfile.Profile(time.thread_time) if timer == "cpu" else cProfile.Profile()
    signal.signal(signal.SIGUSR1, lambda *_: prof.enable())

    def stop(*_: object) -> None:
        prof.disable()
        prof.dump_stats(profile + ".tmp")
        os.replace(profile + ".tmp", profile)

    signal.signal(signal.SIGUSR2, stop)
    return cli_main(argv)


def _code_state() -> dict:
    """Which code was measured: the commit, whether the tree had local changes, and whether the
    online engine still had its own policies (online/_policies.py) or used the offline strategies."""
    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": git("rev-parse", "--short", "HEAD"), "local_changes": bool(git("status", "--porcelain")),
            "online_policies_module": (ROOT / "autorag_hp" / "online" / "_policies.py").exists()}


def main() -> int:
    if len(sys.argv) > 3 and sys.argv[1] == "--serve-profiled":
        return serve_profiled(sys.argv[2], sys.argv[3], sys.argv[4:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=5_000, help="in-process pairs per autorag-hp strategy")
    ap.add_argument("--optuna-pairs", type=int, default=1_000, help="pairs for Optuna (TPE slows as trials grow)")
    ap.add_argument("--seconds", type=float, default=6.0, help="measured seconds per HTTP concurrency level")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--batch", type=int, default=32, help="also measure batching clients (1 and 8 of them); 0: no")
    ap.add_argument("--rounds", type=int, default=1,
                    help="repeat the HTTP measurement this many times (fresh servers and journal each time)")
    ap.add_argument("--profile", metavar="FILE", help="run the server under cProfile, write its stats here "
                    "and print the top functions (the bare app is skipped)")
    ap.add_argument("--profile-timer", choices=["wall", "cpu"], default="wall",
                    help="cProfile's clock: wall time (default) or the event-loop thread's CPU time")
    ap.add_argument("--batch-only", action="store_true", help="HTTP: measure only the batching clients "
                    "(no unbatched levels, no bare app)")
    ap.add_argument("--pin", choices=["auto", "off"], default="auto",
                    help="HTTP: with 2+ CPUs, pin the server (service and bare app alike) to one CPU and the "
                         "load generator to another (auto, the default), or leave both to the scheduler (off)")
    ap.add_argument("--slices", type=int, default=5, help="HTTP: measure each level's apps in this many "
                    "alternating slices of --seconds (1: one stretch each)")
    ap.add_argument("--snapshot-ids", default="", help="comma-separated numbers of remembered ids: time one "
                    "snapshot of a tuner remembering that many (in process; skipped when empty)")
    ap.add_argument("--skip-http", action="store_true")
    ap.add_argument("--skip-inprocess", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "bench_out" / "online_benchmark.json"))
    ap.add_argument("--serve-bare", metavar="PORT_FILE", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.slices < 1:
        ap.error(f"--slices must be at least 1, got {args.slices}")
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return 0
    result: dict = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                                "loadavg_at_start": os.getloadavg()},
                    "command": " ".join(sys.argv), "code": _code_state()}
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
                      f"p50 {row['p50_us']:8.1f} us  p99 {row['p99_us']:9.1f} us  CPU {row['cpu_us_per_pair']:8.1f} us/pair  "
                      f"({row['pairs']} pairs)", flush=True)
        result["in_process"] = rows
    if args.snapshot_ids:
        with tempfile.TemporaryDirectory() as d:
            result["snapshots"] = [bench_snapshot(int(n), Path(d)) for n in args.snapshot_ids.split(",")]
    if not args.skip_http:
        levels = [int(c) for c in args.clients.split(",")]
        with tempfile.TemporaryDirectory() as d:
            result["http"] = bench_http(levels, args.seconds, args.warmup, Path(d), batch=args.batch,
                                        rounds=args.rounds, profile=None if args.profile is None else Path(args.profile),
                                        profile_timer=args.profile_timer, batch_only=args.batch_only, pin=args.pin,
                                        slices=args.slices)
        result["machine"]["loadavg_at_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
