"""Append-only JSON-lines journal of a tuning run: one header, then one record per pull.

Each record is flushed to the operating system as it is written, so it survives a crash of
the process (``kill -9``); ``fsync_interval`` sets how often it is also forced to disk
(0: after every record). A record lost to a power cut after the last fsync is simply
evaluated again by a resumed run, which asks the same configurations with the same
questions. A torn last line (a crash mid-write) is ignored with a warning; a bad line
anywhere else is an error naming the line.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping

from autorag_hp._validation import check_number

__all__ = ["Journal", "JournalError", "read_journal"]

FORMAT_VERSION = 1


class JournalError(ValueError):
    """The journal cannot be read: a corrupt line that is not the last, or a missing header."""


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


class Journal:
    """Writes records to ``path``; ``fsync=False`` never forces them to disk (tests, replays),
    ``fsync_interval`` seconds is the most time a flushed record waits for its fsync."""

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True, fsync_interval: float = 0.0) -> None:
        check_number("fsync_interval", fsync_interval, low=0.0)
        self.path = Path(path)
        self.fsync = fsync
        self.fsync_interval = float(fsync_interval)
        self._last_sync = time.monotonic()
        self._dirty = False
        self._fh = None

    def _open(self):
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Drop a torn tail before appending, so the next record starts on its own line.
            if self.path.exists():
                _truncate_torn_tail(self.path)
            self._fh = open(self.path, "a", encoding="utf-8")
        return self._fh

    def write(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(record, default=_jsonable, separators=(",", ":"), allow_nan=False)
        fh = self._open()
        fh.write(line + "\n")
        fh.flush()
        self._dirty = True
        if self.fsync and time.monotonic() - self._last_sync >= self.fsync_interval:
            self.sync()

    def sync(self) -> None:
        """Force what was written to disk (fsync), if anything is waiting."""
        if self._fh is not None and self._dirty and self.fsync:
            os.fsync(self._fh.fileno())
            self._dirty = False
            self._last_sync = time.monotonic()

    def write_header(self, *, strategy: Mapping[str, Any], space: Mapping[str, Any], **meta: Any) -> None:
        self.write({"type": "header", "version": FORMAT_VERSION, **strategy, "space": dict(space), "meta": meta, "ts": time.time()})

    def close(self) -> None:
        if self._fh is not None:
            try:
                self.sync()
            finally:
                self._fh.close()
                self._fh = None

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _truncate_torn_tail(path: Path) -> None:
    with open(path, "rb+") as fh:
        data = fh.read()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            warnings.warn(f"{path}: ignoring a torn last record ({len(data) - cut} bytes)", stacklevel=3)
            fh.truncate(cut)


def iter_records(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Yield every complete record; ignore a torn last line with a warning."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"journal {str(p)!r} does not exist")
    with open(p, "rb") as fh:
        lines = fh.read().split(b"\n")
    last = len(lines) - 1
    # A file ending in "\n" splits into [..., b""]; the real last line is the one before.
    while last >= 0 and lines[last] == b"":
        last -= 1
    for lineno, raw in enumerate(lines[: last + 1], start=1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
            if not isinstance(rec, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            if lineno == last + 1:
                warnings.warn(f"{p}: ignoring a torn last record at line {lineno}", stacklevel=2)
                return
            raise JournalError(f"{p}: line {lineno} is not a valid journal record ({exc})") from None
        yield rec


def read_journal(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Return (header, pull records) of a journal."""
    records = list(iter_records(path))
    if not records or records[0].get("type") != "header":
        raise JournalError(f"{path}: line 1 must be a header record")
    pulls = [r for r in records[1:] if r.get("type") == "pull"]
    for i, r in enumerate(pulls):
        for field in ("config", "reward", "round", "round_size"):
            if field not in r:
                raise JournalError(f"{path}: pull record {i} lacks field {field!r}")
    return records[0], pulls
