"""Embedding cache: fp16 disk files, exact restore of layout/dtypes, LRU, corruption, threads."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.segment.embedding_cache import EmbeddingCache, model_dir_name
from engine.segment.protocol import Embedding

KEY = "fake:v1/weights=abc"


def sha(i: int) -> str:
    return hashlib.sha256(f"image-{i}".encode()).hexdigest()


def make_embedding(seed: int = 0, key: str = KEY) -> Embedding:
    rng = np.random.default_rng(seed)
    return Embedding(
        model_key=key,
        image_size=(30, 40),
        features={
            "image_embeddings": rng.standard_normal((1, 8, 4, 4)).astype(np.float32),
            "labels": rng.integers(0, 50, size=(30, 40)).astype(np.int32),
            "edges": rng.random((30, 40)),  # float64
            "huge": np.array([1e6, -3e7]),  # would overflow fp16: kept exactly
            "n_segments": 50,
            "scale": 0.5,
            "name": "slic",
            "size": (30, 40),
            "nested": {"mask": rng.random((30, 40)) > 0.5, "ids": [1, 2, 3]},
            "tensor": torch.arange(6, dtype=torch.float32).reshape(2, 3) / 7,
        },
        image=rng.integers(0, 255, size=(30, 40, 3), dtype=np.uint8),
    )


def test_roundtrip_restores_layout_dtypes_and_values(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, KEY, max_items=4)
    emb = make_embedding()
    stored = cache.put(sha(0), emb)
    fresh = EmbeddingCache(tmp_path, KEY).get(sha(0))  # a new process reads the file
    assert fresh is not None
    for got in (stored, fresh):
        f = got.features
        assert got.model_key == KEY and got.image_size == (30, 40)
        assert f["image_embeddings"].dtype == np.float32
        np.testing.assert_allclose(
            f["image_embeddings"], emb.features["image_embeddings"], atol=4e-3
        )
        assert f["edges"].dtype == np.float64
        np.testing.assert_allclose(f["edges"], emb.features["edges"], atol=1e-3)
        np.testing.assert_array_equal(f["huge"], [1e6, -3e7])
        np.testing.assert_array_equal(f["labels"], emb.features["labels"])
        assert f["labels"].dtype == np.int32
        np.testing.assert_array_equal(f["nested"]["mask"], emb.features["nested"]["mask"])
        assert f["nested"]["ids"] == [1, 2, 3]
        assert (f["n_segments"], f["scale"], f["name"], f["size"]) == (50, 0.5, "slic", (30, 40))
        assert isinstance(f["tensor"], torch.Tensor) and f["tensor"].dtype == torch.float32
        np.testing.assert_array_equal(got.image, emb.image)
    # memory, disk and fresh compute give the same numbers (the fp16 round trip is applied once)
    np.testing.assert_array_equal(
        stored.features["image_embeddings"], fresh.features["image_embeddings"]
    )
    assert not np.array_equal(
        stored.features["image_embeddings"], emb.features["image_embeddings"]
    ), "float arrays should be stored as fp16"


def test_layout_is_atomic_and_fp16_on_disk(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, KEY)
    cache.put(sha(1), make_embedding())
    path = cache.path_for(sha(1))
    assert path == tmp_path / "embeddings" / model_dir_name(KEY) / sha(1)[:2] / f"{sha(1)}.npz"
    assert path.is_file()
    assert list(path.parent.iterdir()) == [path], "no temp files left behind"
    with np.load(path) as npz:
        dtypes = {npz[k].dtype for k in npz.files if k != "__manifest__"}
    assert np.dtype(np.float16) in dtypes and np.dtype(np.float32) not in dtypes
    assert "/" not in model_dir_name(KEY) and ":" not in model_dir_name(KEY)
    assert model_dir_name("a:b") != model_dir_name("a/b")


def test_lru_evicts_to_disk(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, KEY, max_items=2)
    for i in range(3):
        cache.put(sha(i), make_embedding(i))
    assert cache.stats.writes == 3
    assert cache.get(sha(2)) is not None and cache.stats.memory_hits == 1
    got = cache.get(sha(0))  # evicted from memory, read from disk
    assert got is not None and cache.stats.disk_hits == 1
    assert cache.get(sha(0)) is got and cache.stats.memory_hits == 2
    assert cache.get(sha(9)) is None
    assert cache.contains(sha(1)) and not cache.contains(sha(9))


def test_memory_only_cache(tmp_path: Path) -> None:
    cache = EmbeddingCache(None, KEY, max_items=1)
    cache.put(sha(0), make_embedding())
    assert cache.get(sha(0)) is not None
    cache.put(sha(1), make_embedding(1))
    assert cache.get(sha(0)) is None
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "damage",
    ["garbage", "truncated", "empty", "other_image"],
)
def test_corrupt_file_is_deleted_and_recomputed(tmp_path: Path, damage: str) -> None:
    cache = EmbeddingCache(tmp_path, KEY, max_items=0)
    cache.put(sha(0), make_embedding(0))
    path = cache.path_for(sha(0))
    data = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"not a zip file at all" * 10)
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # a valid file under the wrong name
        cache.put(sha(1), make_embedding(1))
        path.write_bytes(cache.path_for(sha(1)).read_bytes())
    assert cache.get(sha(0)) is None
    assert cache.stats.corrupt == 1
    assert not path.exists()
    calls = []

    def compute() -> Embedding:
        calls.append(1)
        return make_embedding(0)

    got = cache.get_or_compute(sha(0), compute)
    assert calls == [1] and path.is_file()
    assert got.features["n_segments"] == 50
    assert cache.get_or_compute(sha(0), compute) is not None and calls == [1]


def test_concurrent_get_or_compute_computes_once(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, KEY)
    calls: list[int] = []

    def compute() -> Embedding:
        calls.append(1)
        time.sleep(0.2)
        return make_embedding(3)

    results: list[Embedding] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get_or_compute(sha(3), compute)))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len(results) == 8
    for r in results:
        np.testing.assert_array_equal(r.features["labels"], results[0].features["labels"])


def test_failed_compute_releases_waiters(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, KEY)

    def boom() -> Embedding:
        raise RuntimeError("encoder failed")

    with pytest.raises(RuntimeError, match="encoder failed"):
        cache.get_or_compute(sha(4), boom)
    assert cache.get_or_compute(sha(4), make_embedding) is not None


def test_unwritable_cache_still_returns(tmp_path: Path) -> None:
    (tmp_path / "embeddings").write_text("a file where a folder should be")
    cache = EmbeddingCache(tmp_path, KEY)
    emb = cache.get_or_compute(sha(5), make_embedding)
    assert emb.features["n_segments"] == 50
    assert cache.stats.write_errors == 1
    assert cache.get(sha(5)) is emb  # still served from memory


def test_unsupported_features_stay_in_memory(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, KEY)
    emb = Embedding(model_key=KEY, image_size=(2, 2), features={"obj": object()})
    assert cache.put(sha(6), emb) is emb
    assert not cache.path_for(sha(6)).exists()
    assert cache.get(sha(6)) is emb


def test_bad_input_is_refused(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, KEY)
    with pytest.raises(ValueError, match="sha256"):
        cache.get("../../etc/passwd")
    with pytest.raises(ValueError, match="model"):
        cache.put(sha(7), make_embedding(key="another-model"))
    with pytest.raises(ValueError, match="max_items"):
        EmbeddingCache(tmp_path, KEY, max_items=-1)
