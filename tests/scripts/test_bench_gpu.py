"""scripts/bench_gpu.py: the no-GPU message, and the whole benchmark in tiny mode on CPU
(the same code the GPU run takes, on a CPU device: proves it runs and reports consistent
figures, not GPU speed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from scripts import bench_gpu


def test_without_cuda_it_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench_gpu.main([]) == 1
    err = capsys.readouterr().err
    assert "no CUDA device" in err and "--device cpu --tiny" in err


def test_tiny_on_cpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "gpu.json"
    assert bench_gpu.main(["--device", "cpu", "--tiny", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["device"] == "cpu" and figures["images"] == 2 and figures["model"] == "vit_t"
    assert figures["fast_images_per_s"] > 0 and figures["reference_images_per_s"] > 0
    assert figures["fast_over_reference"] == pytest.approx(
        figures["fast_images_per_s"] / figures["reference_images_per_s"]
    )
    # same weights, same parameters: about the same masks (float rounding may move one)
    fast, ref = figures["fast_masks_per_image"], figures["reference_masks_per_image"]
    assert ref > 0 and abs(fast - ref) <= max(1.0, 0.1 * ref)
    assert figures["segmenter_uses"] == "fast"
    printed = capsys.readouterr().out
    assert "images/s" in printed and "ours / reference" in printed
