"""Durability of the online journal: one writer (lock), failed writes cut back, checksums,
snapshots matched to their history, and one-line startup errors of `autorag-hp serve`."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest

from autorag_hp.cli import main
from autorag_hp.online import OnlineTuner, Persistence
from autorag_hp.online._persistence import (
    JournalError,
    JournalLocked,
    JournalUnavailable,
    encode_line,
    scan_journal,
)
from autorag_hp.space import SearchSpace

SPACE_TOML = """
[params]
top_k = [1, 3, 5, 8]
embedder = ["bm25", "e5"]
rerank = [true, false]
"""
SPACE = SearchSpace({"top_k": [1, 3, 5, 8], "embedder": ["bm25", "e5"], "rerank": [True, False]})


def _run(tuner: OnlineTuner, pairs: int, offset: int = 0) -> None:
    for i in range(pairs):
        s = tuner.suggest()
        tuner.feedback(s.id, ((i + offset) % 5) / 4)


def _counts(tuner: OnlineTuner) -> dict:
    st = tuner.stats()
    return {k: st[k] for k in ("suggestions", "feedback", "pending", "reward_sum")}


def _persist(path: Path, **kw) -> Persistence:
    return Persistence(path, **{"fsync": "always", "snapshot_every": 0, **kw})


# -- (a) one process per journal ---------------------------------------------------------------
def test_a_second_tuner_on_an_open_journal_is_refused_naming_the_pid(tmp_path):
    path = tmp_path / "run.jsonl"
    first = OnlineTuner(SPACE, persistence=_persist(path))
    _run(first, 5)
    before = path.read_bytes()
    with pytest.raises(JournalLocked, match=rf"in use by another process \(pid {os.getpid()}\b"):
        OnlineTuner(SPACE, persistence=_persist(path))
    assert path.read_bytes() == before  # nothing truncated, no boot record written
    _run(first, 3)
    first.close()
    again = OnlineTuner(SPACE, persistence=_persist(path))  # the lock went with close()
    assert _counts(again)["feedback"] == 8
    again.close()


def _wait_port(port_file: Path, proc: subprocess.Popen, timeout: float = 90) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_file.exists():
            return int(port_file.read_text())
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.02)
    raise TimeoutError("server did not start")


def test_a_second_serve_on_the_same_journal_exits_2_and_leaves_it_alone(tmp_path):
    space = tmp_path / "space.toml"
    space.write_text(SPACE_TOML)
    journal = tmp_path / "run.jsonl"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    base = [sys.executable, "-m", "autorag_hp", "serve", "--space", str(space), "--journal", str(journal)]
    proc = subprocess.Popen(base + ["--port", "0", "--port-file", str(tmp_path / "port"), "--lifetime", "60"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        port = _wait_port(tmp_path / "port", proc)
        before = journal.read_bytes()
        # same port: refused at bind, before the journal is touched
        same = subprocess.run(base + ["--port", str(port)], env=env, capture_output=True, text=True, timeout=60)
        assert same.returncode == 2
        assert same.stderr.count("\n") == 1 and f"--port {port}" in same.stderr and "in use" in same.stderr
        # another port: refused by the journal lock, naming the running server
        other = subprocess.run(base + ["--port", "0"], env=env, capture_output=True, text=True, timeout=60)
        assert other.returncode == 2, other.stderr
        assert other.stderr.count("\n") == 1 and "Traceback" not in other.stderr
        assert f"pid {proc.pid}" in other.stderr and str(journal) in other.stderr
        assert journal.read_bytes() == before
    finally:
        proc.terminate()
        assert proc.wait(60) == 0
    records, _ = scan_journal(journal, require_crc=True)
    assert [r["type"] for r in records] == ["header", "boot"]


# -- (b) failed and partial writes -------------------------------------------------------------
class FullDisk:
    """os.write that writes half of what it is given, then fails with ENOSPC (while armed)."""

    def __init__(self) -> None:
        self.armed = False
        self.hits = 0

    def __call__(self, fd: int, data) -> int:
        if not self.armed:
            return os.write(fd, data)
        self.hits += 1
        if len(data) > 1 and self.hits == 1:
            return os.write(fd, bytes(data[: len(data) // 2]))  # a partial write ...
        raise OSError(errno.ENOSPC, "No space left on device")  # ... then the disk is full


def test_a_partial_write_is_cut_back_not_applied_and_a_restart_recovers(tmp_path):
    path = tmp_path / "run.jsonl"
    tuner = OnlineTuner(SPACE, persistence=_persist(path))
    _run(tuner, 10)
    pending = tuner.suggest()
    disk = FullDisk()
    tuner._journal._write = disk
    size, counts = path.stat().st_size, _counts(tuner)
    disk.armed = True
    with pytest.raises(JournalUnavailable, match="No space left"):
        tuner.feedback(pending.id, 1.0)
    assert disk.hits == 2  # the partial write happened, then the retry failed
    assert path.stat().st_size == size  # cut back to the last complete record
    assert _counts(tuner) == counts  # nothing applied
    with pytest.raises(JournalUnavailable):
        tuner.suggest()
    assert _counts(tuner) == counts
    with pytest.raises(JournalUnavailable):
        tuner.feedback_many([(pending.id, 1.0)])
    assert _counts(tuner) == counts
    disk.armed = False  # space freed: the same feedback now counts, once
    tuner.feedback(pending.id, 1.0)
    _run(tuner, 5)
    expected = _counts(tuner)
    tuner._abandon()  # a crash: no final snapshot
    records, _ = scan_journal(path, require_crc=True)  # every line intact
    assert sum(r["type"] == "feedback" for r in records) == expected["feedback"] == 16
    restored = OnlineTuner(SPACE, persistence=_persist(path))
    assert _counts(restored) == expected
    restored.close()


def test_a_failed_fsync_fails_the_waiters_and_makes_the_journal_unusable(tmp_path):
    path = tmp_path / "run.jsonl"
    tuner = OnlineTuner(SPACE, persistence=_persist(path))
    _run(tuner, 3)

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    tuner._journal._fdatasync = broken
    s = tuner.suggest()
    with pytest.raises(JournalUnavailable, match="fdatasync failed"):
        tuner.feedback(s.id, 0.5)  # not acknowledged
    assert tuner._journal.failed
    with pytest.raises(JournalUnavailable):
        tuner.suggest()
    tuner.close()  # no snapshot of a failed journal, the lock is released
    assert not Path(str(path) + ".snapshot").exists()
    restored = OnlineTuner(SPACE, persistence=_persist(path))  # a restart re-reads what is there
    assert _counts(restored)["feedback"] in (3, 4)
    restored.close()


def _asgi(app, method: str, path: str, body: bytes = b"") -> tuple[int, object]:
    out = {}

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(msg):
        if msg["type"] == "http.response.start":
            out["status"] = msg["status"]
        elif msg["type"] == "http.response.body":
            out["body"] = out.get("body", b"") + msg.get("body", b"")

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    asyncio.run(app(scope, receive, send))
    return out["status"], json.loads(out["body"])


def test_http_full_disk_answers_503_acknowledges_nothing_and_healthz_tells(tmp_path):
    pytest.importorskip("fastapi")
    from autorag_hp.online import create_app

    path = tmp_path / "run.jsonl"
    tuner = OnlineTuner(SPACE, persistence=_persist(path))
    app = create_app(tuner)
    ids = [_asgi(app, "POST", "/suggest")[1]["id"] for _ in range(3)]
    disk = FullDisk()
    tuner._journal._write = disk
    disk.armed = True
    size, counts = path.stat().st_size, _counts(tuner)
    status, body = _asgi(app, "POST", "/feedback", json.dumps({"id": ids[0], "reward": 0.5}).encode())
    assert status == 503 and "No space left" in body["detail"]
    status, body = _asgi(app, "POST", "/feedback", json.dumps([{"id": i, "reward": 0.5} for i in ids]).encode())
    assert status == 503 and "no item of the batch was counted" in body["detail"]
    status, body = _asgi(app, "POST", "/suggest", b'{"n": 4}')
    assert status == 503
    assert _asgi(app, "GET", "/healthz")[0] == 503  # suggesting fails
    assert path.stat().st_size == size and _counts(tuner) == counts
    disk.armed = False
    status, body = _asgi(app, "POST", "/feedback", json.dumps([{"id": i, "reward": 0.5} for i in ids]).encode())
    assert status == 200 and body["accepted"] == 3
    assert _asgi(app, "POST", "/suggest")[0] == 200
    assert _asgi(app, "GET", "/healthz") == (200, {"status": "ok"})
    tuner.close()


class SyncRecorder:
    """os.fdatasync that records which thread called it and how many bytes the file then held."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[int, int]] = []
        self.fail = fail

    def __call__(self, fd: int) -> None:
        if self.fail:
            raise OSError(errno.EIO, "Input/output error")
        self.calls.append((threading.get_ident(), os.fstat(fd).st_size))
        os.fdatasync(fd)


def _asgi_acked(app, path: str, body: bytes, journal) -> tuple[int, object, int]:
    """Like _asgi, plus the byte count the journal's finished syncs covered (``journal.sync_calls``, see
    ``_record_syncs``) when the status line went out."""
    out: dict = {}

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(msg):
        if msg["type"] == "http.response.start":
            out["status"] = msg["status"]
            out["synced"] = max((size for _, size in journal.sync_calls), default=0)
        elif msg["type"] == "http.response.body":
            out["body"] = out.get("body", b"") + msg.get("body", b"")

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    asyncio.run(app(scope, receive, send))
    return out["status"], json.loads(out["body"]), out["synced"]


class _AioRecorder:
    """Wraps _AioSync: records, for each sync the kernel reports finished, the reaping thread and the
    file size when the sync was submitted; with ``fail`` the kernel's answer is replaced by -EIO."""

    def __init__(self, monkeypatch, calls: list) -> None:
        from autorag_hp.online._persistence import _AioSync

        self.fail = False
        submit, reap = _AioSync.submit, _AioSync.reap
        recorder = self

        def rec_submit(aio, fd, target):
            aio.size_at_submit = os.fstat(fd).st_size
            return submit(aio, fd, target)

        def rec_reap(aio):
            done = reap(aio)
            if recorder.fail:
                return [(t, -errno.EIO) for t, _ in done]
            calls.extend((threading.get_ident(), aio.size_at_submit) for _ in done)
            return done

        monkeypatch.setattr(_AioSync, "submit", rec_submit)
        monkeypatch.setattr(_AioSync, "reap", rec_reap)


@pytest.mark.parametrize("where", ["kernel (AIO)", "background thread"])
def test_feedback_is_acknowledged_only_after_a_sync_covering_it(tmp_path, monkeypatch, where):
    """fsync=always: the event loop goes on serving while the disk syncs, the fdatasync submitted
    to the kernel (Linux AIO, reported on an eventfd) or run by the background thread; either way
    the 200 of a feedback (single or batch) goes out only after an fdatasync that covered its
    record, and a failed sync answers 503."""
    pytest.importorskip("fastapi")
    from autorag_hp.online import _persistence, create_app

    if where == "kernel (AIO)":
        probe = _persistence._AioSync.open()
        if probe is None:
            pytest.skip("Linux AIO fdatasync is not available here")
        fd = os.open(tmp_path / "probe", os.O_WRONLY | os.O_CREAT)
        try:  # some filesystems refuse an asynchronous fdatasync: the journal then uses its thread
            if not probe.submit(fd, 1):
                pytest.skip(f"the kernel refuses an asynchronous fdatasync on {tmp_path}'s filesystem")
            select.select([probe.efd], [], [], 10.0)
            assert [res for _, res in probe.reap()] == [0]
        finally:
            probe.close()
            os.close(fd)
    else:
        monkeypatch.setattr(_persistence, "AIO_SYNC", False)
    path = tmp_path / "run.jsonl"
    tuner = OnlineTuner(SPACE, persistence=_persist(path))
    journal = tuner._journal
    journal._fdatasync = recorder = SyncRecorder()
    journal.sync_calls = recorder.calls  # the thread's syncs and the kernel's (as reaped), in order
    aio = _AioRecorder(monkeypatch, recorder.calls)
    first = len(recorder.calls)  # syncs before any request (the thread's, of the boot record)
    loop_thread = threading.get_ident()  # asyncio.run runs the loop on this thread (a new loop per request)
    for batch in (False, True):
        status, got, _ = _asgi_acked(create_app(tuner), "/suggest", b'{"n": 3}' if batch else b"", journal)
        assert status == 200
        ids = [s["id"] for s in got["suggestions"]] if batch else [got["id"]]
        body = [{"id": i, "reward": 0.5} for i in ids] if batch else {"id": ids[0], "reward": 0.5}
        status, got, synced = _asgi_acked(create_app(tuner), "/feedback", json.dumps(body).encode(), journal)
        assert status == 200 and (got["accepted"] == 3 if batch else got["accepted"] is True)
        assert synced == path.stat().st_size  # the sync before the 200 covered the feedback record
    threads = {t for t, _ in recorder.calls[first:]}
    if where == "kernel (AIO)":  # reaped on the loop's thread; the background thread synced nothing
        assert journal._aio is not None and threads == {loop_thread}
    else:
        assert journal._aio is None and threads == {journal._flusher.ident}
    journal._fdatasync = SyncRecorder(fail=True)
    aio.fail = True
    status, got, _ = _asgi_acked(create_app(tuner), "/suggest", b"", journal)
    status, got, _ = _asgi_acked(create_app(tuner), "/feedback", json.dumps({"id": got["id"], "reward": 0.5}).encode(),
                                 journal)
    assert status == 503 and "fdatasync failed" in got["detail"]
    assert journal.failed
    tuner.close()


def test_a_refused_kernel_sync_hands_the_waits_to_the_thread(tmp_path, monkeypatch):
    """If the kernel refuses an fdatasync submission (e.g. EAGAIN), the wait is not lost: the
    background thread syncs it and every later one."""
    pytest.importorskip("fastapi")
    from autorag_hp.online import _persistence, create_app

    monkeypatch.setattr(_persistence._AioSync, "submit", lambda aio, fd, target: False)
    path = tmp_path / "run.jsonl"
    tuner = OnlineTuner(SPACE, persistence=_persist(path))
    journal = tuner._journal
    journal._fdatasync = recorder = SyncRecorder()
    journal.sync_calls = []
    for _ in range(2):
        status, got, _ = _asgi_acked(create_app(tuner), "/suggest", b"", journal)
        status, got, _ = _asgi_acked(create_app(tuner), "/feedback", json.dumps({"id": got["id"], "reward": 0.5}).encode(),
                                     journal)
        assert status == 200 and got["accepted"] is True
        assert max(size for _, size in recorder.calls) == path.stat().st_size
    assert journal._aio is None and {t for t, _ in recorder.calls} == {journal._flusher.ident}
    tuner.close()


def test_healthz_is_503_while_suggesting_fails(tmp_path):
    pytest.importorskip("fastapi")
    from autorag_hp.online import create_app

    tuner = OnlineTuner(SPACE)
    app = create_app(tuner)
    real = tuner.strategy.propose

    def failing(*args, **kwargs):
        raise ValueError("high <= 0")

    tuner.strategy.propose = failing
    status, body = _asgi(app, "POST", "/suggest")
    assert status == 500 and "high <= 0" in body["detail"]
    status, body = _asgi(app, "GET", "/healthz")
    assert status == 503 and body["status"] == "unhealthy" and "high <= 0" in body["detail"]
    tuner.strategy.propose = real
    assert _asgi(app, "POST", "/suggest")[0] == 200
    assert _asgi(app, "GET", "/healthz")[0] == 200


# -- (c) checksums and snapshots ----------------------------------------------------------------
def test_every_record_carries_a_checksum_and_a_corrupt_one_is_named_by_offset(tmp_path):
    path = tmp_path / "run.jsonl"
    tuner = OnlineTuner(SPACE, persistence=_persist(path))
    _run(tuner, 6)
    tuner.close()
    lines = path.read_bytes().splitlines(keepends=True)
    for line in lines:
        crc = json.loads(line)["crc"]
        assert int(crc, 16) == zlib.crc32(b"{" + line[len(b'{"crc":"00000000",'):].rstrip(b"\n"))
    # a flipped digit keeps the JSON valid but breaks the checksum
    k = next(i for i, line in enumerate(lines) if b'"reward":0.5' in line and i < len(lines) - 1)
    offset = sum(len(x) for x in lines[:k])
    lines[k] = lines[k].replace(b'"reward":0.5', b'"reward":0.9')
    path.write_bytes(b"".join(lines))
    Path(str(path) + ".snapshot").unlink()
    with pytest.raises(JournalError, match=rf"record at byte {offset} is corrupt: checksum mismatch"):
        OnlineTuner(SPACE, persistence=_persist(path))


def test_a_snapshot_from_another_history_is_refused_and_the_journal_replayed(tmp_path):
    path = tmp_path / "run.jsonl"
    snap = Path(str(path) + ".snapshot")
    tuner = OnlineTuner(SPACE, persistence=_persist(path))
    _run(tuner, 20)
    tuner.close()
    backup = path.read_bytes()
    tuner = OnlineTuner(SPACE, persistence=_persist(path))
    _run(tuner, 15, offset=1)
    tuner.close()  # the newer snapshot covers 35 feedbacks
    newer = snap.read_bytes()
    path.write_bytes(backup)  # journal restored from the backup ...
    snap.unlink()
    tuner = OnlineTuner(SPACE, persistence=_persist(path))
    _run(tuner, 40, offset=2)  # ... and run on: a different history, longer than the newer snapshot's offset
    tuner._abandon()
    assert json.loads(newer)["offset"] < path.stat().st_size
    replayed = OnlineTuner(SPACE, persistence=_persist(path))  # no snapshot: the truth
    truth = _counts(replayed)
    replayed._abandon()
    assert truth["feedback"] == 60
    snap.write_bytes(newer)  # the newer snapshot left in place
    with pytest.warns(UserWarning, match="covers another history"):
        restored = OnlineTuner(SPACE, persistence=_persist(path))
    assert _counts(restored) == truth and not restored.restored_from["snapshot"]
    restored.close()
    again = OnlineTuner(SPACE, persistence=_persist(path))  # its own snapshot now matches
    assert again.restored_from["snapshot"] and _counts(again) == truth
    again.close()


def test_a_format_1_journal_without_checksums_is_still_read(tmp_path):
    path = tmp_path / "run.jsonl"
    tuner = OnlineTuner(SPACE, persistence=_persist(path))
    _run(tuner, 12)
    expected = _counts(tuner)
    tuner._abandon()
    old = []
    for line in path.read_bytes().splitlines():
        rec = json.loads(line)
        rec.pop("crc")
        if rec["type"] == "header":
            rec["version"] = 1
        old.append(json.dumps(rec, separators=(",", ":")).encode() + b"\n")
    path.write_bytes(b"".join(old))
    resumed = OnlineTuner(SPACE, persistence=_persist(path))
    assert _counts(resumed) == expected
    _run(resumed, 2)
    resumed.close()
    lines = path.read_bytes().splitlines()
    assert not lines[1].startswith(b'{"crc"') and lines[-1].startswith(b'{"crc"')  # appended ones carry checksums
    records, _ = scan_journal(path)
    assert sum(r["type"] == "feedback" for r in records) == 14


# -- (d) startup errors of `autorag-hp serve` ---------------------------------------------------
def _journal_with(tmp_path: Path, *extra: bytes) -> tuple[Path, Path, int]:
    space = tmp_path / "space.toml"
    space.write_text(SPACE_TOML)
    journal = tmp_path / "run.jsonl"
    tuner = OnlineTuner(SearchSpace.from_file(space), persistence=_persist(journal))  # the serve defaults
    _run(tuner, 4)
    tuner.close()
    Path(str(journal) + ".snapshot").unlink()
    offset = journal.stat().st_size
    with open(journal, "ab") as fh:
        for line in extra:
            fh.write(line)
    return space, journal, offset


def _crc_line(body: bytes) -> bytes:
    return b'{"crc":"%08x",' % zlib.crc32(body) + body[1:] + b"\n"


def _serve_error(capsys, argv: list[str]) -> str:
    rc = main(["serve", *argv, "--port", "0"]) if "--port" not in argv else main(["serve", *argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("case", ["no id", "index out of range", "NaN reward", "infinite reward"])
def test_serve_bad_journal_record_is_one_line_naming_file_and_byte(tmp_path, capsys, case):
    bad = {
        "no id": encode_line({"type": "feedback", "reward": 0.5, "ts": 1.0}),
        "index out of range": encode_line({"type": "suggest", "id": "9-1", "index": 16, "config": {}, "tag": None, "ts": 1.0}),
        "NaN reward": _crc_line(b'{"type":"feedback","id":"1-1","reward":NaN,"ts":1.0}'),
        "infinite reward": _crc_line(b'{"type":"feedback","id":"1-1","reward":1e999,"ts":1.0}'),
    }[case]
    space, journal, offset = _journal_with(tmp_path, bad, encode_line({"type": "boot", "boot": 2, "ts": 2.0}))
    line = _serve_error(capsys, ["--space", str(space), "--journal", str(journal)])
    assert f"{journal}: record at byte {offset}" in line
    assert {"no id": "'id' is missing", "index out of range": "[0, 16)", "NaN reward": "NaN",
            "infinite reward": "finite"}[case] in line


def test_serve_other_startup_problems_are_one_line(tmp_path, capsys):
    space = tmp_path / "space.toml"
    space.write_text(SPACE_TOML)
    (tmp_path / "adir").mkdir()
    line = _serve_error(capsys, ["--space", str(space), "--journal", str(tmp_path / "adir")])
    assert str(tmp_path / "adir") in line and "directory" in line
    line = _serve_error(capsys, ["--space", str(space), "--journal", str(tmp_path / "j.jsonl"), "--host", "no such host!"])
    assert "--host 'no such host!'" in line
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        line = _serve_error(capsys, ["--space", str(space), "--journal", str(tmp_path / "j.jsonl"), "--port", str(port)])
    assert f"--port {port}" in line and "in use" in line
    assert not (tmp_path / "j.jsonl").exists()  # the port is bound before the journal is touched
    line = _serve_error(capsys, ["--space", str(tmp_path / "missing.toml"), "--journal", str(tmp_path / "j.jsonl")])
    assert "missing.toml" in line
    shutil.rmtree(tmp_path / "adir")
