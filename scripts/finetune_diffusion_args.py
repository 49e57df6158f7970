"""Command line of ``scripts/finetune_diffusion.py`` (see its docstring): parsed and checked
before torch or diffusers are imported."""

from __future__ import annotations

import argparse
from pathlib import Path

from scripts.diffusion_pipeline import NOT_DOWNLOADED, SINGLE_FILE


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def str2bool(value: str) -> bool:
    if value.lower() in ("true", "yes", "1"):
        return True
    if value.lower() in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--data", type=Path, required=True, help="Export folder (hf-imagefolder or kohya)."
    )
    ap.add_argument(
        "--base",
        type=Path,
        required=True,
        help="Local diffusers model folder (SD or SDXL), or a single-file checkpoint "
        f"(.safetensors/.ckpt, with --config); {NOT_DOWNLOADED}.",
    )
    ap.add_argument(
        "--config",
        type=Path,
        default=None,
        help="For a single-file --base: a local diffusers folder with the matching configs "
        "and tokenizer(s) (model_index.json); from_single_file reads it instead of the Hub.",
    )
    ap.add_argument(
        "--variant",
        default="auto",
        help="Weights variant to load (e.g. fp16 for *.fp16.safetensors); 'auto' (default) "
        "picks the one variant present when the folder has no plain weights; 'none' for plain.",
    )
    ap.add_argument(
        "--out",
        type=Path,
        required=True,
        help="Folder for the LoRA weights and training_args.json.",
    )
    ap.add_argument(
        "--resolution", type=int, default=512, help="Square training size in pixels (default 512)."
    )
    ap.add_argument(
        "--max-steps",
        type=int,
        default=2000,
        help="Optimizer steps, a hard bound (Emu stops early; default 2000).",
    )
    ap.add_argument(
        "--batch-size", type=int, default=4, help="Images per forward pass (default 4)."
    )
    ap.add_argument(
        "--grad-accum",
        type=int,
        default=16,
        help="Gradient accumulation steps: effective batch = batch-size x this (default 16 -> 64, as Emu).",
    )
    ap.add_argument(
        "--lr",
        type=float,
        default=1e-4,
        help="AdamW learning rate of the LoRA weights (default 1e-4).",
    )
    ap.add_argument("--rank", type=int, default=16, help="LoRA rank (default 16).")
    ap.add_argument(
        "--noise-offset", type=float, default=0.1, help="Noise offset (Emu: 0.1; 0 disables)."
    )
    ap.add_argument(
        "--center-crop",
        type=str2bool,
        default=True,
        help="true: centre crop to square; false: resize only.",
    )
    ap.add_argument(
        "--random-flip", type=str2bool, default=False, help="true: random horizontal flips."
    )
    ap.add_argument(
        "--mixed-precision",
        choices=["no", "fp16", "bf16"],
        default="no",
        help="Compute dtype of the frozen weights: no (fp32), fp16, bf16. LoRA weights stay "
        "fp32; fp16 on CPU is upcast to fp32. On CUDA also autocast.",
    )
    ap.add_argument(
        "--device",
        default="cuda" if _cuda() else "cpu",
        help="torch device (default cuda if available).",
    )
    ap.add_argument("--seed", type=int, default=0, help="Random seed.")
    ap.add_argument(
        "--sample-prompt",
        default="",
        help="After training, reload the LoRA and generate this prompt.",
    )
    ap.add_argument("--sample-steps", type=int, default=25, help="Inference steps for the sample.")
    ap.add_argument(
        "--sample-size", type=int, default=0, help="Sample height/width (0: the model's default)."
    )
    args = ap.parse_args(argv)
    if args.max_steps < 1 or args.batch_size < 1 or args.grad_accum < 1:
        ap.error("--max-steps, --batch-size and --grad-accum must be >= 1")
    if args.base.is_file():
        if args.base.suffix.lower() not in SINGLE_FILE:
            ap.error(f"--base {args.base}: a single-file checkpoint must be .safetensors or .ckpt")
        if args.config is None or not (args.config / "model_index.json").is_file():
            ap.error(
                f"--base {args.base} is a single file: pass --config DIR, a local diffusers "
                "folder with the same architecture's configs and tokenizer (model_index.json); "
                + NOT_DOWNLOADED
            )
    elif not (args.base / "model_index.json").is_file():
        ap.error(f"--base {args.base}: no model_index.json; {NOT_DOWNLOADED}")
    return args
