"""Pre-fill speed: the reference SamAutomaticMaskGenerator vs ours, same weights, one process.

Both generators run on every photo in ../shared/data/samples (or --images) with the SAM
default settings except the predicted-IoU and stability thresholds: random weights pass
none of the defaults (their IoU head is offset by +0.5 so predictions are positive: the
reference skips its IoU filter for thresholds <= 0), so the thresholds are set from the
first image's raw predictions
where the reference keeps about as many candidates as real SAM does on natural photos
(a third of the 3 x points^2 candidates pass the IoU filter, ~--target-stable pass the
stability filter). The chosen thresholds and the per-stage counts are printed.

    .venv/bin/python scripts/bench_prefill.py --quick          # one downscaled photo, 16x16
    .venv/bin/python scripts/bench_prefill.py --json out.json  # all photos, default 32x32
    .venv/bin/python scripts/bench_prefill.py --images truck.jpg --repeat 3  # medians of 3
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from rich.console import Console
from rich.table import Table

from engine.imageio import load_rgb
from engine.segment.sam.amg import FastAutomaticMaskGenerator
from engine.segment.sam.models import file_sha256, load_checkpoint, random_sam
from engine.segment.sam.upsample import FullResStats

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "samples"
console = Console()


class PeakRss:
    """Peak resident memory above the starting level while the block runs (polls /proc).

    Freed memory is handed back to the OS first (``gc.collect`` + glibc ``malloc_trim``),
    otherwise a run that fits in memory an earlier phase freed would read as 0 growth.
    """

    def __enter__(self) -> PeakRss:
        gc.collect()
        with contextlib.suppress(OSError, AttributeError):  # not glibc: growth may read low
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        self.base = self._rss()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._rss())

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * 4096

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def mib(self) -> float:
        return (self.peak - self.base) / 2**20


def choose_thresholds(
    model: torch.nn.Module, image: np.ndarray, points_per_side: int, target_stable: int
) -> dict[str, Any]:
    """IoU threshold passing a third of the candidates; stability threshold keeping ~target."""
    gen = FastAutomaticMaskGenerator(
        model, points_per_side=points_per_side, pred_iou_thresh=0.0, stability_score_thresh=0.0
    )
    emb = gen.embed(image)
    size = image.shape[:2]
    pe = model.prompt_encoder
    pts = gen.grids[0] * np.array(size)[None, ::-1]
    coords = torch.as_tensor(gen.transform.apply_coords(pts, size), dtype=torch.float)
    ious, logits = [], []
    with torch.inference_mode():
        sparse, dense = pe(
            points=(coords[:, None], torch.ones(len(coords), 1, dtype=torch.int)),
            boxes=None,
            masks=None,
        )
        ctx = gen.decoder.prepare(emb, pe.get_dense_pe(), dense[:1])
        md = model.mask_decoder
        out_tok = torch.cat([md.iou_token.weight, md.mask_tokens.weight])
        for i in range(0, len(coords), 32):
            sp = sparse[i : i + 32]
            q, x2 = gen.decoder.transformer(
                ctx, torch.cat([out_tok[None].expand(len(sp), -1, -1), sp], dim=1)
            )
            ious.append(gen.decoder.iou(q)[:, 1:].flatten())
            logits.append(gen.decoder.masks(q, x2, [1, 2, 3]).flatten(0, 1))
    iou = torch.cat(ious)
    iou_thr = float(torch.quantile(iou, 2 / 3))
    if iou_thr <= 0:  # the reference skips its IoU filter for thresholds <= 0
        raise SystemExit(
            f"the IoU threshold would be {iou_thr:.3f} <= 0, which disables the "
            "reference's IoU filter; use weights whose IoU predictions are > 0"
        )
    keep = iou > iou_thr
    input_size = gen.transform.get_preprocess_shape(size[0], size[1], gen.transform.target_length)
    stab, _ = FullResStats(input_size, size)(torch.cat(logits)[keep], 1.0)
    stab = stab[torch.isfinite(stab)]
    q = 1.0 - min(target_stable, len(stab)) / max(len(stab), 1)
    stab_thr = float(torch.quantile(stab, q)) if len(stab) else 0.0
    return {
        "pred_iou_thresh": iou_thr,
        "stability_score_thresh": stab_thr,
        "candidates": int(len(iou)),
        "pass_iou": int(keep.sum()),
        "pass_stability": int((stab >= stab_thr).sum()),
    }


def timed(fn: Any) -> tuple[Any, float, float]:
    """(result, seconds, peak RSS MiB above start). No tracemalloc: it would slow the
    reference's Python-heavy bookkeeping far more than ours and flatter the ratio."""
    with PeakRss() as rss:
        t0 = time.perf_counter()
        out = fn()
        secs = time.perf_counter() - t0
    return out, secs, rss.mib


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", help="comma-separated file names in --samples (default: all)")
    ap.add_argument("--samples", type=Path, default=SAMPLES, help="folder of photos")
    ap.add_argument("--limit", type=int, default=0, help="at most this many photos (0 = all)")
    ap.add_argument("--checkpoint", type=Path, help="a real vit_t checkpoint (default: random)")
    ap.add_argument("--model", default="vit_t", help="model type for --checkpoint")
    ap.add_argument("--points-per-side", type=int, default=32, help="AMG grid (default 32)")
    ap.add_argument("--max-side", type=int, default=0, help="downscale photos to this long side")
    ap.add_argument(
        "--target-stable",
        type=int,
        default=100,
        help="candidates the stability threshold should keep on the first photo",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="one photo (truck) at 600 px with a 16x16 grid, for development",
    )
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="time each generator this many times per photo, alternating; report medians "
        "(this machine's timings vary by +-10%% from run to run)",
    )
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error(f"--repeat must be >= 1, got {args.repeat}")
    torch.set_num_threads(args.threads)
    from segment_anything import SamAutomaticMaskGenerator

    if args.quick:
        args.images, args.max_side, args.points_per_side = "truck.jpg", 600, 16
    names = (
        args.images.split(",")
        if args.images
        else sorted(
            p.name for p in args.samples.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"}
        )
    )
    if args.limit:
        names = names[: args.limit]
    if args.checkpoint:
        model = load_checkpoint(args.model, args.checkpoint, sha256=file_sha256(args.checkpoint))
    else:
        model = random_sam("vit_t", seed=0, iou_offset=0.5)  # IoU filter active (> 0)
    images = []
    for n in names:
        img = load_rgb(args.samples / n)
        if args.max_side and max(img.shape[:2]) > args.max_side:
            pil = Image.fromarray(img)
            pil.thumbnail((args.max_side, args.max_side))
            img = np.asarray(pil)
        images.append((n, img))

    th = choose_thresholds(model, images[0][1], args.points_per_side, args.target_stable)
    console.print(
        f"thresholds from {images[0][0]}: pred_iou > {th['pred_iou_thresh']:.4f} "
        f"({th['pass_iou']}/{th['candidates']} candidates), stability >= "
        f"{th['stability_score_thresh']:.4f} ({th['pass_stability']} pass both)"
    )
    params = {
        "points_per_side": args.points_per_side,
        "pred_iou_thresh": th["pred_iou_thresh"],
        "stability_score_thresh": th["stability_score_thresh"],
    }
    ref_gen = SamAutomaticMaskGenerator(model, **params)
    our_gen = FastAutomaticMaskGenerator(model, **params)
    our_gen.generate(images[0][1][:64, :64].copy())  # compile the numba kernel outside timing

    rows = []
    for name, img in images:
        t_ours_runs, t_ref_runs, rss_ours, rss_ref = [], [], 0.0, 0.0
        for _ in range(args.repeat):
            ours, t, mib = timed(lambda img=img: our_gen.generate(img))
            t_ours_runs.append(t)
            rss_ours = max(rss_ours, mib)
            ref, t, mib = timed(lambda img=img: ref_gen.generate(img))
            t_ref_runs.append(t)
            rss_ref = max(rss_ref, mib)
        t_ours, t_ref = float(np.median(t_ours_runs)), float(np.median(t_ref_runs))
        rows.append(
            {
                "image": name,
                "size": list(img.shape[:2]),
                "ref_s": t_ref,
                "ours_s": t_ours,
                "ref_runs_s": t_ref_runs,
                "ours_runs_s": t_ours_runs,
                "ratio": t_ref / t_ours,
                "ref_masks": len(ref),
                "our_masks": len(ours),
                "ref_peak_rss_mib": rss_ref,
                "our_peak_rss_mib": rss_ours,
            }
        )
        console.print(
            f"{name} {img.shape[1]}x{img.shape[0]}: ref {t_ref:.1f}s, ours {t_ours:.1f}s "
            f"({t_ref / t_ours:.1f}x), masks {len(ref)}/{len(ours)}; runs ref "
            f"{', '.join(f'{t:.1f}' for t in t_ref_runs)} ours "
            f"{', '.join(f'{t:.1f}' for t in t_ours_runs)}"
        )

    table = Table(
        title=f"pre-fill, vit_t {'checkpoint' if args.checkpoint else 'random'} "
        f"weights, {args.points_per_side}x{args.points_per_side} points, "
        f"{args.threads} threads, median of {args.repeat} run(s)"
    )
    for col in (
        "image",
        "HxW",
        "ref s",
        "ours s",
        "ratio",
        "masks ref/ours",
        "peak RSS MiB ref/ours",
    ):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["image"],
            f"{r['size'][0]}x{r['size'][1]}",
            f"{r['ref_s']:.1f}",
            f"{r['ours_s']:.1f}",
            f"{r['ratio']:.1f}x",
            f"{r['ref_masks']}/{r['our_masks']}",
            f"{r['ref_peak_rss_mib']:.0f}/{r['our_peak_rss_mib']:.0f}",
        )
    ref_mean = float(np.mean([r["ref_s"] for r in rows]))
    our_mean = float(np.mean([r["ours_s"] for r in rows]))
    table.add_row(
        "mean s/image",
        "",
        f"{ref_mean:.1f}",
        f"{our_mean:.1f}",
        f"{ref_mean / our_mean:.1f}x",
        "",
        "",
    )
    console.print(table)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "thresholds": th,
                    "params": params,
                    "images": rows,
                    "ref_s_per_image": ref_mean,
                    "ours_s_per_image": our_mean,
                    "ratio": ref_mean / our_mean,
                    "threads": args.threads,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
