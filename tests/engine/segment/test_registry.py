"""Backend factory, the cached segmenter wrapper and the background precompute worker."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage

from engine.segment import registry as backends
from engine.segment.precompute import Precomputer, attach_precompute, schedule
from engine.segment.protocol import DecodeResult, Embedding, Proposal, Segmenter, decode_as_rle
from engine.segment.registry import (
    BackendError,
    CachedSegmenter,
    build_segmenter,
    image_key,
    with_cache,
)


class CountingSegmenter:
    """Test double at the model boundary: counts encoder calls; optionally slow/blocked."""

    name = "counting"
    model_key = "counting:v1"

    def __init__(self, gate: threading.Event | None = None):
        self.embed_calls = 0
        self.gate = gate
        self.lock = threading.Lock()

    def embed(self, image: np.ndarray) -> Embedding:
        if self.gate is not None:
            self.gate.wait(10)
        with self.lock:
            self.embed_calls += 1
        return Embedding(
            self.model_key, image.shape[:2], {"mean": image.mean(axis=(0, 1)).astype(np.float32)}
        )

    def decode(self, embedding: Embedding, points: Any = None, labels: Any = None,
               box: Any = None, mask_input: Any = None) -> DecodeResult:  # fmt: skip
        h, w = embedding.image_size
        return DecodeResult(mask=np.ones((h, w), bool), score=float(embedding.features["mean"][0]))

    def decode_rle(self, embedding: Embedding, points: Any = None, labels: Any = None,
                   box: Any = None, mask_input: Any = None) -> Any:  # fmt: skip
        return decode_as_rle(self, embedding, points, labels, box, mask_input)

    def propose(self, image: np.ndarray, embedding: Embedding | None = None) -> list[Proposal]:
        return []


def write_png(path: Path, seed: int, size: tuple[int, int] = (24, 32)) -> str:
    rng = np.random.default_rng(seed)
    PILImage.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def fake_backend(monkeypatch: pytest.MonkeyPatch) -> list[CountingSegmenter]:
    built: list[CountingSegmenter] = []

    def build(**_: Any) -> CountingSegmenter:
        built.append(CountingSegmenter())
        return built[-1]

    monkeypatch.setitem(backends.BACKENDS, "counting", build)
    return built


# --- factory --------------------------------------------------------------------------------


def test_registry_and_clear_errors(tmp_path: Path) -> None:
    assert set(backends.BACKENDS) >= {"classical", "sam"}
    with pytest.raises(BackendError, match="classical, sam"):
        build_segmenter("nope")
    with pytest.raises(BackendError, match="DATAENGINE_SAM_CHECKPOINT.*--backend classical"):
        build_segmenter("sam", model_type="vit_t", checkpoint=None)
    with pytest.raises(BackendError, match="not found"):
        build_segmenter("sam", checkpoint=tmp_path / "missing.pth")


def test_cache_dir_wraps_and_caches_across_processes(
    fake_backend: list[CountingSegmenter], tmp_path: Path
) -> None:
    seg = build_segmenter("counting", cache_dir=tmp_path, cache_items=4)
    assert isinstance(seg, CachedSegmenter) and isinstance(seg, Segmenter)
    assert (seg.name, seg.model_key) == ("counting", "counting:v1")
    image = np.full((24, 32, 3), 7, np.uint8)
    e1 = seg.embed(image)
    e2 = seg.embed(image.copy())
    assert fake_backend[0].embed_calls == 1 and e1 is e2
    seg.embed(image[:, :16])  # other pixels, other key
    assert fake_backend[0].embed_calls == 2
    assert image_key(image) != image_key(image[:, :16]) and image_key(image).startswith("px")
    assert seg.decode(e1, np.array([[1.0, 1.0]]), np.array([1])).mask.shape == (24, 32)
    assert seg.propose(image, e1) == []
    # by file sha256: the loader is called only on a miss, and a new process reads the disk
    loads: list[int] = []

    def load() -> np.ndarray:
        loads.append(1)
        return image

    sha = "ab" * 32
    seg.embed_cached(sha, load)
    seg.embed_cached(sha, load)
    assert loads == [1] and seg.is_cached(sha)
    again = build_segmenter("counting", cache_dir=tmp_path)
    again.embed_cached(sha, load)
    assert loads == [1] and fake_backend[1].embed_calls == 0
    assert build_segmenter("counting") is fake_backend[2]  # no cache_dir: not wrapped
    assert with_cache(seg, tmp_path) is seg


def test_classical_backend_through_the_cache(tmp_path: Path, shared_data: Path) -> None:
    from engine.imageio import load_rgb
    from engine.masks import mask_iou

    image = load_rgb(shared_data / "samples" / "dog.jpg")[::4, ::4].copy()
    seg = build_segmenter("classical", cache_dir=tmp_path)
    assert seg.name == "classical" and isinstance(seg, CachedSegmenter)
    fresh = seg.inner.embed(image)
    cached = seg.embed_cached("cd" * 32, lambda: image)
    from_disk = build_segmenter("classical", cache_dir=tmp_path).embed_cached(
        "cd" * 32, lambda: pytest.fail("should come from the disk cache")
    )
    h, w = image.shape[:2]
    points, labels = np.array([[w / 2, h / 2]]), np.array([1])
    a = seg.decode(fresh, points, labels).mask
    b = seg.decode(cached, points, labels).mask
    c = seg.decode(from_disk, points, labels).mask
    np.testing.assert_array_equal(b, c)
    assert mask_iou(a, b) > 0.95, "fp16 caching must not change the classical result much"


def test_sam_backend_through_the_cache(tmp_path: Path) -> None:
    """Random vit_t weights saved to a .pth and loaded the way a user's checkpoint is."""
    import torch

    from engine.segment.sam.models import file_sha256, random_sam

    ckpt = tmp_path / "mobile_sam_random.pth"
    torch.save(random_sam("vit_t", seed=1).state_dict(), ckpt)
    digest = file_sha256(ckpt)
    with pytest.raises(BackendError, match="sam"):
        build_segmenter("sam", model_type="vit_t", checkpoint=ckpt, sha256="0" * 64)
    with pytest.raises(BackendError, match="vit_q"):
        build_segmenter("sam", model_type="vit_q", checkpoint=ckpt)
    seg = build_segmenter(
        "sam", model_type="vit_t", checkpoint=ckpt, sha256=digest, cache_dir=tmp_path
    )
    assert isinstance(seg, CachedSegmenter) and seg.model_key.startswith("sam-vit_t-")
    # pre-fill keeps less confident proposals too (calibration learns from rejects)
    assert seg.inner.generator.p.pred_iou_thresh == 0.5
    assert seg.inner.generator.p.stability_score_thresh == 0.5
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    emb = seg.embed_cached("ef" * 32, lambda: image)
    assert emb.features["image_embeddings"].shape == (1, 256, 64, 64)
    assert emb.features["image_embeddings"].dtype == np.float32
    path = seg.cache.path_for("ef" * 32)
    assert path.is_file() and path.stat().st_size < 2.2e6  # fp16: 2 MiB, not 4
    seg.cache.clear_memory()
    from_disk = seg.embed_cached("ef" * 32, lambda: pytest.fail("should come from disk"))
    points, labels = np.array([[20.0, 30.0]]), np.array([1])
    a = seg.decode(emb, points, labels)
    b = seg.decode(from_disk, points, labels)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert a.score == pytest.approx(b.score)


# --- precompute -----------------------------------------------------------------------------


def test_precompute_embeds_in_background_deduplicated(tmp_path: Path) -> None:
    gate = threading.Event()
    inner = CountingSegmenter(gate)
    seg = with_cache(inner, tmp_path)
    pre = Precomputer(seg, max_pending=3).start()
    try:
        shas = [write_png(tmp_path / f"{i}.png", i) for i in range(6)]
        assert pre.submit(shas[0], tmp_path / "0.png")
        while pre.status()["running"] != shas[0]:  # the worker takes it and waits in the encoder
            assert pre.status()["alive"], "the precompute worker died"
            time.sleep(0.01)
        assert pre.status()["running"] == shas[0]
        assert not pre.submit(shas[0], tmp_path / "0.png")  # pending/running: not twice
        assert pre.submit(shas[1], tmp_path / "1.png")
        assert not pre.submit(shas[1], tmp_path / "1.png")
        for i in (2, 3, 4):  # bounded: the oldest pending item is dropped
            pre.submit(shas[i], tmp_path / f"{i}.png")
        assert pre.status()["pending"] == 3 and pre.status()["dropped"] == 1
        gate.set()
        assert pre.wait_idle(20)
        st = pre.status()
        assert st["failed"] == 0 and st["done"] == inner.embed_calls == 4
        assert st["alive"] and st["mean_seconds"] is not None
        for i in (0, 2, 3, 4):
            assert seg.is_cached(shas[i])
        assert not pre.submit(shas[2], tmp_path / "2.png")  # already cached
        assert pre.status()["cached"] == 1
        # the annotator's request now finds it: no encoder call
        seg.embed_cached(shas[3], lambda: pytest.fail("should be precomputed"))
        # bad files are counted, never kill the worker
        (tmp_path / "bad.png").write_bytes(b"not a png")
        assert pre.submit("ee" * 32, tmp_path / "bad.png")
        assert pre.submit("ff" * 32, tmp_path / "missing.png")
        assert pre.submit_many([(shas[5], tmp_path / "5.png"), (None, "x")]) == 1
        assert pre.wait_idle(20)
        st = pre.status()
        assert st["failed"] == 2 and st["last_error"]
        assert st["done"] == 5 and st["alive"]
    finally:
        gate.set()
        pre.stop()
    assert not pre.status()["alive"]
    with pytest.raises(TypeError, match="cached segmenter"):
        Precomputer(CountingSegmenter())


def test_attach_precompute_runs_in_the_app_lifespan(sqlite_url: str, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from annotator_ui.app import create_app
    from engine.settings import Settings

    settings = Settings(database_url=sqlite_url, data_dir=tmp_path / "var")
    seg = with_cache(CountingSegmenter(), tmp_path / "cache")
    app = create_app(settings, segmenter=seg)
    attach_precompute(app)
    sha = write_png(tmp_path / "a.png", 1)
    with TestClient(app):
        pre = app.state.precomputer
        assert pre is not None and pre.status()["alive"]
        assert schedule(app, [(sha, tmp_path / "a.png")]) == 1
        assert pre.wait_idle(20) and seg.is_cached(sha)
    assert not pre.status()["alive"], "stopped at shutdown"
    # an uncached segmenter: precompute is off, schedule is a no-op
    plain = SimpleNamespace(state=SimpleNamespace(startup_hooks=[], segmenter=CountingSegmenter()))
    attach_precompute(plain)
    assert plain.state.startup_hooks[0](plain) is None
    assert plain.state.precomputer is None and schedule(plain, [(sha, "a.png")]) == 0
