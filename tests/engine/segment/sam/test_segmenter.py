"""The sam backend: checkpoint round trip and hash check, decode == SamPredictor.predict.

Weights are the real vit_t (MobileSAM) architecture with seeded random weights, written
to a .pth and loaded back through ``load_checkpoint`` (the path a user's file takes).
"""

from __future__ import annotations

import http.server
import threading
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor

from engine.masks import mask_iou
from engine.segment.protocol import Embedding, PromptError, Segmenter
from engine.segment.sam import models as sam_models
from engine.segment.sam.models import ChecksumError, file_sha256, load_checkpoint, random_sam
from engine.segment.sam.segmenter import SamSegmenter


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("ckpt") / "vit_t_random.pth"
    torch.save(random_sam("vit_t", seed=3).state_dict(), path)
    return path, file_sha256(path)


@pytest.fixture(scope="module")
def segmenter(checkpoint: tuple[Path, str]) -> SamSegmenter:
    torch.set_num_threads(2)
    path, sha = checkpoint
    return SamSegmenter(model_type="vit_t", checkpoint=path, sha256=sha, device="cpu")


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = np.zeros((180, 240, 3), dtype=np.uint8)
    img[:] = (40, 90, 160)
    img[50:130, 60:170] = (220, 200, 40)  # a rectangle "object"
    img += rng.integers(0, 20, img.shape, dtype=np.uint8)
    return img


@pytest.fixture(scope="module")
def embedding(segmenter: SamSegmenter, image: np.ndarray) -> Embedding:
    return segmenter.embed(image)


@pytest.fixture(scope="module")
def predictor(segmenter: SamSegmenter, image: np.ndarray) -> SamPredictor:
    p = SamPredictor(segmenter.model)
    p.set_image(image)
    return p


def test_registry_has_all_four_models() -> None:
    assert set(sam_models.MODELS) == {"vit_t", "vit_b", "vit_l", "vit_h"}
    for entry in sam_models.MODELS.values():
        assert entry["url"].startswith("https://")
        assert entry["sha256"] is None or len(entry["sha256"]) == 64


def test_checkpoint_round_trip(checkpoint: tuple[Path, str]) -> None:
    path, sha = checkpoint
    loaded = load_checkpoint("vit_t", path, sha256=sha)
    original = random_sam("vit_t", seed=3)
    for (name, a), (_, b) in zip(
        loaded.state_dict().items(), original.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert not loaded.training


def test_sha256_mismatch_names_expected_and_actual(checkpoint: tuple[Path, str]) -> None:
    path, sha = checkpoint
    with pytest.raises(ChecksumError) as err:
        load_checkpoint("vit_t", path, sha256="0" * 64)
    assert "0" * 64 in str(err.value) and sha in str(err.value) and "download" in str(err.value)


def test_wrong_architecture_and_missing_file(checkpoint: tuple[Path, str], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        load_checkpoint("vit_b", checkpoint[0])
    with pytest.raises(FileNotFoundError, match="models download"):
        load_checkpoint("vit_t", tmp_path / "nope.pth")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def test_download_from_local_server_checks_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = tmp_path / "srv"
    served.mkdir()
    payload = b"not really a checkpoint" * 1000
    (served / "mobile_sam.pt").write_bytes(payload)
    handler = partial(_QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/mobile_sam.pt"
    try:
        dest = tmp_path / "dest"
        with pytest.raises(ChecksumError):
            sam_models.download("vit_t", dest, progress=False, url=url)
        assert list(dest.iterdir()) == []  # nothing half-written left behind
        import hashlib

        entry = dict(sam_models.MODELS["vit_t"], sha256=hashlib.sha256(payload).hexdigest())
        monkeypatch.setitem(sam_models.MODELS, "vit_t", entry)
        got = sam_models.download("vit_t", dest, progress=False, url=url)
        assert got.read_bytes() == payload and got.name == "mobile_sam.pt"
    finally:
        server.shutdown()
        server.server_close()


def test_is_a_segmenter_with_model_key(
    segmenter: SamSegmenter, checkpoint: tuple[Path, str]
) -> None:
    assert isinstance(segmenter, Segmenter)
    assert segmenter.model_key == f"sam-vit_t-{checkpoint[1][:12]}"


def _reference(pred: SamPredictor, points=None, labels=None, box=None, mask_input=None):
    multimask = points is not None and len(points) == 1 and box is None and mask_input is None
    masks, scores, logits = pred.predict(
        point_coords=points,
        point_labels=labels,
        box=box,
        mask_input=mask_input,
        multimask_output=multimask,
    )
    best = int(np.argmax(scores))
    return masks[best], float(scores[best]), logits[best : best + 1]


@pytest.mark.parametrize("prompt", ["point", "box", "points_box", "mask_input"])
def test_decode_matches_sam_predictor(
    segmenter: SamSegmenter,
    predictor: SamPredictor,
    image: np.ndarray,
    embedding: Embedding,
    prompt: str,
) -> None:
    emb = embedding
    assert emb.features["image_embeddings"].shape == (1, 256, 64, 64)
    kwargs: dict = {}
    if prompt == "point":
        kwargs = {"points": np.array([[110.0, 90.0]]), "labels": np.array([1])}
    elif prompt == "box":
        kwargs = {"box": np.array([55.0, 45.0, 175.0, 135.0])}
    elif prompt == "points_box":
        kwargs = {
            "points": np.array([[110.0, 90.0], [20.0, 20.0]]),
            "labels": np.array([1, 0]),
            "box": np.array([55.0, 45.0, 175.0, 135.0]),
        }
    else:
        first = segmenter.decode(emb, points=np.array([[110.0, 90.0]]), labels=np.array([1]))
        kwargs = {
            "points": np.array([[110.0, 90.0], [150.0, 60.0]]),
            "labels": np.array([1, 1]),
            "mask_input": first.logits,
        }
    ours = segmenter.decode(emb, **kwargs)
    ref_mask, ref_score, ref_logits = _reference(predictor, **kwargs)
    assert ours.mask.shape == image.shape[:2] and ours.mask.dtype == bool
    assert mask_iou(ours.mask, ref_mask) >= 0.99
    assert abs(ours.score - ref_score) <= 1e-3
    assert ours.logits.shape == (1, 256, 256)
    assert np.abs(ours.logits - ref_logits).max() <= 1e-3


def test_decode_accepts_fp16_embedding(
    segmenter: SamSegmenter, image: np.ndarray, embedding: Embedding
) -> None:
    feats = dict(embedding.features)
    feats["image_embeddings"] = feats["image_embeddings"].astype(np.float16)
    emb = replace(embedding, features=feats)
    res = segmenter.decode(emb, points=np.array([[110.0, 90.0]]), labels=np.array([1]))
    assert res.mask.shape == image.shape[:2]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"points": np.array([[500.0, 10.0]]), "labels": np.array([1])}, "inside the image"),
        ({"points": np.array([[np.nan, 10.0]]), "labels": np.array([1])}, "NaN"),
        ({}, "empty prompt"),
        ({"box": np.array([10.0, 10.0, 5.0, 50.0])}, "x1 > x0"),
        (
            {
                "points": np.array([[10.0, 10.0]]),
                "labels": np.array([1]),
                "mask_input": np.zeros((3, 3)),
            },
            "mask_input",
        ),
    ],
)
def test_bad_prompts_raise_prompt_error(
    segmenter: SamSegmenter, embedding: Embedding, kwargs: dict, match: str
) -> None:
    with pytest.raises(PromptError, match=match):
        segmenter.decode(embedding, **kwargs)


def test_embedding_from_another_model_is_refused(
    segmenter: SamSegmenter, embedding: Embedding
) -> None:
    emb = replace(embedding, model_key="sam-vit_t-000000000000")
    with pytest.raises(ValueError, match="re-embed"):
        segmenter.decode(emb, points=np.array([[10.0, 10.0]]), labels=np.array([1]))


def test_models_cli_list_and_refused_download(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from scripts.cli import app

    runner = CliRunner()
    listed = runner.invoke(app, ["models", "list"])
    assert listed.exit_code == 0 and "vit_h" in listed.output and "vit_t" in listed.output
    fake = tmp_path / "fake.pt"
    fake.write_bytes(b"corrupt")
    dest = tmp_path / "models"
    out = runner.invoke(
        app, ["models", "download", "vit_t", "--dest", str(dest), "--url", fake.as_uri()]
    )
    assert out.exit_code == 1
    assert list(dest.iterdir()) == []


# --- batched encoder and the generator chosen by device ------------------------------------


def test_embed_batch_equals_embed(segmenter: SamSegmenter) -> None:
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 255, (120, 90, 3), dtype=np.uint8),
              rng.integers(0, 255, (64, 160, 3), dtype=np.uint8)]  # fmt: skip
    batch = segmenter.embed_batch(images)
    assert len(batch) == 2
    for emb, image in zip(batch, images, strict=True):
        one = segmenter.embed(image)
        assert emb.model_key == one.model_key and emb.image_size == image.shape[:2]
        assert emb.features["input_size"] == one.features["input_size"]
        assert emb.features["image_embeddings"].shape == (1, 256, 64, 64)
        np.testing.assert_allclose(
            emb.features["image_embeddings"], one.features["image_embeddings"], atol=2e-4
        )
    with pytest.raises(ValueError, match="HWC uint8"):
        segmenter.embed_batch([np.zeros((8, 8), np.uint8)])


def test_generator_choice(checkpoint: tuple[Path, str]) -> None:
    path, sha = checkpoint
    assert SamSegmenter("vit_t", path, sha, "cpu").generator_kind == "fast"
    ref = SamSegmenter("vit_t", path, sha, "cpu", generator="reference")
    assert ref.generator_kind == "reference"
    with pytest.raises(ValueError, match="auto, fast or reference"):
        SamSegmenter("vit_t", path, sha, "cpu", generator="gpu")


def test_reference_generator_proposes_what_the_fast_one_does(
    checkpoint: tuple[Path, str],
) -> None:
    """The path CUDA takes (``SamAutomaticMaskGenerator``, here on CPU) gives the fast
    generator's proposals, with a given whole-image embedding reused, not recomputed."""
    path, sha = checkpoint
    params = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0,
              "box_nms_thresh": 1.0}  # fmt: skip
    fast = SamSegmenter("vit_t", path, sha, "cpu", amg_params=params, generator="fast")
    ref = SamSegmenter("vit_t", path, sha, "cpu", amg_params=params, generator="reference")
    rng = np.random.default_rng(9)
    image = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
    image[20:70, 30:90] = (230, 40, 40)
    emb = ref.embed(image)
    calls = []
    encoder = ref.model.image_encoder
    hook = encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        with_emb = ref.propose(image, emb)
        assert calls == []  # the given embedding was used
        without = ref.propose(image)
        assert calls == [1]
    finally:
        hook.remove()
    ours = fast.propose(image, fast.embed(image))
    assert len(ours) == len(with_emb) == len(without) >= 3
    for a in ours:
        best = max(with_emb, key=lambda b: mask_iou(a.mask, b.mask))
        assert mask_iou(a.mask, best.mask) >= 0.99
        assert abs(a.predicted_iou - best.predicted_iou) <= 1e-3
