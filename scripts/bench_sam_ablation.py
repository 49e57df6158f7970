"""What each piece of the SAM CPU fast path earns: automatic mask generation with it removed.

One run, one process, the same random-weight checkpoint of the real architecture (built,
saved to a .pth and loaded through ``load_checkpoint``, the user's path) and the same
photos for every configuration: everything on, each component of ``engine.segment.sam``
disabled in turn (``fast_path_disabled``: it falls back to the simple path), and the
reference ``segment_anything`` generator (with ``--threads`` > 1 also the generator's worker
threads off, ``workers=1``). The table gives each component's lines and its speed-up when
removed (total CPU seconds with it disabled / with everything on); components under
``--keep-at`` (1.15x) do not earn their lines. CPU seconds (the process's, all threads)
because the machine is shared: wall seconds are printed too but swing 2x with others' load.
The default single thread makes CPU seconds the work done; the worker threads' gain is a
wall-time gain and only shows with ``--threads 2`` on an idle machine. Thresholds are
chosen as in ``bench_prefill.py`` (random weights pass no default).

Judge ``upsample`` at full size: it computes statistics at the photo's resolution, so at the
default 384 px it has almost nothing to save. Measured 2026-12-03 (vit_t, one thread, CPU-s):
at 384 px encoder 1.18x, decoder 3.41x, lowrank 1.22x, upsample 1.00x, reference 4.83x;
at full size (``--max-side 0 --components upsample --no-reference``: 1800x1200, 800x534,
800x534) upsample 1.24x. Every component is above ``--keep-at`` where it does its work.

    .venv/bin/python scripts/bench_sam_ablation.py      # 3 photos at 384 px, 8x8 points
    .venv/bin/python scripts/bench_sam_ablation.py --max-side 0 --points-per-side 32  # SAM's
    .venv/bin/python scripts/bench_sam_ablation.py --photos truck.jpg --model vit_b
    .venv/bin/python scripts/bench_sam_ablation.py --tiny               # seconds, for tests
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numba
import numpy as np
import torch
from PIL import Image
from rich.console import Console
from rich.table import Table

from engine.imageio import load_rgb
from engine.segment.sam.amg import FastAutomaticMaskGenerator
from engine.segment.sam.fast_path import COMPONENTS, fast_path_disabled
from engine.segment.sam.models import file_sha256, load_checkpoint, random_sam
from engine.segment.sam.threads import single_threaded_workers
from scripts.bench_prefill import SAMPLES, choose_thresholds

SAM_DIR = Path(__file__).resolve().parents[1] / "engine" / "segment" / "sam"
# the files each component is made of (removing the component removes them)
FILES: dict[str, tuple[str, ...]] = {
    "encoder": ("encoder.py",),
    "decoder": ("decoder.py", "decoder_lowrank.py"),
    "lowrank": ("decoder_lowrank.py",),
    "upsample": ("upsample.py",),
}
DEFAULT_PHOTOS = "truck.jpg,dog.jpg,groceries.jpg"
console = Console()


def component_lines() -> dict[str, int]:
    """Lines of code each component adds (the worker threads: their three functions)."""
    lines = {
        name: sum(len((SAM_DIR / f).read_text().splitlines()) for f in files)
        for name, files in FILES.items()
    }
    parts = (
        single_threaded_workers,
        FastAutomaticMaskGenerator._pool_size,
        FastAutomaticMaskGenerator._map,
    )
    lines["threads"] = sum(len(inspect.getsourcelines(p)[0]) for p in parts)
    return lines


def load_photos(samples: Path, names: Sequence[str], max_side: int) -> list[tuple[str, np.ndarray]]:
    """The named photos as HxWx3 uint8, downscaled to ``max_side`` (0: as they are)."""
    photos = []
    for name in names:
        path = samples / name
        if not path.is_file():
            raise SystemExit(f"photo {path} not found; pass --samples DIR or --photos NAMES")
        img = load_rgb(path)
        if max_side and max(img.shape[:2]) > max_side:
            pil = Image.fromarray(img)
            pil.thumbnail((max_side, max_side))
            img = np.asarray(pil)
        photos.append((name, img))
    return photos


def user_model(model_type: str, folder: Path) -> torch.nn.Module:
    """Random weights of the real ``model_type`` architecture, saved and loaded as a user's."""
    path = folder / f"{model_type}-random.pth"
    torch.save(random_sam(model_type, seed=0, iou_offset=0.5).state_dict(), path)
    return load_checkpoint(model_type, path, sha256=file_sha256(path))


def configurations(
    model: torch.nn.Module,
    params: dict[str, Any],
    components: Sequence[str] = COMPONENTS,
    reference: bool = True,
) -> list[tuple[str, Callable[[np.ndarray], list[dict[str, Any]]]]]:
    """(row name, generate) for everything on, each of ``components`` off, the reference."""
    from segment_anything import SamAutomaticMaskGenerator

    def ours(disabled: frozenset[str], **kw: Any) -> Callable[[np.ndarray], list[dict]]:
        def run(img: np.ndarray) -> list[dict[str, Any]]:
            with fast_path_disabled(disabled):  # generator built inside: encoder folding
                return FastAutomaticMaskGenerator(model, **kw, **params).generate(img)

        return run

    rows = [("all on", ours(frozenset()))]
    rows += [(c, ours(frozenset({c}))) for c in components]
    if torch.get_num_threads() > 1:
        rows += [("threads", ours(frozenset(), workers=1))]
    if reference:
        rows += [("reference", SamAutomaticMaskGenerator(model, **params).generate)]
    return rows


def measure(
    configs: list[tuple[str, Callable[[np.ndarray], list[dict[str, Any]]]]],
    photos: list[tuple[str, np.ndarray]],
) -> dict[str, dict[str, Any]]:
    """CPU seconds, wall seconds and mask counts per configuration, photo by photo
    (configurations interleaved per photo, so a change in the machine's load spreads over
    all of them)."""
    out: dict[str, dict[str, Any]] = {
        n: {"seconds": 0.0, "wall": 0.0, "masks": 0} for n, _ in configs
    }
    for i, (photo, img) in enumerate(photos, 1):
        for name, run in configs:
            c0, t0 = time.process_time(), time.perf_counter()
            masks = run(img)
            cpu, wall = time.process_time() - c0, time.perf_counter() - t0
            out[name]["seconds"] += cpu
            out[name]["wall"] += wall
            out[name]["masks"] += len(masks)
            console.print(
                f"[{i}/{len(photos)}] {photo} {name}: {cpu:.2f} CPU-s, {wall:.2f}s wall, "
                f"{len(masks)} masks",
                highlight=False,
            )
    return out


def ablation_rows(
    results: dict[str, dict[str, Any]], lines: dict[str, int], keep_at: float
) -> list[dict[str, Any]]:
    """One row per component: lines, seconds without it, speed-up when removed, verdict."""
    base = results["all on"]["seconds"]
    rows = []
    for name, res in results.items():
        if name in ("all on", "reference"):
            continue
        ratio = res["seconds"] / base
        rows.append(
            {
                "component": name,
                "lines": lines[name],
                "seconds": res["seconds"],
                "wall": res["wall"],
                "masks": res["masks"],
                "speedup_when_removed": ratio,
                "verdict": "keeps its lines" if ratio >= keep_at else "remove",
            }
        )
    return rows


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--photos", default=DEFAULT_PHOTOS, help="comma-separated names in --samples")
    ap.add_argument("--samples", type=Path, default=SAMPLES, help="folder of photos")
    ap.add_argument("--model", default="vit_t", help="architecture: vit_t (default) or vit_b")
    ap.add_argument("--points-per-side", type=int, default=8, help="AMG grid (default 8)")
    ap.add_argument("--max-side", type=int, default=384, help="downscale photos (0: full size)")
    ap.add_argument("--threads", type=int, default=1, help="torch and numba CPU threads")
    ap.add_argument("--keep-at", type=float, default=1.15, help="speed-up a component must earn")
    ap.add_argument(
        "--components",
        default=",".join(COMPONENTS),
        help=f"comma-separated components to remove one at a time (default {','.join(COMPONENTS)})",
    )
    ap.add_argument("--no-reference", action="store_true", help="skip segment_anything's run")
    ap.add_argument("--tiny", action="store_true", help="96 px photos, 3x3 grid (for tests)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    if args.points_per_side < 1 or args.threads < 1:
        ap.error("--points-per-side and --threads must be >= 1")
    components = [c for c in args.components.split(",") if c]
    if set(components) - set(COMPONENTS):
        ap.error(f"--components takes {','.join(COMPONENTS)}, got {args.components}")
    if args.tiny:
        args.max_side, args.points_per_side = 96, 3
    torch.set_num_threads(args.threads)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    photos = load_photos(args.samples, [p for p in args.photos.split(",") if p], args.max_side)
    if not photos:
        ap.error("--photos names no photo")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            model = user_model(args.model, Path(tmp))
        except (ValueError, KeyError) as err:
            raise SystemExit(f"cannot build {args.model}: {err}") from err
    th = choose_thresholds(model, photos[0][1], args.points_per_side, target_stable=30)
    params = {
        "points_per_side": args.points_per_side,
        "pred_iou_thresh": th["pred_iou_thresh"],
        "stability_score_thresh": th["stability_score_thresh"],
    }
    console.print(
        f"{args.model} random weights, {len(photos)} photo(s) at <= {args.max_side or 'full'} px, "
        f"{args.points_per_side}^2 points, {args.threads} threads; thresholds iou > "
        f"{params['pred_iou_thresh']:.4f}, stability >= {params['stability_score_thresh']:.4f}",
        highlight=False,
    )
    FastAutomaticMaskGenerator(model, **params).generate(photos[0][1][:64, :64].copy())  # warm-up
    results = measure(
        configurations(model, params, components, reference=not args.no_reference), photos
    )
    rows = ablation_rows(results, component_lines(), args.keep_at)
    base = results["all on"]["seconds"]
    ref = results["reference"]["seconds"] if "reference" in results else None
    table = Table(title=f"SAM fast-path ablation ({args.model}, {len(photos)} photos, one run)")
    cols = ("component", "lines", "CPU-s (wall s)", "masks", "speed-up when removed", "verdict")
    for col in cols:
        table.add_column(col)
    on, reference = results["all on"], results.get("reference", {})
    table.add_row(
        "everything on", "", f"{base:.1f} ({on['wall']:.1f})", str(on["masks"]), "1.00x", ""
    )
    for r in rows:
        table.add_row(
            r["component"],
            str(r["lines"]),
            f"{r['seconds']:.1f} ({r['wall']:.1f})",
            str(r["masks"]),
            f"{r['speedup_when_removed']:.2f}x",
            r["verdict"],
        )
    if ref is not None:
        table.add_row(
            "reference segment_anything",
            "",
            f"{ref:.1f} ({reference['wall']:.1f})",
            str(reference["masks"]),
            f"{ref / base:.2f}x",
            "",
        )
    console.print(table)
    report = {
        "model": args.model,
        "photos": [n for n, _ in photos],
        "sizes": [list(img.shape[:2]) for _, img in photos],
        "params": params,
        "threads": args.threads,
        "all_on_seconds": base,
        "reference_seconds": ref,
        "reference_speedup": ref / base if ref is not None else None,
        "masks": {n: r["masks"] for n, r in results.items()},
        "components": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
