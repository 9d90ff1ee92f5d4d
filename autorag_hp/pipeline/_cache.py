"""On-disk caches keyed by content hashes, written atomically.

Every file is written to a temporary name in the same folder and moved into place with
``os.replace``, so a reader (or a crash) never sees a half-written file. Keys are hashes
of the content they describe (model fingerprint + text), so a changed corpus or model
simply misses the cache instead of returning stale vectors.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from autorag_hp._io import atomic_write_bytes, atomic_write_text

__all__ = [
    "default_cache_dir",
    "content_hash",
    "ArrayStore",
    "JsonStore",
    "JsonShardStore",
]

_DIGEST = 16  # bytes of blake2b per key


def default_cache_dir() -> Path:
    """``$AUTORAG_HP_CACHE`` if set, else ``~/.cache/autorag_hp``."""
    env = os.environ.get("AUTORAG_HP_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "autorag_hp"


def content_hash(*parts: str | bytes) -> str:
    """Hex digest of the parts (length-prefixed, so ``("ab", "c") != ("a", "bc")``)."""
    h = hashlib.blake2b(digest_size=_DIGEST)
    for p in parts:
        b = p.encode("utf-8") if isinstance(p, str) else bytes(p)
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def _key_bytes(key: str) -> bytes:
    if not isinstance(key, str) or len(key) != 2 * _DIGEST:
        raise ValueError(f"cache keys must be {2 * _DIGEST}-character hex digests from content_hash(), got {key!r}")
    return bytes.fromhex(key)


def _key_array(keys: Sequence[bytes]) -> np.ndarray:
    """Keys as a uint8 [n, 16] array (a bytes dtype would drop trailing NUL bytes)."""
    return np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), _DIGEST)


class ArrayStore:
    """A persistent map from content-hash keys to fixed-width float32 rows (e.g. embeddings).

    One namespace is one folder of shard files (``.npz`` with ``keys`` and ``values``);
    each :meth:`put` writes one new shard atomically. The namespace is read into memory
    on first use. When more than ``max_shards`` shards accumulate they are merged.
    ``root=None`` keeps everything in memory only.
    """

    def __init__(self, root: str | os.PathLike[str] | None, namespace: str, *, max_shards: int = 32):
        if not namespace or any(c in namespace for c in "\\:") or ".." in namespace:
            raise ValueError(f"namespace must be a non-empty relative folder name, got {namespace!r}")
        self.dir = Path(root) / namespace if root is not None else None
        self.max_shards = int(max_shards)
        self._index: dict[bytes, np.ndarray] | None = None
        self._lock = threading.Lock()

    def _load(self) -> dict[bytes, np.ndarray]:
        if self._index is not None:
            return self._index
        index: dict[bytes, np.ndarray] = {}
        if self.dir is not None and self.dir.is_dir():
            for shard in sorted(self.dir.glob("*.npz")):
                try:
                    with np.load(shard, allow_pickle=False) as z:
                        keys, values = z["keys"], z["values"]
                    if keys.dtype != np.uint8 or keys.ndim != 2 or keys.shape != (len(values), _DIGEST):
                        raise ValueError(f"keys must be uint8 [{len(values)}, {_DIGEST}], got {keys.dtype} {keys.shape}")
                except Exception as exc:  # an unreadable shard is skipped, never half-used
                    warnings.warn(f"ignoring unreadable cache shard {shard}: {exc}", RuntimeWarning, stacklevel=3)
                    continue
                for k, v in zip(keys, values):
                    index[k.tobytes()] = v
        self._index = index
        return index

    def __len__(self) -> int:
        return len(self._load())

    def __contains__(self, key: str) -> bool:
        return _key_bytes(key) in self._load()

    def get_many(self, keys: Sequence[str]) -> tuple[np.ndarray, list[np.ndarray | None]]:
        """Return (found mask, rows or None) for ``keys``."""
        index = self._load()
        rows = [index.get(_key_bytes(k)) for k in keys]
        return np.array([r is not None for r in rows], dtype=bool), rows

    def put_many(self, keys: Sequence[str], values: np.ndarray) -> None:
        """Store ``values[i]`` under ``keys[i]``; one atomic shard write."""
        values = np.asarray(values, dtype=np.float32)
        if values.ndim != 2 or values.shape[0] != len(keys):
            raise ValueError(
                f"values must be a 2-D array with one row per key, got shape {values.shape} for {len(keys)} keys"
            )
        if len(keys) == 0:
            return
        kb = [_key_bytes(k) for k in keys]
        with self._lock:
            index = self._load()
            for k, v in zip(kb, values):
                index[k] = v
            if self.dir is None:
                return
            karr = _key_array(kb)
            name = content_hash(karr.tobytes(), values.tobytes())
            self._write_shard(self.dir / f"{name}.npz", karr, values)
            shards = list(self.dir.glob("*.npz"))
            if len(shards) > self.max_shards:
                self._compact(shards)

    def _write_shard(self, path: Path, keys: np.ndarray, values: np.ndarray) -> None:
        import io

        buf = io.BytesIO()
        np.savez(buf, keys=keys, values=values)
        atomic_write_bytes(path, buf.getvalue())

    def _compact(self, shards: list[Path]) -> None:
        """Merge all shards into one: write the merged shard first, then remove the parts."""
        assert self.dir is not None and self._index is not None
        by_width: dict[int, list[bytes]] = {}
        for k, v in self._index.items():
            by_width.setdefault(v.shape[0], []).append(k)
        written: set[Path] = set()
        for keys in by_width.values():
            karr = _key_array(keys)
            values = np.stack([self._index[k] for k in keys])
            path = self.dir / f"{content_hash(karr.tobytes(), values.tobytes())}.npz"
            self._write_shard(path, karr, values)
            written.add(path)
        for s in shards:
            if s not in written:
                try:
                    s.unlink()
                except FileNotFoundError:
                    pass


class JsonStore:
    """A persistent map from content-hash keys to JSON records, one small file per key.

    Used for things that are expensive per item (e.g. generator answers keyed by prompt).
    """

    def __init__(self, root: str | os.PathLike[str] | None, namespace: str):
        if not namespace or ".." in namespace:
            raise ValueError(f"namespace must be a non-empty relative folder name, got {namespace!r}")
        self.dir = Path(root) / namespace if root is not None else None
        self._memory: dict[str, Any] = {}

    def _path(self, key: str) -> Path:
        _key_bytes(key)
        assert self.dir is not None
        return self.dir / key[:2] / f"{key}.json"

    def get(self, key: str) -> Any | None:
        if key in self._memory:
            return self._memory[key]
        if self.dir is None:
            return None
        path = self._path(key)
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            warnings.warn(f"ignoring unreadable cache entry {path}: {exc}", RuntimeWarning, stacklevel=2)
            return None
        self._memory[key] = value
        return value

    def put(self, key: str, value: Any) -> None:
        text = json.dumps(value, sort_keys=True)  # fails before anything is written if not JSON-able
        self._memory[key] = json.loads(text)
        if self.dir is not None:
            atomic_write_text(self._path(key), text)

    def keys(self) -> Iterable[str]:
        seen = set(self._memory)
        yield from seen
        if self.dir is not None and self.dir.is_dir():
            for p in self.dir.glob("*/*.json"):
                if p.stem not in seen:
                    yield p.stem


class JsonShardStore:
    """A persistent map from content-hash keys to JSON records, written in shards.

    Like :class:`ArrayStore` for JSON values: each :meth:`put_many` writes one JSON-lines
    shard (``{"k": key, "v": value}`` per line) atomically, so a batch of records costs one
    file; the namespace is read into memory on first use and merged into one shard when
    more than ``max_shards`` accumulate. Used for wrapped stacks' outcomes (one record per
    configuration and question). ``root=None`` keeps everything in memory only.
    """

    def __init__(self, root: str | os.PathLike[str] | None, namespace: str, *, max_shards: int = 64):
        if not namespace or any(c in namespace for c in "\\:") or ".." in namespace:
            raise ValueError(f"namespace must be a non-empty relative folder name, got {namespace!r}")
        self.dir = Path(root) / namespace if root is not None else None
        self.max_shards = int(max_shards)
        self._index: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:  # pickled for remote executors: the files, not the memory
        return {"dir": self.dir, "max_shards": self.max_shards}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(None, "x", max_shards=state["max_shards"])
        self.dir = state["dir"]

    def _load(self) -> dict[str, Any]:
        if self._index is not None:
            return self._index
        index: dict[str, Any] = {}
        if self.dir is not None and self.dir.is_dir():
            for shard in sorted(self.dir.glob("*.jsonl")):
                try:
                    records = [json.loads(line) for line in shard.read_text(encoding="utf-8").splitlines() if line]
                    part = {r["k"]: r["v"] for r in records}
                except Exception as exc:  # an unreadable shard is skipped, never half-used
                    warnings.warn(f"ignoring unreadable cache shard {shard}: {exc}", RuntimeWarning, stacklevel=3)
                    continue
                index.update(part)
        self._index = index
        return index

    def __len__(self) -> int:
        return len(self._load())

    def __contains__(self, key: str) -> bool:
        return key in self._load()

    def get(self, key: str) -> Any | None:
        _key_bytes(key)
        return self._load().get(key)

    def put_many(self, items: Sequence[tuple[str, Any]]) -> None:
        """Store each ``(key, value)``; one shard write. Values must be JSON-able."""
        lines = []
        for key, value in items:
            _key_bytes(key)
            lines.append(json.dumps({"k": key, "v": value}))  # fails before anything is written
        if not lines:
            return
        with self._lock:
            index = self._load()
            for key, value in items:
                index[key] = value
            if self.dir is None:
                return
            text = "\n".join(lines) + "\n"
            atomic_write_text(self.dir / f"{content_hash(text)}.jsonl", text, fsync=False)
            shards = list(self.dir.glob("*.jsonl"))
            if len(shards) > self.max_shards:
                self._compact(shards)

    def _compact(self, shards: list[Path]) -> None:
        """Merge all shards into one (their lines, concatenated): write it first, then remove the parts."""
        assert self.dir is not None
        parts = []
        for shard in sorted(shards):
            try:
                parts.append(shard.read_text(encoding="utf-8"))
            except OSError:  # removed by another process's merge meanwhile: its lines are in that merge
                continue
        text = "".join(p if p.endswith("\n") else p + "\n" for p in parts if p)
        merged = self.dir / f"{content_hash(text)}.jsonl"
        atomic_write_text(merged, text, fsync=False)
        for s in shards:
            if s != merged:
                try:
                    s.unlink()
                except FileNotFoundError:
                    pass
