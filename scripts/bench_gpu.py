"""GPU pre-fill speed: our ``FastAutomaticMaskGenerator`` vs ``SamAutomaticMaskGenerator``.

Same random-weight checkpoint (the real architecture, built, saved to a .pth and loaded
back by this script: no download), same photos, same parameters (the ones pre-fill uses:
``engine.segment.registry.SAM_PROPOSAL_PARAMS``, IoU head offset +0.5 so random predictions
sit where a trained SAM's do), on one CUDA device. Prints images/s of each, the ratio, and
masks per image (equal work), and what ``SamSegmenter`` chooses on that device.

    .venv/bin/python scripts/bench_gpu.py                  # vit_b, 8 sample photos, 32x32 grid
    .venv/bin/python scripts/bench_gpu.py --model vit_t --images 16 --json out.json

Without a CUDA device it prints why and exits 1; ``--device cpu --tiny`` runs the same code
on CPU with a small grid (what the test does; CPU figures are not GPU figures).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "samples"
NO_GPU = (
    "no CUDA device: torch.cuda.is_available() is False on this machine; run this on a GPU "
    "machine (torch with CUDA), or pass --device cpu --tiny to exercise the code on CPU"
)


def _photos(n: int, side: int) -> list[Any]:
    """n HWC uint8 RGB photos, long side ``side``: ../shared/data/samples, else scikit-image's."""
    import numpy as np
    from PIL import Image

    images = []
    files = sorted(SAMPLES.glob("*.jpg")) if SAMPLES.is_dir() else []
    if files:
        for i in range(n):
            with Image.open(files[i % len(files)]) as im:
                im = im.convert("RGB")
                im.thumbnail((side, side))
                images.append(np.asarray(im))
        return images
    from skimage import data

    pool = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    for i in range(n):
        im = Image.fromarray(pool[i % len(pool)])
        im.thumbnail((side, side))
        images.append(np.asarray(im))
    return images


def _timed(fn: Any, images: list[Any], sync: Any) -> tuple[float, list[int]]:
    """Seconds for ``fn`` over every image (device synchronised), masks per image."""
    counts = []
    sync()
    t0 = time.perf_counter()
    for image in images:
        counts.append(len(fn(image)))
    sync()
    return time.perf_counter() - t0, counts


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build the checkpoint, time both generators; the figures as a dict."""
    import torch
    from segment_anything import SamAutomaticMaskGenerator

    from engine.segment.registry import SAM_PROPOSAL_PARAMS
    from engine.segment.sam.amg import FastAutomaticMaskGenerator, generator_for_device
    from engine.segment.sam.models import file_sha256, load_checkpoint, random_sam

    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{args.model}_random.pth"
        torch.save(random_sam(args.model, seed=0, iou_offset=0.5).state_dict(), path)
        model = load_checkpoint(args.model, path, sha256=file_sha256(path), device=str(device))
    params = {**SAM_PROPOSAL_PARAMS, "points_per_side": args.points_per_side}
    ours = FastAutomaticMaskGenerator(model, chunk=args.chunk, **params)
    ref = SamAutomaticMaskGenerator(model, points_per_batch=args.points_per_batch, **params)
    images = _photos(args.images, args.side)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    with torch.inference_mode():
        ours.generate(images[0])  # warm-up: kernels, allocator, cudnn autotune
        ref.generate(images[0])
        t_ours, n_ours = _timed(ours.generate, images, sync)
        t_ref, n_ref = _timed(ref.generate, images, sync)
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "model": args.model,
        "images": len(images),
        "side": args.side,
        "points_per_side": args.points_per_side,
        "fast_images_per_s": len(images) / t_ours,
        "reference_images_per_s": len(images) / t_ref,
        "fast_over_reference": t_ref / t_ours,
        "fast_masks_per_image": sum(n_ours) / len(images),
        "reference_masks_per_image": sum(n_ref) / len(images),
        "segmenter_uses": generator_for_device(device),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="vit_b", choices=["vit_t", "vit_b", "vit_l", "vit_h"])
    parser.add_argument("--device", default="cuda", help="torch device (default cuda)")
    parser.add_argument("--images", type=int, default=8, help="photos to time (default 8)")
    parser.add_argument("--side", type=int, default=1024, help="long side in px (default 1024)")
    parser.add_argument("--points-per-side", type=int, default=32, help="grid (default 32)")
    parser.add_argument("--chunk", type=int, default=256, help="our decoder chunk (default 256)")
    parser.add_argument("--points-per-batch", type=int, default=64, help="reference batch (64)")
    parser.add_argument("--tiny", action="store_true", help="2 images, 128 px, 4x4 grid, vit_t")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.tiny:
        args.images, args.side, args.points_per_side, args.model = 2, 128, 4, "vit_t"
    import torch

    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        print(f"error: {NO_GPU}", file=sys.stderr)
        return 1
    out = run(args)
    print(
        f"{out['model']} on {out['device_name']}: {out['images']} images, long side "
        f"{out['side']} px, {out['points_per_side']}x{out['points_per_side']} points"
    )
    print(
        f"  ours (FastAutomaticMaskGenerator)       {out['fast_images_per_s']:8.3f} images/s  "
        f"{out['fast_masks_per_image']:.1f} masks/image"
    )
    print(
        f"  reference (SamAutomaticMaskGenerator)  {out['reference_images_per_s']:8.3f} images/s  "
        f"{out['reference_masks_per_image']:.1f} masks/image"
    )
    print(f"  ours / reference: {out['fast_over_reference']:.2f}x")
    print(f"  SamSegmenter on {out['device']} uses the {out['segmenter_uses']} generator")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
