"""Crash-safe storage of an online run: an append-only JSON-lines journal plus snapshots.

One process at a time: opening a journal takes an exclusive ``flock`` on ``<journal>.lock``
(which holds the owner's pid) before anything is read or written; a second process gets
:class:`JournalLocked` naming that pid.

Every record is written with one ``write`` system call, in the order the tuner changed
its state, so a ``kill -9`` loses nothing that was written (the page cache survives the
process). A failed or partial write (a full disk) is cut off again: the file is truncated
back to the end of the last complete record and :class:`JournalUnavailable` is raised
before the tuner changes its state, so the journal and the tuner stay in step. A failed
``fdatasync`` leaves the journal unusable (what reached the disk is unknown) until a
restart re-reads it.

``fsync`` decides what survives the machine: ``"always"`` acknowledges a record only
after an ``fdatasync`` covering it, committed in groups (one sync covers every record
written while the previous sync ran), so that an event loop goes on serving while the disk
syncs: for an event loop, an fdatasync submitted to the kernel (Linux AIO) and reported on an
eventfd that the loop watches; otherwise (and for threads that wait) by a background thread,
which wakes a loop once per group. ``"interval"`` syncs every
``interval_ms``; ``"never"`` leaves it to the OS.

Format 2: every line is ``{"crc":"<8 hex digits>",<fields>}`` where the checksum is the
CRC-32 of the line's JSON object written without the ``crc`` member, i.e. of
``{<fields>}`` byte for byte. A record whose checksum does not match is corrupt (a torn
last record is dropped with a warning, any other is an error naming its byte offset).
Format 1 journals (no checksums) are still read; records appended to them carry checksums.

A snapshot is a compact copy of the state plus the journal offset it covers and the
CRC-32 of the last journal line it covers, written to a temporary file, synced and
renamed over the previous one. A restart uses it only if that line is still there,
byte for byte; otherwise (e.g. a journal restored from a backup next to a newer
snapshot) it warns and replays the whole journal.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import math
import os
import re
import struct
import threading
import time
import warnings
import weakref
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

from autorag_hp._validation import check_int
from autorag_hp._io import atomic_write_bytes
from autorag_hp.journal import JournalError

try:  # optional: 10-20x faster encoding of the small records we write per request
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None

__all__ = [
    "FORMAT",
    "Persistence",
    "Journal",
    "JournalError",
    "JournalLocked",
    "JournalUnavailable",
    "Recovery",
    "recover",
    "replay",
    "check_record",
    "encode_line",
    "scan_journal",
    "write_snapshot",
    "read_snapshot",
]

FORMAT = 2  # journal format written now; 1 = records without checksums (still read)
# fsync="always": an event loop's waits are synced by fdatasync submitted to the kernel (Linux AIO,
# see _AioSync) where available; False: always by the background thread (as where AIO is missing).
AIO_SYNC = True
FsyncPolicy = Literal["always", "interval", "never"]

_CRC_PREFIX = b'{"crc":"'
_CRC_LEN = len(_CRC_PREFIX) + 8 + 2  # '{"crc":"' + 8 hex + '",'


class JournalLocked(JournalError):
    """Another process (or another tuner in this one) has the journal open."""


class JournalUnavailable(RuntimeError):
    """A record could not be written or synced; the change it describes was not made."""


def _dumps(record: Mapping[str, Any]) -> bytes:
    if _orjson is not None:
        return _orjson.dumps(record)
    return json.dumps(record, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode()


def encode_line(record: Mapping[str, Any]) -> bytes:
    """One journal line with its checksum (finite numbers only: callers validate rewards)."""
    body = _dumps(record)
    if len(body) < 3 or body[:1] != b"{":
        raise ValueError(f"a journal record must be a non-empty JSON object, got {record!r}")
    return b'{"crc":"%08x",' % zlib.crc32(body) + body[1:] + b"\n"


def _json_loads(raw: bytes) -> Any:
    if _orjson is not None:
        try:
            return _orjson.loads(raw)
        except ValueError:
            pass  # let json say what is wrong (e.g. "NaN is not a JSON number")
    return json.loads(raw, parse_constant=_no_constant)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


class _BadLine(ValueError):
    """A line that is not a record; ``torn`` if it may be an interrupted write (its checksum,
    or for format 1 its JSON, is broken) rather than a complete record with bad content."""

    def __init__(self, message: str, torn: bool) -> None:
        super().__init__(message)
        self.torn = torn


def _decode_line(raw: bytes, *, require_crc: bool) -> dict[str, Any]:
    """The record on one line (without its newline); _BadLine says what is wrong."""
    if raw.startswith(_CRC_PREFIX):
        if len(raw) < _CRC_LEN + 1 or raw[_CRC_LEN - 2 : _CRC_LEN] != b'",':
            raise _BadLine("malformed checksum member", True)
        try:
            want = int(raw[len(_CRC_PREFIX) : _CRC_LEN - 2], 16)
        except ValueError:
            raise _BadLine("malformed checksum member", True) from None
        body = b"{" + raw[_CRC_LEN:]
        got = zlib.crc32(body)
        if got != want:
            raise _BadLine(f"checksum mismatch (recorded {want:08x}, computed {got:08x})", True)
        return _parse(body, torn=False)  # intact as written: bad content is never a torn write
    rec = _parse(raw, torn=True)
    if require_crc:
        raise _BadLine("record has no checksum (format 2 records start with {\"crc\":...)", False)
    return rec


def _parse(raw: bytes, *, torn: bool) -> dict[str, Any]:
    try:
        rec = _json_loads(raw)
    except ValueError as exc:
        raise _BadLine(f"not valid JSON: {exc}", torn) from None
    if not isinstance(rec, dict):
        raise _BadLine("not a JSON object", torn)
    return rec


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
        check_int("snapshot_every", se, minimum=0)

    @property
    def snapshot_path(self) -> Path:
        return Path(str(self.path) + ".snapshot")

    @property
    def lock_path(self) -> Path:
        return Path(str(self.path) + ".lock")


# -- reading --------------------------------------------------------------------------------------
def _scan(path: Path, start: int, require_crc: bool) -> tuple[list[tuple[int, dict[str, Any]]], int, int]:
    """(offset, record) pairs from byte ``start``, the end of the last complete record and the
    CRC-32 of that record's line (0 if none was read)."""
    with open(path, "rb") as fh:
        fh.seek(start)
        data = fh.read()
    out: list[tuple[int, dict[str, Any]]] = []
    pos = 0
    end = len(data)
    last = -1  # start of the last complete line
    while pos < end:
        nl = data.find(b"\n", pos)
        if nl < 0:
            warnings.warn(f"{path}: ignoring a torn last record at byte {start + pos} ({end - pos} bytes)", stacklevel=3)
            break
        raw = data[pos:nl]
        try:
            rec = _decode_line(raw, require_crc=require_crc)
        except _BadLine as exc:
            if exc.torn and not data[nl + 1 :].strip():
                warnings.warn(f"{path}: ignoring a torn last record at byte {start + pos} ({exc})", stacklevel=3)
                break
            raise JournalError(f"{path}: record at byte {start + pos} is corrupt: {exc}") from None
        out.append((start + pos, rec))
        last = pos
        pos = nl + 1
    return out, start + pos, zlib.crc32(data[last:pos]) if last >= 0 else 0


def scan_journal(path: str | os.PathLike[str], start: int = 0, *, require_crc: bool = False) -> tuple[list[dict[str, Any]], int]:
    """Records from byte ``start`` on, and the offset just past the last complete record.

    Checksums are verified where present (``require_crc``: also required). A torn last
    record is dropped with a warning; a corrupt record anywhere else raises JournalError
    naming its byte offset.
    """
    records, end, _ = _scan(Path(path), start, require_crc)
    return [r for _, r in records], end


def _line_crc_before(path: Path, offset: int) -> int | None:
    """CRC-32 of the journal line that ends at byte ``offset`` (newline included), or None."""
    if offset <= 0:
        return None
    with open(path, "rb") as fh:
        back = min(offset, 1 << 20)
        fh.seek(offset - back)
        chunk = fh.read(back)
    if len(chunk) != back or not chunk.endswith(b"\n"):
        return None
    cut = chunk.rfind(b"\n", 0, len(chunk) - 1) + 1
    if cut == 0 and back < offset:
        return None  # a line longer than 1 MiB: not ours
    return zlib.crc32(chunk[cut:])


_ID = re.compile(r"[0-9]{1,12}-[0-9]{1,15}")


def _need(rec: Mapping[str, Any], name: str, ok: Callable[[Any], bool], rule: str) -> Any:
    if name not in rec:
        raise ValueError(f"field {name!r} is missing")
    v = rec[name]
    if not ok(v):
        shown = repr(v) if len(repr(v)) <= 60 else repr(v)[:57] + "..."
        raise ValueError(f"field {name!r} must be {rule}, got {shown}")
    return v


def _finite(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def _is_id(v: Any) -> bool:
    return isinstance(v, str) and _ID.fullmatch(v) is not None


def check_record(rec: Mapping[str, Any], n_configs: int) -> None:
    """Raise ValueError naming the field and the rule if a replayed record is malformed."""
    kind = _need(rec, "type", lambda v: isinstance(v, str), "a string")
    if kind == "suggest":
        _need(rec, "id", _is_id, "an id '<boot>-<seq>'")
        _need(rec, "index", lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v < n_configs,
              f"an integer in [0, {n_configs})")
        _need(rec, "ts", _finite, "a finite number")
    elif kind == "suggest_batch":
        _need(rec, "boot", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an integer >= 1")
        _need(rec, "first", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an integer >= 1")
        indices = _need(rec, "indices", lambda v: isinstance(v, list) and len(v) >= 1 and all(
            isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n_configs for i in v),
            f"a non-empty list of integers in [0, {n_configs})")
        _need(rec, "tags", lambda v: isinstance(v, list) and len(v) == len(indices), "a list with one tag per index")
        _need(rec, "ts", _finite, "a finite number")
    elif kind == "feedback":
        _need(rec, "id", _is_id, "an id '<boot>-<seq>'")
        _need(rec, "reward", _finite, "a finite number")
    elif kind == "feedback_batch":
        ids = _need(rec, "ids", lambda v: isinstance(v, list) and all(_is_id(i) for i in v), "a list of ids")
        _need(rec, "rewards", lambda v: isinstance(v, list) and len(v) == len(ids) and all(_finite(r) for r in v),
              "a list of finite numbers, one per id")
    elif kind == "expire":
        _need(rec, "ids", lambda v: isinstance(v, list) and all(_is_id(i) for i in v), "a list of ids")
    elif kind == "observe":
        configs = _need(rec, "configs", lambda v: isinstance(v, list) and all(isinstance(c, dict) for c in v),
                        "a list of configurations")
        _need(rec, "rewards", lambda v: isinstance(v, list) and len(v) == len(configs) and all(_finite(r) for r in v),
              "a list of finite numbers, one per configuration")
    elif kind == "warm_start":
        _need(rec, "state", lambda v: isinstance(v, dict), "a strategy state (a JSON object)")
    elif kind == "boot":
        _need(rec, "boot", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an integer >= 1")
    elif kind == "header":
        raise ValueError("a second header record")
    else:
        raise ValueError(f"unknown record type {kind!r}")


def replay(records: Sequence[tuple[int, Mapping[str, Any]]], apply: Callable[[Mapping[str, Any]], None],
           path: str | os.PathLike[str], n_configs: int) -> int:
    """Check and apply journal records in order; a bad one raises JournalError naming file and byte."""
    for offset, rec in records:
        try:
            check_record(rec, n_configs)
            apply(rec)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            detail = f"field {exc.args[0]!r} is missing" if isinstance(exc, KeyError) else str(exc)
            raise JournalError(f"{path}: record at byte {offset} ({rec.get('type')!r}): {detail}") from None
    return len(records)


# -- the lock -------------------------------------------------------------------------------------
class _Lock:
    """An exclusive flock on ``<journal>.lock`` holding the owner's pid; released by close or exit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except IsADirectoryError:
            raise JournalError(f"{path}: lock file path is a directory") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            try:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            finally:
                os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                journal = str(path)[: -len(".lock")]
                raise JournalLocked(
                    f"{journal}: journal is in use by another process (pid {holder}, lock {path}); "
                    "one server per journal"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # drops the flock


@dataclass
class Recovery:
    """What a restart found in a journal (the lock is held until :meth:`open` hands it on or
    :meth:`release` drops it)."""

    persistence: Persistence
    header: dict[str, Any] | None  # None: a new (empty) journal
    snapshot: dict[str, Any] | None  # a snapshot that matches the journal, or None
    records: list[tuple[int, dict[str, Any]]]  # (byte offset, record) after the snapshot, header excluded
    end: int
    last_crc: int
    lock: _Lock
    require_crc: bool = True
    _journal: "Journal | None" = field(default=None, repr=False)

    def replay_all(self) -> None:
        """Drop the snapshot and read every record (e.g. when the snapshot's state cannot be loaded)."""
        records, self.end, self.last_crc = _scan(Path(self.persistence.path), 0, self.require_crc)
        self.records = records[1:]
        self.snapshot = None

    def open(self) -> "Journal":
        """The journal for appending (a torn tail is cut off); the lock passes to it."""
        p = self.persistence
        self._journal = Journal(p.path, valid_end=self.end, fsync=p.fsync, interval_ms=p.interval_ms,
                                lock=self.lock, last_crc=self.last_crc)
        return self._journal

    def release(self) -> None:
        """Give up after a failed start: close the journal if it was opened, else drop the lock."""
        if self._journal is None:
            self.lock.release()
        else:
            self._journal.close()


def recover(p: Persistence, *, space: Any, settings: Mapping[str, Any]) -> Recovery:
    """Lock ``p.path`` and read it: header checked against ``space`` and ``settings``, the
    snapshot if it matches this journal's history, and the records after it."""
    path = Path(p.path)
    if path.is_dir():
        raise JournalError(f"{path}: journal path is a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise JournalError(f"{path}: cannot create the journal's directory ({exc.strerror})") from None
    lock = _Lock(p.lock_path)
    try:
        return _read(p, path, lock, space, settings)
    except BaseException:
        lock.release()
        raise


def _read(p: Persistence, path: Path, lock: _Lock, space: Any, settings: Mapping[str, Any]) -> Recovery:
    if not path.exists() or path.stat().st_size == 0:
        return Recovery(p, None, None, [], 0, 0, lock)
    with open(path, "rb") as fh:
        first = fh.readline()
    try:
        header = _decode_line(first.rstrip(b"\n"), require_crc=False)
    except ValueError as exc:
        raise JournalError(f"{path}: record at byte 0 is not a journal header ({exc})") from None
    if header.get("type") != "header" or header.get("kind") != "online":
        raise JournalError(f"{path}: record at byte 0 must be an online journal header (type=header, kind=online)")
    version = header.get("version")
    if version not in (1, FORMAT):
        raise JournalError(f"{path}: journal format {version!r} is not supported (this version reads 1 and {FORMAT})")
    if not isinstance(header.get("journal_id"), str):
        raise JournalError(f"{path}: record at byte 0: field 'journal_id' must be a string")
    require_crc = version >= 2
    try:
        same_space = type(space).from_dict(header["space"]) == space
    except (KeyError, TypeError, ValueError) as exc:
        raise JournalError(f"{path}: record at byte 0: field 'space' is not a search space ({exc})") from None
    if not same_space:
        raise ValueError(f"space differs from the one journaled in {str(path)!r}: {header['space']!r}")
    for key, value in settings.items():
        if header.get(key) != value:
            raise ValueError(
                f"{key} must match the journal {str(path)!r} to resume it: journal has {header.get(key)!r}, got {value!r}"
            )
    snap = _matching_snapshot(p, path, header["journal_id"])
    start = int(snap["offset"]) if snap is not None else 0
    records, end, last_crc = _scan(path, start, require_crc)
    if start == 0:
        records = records[1:]
    elif end == start:
        last_crc = int(snap["last_crc"])  # type: ignore[index]
    return Recovery(p, header, snap, records, end, last_crc, lock, require_crc)


def _matching_snapshot(p: Persistence, path: Path, journal_id: str) -> dict[str, Any] | None:
    snap = read_snapshot(p.snapshot_path)
    if snap is None:
        return None
    offset = snap.get("offset")
    size = path.stat().st_size
    why = None
    if snap.get("journal_id") != journal_id:
        why = "it belongs to another journal (journal_id differs)"
    elif not isinstance(offset, int) or not 0 < offset <= size:
        why = f"its offset {offset!r} lies outside the journal ({size} bytes)"
    elif not isinstance(snap.get("last_crc"), int):
        why = "it records no checksum of the last record it covers (older format)"
    elif _line_crc_before(path, offset) != snap["last_crc"]:
        why = f"it covers another history (the record before byte {offset} is not the one it saw)"
    elif not isinstance(snap.get("state"), dict):
        why = "it has no state"
    if why is not None:
        warnings.warn(f"{p.snapshot_path}: not used, {why}; replaying the whole journal", stacklevel=4)
        return None
    return snap


# -- asynchronous fdatasync (Linux AIO) ------------------------------------------------------------
# system call numbers of io_setup, io_destroy, io_getevents, io_submit
_AIO_SYSCALLS = {"x86_64": (206, 207, 208, 209), "aarch64": (0, 1, 4, 2)}
_IOCB_CMD_FDSYNC = 3
_IOCB_FLAG_RESFD = 1


class _AioSync:
    """fdatasync submitted to the kernel (Linux AIO, ``IOCB_CMD_FDSYNC``, Linux >= 4.18) and
    reported on an eventfd that an event loop watches like a socket: no thread, so no GIL hand-off
    and no futex ping-pong between the loop and a syncing thread. One sync in flight at a time.
    ``open`` returns None where it is not available (another OS, a seccomp filter, an old kernel):
    the caller then uses the background thread."""

    def __init__(self, libc: Any, calls: tuple[int, int, int, int], ctx: Any, efd: int) -> None:
        import ctypes

        # the system call's arguments as C longs (variadic: a plain int would fill half a register)
        self._libc, self._ctx, self.efd = libc, ctx, efd
        self._destroy, self._getevents, self._submit = (ctypes.c_long(c) for c in calls[1:])
        self._one, self._zero_l, self._max = ctypes.c_long(1), ctypes.c_long(0), ctypes.c_long(4)
        self._iocb = ctypes.create_string_buffer(64)
        self._ptrs = (ctypes.c_void_p * 1)(ctypes.addressof(self._iocb))
        self._events = ctypes.create_string_buffer(32 * 4)
        self._zero = ctypes.create_string_buffer(16)  # struct timespec {0, 0}: io_getevents never blocks
        self.target = 0  # the sequence number the sync in flight covers (0: none in flight)
        self.started = 0.0
        # a journal never closed still gives its context back (they are limited system-wide, aio-max-nr)
        self._release = weakref.finalize(self, _aio_release, libc, self._destroy, ctx, efd)

    @classmethod
    def open(cls) -> "_AioSync | None":
        import platform
        import sys

        calls = _AIO_SYSCALLS.get(platform.machine())
        if calls is None or not sys.platform.startswith("linux") or not hasattr(os, "eventfd"):
            return None
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.syscall.restype = ctypes.c_long
            ctx = ctypes.c_ulong(0)
            if libc.syscall(ctypes.c_long(calls[0]), ctypes.c_long(4), ctypes.byref(ctx)) != 0:
                return None
            efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        except (OSError, AttributeError):
            return None
        return cls(libc, calls, ctx, efd)

    def submit(self, fd: int, target: int) -> bool:
        """Start an fdatasync of ``fd`` covering record ``target``; False if the kernel refused it."""
        struct.pack_into("<QIIHhIQQqQII", self._iocb, 0, target, 0, 0, _IOCB_CMD_FDSYNC, 0, fd, 0, 0, 0, 0,
                         _IOCB_FLAG_RESFD, self.efd)
        self.started = time.perf_counter()
        if self._libc.syscall(self._submit, self._ctx, self._one, self._ptrs) != 1:
            return False
        self.target = target
        return True

    def reap(self) -> list[tuple[int, int]]:
        """(target, result) of the syncs that finished (result < 0: minus an errno)."""
        try:
            os.eventfd_read(self.efd)
        except BlockingIOError:
            pass
        got = self._libc.syscall(self._getevents, self._ctx, self._zero_l, self._max, self._events, self._zero)
        out = []
        for k in range(max(got, 0)):
            data, _, res, _ = struct.unpack_from("<QQqq", self._events, 32 * k)
            out.append((data, res))
        if out:
            self.target = 0
        return out

    def close(self, close_fd: bool = True) -> None:
        """Give the context back (waiting for a sync in flight) and close the eventfd unless
        ``close_fd`` is False (a loop in another thread still watches it)."""
        if self._release.detach() is not None:  # not given back yet
            _aio_release(self._libc, self._destroy, self._ctx, self.efd if close_fd else -1)


def _aio_release(libc: Any, destroy: Any, ctx: Any, efd: int) -> None:
    libc.syscall(destroy, ctx)
    if efd >= 0:
        os.close(efd)


# -- writing --------------------------------------------------------------------------------------
class Journal:
    """Appends records to ``path`` (truncated to ``valid_end`` first, dropping a torn tail).

    ``append`` returns a sequence number; ``wait(seq)`` / ``await wait_async(seq)`` return
    once that record may be acknowledged under the fsync policy (or raise
    :class:`JournalUnavailable` if the journal failed).
    """

    def __init__(self, path: str | os.PathLike[str], *, valid_end: int, fsync: FsyncPolicy = "always",
                 interval_ms: float = 5.0, lock: _Lock | None = None, last_crc: int = 0) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self._interval = interval_ms / 1000.0
        self._owned_lock = lock if lock is not None else _Lock(Path(str(path) + ".lock"))
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            os.ftruncate(self._fd, valid_end)
            os.lseek(self._fd, valid_end, os.SEEK_SET)
        except BaseException:
            self._owned_lock.release()
            raise
        self._write = os.write  # tests replace this to inject faults
        self._fdatasync = os.fdatasync
        self.offset = valid_end
        self.last_crc = last_crc  # of the line ending at ``offset`` (computed lazily from _last_line)
        self._last_line: bytes | None = None
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._done = threading.Condition(self._lock)
        self._written = 0
        self._want = 0  # highest record someone needs durable
        self._durable = 0
        self._closing = False
        self.failed: str | None = None  # why the journal cannot be used any more
        self._async_waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future]] = []
        self.syncs = 0
        self.sync_seconds = 0.0  # total time spent in fdatasync
        # event loops' syncs (wait_async), submitted to the kernel where it can; None: the thread's
        self._aio: _AioSync | None = _AioSync.open() if AIO_SYNC and fsync == "always" else None
        self._aio_loop: asyncio.AbstractEventLoop | None = None  # the loop watching its eventfd
        self._flusher: threading.Thread | None = None
        if fsync != "never":
            self._flusher = threading.Thread(target=self._run, name="autorag-hp-journal", daemon=True)
            self._flusher.start()

    # -- writing ----------------------------------------------------------------------------
    def append(self, record: Mapping[str, Any], *, sync: bool = True) -> int:
        """Write one record; with ``sync=False`` no fsync is started for it (a later one covers it:
        e.g. a suggestion, whose loss in a power cut only makes its feedback "unknown")."""
        data = encode_line(record)
        with self._lock:
            if self._closing:
                raise JournalUnavailable(f"journal {str(self.path)!r} is closed")
            if self.failed is not None:
                raise JournalUnavailable(f"journal {str(self.path)!r} is unusable: {self.failed}")
            try:
                n = self._write(self._fd, data)
                if n != len(data):  # rare: a short write; finish it or fail
                    view = memoryview(data)[max(n, 0):]
                    while view:
                        n = self._write(self._fd, view)
                        if n <= 0:
                            raise OSError(errno.EIO, "write wrote nothing")
                        view = view[n:]
            except OSError as exc:
                self._cut_back(exc)
            self.offset += len(data)
            self._last_line = data
            self._written += 1
            if sync and self.fsync == "always" and self._aio is None:
                # the background thread starts syncing before anyone waits (with _aio, the wait starts it)
                self._want = self._written
                self._work.notify()
            return self._written

    def _cut_back(self, exc: OSError) -> None:  # lock held; always raises
        reason = exc.strerror or str(exc)
        try:
            os.ftruncate(self._fd, self.offset)
            os.lseek(self._fd, self.offset, os.SEEK_SET)
        except OSError as exc2:
            self.failed = f"a write failed ({reason}) and the partial record could not be cut off ({exc2.strerror})"
            self._fail_waiters()
            raise JournalUnavailable(f"journal {str(self.path)!r}: {self.failed}") from None
        raise JournalUnavailable(
            f"journal {str(self.path)!r}: write failed ({reason}); cut back to byte {self.offset}, nothing recorded"
        ) from None

    def position(self) -> tuple[int, int, int]:
        """(offset, CRC-32 of the last line, sequence number of the last record) at this moment."""
        with self._lock:
            if self._last_line is not None:
                self.last_crc, self._last_line = zlib.crc32(self._last_line), None
            return self.offset, self.last_crc, self._written

    def acked(self, seq: int) -> bool:
        return self.fsync != "always" or self._durable >= seq

    def _request(self, seq: int) -> None:  # lock held
        if seq > self._want:
            self._want = seq
            self._work.notify()

    def _raise_failed(self) -> None:
        raise JournalUnavailable(f"journal {str(self.path)!r} is unusable: {self.failed}")

    def wait(self, seq: int, timeout: float | None = None) -> bool:
        """Block until record ``seq`` may be acknowledged; False on timeout."""
        if self.acked(seq):
            return True
        with self._lock:
            if self.failed is not None:
                self._raise_failed()
            self._request(seq)
            ok = self._done.wait_for(lambda: self._durable >= seq or self._closing or self.failed is not None, timeout)
            if self._durable < seq and self.failed is not None:
                self._raise_failed()
            return ok

    async def wait_async(self, seq: int) -> None:
        """``wait`` for an event loop, which goes on serving while the disk syncs. Group commit:
        one fdatasync at a time, covering every record written before it started; the waiters
        it covered are answered together. On Linux the loop submits the fdatasync to the kernel
        (``_AioSync``) and learns of its end on an eventfd, like any socket; elsewhere the
        background thread syncs and wakes the loop (``call_soon_threadsafe``), which costs GIL
        hand-offs between the two threads. (Until 2026-12-01 the loop ran a fast disk's sync
        itself and served nothing meanwhile: a sixth of its time with 8 clients.)"""
        if self.acked(seq):
            return
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        aio = self._aio if self._aio_loop is loop else self._aio_for(loop)
        with self._lock:
            if self._durable >= seq:
                return
            if self.failed is not None:
                self._raise_failed()
            self._async_waiters.append((seq, loop, fut))
            if aio is None:
                self._request(seq)
            elif not aio.target:
                self._aio_start(aio)
        await fut

    def _aio_for(self, loop: asyncio.AbstractEventLoop) -> "_AioSync | None":
        """The kernel-submitted sync, watched by ``loop`` (None: use the background thread)."""
        if self._aio is None:
            return None
        old = self._aio_loop
        if old is not None and not old.is_closed():
            if old.is_running():  # another loop, running elsewhere, watches it: this one uses the thread
                return None
            old.remove_reader(self._aio.efd)
        loop.add_reader(self._aio.efd, self._aio_done)
        self._aio_loop = loop
        return self._aio

    def _aio_start(self, aio: "_AioSync") -> None:  # lock held, on the thread of the loop watching it
        if not aio.submit(self._fd, self._written):  # refused (e.g. EAGAIN): the thread syncs from now on
            self._aio = None
            self._want = max(self._want, self._written)
            self._work.notify()
            if self._aio_loop is not None and not self._aio_loop.is_closed():
                self._aio_loop.remove_reader(aio.efd)
            aio.close()  # nothing in flight: it was refused

    def _aio_done(self) -> None:
        """On the loop's thread, when the eventfd says a sync ended: answer the waiters it
        covered, and start the next sync if someone waits for a later record."""
        aio = self._aio
        if aio is None:
            return
        done = aio.reap()
        for target, res in done:
            self.sync_seconds += time.perf_counter() - aio.started
            if res < 0:
                try:
                    self._sync_failed(OSError(-res, os.strerror(-res)))
                except JournalUnavailable:
                    pass
                return
            self._mark_durable(target)
        with self._lock:
            if done and self._async_waiters and self.failed is None and not self._closing and self._aio is aio:
                self._aio_start(aio)

    def _sync_to(self, target: int) -> bool:
        """fdatasync, then mark the records up to ``target`` durable; False if the sync failed
        (the journal is then unusable and its waiters got the error)."""
        try:
            self._datasync()
        except OSError as exc:
            try:
                self._sync_failed(exc)
            except JournalUnavailable:
                return False
        self._mark_durable(target)
        return True

    def _datasync(self) -> None:
        """fdatasync, timed into ``sync_seconds``."""
        t0 = time.perf_counter()
        self._fdatasync(self._fd)
        dt = time.perf_counter() - t0
        self.sync_seconds += dt

    def sync(self) -> None:
        """Make every appended record durable now."""
        with self._lock:
            target = self._written
            if self.failed is not None:
                self._raise_failed()
        try:
            self._datasync()
        except OSError as exc:
            self._sync_failed(exc)
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
        _wake(ready, None)

    def _sync_failed(self, exc: OSError) -> None:
        with self._lock:
            if self.failed is None:
                self.failed = f"fdatasync failed ({exc.strerror or exc}); what reached the disk is unknown, restart to re-read it"
            self._fail_waiters()
        self._raise_failed()

    def _fail_waiters(self) -> None:  # lock held
        ready: dict[asyncio.AbstractEventLoop, list[asyncio.Future]] = {}
        for _, loop, fut in self._async_waiters:
            ready.setdefault(loop, []).append(fut)
        self._async_waiters = []
        self._done.notify_all()
        _wake(ready, JournalUnavailable(f"journal {str(self.path)!r} is unusable: {self.failed}"))

    def _run(self) -> None:
        always = self.fsync == "always"
        while True:
            with self._lock:
                if always:
                    self._work.wait_for(lambda: self._want > self._durable or self._closing)
                else:
                    self._work.wait(self._interval)
                if self.failed is not None or (self._closing and self._written <= self._durable):
                    return
                target = self._written
                if target <= self._durable:
                    continue
            if not self._sync_to(target):
                return

    def close(self) -> None:
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._work.notify_all()
        try:
            if self._flusher is not None:
                self._flusher.join()
            if self.fsync != "never" and self.failed is None:
                try:
                    self._fdatasync(self._fd)
                except OSError as exc:
                    with self._lock:
                        self.failed = f"fdatasync failed ({exc.strerror or exc})"
                        self._fail_waiters()
            if self.failed is None:
                self._mark_durable(self._written)
            else:
                with self._lock:
                    self._fail_waiters()
        finally:
            self._close_aio()
            os.close(self._fd)
            self._owned_lock.release()

    def _close_aio(self) -> None:
        aio, self._aio = self._aio, None
        if aio is None:
            return
        loop, watched = self._aio_loop, False
        if loop is not None and not loop.is_closed():
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop or not loop.is_running():
                loop.remove_reader(aio.efd)
            else:
                watched = True  # a loop in another thread still watches the eventfd: leave it open
        aio.close(close_fd=not watched)


def _wake(ready: dict[asyncio.AbstractEventLoop, list[asyncio.Future]], exc: BaseException | None) -> None:
    if not ready:
        return
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    for loop, futs in ready.items():
        if loop is running:  # on the loop's own thread (e.g. close() or a failed write): no wake-up needed
            _resolve(futs, exc)
            continue
        try:
            loop.call_soon_threadsafe(_resolve, futs, exc)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass


def _resolve(futs: list[asyncio.Future], exc: BaseException | None = None) -> None:
    for f in futs:
        if not f.done():
            if exc is None:
                f.set_result(None)
            else:
                f.set_exception(exc)


def write_snapshot(path: str | os.PathLike[str], snapshot: Mapping[str, Any]) -> None:
    """Atomically replace ``path`` with ``snapshot`` (temp file, fsync, rename, fsync dir)."""
    data = json.dumps(snapshot, separators=(",", ":"), allow_nan=False).encode()
    atomic_write_bytes(path, data, fsync=True, fsync_dir=True)


def read_snapshot(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The snapshot at ``path``, or None (with a warning if it exists but is unreadable)."""
    p = Path(path)
    if not p.is_file():
        return None
    try:
        data = json.loads(p.read_bytes(), parse_constant=_no_constant)
        if not isinstance(data, dict) or data.get("type") != "snapshot":
            raise ValueError("not a snapshot record")
        return data
    except ValueError as exc:
        warnings.warn(f"{p}: ignoring an unreadable snapshot ({exc}); replaying the whole journal", stacklevel=2)
        return None
