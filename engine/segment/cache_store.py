"""Files of a cache under one root, a local folder or any fsspec URL, with a size limit.

``CacheStore("var/cache/embeddings/m")`` or ``CacheStore("s3://bucket/prefix/m")`` (or
``memory://...`` in tests): ``read``/``write``/``delete`` whole files by a relative name
(``ab/abcdef....npz``). Local writes go to a temp file that is renamed, so readers see
nothing or a whole file; object stores write whole objects anyway.

Size limit (``max_bytes``, 0 = none): after a write that may have crossed it, the store
lists its files and deletes the least recently used until the total is at most
``LOW_WATER`` of the limit. "Recently used" is the access time: local reads set the file's
atime explicitly (``os.utime``; mounts with ``noatime`` do not matter), and object stores,
which cannot touch an object cheaply, use the later of its modification time and this
process's own last read of it. Several processes may share one cache: eviction tolerates
files that vanish under it (another process evicted or replaced them) and the running
total is re-measured every ``rescan_every`` writes so other writers are counted.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("dataengine.cache_store")

LOW_WATER = 0.9  # evict down to this fraction of max_bytes (not one file per write)


def _stamp(info: dict[str, Any]) -> float:
    """Modification time (Unix seconds) from an fsspec ``info``/``find(detail=True)`` entry."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "created", "modified"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, dt.datetime):
            return value.timestamp()
        if isinstance(value, int | float):
            return float(value)
        try:
            return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
        except ValueError:
            continue
    return 0.0


class CacheStore:
    """Whole files under ``location`` (a folder or an fsspec URL), at most ``max_bytes``."""

    def __init__(
        self, location: str | os.PathLike[str], *, max_bytes: int = 0, rescan_every: int = 64
    ):
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0 (0 = unbounded)")
        import fsspec
        from fsspec.implementations.local import LocalFileSystem

        loc = os.fspath(location)
        self.fs, root = fsspec.core.url_to_fs(loc)
        self.local = isinstance(self.fs, LocalFileSystem)
        self.root = root.rstrip("/")
        self.location = loc
        self.max_bytes = max_bytes
        self.rescan_every = max(1, rescan_every)
        self._lock = threading.Lock()
        self._bytes: int | None = None  # running total (None: not measured yet)
        self._writes = 0
        self._read_at: dict[str, float] = {}  # object stores: this process's last reads
        self.evicted = 0

    # names
    def path(self, name: str) -> str:
        """The full path (in the store's filesystem) of relative ``name``."""
        return f"{self.root}/{name}"

    def local_path(self, name: str) -> Path | None:
        """A ``Path`` for local stores, else None."""
        return Path(self.path(name)) if self.local else None

    # files
    def exists(self, name: str) -> bool:
        return bool(self.fs.exists(self.path(name)))

    def read(self, name: str) -> bytes | None:
        """The file's bytes (and its access time set to now), or None when absent."""
        path = self.path(name)
        try:
            data = bytes(self.fs.cat_file(path))
        except FileNotFoundError:
            return None
        now = time.time()
        if self.local:
            # evicted meanwhile, read-only cache: the read still counts
            with contextlib.suppress(OSError):
                os.utime(path, (now, os.stat(path).st_mtime))
        else:
            with self._lock:
                self._read_at[path] = now
        return data

    def write(self, name: str, data: bytes) -> None:
        """Store ``data`` as ``name`` (whole-file replace), then keep the size limit.

        Raises OSError when the store cannot be written (full disk, no permission)."""
        path = self.path(name)
        if self.local:
            parent = Path(path).parent
            parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(
                prefix=f".{Path(path).name[:16]}.", suffix=".tmp", dir=parent
            )
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        else:
            self.fs.pipe_file(path, data)
        self._after_write(len(data))

    def delete(self, name: str) -> None:
        """Remove ``name``; absent is fine."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path(name))

    # size limit
    def files(self) -> Iterator[tuple[str, int, float]]:
        """(path, bytes, last access as Unix seconds) of every file in the store."""
        if self.local:
            yield from self._local_files(self.root)
            return
        try:
            found = self.fs.find(self.root, detail=True)
        except FileNotFoundError:
            return
        for path, info in found.items():
            if info.get("type", "file") != "file":
                continue
            with self._lock:
                seen = self._read_at.get(path, 0.0)
            yield path, int(info.get("size") or 0), max(_stamp(info), seen)

    def _local_files(self, folder: str) -> Iterator[tuple[str, int, float]]:
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    yield from self._local_files(entry.path)
                elif entry.name.endswith(".tmp"):
                    continue  # a write in progress
                else:
                    st = entry.stat(follow_symlinks=False)
                    yield entry.path, st.st_size, max(st.st_atime, st.st_mtime)
            except FileNotFoundError:
                continue  # vanished while listing (another process evicted it)

    def total_bytes(self) -> int:
        """Bytes stored now (lists the store)."""
        return sum(size for _, size, _ in self.files())

    def _after_write(self, size: int) -> None:
        if not self.max_bytes:
            return
        with self._lock:
            self._writes += 1
            rescan = self._bytes is None or self._writes % self.rescan_every == 0
            if self._bytes is not None:
                self._bytes += size
            over = self._bytes is not None and self._bytes > self.max_bytes
        if rescan or over:
            self.evict()

    def evict(self) -> int:
        """Delete least recently used files until the store holds at most ``LOW_WATER`` x
        ``max_bytes`` (only when it holds more than ``max_bytes``); returns bytes freed."""
        listing = sorted(self.files(), key=lambda f: f[2])
        total = sum(size for _, size, _ in listing)
        freed = 0
        if self.max_bytes and total > self.max_bytes:
            target = int(self.max_bytes * LOW_WATER)
            for path, size, _ in listing:
                if total - freed <= target:
                    break
                try:
                    self.fs.rm_file(path)
                except FileNotFoundError:
                    pass  # another process evicted it first: it is gone either way
                except OSError as err:
                    log.warning("cannot evict cache file %s: %s", path, err)
                    continue
                freed += size
                self.evicted += 1
                with self._lock:
                    self._read_at.pop(path, None)
        with self._lock:
            self._bytes = total - freed
        if freed:
            log.info("embedding cache: evicted %d bytes (limit %d)", freed, self.max_bytes)
        return freed
