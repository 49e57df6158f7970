"""Checkpoint layout detection and the dtype plan (no models built here; the training runs
on each layout are in test_finetune_diffusion.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from scripts.diffusion_pipeline import detect_variant, dtype_plan, pipeline_class_name


def _unet(folder: Path, *names: str) -> Path:
    (folder / "unet").mkdir(parents=True)
    for n in names:
        (folder / "unet" / n).write_bytes(b"")
    return folder


def test_variant_detection(tmp_path: Path) -> None:
    only16 = _unet(tmp_path / "a", "config.json", "diffusion_pytorch_model.fp16.safetensors")
    assert detect_variant(only16) == "fp16"
    assert detect_variant(only16, "none") is None and detect_variant(only16, "bf16") == "bf16"
    both = _unet(tmp_path / "b", "diffusion_pytorch_model.safetensors",
                 "diffusion_pytorch_model.fp16.safetensors")  # fmt: skip
    assert detect_variant(both) is None  # plain weights win
    two = _unet(tmp_path / "c", "diffusion_pytorch_model.fp16.safetensors",
                "diffusion_pytorch_model.bf16.safetensors")  # fmt: skip
    with pytest.raises(SystemExit, match="bf16, fp16: choose one with --variant"):
        detect_variant(two)


def test_dtype_plan() -> None:
    no = dtype_plan("no", "cpu")
    assert (no.compute, no.vae, no.autocast, no.notes) == (torch.float32, torch.float32, None, ())
    cpu16 = dtype_plan("fp16", "cpu")
    assert cpu16.compute == torch.float32 and "not supported" in cpu16.notes[0]
    gpu16 = dtype_plan("fp16", "cuda", sdxl_vae_upcast=True)
    assert (gpu16.compute, gpu16.vae, gpu16.autocast) == (
        torch.float16,
        torch.float32,
        torch.float16,
    )
    bf = dtype_plan("bf16", "cpu", sdxl_vae_upcast=True)
    assert (bf.compute, bf.vae, bf.autocast) == (torch.bfloat16, torch.bfloat16, None)


def test_pipeline_class_is_checked(tmp_path: Path) -> None:
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    with pytest.raises(SystemExit, match="FluxPipeline.*not supported"):
        pipeline_class_name(tmp_path)
    (tmp_path / "model_index.json").write_text(
        json.dumps({"_class_name": "StableDiffusionXLPipeline"})
    )
    assert pipeline_class_name(tmp_path) == "StableDiffusionXLPipeline"
