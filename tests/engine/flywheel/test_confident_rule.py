"""The confident rule: per-backend defaults, and box NMS (torchvision.ops.nms and the torch-free
numpy path agree)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from db.errors import InvalidInput
from engine.flywheel.confident_rule import ConfidentRule, _box_nms_numpy, box_nms
from engine.segment.registry import DEFAULT_RULES


def _random_case(rng: np.random.Generator, case: int) -> tuple[np.ndarray, np.ndarray, float]:
    n = int(rng.integers(0, 80))
    xy = rng.uniform(0, 200, (n, 2))
    wh = rng.uniform(0, 80, (n, 2))
    if case % 3 == 0:
        wh[rng.random(n) < 0.2] = 0  # degenerate (zero-area) boxes
    scores = rng.choice([0.5, 0.7, 0.9], n) if case % 2 else rng.random(n)  # ties / none
    thresh = float(rng.choice([0.0, 0.3, 0.5, 0.7, 1.0]))
    return np.concatenate([xy, xy + wh], axis=1), scores, thresh


def test_known_case() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [0, 0, 10, 10]], float)
    scores = np.array([0.8, 0.9, 0.5, 0.8])
    # box 1 (best) suppresses 0 and 3 (IoU 0.81); box 2 does not overlap
    for fn in (box_nms, _box_nms_numpy):
        assert fn(boxes, scores, 0.7).tolist() == [1, 2]
        assert fn(boxes, scores, 0.9).tolist() == [1, 0, 2]  # 0 and 3 tie: IoU 1 > 0.9
        assert fn(np.zeros((0, 4)), np.zeros(0), 0.7).dtype == np.int64


def test_torchvision_equals_numpy_on_random_boxes() -> None:
    pytest.importorskip("torchvision")
    import torchvision.ops  # noqa: F401 - loaded: box_nms now dispatches to torchvision

    rng = np.random.default_rng(0)
    for case in range(300):
        boxes, scores, thresh = _random_case(rng, case)
        got = box_nms(boxes, scores, thresh)
        want = _box_nms_numpy(boxes, scores, thresh)
        assert got.dtype == np.int64
        assert np.array_equal(got, want), (case, thresh, got, want)


def test_classical_prefill_does_not_load_torch() -> None:
    code = (
        "import sys, numpy as np\n"
        "from engine.flywheel.confident_rule import box_nms\n"
        "from engine.segment.registry import build_segmenter\n"
        "build_segmenter('classical')\n"
        "box_nms(np.array([[0, 0, 1, 1.0]]), np.array([1.0]), 0.7)\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_box_nms() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [0, 0, 10, 10]], float)
    keep = box_nms(boxes, np.array([0.5, 0.9, 0.3, 0.5]), 0.7)
    assert keep.tolist() == [1, 2]
    assert box_nms(boxes, np.ones(4), 1.0).tolist() == [0, 1, 2, 3]
    assert box_nms(np.zeros((0, 4)), np.zeros(0), 0.7).tolist() == []


def test_each_backend_has_its_own_default_rule() -> None:
    sam = ConfidentRule.for_backend("sam")
    assert (sam.pred_iou_thresh, sam.stability_thresh) == (0.88, 0.95)
    classical = ConfidentRule.for_backend("classical")
    params = DEFAULT_RULES["classical"]
    assert classical.pred_iou_thresh == params["pred_iou_thresh"] < 0.88  # its own scale
    assert classical.stability_thresh == params["stability_thresh"]
    assert (classical.nms_thresh, classical.min_area) == (0.7, 100)  # shared parts
    tuned = ConfidentRule.for_backend("classical", pred_iou_thresh=0.5, min_area=None)
    assert (tuned.pred_iou_thresh, tuned.min_area) == (0.5, 100)
    assert ConfidentRule.for_backend("something-new") == ConfidentRule()
    with pytest.raises(InvalidInput, match="unknown confident-rule field"):
        ConfidentRule.for_backend("sam", pred_iou=0.5)
