"""The sam backend's production paths with seeded random vit_t weights through the user's loader.

* ``propose`` end to end: a checkpoint file written in tmp, loaded through
  ``build_segmenter("sam", checkpoint=...)``, ``prefill_project`` stores its proposals.
* a fix starts from the proposal: ``mask_to_input`` gives SAM's ``mask_input`` frame, and the
  decode route passes it to the model for a fix of a stored mask (both databases).
* device-agnostic generator: the CUDA branch selected by test doubles on CPU, and the real
  generator on CUDA compared with the CPU result when a GPU is present.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from sqlalchemy import select

from db.models import Image, Mask, ModelVersion, Prefill
from db.session import make_engine, make_session_factory, transaction
from engine.flywheel.prefill import prefill_project
from engine.ingest import ingest
from engine.masks import decode_rle, mask_iou
from engine.segment.protocol import decode_as_rle
from engine.segment.registry import SAM_PROPOSAL_PARAMS, CachedSegmenter, build_segmenter
from engine.segment.sam.amg import FastAutomaticMaskGenerator
from engine.segment.sam.models import random_sam, resolve_device
from engine.segment.sam.segmenter import MASK_INPUT_LOGIT, SamSegmenter
from tests.factories import make_mask
from tests.webapp import Web, start_web

H, W = 180, 240
OBJECT = (50, 130, 60, 170)  # y0, y1, x0, x1 of the yellow rectangle


def _image() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = np.zeros((H, W, 3), dtype=np.uint8)
    img[:] = (40, 90, 160)
    y0, y1, x0, x1 = OBJECT
    img[y0:y1, x0:x1] = (220, 200, 40)
    img += rng.integers(0, 20, img.shape, dtype=np.uint8)
    return img


def _object_mask() -> np.ndarray:
    y0, y1, x0, x1 = OBJECT
    mask = np.zeros((H, W), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vit_t with seeded random weights whose IoU head clears the pre-fill thresholds."""
    torch.set_num_threads(2)
    path = tmp_path_factory.mktemp("ckpt") / "vit_t_random.pth"
    torch.save(random_sam("vit_t", seed=3, iou_offset=0.5).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def sam(checkpoint: Path) -> CachedSegmenter:
    """The segmenter as the app and the CLI build it (registry, file on disk, embedding cache),
    with an 8x8 point grid for ``propose`` instead of 32x32 to keep the suite fast."""
    seg = build_segmenter("sam", checkpoint=checkpoint, cache_dir=checkpoint.parent / "cache")
    assert isinstance(seg, CachedSegmenter) and isinstance(seg.inner, SamSegmenter)
    inner = seg.inner
    inner.generator = FastAutomaticMaskGenerator(
        inner.model, points_per_side=8, **SAM_PROPOSAL_PARAMS
    )
    return seg


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photos" / "object.png"
    path.parent.mkdir()
    PILImage.fromarray(_image()).save(path)
    return path


# --- propose into pre-fill storage -----------------------------------------------------------


def test_propose_end_to_end_into_prefill(db_url: str, sam: CachedSegmenter, photo: Path) -> None:
    engine = make_engine(db_url)
    try:
        factory = make_session_factory(engine)
        summary = ingest(factory, project="sam-prefill", paths=[photo.parent])
        assert summary.added == 1
        with factory() as s:
            project_id = s.scalar(select(Image.project_id))
        result = prefill_project(
            factory, project_id=project_id, segmenter=sam, model_version_id=None
        )
        assert (result.done, result.failed) == (1, 0)
        expected = sam.propose(_image(), sam.embed(_image()))
        assert len(expected) > 0, "the random weights give no proposal: change the seed"
        assert result.proposals == len(expected)
        with factory() as s:
            pf = s.scalars(select(Prefill)).one()
            assert (pf.status, pf.n_proposals) == ("done", len(expected))
            rows = s.scalars(select(Mask).order_by(Mask.id)).all()
            assert len(rows) == len(expected)
            assert {m.source for m in rows} == {"model"}
            mv = s.get(ModelVersion, rows[0].model_version_id)
            assert mv.backend == "sam" and mv.params["model_key"] == sam.model_key
            stored = sorted((decode_rle(m.rle) for m in rows), key=lambda m: int(m.sum()))
            # the job proposes from the fp16-cached embedding: the same masks up to rounding
            for got, want in zip(
                stored, sorted((p.mask for p in expected), key=lambda m: int(m.sum())), strict=True
            ):
                assert got.shape == (H, W) and mask_iou(got, want) >= 0.98
    finally:
        engine.dispose()


# --- a fix starts from the proposal's mask --------------------------------------------------


def test_mask_to_input_is_sams_low_res_frame(sam: CachedSegmenter) -> None:
    emb = sam.embed(_image())
    logits = sam.mask_to_input(_object_mask(), emb)
    assert logits.shape == (1, 256, 256) and logits.dtype == np.float32
    # 240 px wide -> 1024: scale 1024/240, then /4 -> 256 frame; padding below row 192
    scale = 256 / max(H, W)
    y0, y1, x0, x1 = (round(v * scale) for v in OBJECT)
    inside = logits[0, y0 + 1 : y1 - 1, x0 + 1 : x1 - 1]
    assert np.all(inside == pytest.approx(MASK_INPUT_LOGIT))
    outside = logits[0].copy()
    outside[y0 - 1 : y1 + 1, x0 - 1 : x1 + 1] = -MASK_INPUT_LOGIT
    assert np.all(outside == pytest.approx(-MASK_INPUT_LOGIT))
    assert np.all(logits[0, round(H * scale) + 1 :, :] == -MASK_INPUT_LOGIT)  # padding
    with pytest.raises(ValueError, match="must be the image's 180x240"):
        sam.mask_to_input(np.zeros((10, 10), dtype=bool), emb)


def test_prior_mask_refines_the_decode(sam: CachedSegmenter) -> None:
    """With the proposal as mask input, SAM's answer moves towards the proposal."""
    emb = sam.embed(_image())
    proposal = _object_mask()
    prior = sam.mask_to_input(proposal, emb)
    for click in ([100, 90], [70, 60], [160, 120]):
        pts, lab = np.array([click], dtype=float), np.array([1])
        fresh = sam.decode(emb, pts, lab)
        fixed = sam.decode(emb, pts, lab, mask_input=prior)
        assert (fresh.mask != fixed.mask).sum() > 1000, click
        assert mask_iou(fixed.mask, proposal) > mask_iou(fresh.mask, proposal), click


class Spy:
    """Records the ``mask_input`` every decode receives (forwards to the real segmenter)."""

    def __init__(self, inner: CachedSegmenter):
        self.inner = inner
        self.name = inner.name
        self.model_key = inner.model_key
        self.mask_inputs: list[np.ndarray | None] = []

    def __getattr__(self, item: str) -> Any:
        if item == "inner":
            raise AttributeError(item)
        return getattr(self.inner, item)

    def decode(self, embedding: Any, points: Any, labels: Any, box: Any, mask_input: Any) -> Any:
        self.mask_inputs.append(None if mask_input is None else np.array(mask_input))
        return self.inner.decode(embedding, points, labels, box, mask_input)

    def decode_rle(
        self, embedding: Any, points: Any, labels: Any, box: Any, mask_input: Any
    ) -> Any:
        return decode_as_rle(self, embedding, points, labels, box, mask_input)


@pytest.fixture
def fixing(db_url: str, tmp_path: Path, sam: CachedSegmenter, photo: Path) -> Iterator[Any]:
    spy = Spy(sam)
    with start_web(db_url, tmp_path / "var", segmenter=spy) as web:
        summary = ingest(web.factory, project="fix", paths=[photo.parent])
        with transaction(web.factory) as s:
            image = s.get(Image, summary.image_ids[0])
            proposal = make_mask(s, image=image, mask=_object_mask(), confident=True)
            ids = (image.id, image.project_id, proposal.id)
        r = web.client.post(
            "/api/tasks/next", json={"project_id": ids[1]}, headers=web.as_("annotator")
        )
        assert r.status_code == 200, r.text
        yield web, spy, ids


def test_first_click_of_a_fix_starts_from_the_proposal(fixing: tuple[Web, Spy, Any]) -> None:
    web, spy, (image_id, _, mask_id) = fixing
    url, ann = f"/api/images/{image_id}/decode", web.as_("annotator")
    click = {"points": [[100, 90]], "labels": [1]}
    fresh = web.client.post(url, json=click, headers=ann)
    fix = web.client.post(url, json={**click, "mask_id": mask_id}, headers=ann)
    assert fresh.status_code == 200 and fix.status_code == 200, (fresh.text, fix.text)
    # what the model received: nothing for a new mask, the proposal's logits for a fix
    assert len(spy.mask_inputs) == 2 and spy.mask_inputs[0] is None
    emb = spy.inner.embed(_image())
    np.testing.assert_allclose(spy.mask_inputs[1], spy.inner.mask_to_input(_object_mask(), emb))
    proposal = _object_mask()
    got_fresh, got_fix = decode_rle(fresh.json()["rle"]), decode_rle(fix.json()["rle"])
    assert (got_fresh != got_fix).sum() > 1000
    assert mask_iou(got_fix, proposal) > mask_iou(got_fresh, proposal)
    # a later click refines the previous answer (mask_input_id), not the stored mask again
    again = {"points": [[100, 90], [20, 20]], "labels": [1, 0], "mask_id": mask_id}
    again["mask_input_id"] = fix.json()["mask_input_id"]
    assert web.client.post(url, json=again, headers=ann).status_code == 200
    assert spy.mask_inputs[2].shape == (1, 256, 256)
    assert not np.allclose(spy.mask_inputs[2], spy.mask_inputs[1])


# --- device-agnostic generator ---------------------------------------------------------------


def test_auto_device_picks_cuda_only_when_torch_sees_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cpu") == "cpu" and resolve_device("cuda:1") == "cuda:1"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    seg = SamSegmenter(model_type="vit_t", model=random_sam("vit_t"), device="auto")
    assert seg.device.type == "cpu" and next(seg.model.parameters()).device.type == "cpu"


class DeviceTensor(torch.Tensor):
    """A test double for a CUDA tensor on a CPU-only machine: reports ``cuda:0`` and, like a
    real device tensor, refuses ``.numpy()`` until moved with ``.cpu()``."""

    @property
    def device(self) -> torch.device:  # type: ignore[override]
        return torch.device("cuda", 0)

    def numpy(self, *args: Any, **kwargs: Any) -> np.ndarray:  # type: ignore[override]
        raise TypeError("can't convert cuda:0 device type tensor to numpy; use Tensor.cpu()")

    def cpu(self, *args: Any, **kwargs: Any) -> torch.Tensor:  # type: ignore[override]
        return self.as_subclass(torch.Tensor).clone()


def _records_equal(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    assert len(a) == len(b) > 0
    for ra, rb in zip(a, b, strict=True):
        np.testing.assert_array_equal(ra["segmentation"], rb["segmentation"])
        assert ra["predicted_iou"] == pytest.approx(rb["predicted_iou"], abs=1e-6)
        assert ra["stability_score"] == pytest.approx(rb["stability_score"], abs=1e-6)
        assert ra["bbox"] == rb["bbox"] and ra["point_coords"] == rb["point_coords"]


def test_generator_moves_device_outputs_to_the_host(
    sam: CachedSegmenter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The decoder's outputs as device tensors (test double): the generator copies them to the
    host before any numpy use, and its records equal the plain CPU run's."""
    gen = FastAutomaticMaskGenerator(
        sam.inner.model, points_per_side=8, workers=1, **SAM_PROPOSAL_PARAMS
    )
    image = _image()
    emb = gen.embed(image)
    plain = gen.generate(image, embedding=emb)
    wrapped: list[str] = []
    for name in ("iou", "masks_lowrank"):
        real = getattr(gen.decoder, name)

        def on_device(*args: Any, _real: Any = real, _name: str = name, **kw: Any) -> Any:
            wrapped.append(_name)
            return _real(*args, **kw).as_subclass(DeviceTensor)

        monkeypatch.setattr(gen.decoder, name, on_device)
    _records_equal(gen.generate(image, embedding=emb), plain)
    assert {"iou", "masks_lowrank"} <= set(wrapped)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none here)")
def test_generator_on_cuda_matches_cpu(checkpoint: Path) -> None:
    image = _image()
    results = {}
    for device in ("cpu", "cuda"):
        seg = build_segmenter("sam", checkpoint=checkpoint, device=device)
        assert next(seg.model.parameters()).device.type == device
        seg.generator = FastAutomaticMaskGenerator(
            seg.model, points_per_side=8, **SAM_PROPOSAL_PARAMS
        )
        results[device] = seg.propose(image, seg.embed(image))
    cpu, gpu = results["cpu"], results["cuda"]
    assert len(cpu) > 0 and abs(len(cpu) - len(gpu)) <= max(1, len(cpu) // 10)
    for p in gpu:  # TF32/cuDNN differ slightly from CPU float32: match by mask IoU
        best = max(mask_iou(p.mask, q.mask) for q in cpu)
        assert best >= 0.95
