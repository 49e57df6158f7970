"""Embedding cache: one file per (model key, image sha256) in a store, plus an in-memory LRU.

Store layout: ``<cache_dir>/embeddings/<model dir>/<sha[:2]>/<sha>.npz`` where ``model dir``
is a filesystem-safe slug of the segmenter's ``model_key`` plus a short hash of it, and
``cache_dir`` is a local folder or an fsspec URL (``s3://bucket/prefix``, ``memory://x``;
``engine.segment.cache_store``). With ``max_bytes`` the store keeps at most that many bytes
per model key, evicting the least recently used files. Each file is an uncompressed
``.npz`` written whole (locally: to a temp file that is renamed), so readers see either
nothing or a whole file. Inside: ``__manifest__`` (JSON: model key, sha256, image size,
the tree of ``Embedding.features`` with each leaf's kind and dtype) and one array per
array leaf. Float arrays are stored as float16 (unless a value would overflow fp16) and
restored to their original dtype on load; integer/bool arrays and ``Embedding.image``
(HWC uint8) are stored exactly. The same fp16 round trip is applied on ``put``, so the
embedding a caller gets does not depend on whether it came from memory, disk or a fresh
compute.

A file that cannot be read (truncated, not a zip, wrong manifest) is deleted and the
embedding recomputed; the cache never raises because of its own files. Thread-safe:
concurrent ``get_or_compute`` calls for one key compute it once.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.lru import LRU
from engine.segment.cache_store import CacheStore
from engine.segment.protocol import Embedding

log = logging.getLogger("dataengine.embedding_cache")

FORMAT_VERSION = 1
FP16_MAX = float(np.finfo(np.float16).max)
_SHA_RE = re.compile(r"^[0-9a-zA-Z_-]{8,128}$")


class _Unsupported(TypeError):
    """A feature value the disk format cannot hold (kept in memory only)."""


@dataclass
class CacheStats:
    """Counters since the cache was created."""

    memory_hits: int = 0
    disk_hits: int = 0
    misses: int = 0
    corrupt: int = 0
    writes: int = 0
    write_errors: int = 0


def model_dir_name(model_key: str) -> str:
    """Filesystem-safe folder name for a model key: readable slug + 10 hex of its sha256."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", model_key).strip("-.")[:60] or "model"
    return f"{slug}-{hashlib.sha256(model_key.encode()).hexdigest()[:10]}"


# --- (de)serialisation of Embedding.features -------------------------------------------


def _encode_leaf(value: Any, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """One feature value -> manifest node; arrays go into ``arrays`` under a new name."""
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise _Unsupported("feature dicts must have str keys")
        return {"t": "dict", "v": {k: _encode_leaf(v, arrays) for k, v in value.items()}}
    kind = "array"
    if type(value).__module__.startswith("torch"):
        kind = "torch"
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise _Unsupported("object arrays cannot be cached")
        name = f"a{len(arrays)}"
        stored = value
        if value.dtype.kind == "f" and value.dtype.itemsize > 2:
            finite = value[np.isfinite(value)]
            if finite.size == 0 or float(np.abs(finite).max()) <= FP16_MAX:
                stored = value.astype(np.float16)
        arrays[name] = stored
        return {"t": kind, "k": name, "dtype": value.dtype.str}
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, tuple):
        return {"t": "tuple", "v": [_encode_leaf(v, arrays) for v in value]}
    if isinstance(value, list):
        return {"t": "list", "v": [_encode_leaf(v, arrays) for v in value]}
    if value is None or isinstance(value, bool | int | float | str):
        return {"t": "json", "v": value}
    raise _Unsupported(f"cannot cache a feature of type {type(value).__name__}")


def _decode_leaf(node: dict[str, Any], arrays: Any) -> Any:
    t = node["t"]
    if t == "dict":
        return {k: _decode_leaf(v, arrays) for k, v in node["v"].items()}
    if t in ("array", "torch"):
        arr = np.asarray(arrays[node["k"]]).astype(np.dtype(node["dtype"]), copy=False)
        if t == "torch":
            import torch

            return torch.from_numpy(np.ascontiguousarray(arr))
        return arr
    if t == "tuple":
        return tuple(_decode_leaf(v, arrays) for v in node["v"])
    if t == "list":
        return [_decode_leaf(v, arrays) for v in node["v"]]
    if t == "json":
        return node["v"]
    raise ValueError(f"unknown node type {t!r}")


def pack(sha256: str, emb: Embedding) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Embedding -> (manifest, arrays) as stored on disk. Raises TypeError if unsupported."""
    arrays: dict[str, np.ndarray] = {}
    manifest: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "sha256": sha256,
        "model_key": emb.model_key,
        "image_size": [int(emb.image_size[0]), int(emb.image_size[1])],
        "features": _encode_leaf(dict(emb.features), arrays),
        "has_image": emb.image is not None,
    }
    if emb.image is not None:
        arrays["__image__"] = np.ascontiguousarray(emb.image)
    return manifest, arrays


def unpack(manifest: dict[str, Any], arrays: Any) -> Embedding:
    """(manifest, arrays) -> Embedding with arrays restored to their original dtypes."""
    h, w = manifest["image_size"]
    return Embedding(
        model_key=manifest["model_key"],
        image_size=(int(h), int(w)),
        features=_decode_leaf(manifest["features"], arrays),
        image=np.asarray(arrays["__image__"]) if manifest.get("has_image") else None,
    )


def roundtrip(sha256: str, emb: Embedding) -> Embedding:
    """What a disk read of ``emb`` would return, without touching the disk."""
    manifest, arrays = pack(sha256, emb)
    return unpack(json.loads(json.dumps(manifest)), arrays)


# --- the cache ---------------------------------------------------------------------------


class EmbeddingCache:
    """Disk + memory cache of ``Embedding`` objects for one model key.

    ``cache_dir`` is a folder or an fsspec URL; None keeps only the in-memory LRU of
    ``max_items`` embeddings. ``max_bytes`` (0 = unbounded) limits the stored files of this
    model key, least recently used evicted first. Keys are image sha256 hex strings (or any
    8-128 char ``[0-9A-Za-z_-]`` id).
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike[str] | None,
        model_key: str,
        max_items: int = 32,
        max_bytes: int = 0,
    ):
        if max_items < 0:
            raise ValueError("max_items must be >= 0 (0 disables the in-memory LRU)")
        self.model_key = model_key
        self.max_items = max_items
        self.store: CacheStore | None = None
        if cache_dir:
            base = os.fspath(cache_dir).rstrip("/")
            self.store = CacheStore(
                f"{base}/embeddings/{model_dir_name(model_key)}", max_bytes=max_bytes
            )
        self.root = Path(self.store.root) if self.store is not None and self.store.local else None
        self.stats = CacheStats()
        self._lru: LRU[str, Embedding] = LRU(max_items)
        self._lock = threading.Lock()
        self._inflight: dict[str, threading.Event] = {}

    # paths
    @staticmethod
    def name_for(sha256: str) -> str:
        """The file name of ``sha256`` inside the store (``ab/ab....npz``)."""
        if not _SHA_RE.match(sha256):
            raise ValueError(f"not a valid cache key (expected a sha256 hex string): {sha256!r}")
        return f"{sha256[:2]}/{sha256}.npz"

    def path_for(self, sha256: str) -> Path | None:
        """Where the embedding of ``sha256`` lives on local disk (None without a cache_dir
        or for an object store: see ``store.path``)."""
        name = self.name_for(sha256)
        return None if self.store is None else self.store.local_path(name)

    def contains(self, sha256: str) -> bool:
        """True when the embedding is in memory or a file for it exists (not validated)."""
        if sha256 in self._lru:
            return True
        name = self.name_for(sha256)
        return self.store is not None and self.store.exists(name)

    # memory
    def _remember(self, sha256: str, emb: Embedding) -> None:
        self._lru.put(sha256, emb)

    def _from_memory(self, sha256: str) -> Embedding | None:
        emb = self._lru.get(sha256)
        if emb is not None:
            with self._lock:
                self.stats.memory_hits += 1
        return emb

    # disk
    def _read(self, sha256: str) -> Embedding | None:
        name = self.name_for(sha256)
        if self.store is None:
            return None
        try:
            data = self.store.read(name)
        except OSError as err:  # object store unreachable: compute instead
            log.warning("cannot read embedding cache file %s: %s", name, err)
            return None
        if data is None:
            return None
        path = self.store.path(name)
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                manifest = json.loads(bytes(npz["__manifest__"]).decode("utf-8"))
                if manifest.get("format") != FORMAT_VERSION:
                    raise ValueError(f"format {manifest.get('format')} != {FORMAT_VERSION}")
                if manifest.get("sha256") != sha256 or manifest.get("model_key") != self.model_key:
                    raise ValueError("manifest names another image or model")
                arrays = {k: npz[k] for k in npz.files if k != "__manifest__"}
            emb = unpack(manifest, arrays)
        except (
            OSError,
            ValueError,
            KeyError,
            TypeError,
            AttributeError,
            EOFError,
            zipfile.BadZipFile,
        ) as err:
            with self._lock:
                self.stats.corrupt += 1
            log.warning("corrupt embedding cache file %s (%s); deleting and recomputing", path, err)
            try:
                self.store.delete(name)
            except OSError as rm_err:
                log.warning("cannot delete %s: %s", path, rm_err)
            return None
        with self._lock:
            self.stats.disk_hits += 1
        return emb

    def _write(self, sha256: str, manifest: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        if self.store is None:
            return
        name = self.name_for(sha256)
        try:
            blob = np.frombuffer(json.dumps(manifest).encode("utf-8"), dtype=np.uint8)
            buf = io.BytesIO()
            np.savez(buf, __manifest__=blob, **arrays)
            self.store.write(name, buf.getvalue())
            with self._lock:
                self.stats.writes += 1
        except OSError as err:  # full disk, read-only cache: keep working from memory
            with self._lock:
                self.stats.write_errors += 1
            log.warning("cannot write embedding cache file %s: %s", self.store.path(name), err)

    # public API
    def get(self, sha256: str) -> Embedding | None:
        """The cached embedding (memory, then disk), or None."""
        emb = self._from_memory(sha256)
        if emb is not None:
            return emb
        emb = self._read(sha256)
        if emb is not None:
            self._remember(sha256, emb)
        return emb

    def put(self, sha256: str, emb: Embedding) -> Embedding:
        """Store ``emb``; returns the fp16-round-tripped embedding callers should use.

        Features the disk format cannot hold (arbitrary objects) are kept in memory only.
        """
        if emb.model_key != self.model_key:
            raise ValueError(
                f"embedding of model {emb.model_key!r} put in the cache of {self.model_key!r}"
            )
        try:
            manifest, arrays = pack(sha256, emb)
        except _Unsupported as err:
            log.warning("embedding of %s kept in memory only: %s", sha256[:12], err)
            self._remember(sha256, emb)
            return emb
        stored = unpack(json.loads(json.dumps(manifest)), arrays)
        self._write(sha256, manifest, arrays)
        self._remember(sha256, stored)
        return stored

    def get_or_compute(self, sha256: str, compute: Callable[[], Embedding]) -> Embedding:
        """The cached embedding, else ``compute()`` once (other threads asking wait for it)."""
        while True:
            emb = self.get(sha256)
            if emb is not None:
                return emb
            with self._lock:
                event = self._inflight.get(sha256)
                owner = event is None
                if owner:
                    event = threading.Event()
                    self._inflight[sha256] = event
                    self.stats.misses += 1
            if not owner:
                event.wait()
                continue  # the owner stored it (or failed: then we compute ourselves)
            try:
                return self.put(sha256, compute())
            finally:
                with self._lock:
                    self._inflight.pop(sha256, None)
                event.set()

    def clear_memory(self) -> None:
        """Forget the in-memory LRU (disk files stay)."""
        self._lru.clear()
