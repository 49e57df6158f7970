"""Box NMS of the confident rule: torchvision.ops.nms and the torch-free numpy path agree."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from engine.flywheel.prefill import _box_nms_numpy, box_nms


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
        "from engine.flywheel.prefill import box_nms\n"
        "from engine.segment.registry import build_segmenter\n"
        "build_segmenter('classical')\n"
        "box_nms(np.array([[0, 0, 1, 1.0]]), np.array([1.0]), 0.7)\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
