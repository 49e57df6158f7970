"""CacheStore: whole files on a local folder or an fsspec URL, least recently used evicted
past the size limit, tolerant of files vanishing under it; the embedding cache on top."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from engine.segment.cache_store import CacheStore
from engine.segment.embedding_cache import EmbeddingCache
from engine.segment.protocol import Embedding

KB = b"x" * 1000


def _memory_url() -> str:
    return f"memory://cache-{uuid.uuid4().hex[:8]}/m"


@pytest.fixture(params=["local", "memory"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return str(tmp_path / "store") if request.param == "local" else _memory_url()


def _names(store: CacheStore) -> set[str]:
    return {p.rsplit("/", 1)[-1] for p, _, _ in store.files()}


def test_read_write_delete(location: str) -> None:
    store = CacheStore(location)
    assert store.read("ab/a.npz") is None and not store.exists("ab/a.npz")
    store.write("ab/a.npz", b"hello")
    assert store.read("ab/a.npz") == b"hello" and store.exists("ab/a.npz")
    store.write("ab/a.npz", b"again")  # whole-file replace
    assert store.read("ab/a.npz") == b"again"
    store.delete("ab/a.npz")
    store.delete("ab/a.npz")  # absent is fine
    assert store.read("ab/a.npz") is None
    assert store.total_bytes() == 0
    assert (store.local_path("x") is not None) == (not location.startswith("memory://"))


def test_least_recently_read_is_evicted_first(location: str) -> None:
    store = CacheStore(location, max_bytes=3500, rescan_every=1)
    for name in ("a", "b", "c"):
        store.write(f"{name}.npz", KB)
        time.sleep(0.02)  # distinct modification times on every filesystem
    if store.local:  # make the order explicit: a oldest, then b, then c
        now = time.time()
        for age, name in ((100, "a"), (90, "b"), (80, "c")):
            path = store.local_path(f"{name}.npz")
            os.utime(path, (now - age, now - age))
    assert store.read("a.npz") == KB  # a is now the most recently used
    store.write("d.npz", KB)  # 4000 > 3500: evict down to <= 3150
    assert _names(store) == {"a.npz", "c.npz", "d.npz"}
    assert store.evicted == 1 and store.total_bytes() == 3000
    assert store.evict() == 0  # under the limit: nothing to do


def test_unbounded_store_never_evicts(location: str) -> None:
    store = CacheStore(location, max_bytes=0)
    for i in range(5):
        store.write(f"{i}.npz", KB)
    assert store.total_bytes() == 5000 and store.evicted == 0
    with pytest.raises(ValueError, match="max_bytes"):
        CacheStore(location, max_bytes=-1)


def test_eviction_tolerates_files_vanishing(location: str) -> None:
    """Another process evicts (or deletes) files between our listing and our delete."""
    store = CacheStore(location, max_bytes=0)
    for i in range(3):
        store.write(f"{i}.npz", KB)
        time.sleep(0.02)
    store.max_bytes = 2500
    stale = list(store.files())
    assert len(stale) == 3
    store.delete("0.npz")  # gone before our eviction reaches it
    store.files = lambda: iter(stale)  # type: ignore[method-assign]
    freed = store.evict()  # 3000 listed > 2500: drops 0 (already gone) then stops at 2000
    assert freed == 1000
    del store.files
    assert _names(store) == {"1.npz", "2.npz"}


def test_two_processes_sharing_a_folder_stay_bounded(tmp_path: Path) -> None:
    """Each store counts the other's writes when it re-measures (every rescan_every writes)."""
    a = CacheStore(tmp_path / "shared", max_bytes=5000, rescan_every=2)
    b = CacheStore(tmp_path / "shared", max_bytes=5000, rescan_every=2)
    for i in range(12):
        (a if i % 2 else b).write(f"{i}.npz", KB)
    assert a.total_bytes() <= 5000
    assert "11.npz" in _names(a)  # the newest survive


def _embedding(seed: int) -> Embedding:
    rng = np.random.default_rng(seed)
    feats = {"image_embeddings": rng.standard_normal((1, 16, 16, 16)).astype(np.float32)}
    return Embedding("fake:v1", (32, 32), feats)


def _sha(i: int) -> str:
    return hashlib.sha256(f"image-{i}".encode()).hexdigest()


def test_embedding_cache_on_memory_fs_is_shared_and_bounded() -> None:
    url = _memory_url()
    one = EmbeddingCache(url, "fake:v1", max_items=0)
    stored = one.put(_sha(0), _embedding(0))
    other = EmbeddingCache(url, "fake:v1", max_items=0)  # another process, same bucket
    got = other.get(_sha(0))
    assert got is not None and other.stats.disk_hits == 1
    np.testing.assert_array_equal(
        got.features["image_embeddings"], stored.features["image_embeddings"]
    )
    assert other.path_for(_sha(0)) is None and other.contains(_sha(0))
    size = other.store.total_bytes()
    bounded = EmbeddingCache(url, "fake:v1", max_items=0, max_bytes=int(size * 3.5))
    for i in range(1, 8):
        bounded.put(_sha(i), _embedding(i))
    assert bounded.store.total_bytes() <= size * 3.5
    assert bounded.contains(_sha(7)) and not bounded.contains(_sha(1))
    assert bounded.get(_sha(1)) is None  # evicted: a miss, recomputed by get_or_compute


def test_embedding_cache_local_limit_keeps_recent(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, "fake:v1", max_items=0, max_bytes=1)
    cache.put(_sha(0), _embedding(0))
    cache.put(_sha(1), _embedding(1))  # each file alone is over 1 byte: evicted down to none
    assert cache.store.total_bytes() == 0 and cache.store.evicted == 2
    roomy = EmbeddingCache(tmp_path, "fake:v1", max_items=0, max_bytes=10**9)
    roomy.put(_sha(2), _embedding(2))
    assert roomy.path_for(_sha(2)).exists()
