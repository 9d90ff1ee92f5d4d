"""A server under load killed with SIGKILL again and again loses no acknowledged feedback
and counts none twice, with single and with batch requests; the real `autorag-hp serve`
process starts, serves and stops."""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import autorag_hp.online._service  # noqa: E402,F401  (imported before forking: fast restarts)
import uvicorn  # noqa: E402,F401
from autorag_hp.online._persistence import scan_journal  # noqa: E402

SPACE_TOML = """
[params]
top_k = [1, 3, 5, 8, 10]
chunk_size = [128, 256, 512, 1024]
embedder = ["bm25", "minilm", "e5"]
compression = [0.25, 0.5, 1.0]

[groups]
retrieval = ["top_k", "embedder"]
"""

KILLS = {"single": 22, "batch": 12}


def _serve_child(argv: list[str]) -> None:
    from autorag_hp.cli import main

    os._exit(main(argv))


def _wait_port(port_file: Path, proc, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_file.exists():
            return int(port_file.read_text())
        if proc.poll() if hasattr(proc, "poll") else not proc.is_alive():
            raise RuntimeError("server exited before listening")
        time.sleep(0.01)
    raise TimeoutError("server did not start listening")


def _request(conn: http.client.HTTPConnection, method: str, path: str, body: dict | list | None = None,
             token: str | None = None) -> tuple[int, dict]:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read() or b"null")


def _journal_feedback(path: Path) -> list[tuple[str, float]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a torn tail is expected after SIGKILL
        records, _ = scan_journal(path)
    out = []
    for r in records:
        if r.get("type") == "feedback":
            out.append((r["id"], r["reward"]))
        elif r.get("type") == "feedback_batch":  # one record per feedback list
            out.extend(zip(r["ids"], r["rewards"]))
    return out


@pytest.mark.parametrize("sync", ["kernel", "thread"])
@pytest.mark.parametrize("mode", ["single", "batch"])
def test_sigkill_under_load_loses_and_doubles_nothing(tmp_path, monkeypatch, mode, sync):
    # The forked server inherits the module setting: the event loop's syncs are submitted to the
    # kernel (Linux AIO, where available) or run by the background thread.
    from autorag_hp.online import _persistence

    monkeypatch.setattr(_persistence, "AIO_SYNC", sync == "kernel")
    space = tmp_path / "space.toml"
    space.write_text(SPACE_TOML)
    journal = tmp_path / "run.jsonl"
    port_file = tmp_path / "port"
    argv = ["serve", "--space", str(space), "--journal", str(journal), "--port", "0", "--port-file", str(port_file),
            "--fsync", "always", "--snapshot-every", "250", "--lifetime", "120"]
    ctx = multiprocessing.get_context("fork")
    rng = random.Random(20240607)
    acked: dict[str, float] = {}
    in_doubt: dict[str, float] = {}
    lock = threading.Lock()

    def start():
        port_file.unlink(missing_ok=True)
        proc = ctx.Process(target=_serve_child, args=(argv,), daemon=True)
        proc.start()
        return proc, _wait_port(port_file, proc)

    def verify(port: int) -> None:
        recorded = _journal_feedback(journal)
        ids = [i for i, _ in recorded]
        assert len(ids) == len(set(ids)), "a feedback was journaled twice"
        recorded_map = dict(recorded)
        missing = [i for i in acked if i not in recorded_map]
        assert not missing, f"acknowledged feedback lost: {missing[:5]}"
        assert all(recorded_map[i] == r for i, r in acked.items())
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        status, st = _request(conn, "GET", "/stats")
        assert status == 200
        assert st["feedback"] == len(recorded), (st["feedback"], len(recorded))
        assert st["reward_sum"] == pytest.approx(sum(recorded_map.values()), abs=1e-9)
        # clients retry what they are unsure about: counted at most once
        if mode == "batch" and in_doubt:
            retry = sorted(in_doubt.items())
            status, body = _request(conn, "POST", "/feedback", [{"id": i, "reward": r} for i, r in retry])
            assert status == 200, body
            for (sid, r), res in zip(retry, body["results"]):
                assert res["status"] == (409 if sid in recorded_map else 200), (sid, res)
                acked[sid] = r
                del in_doubt[sid]
        for sid, r in list(in_doubt.items()):
            status, body = _request(conn, "POST", "/feedback", {"id": sid, "reward": r})
            assert status == (409 if sid in recorded_map else 200), (sid, status, body)
            acked[sid] = r
            del in_doubt[sid]
        for sid in rng.sample(sorted(acked), min(20, len(acked))):
            status, _ = _request(conn, "POST", "/feedback", {"id": sid, "reward": 0.5})
            assert status == 409
        status, st = _request(conn, "GET", "/stats")
        assert st["feedback"] == len(acked) == len(_journal_feedback(journal))
        conn.close()

    def client(port: int, stop: threading.Event, seed: int) -> None:
        local = random.Random(seed)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            while mode == "batch" and not stop.is_set():
                k = local.randint(1, 8)
                status, got = _request(conn, "POST", "/suggest", {"n": k})
                assert status == 200 and len(got["suggestions"]) == k, got
                items = [{"id": s["id"], "reward": local.randrange(9) / 8} for s in got["suggestions"]]
                with lock:
                    in_doubt.update((x["id"], x["reward"]) for x in items)
                status, body = _request(conn, "POST", "/feedback", items)
                assert status == 200 and body["accepted"] == k, body
                with lock:
                    for x in items:
                        del in_doubt[x["id"]]
                        acked[x["id"]] = x["reward"]
            while not stop.is_set():
                status, s = _request(conn, "POST", "/suggest")
                assert status == 200, s
                r = local.randrange(9) / 8
                with lock:
                    in_doubt[s["id"]] = r
                status, body = _request(conn, "POST", "/feedback", {"id": s["id"], "reward": r})
                assert status == 200, body
                with lock:
                    del in_doubt[s["id"]]
                    acked[s["id"]] = r
        except (OSError, http.client.HTTPException):
            return  # the server died under us

    kills = 0
    proc, port = start()
    try:
        while kills < KILLS[mode]:
            verify(port)
            stop = threading.Event()
            threads = [threading.Thread(target=client, args=(port, stop, 1000 * kills + k)) for k in range(4)]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.02, 0.6))
            os.kill(proc.pid, signal.SIGKILL)
            proc.join(10)
            kills += 1
            stop.set()
            for t in threads:
                t.join(15)
            assert not any(t.is_alive() for t in threads)
            proc, port = start()
        verify(port)
        assert len(acked) > 20 * KILLS[mode]  # the kills really hit a loaded server
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        assert _request(conn, "GET", "/stats")[1]["journal"]["restored_from_snapshot"]
        conn.close()
    finally:
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGKILL)
            proc.join(10)


def test_cli_serve_starts_answers_and_stops(tmp_path):
    space = tmp_path / "space.toml"
    space.write_text(SPACE_TOML)
    journal = tmp_path / "run.jsonl"
    port_file = tmp_path / "port"
    env = {**os.environ, "AUTORAG_HP_TOKEN": "s3cret", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [sys.executable, "-m", "autorag_hp", "serve", "--space", str(space), "--journal", str(journal),
           "--port", "0", "--port-file", str(port_file), "--lifetime", "90"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        port = _wait_port(port_file, proc, timeout=90)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        assert _request(conn, "GET", "/healthz") == (200, {"status": "ok"})
        assert _request(conn, "POST", "/suggest")[0] == 401
        assert _request(conn, "POST", "/suggest", token="wrong")[0] == 401
        status, s = _request(conn, "POST", "/suggest", token="s3cret")
        assert status == 200 and set(s["config"]) == {"top_k", "chunk_size", "embedder", "compression"}
        assert _request(conn, "POST", "/feedback", {"id": s["id"], "reward": 0.75}, token="s3cret") == (
            200, {"id": s["id"], "accepted": True})
        status, best = _request(conn, "GET", "/best?n=1", token="s3cret")
        assert status == 200 and best["best"][0]["config"] == s["config"]
        conn.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert Path(str(journal) + ".snapshot").is_file()
    assert [r for r, _ in _journal_feedback(journal)] == [s["id"]]
