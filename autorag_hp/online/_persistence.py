"""Crash-safe storage of an online run: an append-only JSON-lines journal plus snapshots.

Records are written with one ``write`` system call each, in the order the tuner changed
its state, so a ``kill -9`` loses nothing that was written (the page cache survives the
process). ``fsync`` decides what survives the machine: ``"always"`` acknowledges a
record only after an ``fdatasync`` covering it; a background thread commits in groups
(one sync covers every record written while the previous sync ran). ``"interval"``
syncs every ``interval_ms``; ``"never"`` leaves it to the OS.

A snapshot is a compact copy of the state plus the journal offset it covers; it is
written to a temporary file, synced and renamed over the previous one, so a crash leaves
either the old or the new snapshot. A restart loads it and replays only the journal tail.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

from autorag_hp.journal import JournalError

try:  # optional: 10-20x faster encoding of the small records we write per request
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None


def encode_line(record: Mapping[str, Any]) -> bytes:
    """One journal line (finite numbers only: callers validate rewards before writing)."""
    if _orjson is not None:
        return _orjson.dumps(record) + b"\n"
    return (json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n").encode()

__all__ = ["Persistence", "Journal", "scan_journal", "write_snapshot", "read_snapshot", "JournalError"]

FsyncPolicy = Literal["always", "interval", "never"]


@dataclass(frozen=True)
class Persistence:
    """Where and how an online run is journaled.

    ``fsync``: "always" (acknowledge after a group fsync), "interval" (sync every
    ``interval_ms`` milliseconds) or "never". ``snapshot_every``: write a snapshot after
    this many journal records (0: only on close).
    """

    path: str | os.PathLike[str]
    fsync: FsyncPolicy = "always"
    interval_ms: float = 5.0
    snapshot_every: int = 20_000

    def __post_init__(self) -> None:
        if not isinstance(self.path, (str, os.PathLike)) or not str(self.path):
            raise ValueError(f"path must be a non-empty path, got {self.path!r}")
        if self.fsync not in ("always", "interval", "never"):
            raise ValueError(f"fsync must be 'always', 'interval' or 'never', got {self.fsync!r}")
        ms = self.interval_ms
        if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not math.isfinite(ms) or ms <= 0:
            raise ValueError(f"interval_ms must be a finite number > 0, got {ms!r}")
        se = self.snapshot_every
        if isinstance(se, bool) or not isinstance(se, int) or se < 0:
            raise ValueError(f"snapshot_every must be an integer >= 0, got {se!r}")

    @property
    def snapshot_path(self) -> Path:
        return Path(str(self.path) + ".snapshot")


def scan_journal(path: str | os.PathLike[str], start: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Records from byte ``start`` on, and the offset just past the last complete record.

    A torn last record (no newline, or not valid JSON) is dropped with a warning; an
    invalid record anywhere else raises JournalError naming its line.
    """
    p = Path(path)
    with open(p, "rb") as fh:
        fh.seek(start)
        data = fh.read()
    records: list[dict[str, Any]] = []
    pos = 0
    lineno = 0
    end = len(data)
    while pos < end:
        nl = data.find(b"\n", pos)
        lineno += 1
        if nl < 0:
            warnings.warn(f"{p}: ignoring a torn last record ({end - pos} bytes)", stacklevel=2)
            break
        raw = data[pos:nl]
        try:
            rec = json.loads(raw)
            if not isinstance(rec, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            if data.find(b"\n", nl + 1) < 0 and not data[nl + 1 :].strip():
                warnings.warn(f"{p}: ignoring a torn last record at byte {start + pos}", stacklevel=2)
                break
            raise JournalError(f"{p}: record at byte {start + pos} is not valid JSON ({exc})") from None
        records.append(rec)
        pos = nl + 1
    return records, start + pos


class Journal:
    """Appends records to ``path`` (truncated to ``valid_end`` first, dropping a torn tail).

    ``append`` returns a sequence number; ``wait(seq)`` / ``await wait_async(seq)`` return
    once that record may be acknowledged under the fsync policy.
    """

    def __init__(self, path: str | os.PathLike[str], *, valid_end: int, fsync: FsyncPolicy = "always",
                 interval_ms: float = 5.0) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self._interval = interval_ms / 1000.0
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
        os.ftruncate(self._fd, valid_end)
        os.lseek(self._fd, valid_end, os.SEEK_SET)
        self.offset = valid_end
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._done = threading.Condition(self._lock)
        self._written = 0
        self._want = 0  # highest record someone needs durable
        self._durable = 0
        self._closing = False
        self._async_waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future]] = []
        self.syncs = 0
        self._flusher: threading.Thread | None = None
        if fsync != "never":
            self._flusher = threading.Thread(target=self._run, name="autorag-hp-journal", daemon=True)
            self._flusher.start()

    # -- writing ----------------------------------------------------------------------------
    def append(self, record: Mapping[str, Any], *, sync: bool = True) -> int:
        """Write one record; with ``sync=False`` no fsync is started for it (a later one covers it:
        e.g. a suggestion, whose loss in a power cut only makes its feedback "unknown")."""
        line = encode_line(record)
        with self._lock:
            if self._closing:
                raise RuntimeError(f"journal {str(self.path)!r} is closed")
            view = memoryview(line)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            self.offset += len(line)
            self._written += 1
            if sync and self.fsync == "always":
                self._want = self._written
                self._work.notify()
            return self._written

    def acked(self, seq: int) -> bool:
        return self.fsync != "always" or self._durable >= seq

    def _request(self, seq: int) -> None:  # lock held
        if seq > self._want:
            self._want = seq
            self._work.notify()

    def wait(self, seq: int, timeout: float | None = None) -> bool:
        """Block until record ``seq`` may be acknowledged; False on timeout."""
        if self.acked(seq):
            return True
        with self._lock:
            self._request(seq)
            return self._done.wait_for(lambda: self._durable >= seq or self._closing, timeout)

    async def wait_async(self, seq: int) -> None:
        if self.acked(seq):
            return
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._lock:
            if self._durable >= seq:
                return
            self._request(seq)
            self._async_waiters.append((seq, loop, fut))
        await fut

    def sync(self) -> None:
        """Make every appended record durable now."""
        with self._lock:
            target = self._written
        os.fdatasync(self._fd)
        self._mark_durable(target)

    # -- group commit -----------------------------------------------------------------------
    def _mark_durable(self, target: int) -> None:
        ready: dict[asyncio.AbstractEventLoop, list[asyncio.Future]] = {}
        with self._lock:
            if target > self._durable:
                self._durable = target
            self.syncs += 1
            self._done.notify_all()
            if self._async_waiters:
                keep = []
                for seq, loop, fut in self._async_waiters:
                    if seq <= self._durable:
                        ready.setdefault(loop, []).append(fut)
                    else:
                        keep.append((seq, loop, fut))
                self._async_waiters = keep
        for loop, futs in ready.items():
            try:
                loop.call_soon_threadsafe(_resolve, futs)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

    def _run(self) -> None:
        always = self.fsync == "always"
        while True:
            with self._lock:
                if always:
                    self._work.wait_for(lambda: self._want > self._durable or self._closing)
                else:
                    self._work.wait(self._interval)
                if self._closing and self._written <= self._durable:
                    return
                target = self._written
                if target <= self._durable:
                    continue
            try:
                os.fdatasync(self._fd)
            except OSError:  # closed under us during shutdown
                return
            self._mark_durable(target)

    def close(self) -> None:
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._work.notify_all()
        if self._flusher is not None:
            self._flusher.join()
        if self.fsync != "never":
            os.fdatasync(self._fd)
        self._mark_durable(self._written)
        os.close(self._fd)


def _resolve(futs: list[asyncio.Future]) -> None:
    for f in futs:
        if not f.done():
            f.set_result(None)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_snapshot(path: str | os.PathLike[str], snapshot: Mapping[str, Any]) -> None:
    """Atomically replace ``path`` with ``snapshot`` (temp file, fsync, rename, fsync dir)."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    data = json.dumps(snapshot, separators=(",", ":"), allow_nan=False).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, p)
    _fsync_dir(p.parent)


def read_snapshot(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The snapshot at ``path``, or None (with a warning if it exists but is unreadable)."""
    p = Path(path)
    if not p.is_file():
        return None
    try:
        data = json.loads(p.read_bytes())
        if not isinstance(data, dict) or data.get("type") != "snapshot":
            raise ValueError("not a snapshot record")
        return data
    except ValueError as exc:
        warnings.warn(f"{p}: ignoring an unreadable snapshot ({exc}); replaying the whole journal", stacklevel=2)
        return None
