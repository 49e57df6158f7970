"""Interactive-segmentation evaluation with the RITM clicker (NoC protocol).

For every object: embed the image once, then click with ``engine.flywheel.clicker`` (at most
``--max-clicks``, stopping once IoU >= 0.90 and at least 5 clicks were made, so
mIoU@1/3/5 are exact), feeding the previous logits back. Reports NoC@85, NoC@90
(mean clicks to reach that IoU, ``max-clicks`` when never reached), mIoU after
1/3/5 clicks, failures (never reaching 0.90), and p50/p95 decode latency per click
(wall time, and process CPU time to separate contention on a shared machine).

Datasets: ``grabcut`` (masks/*.bmp, 128 = ignored boundary band), ``coco-mval``
(masks/*.png 0/255), a COCO instances JSON (every non-crowd instance; images found
next to the annotations folder), or a folder with images/ + masks/: binary masks (0/255,
128 ignored) or palette / id masks (DAVIS style: 0 background, 1..254 instance ids, 255 void,
ignored in IoU), evaluated per instance or merged (``--instances``). Berkeley's
``masks/NNNNa.png`` and ``NNNNb.png`` are two objects of ``images/NNNN.jpg``. A ground truth
that decodes empty stops the run with a one-line reason (exit status 1): it would otherwise
score as a perfect object.

    .venv/bin/python scripts/eval_interactive.py --dataset grabcut --backend classical
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from engine.flywheel.clicker import noc, run_clicks
from engine.imageio import load_rgb, open_image
from engine.segment.protocol import Segmenter

DATA_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NAMED = {"grabcut": "grabcut", "coco-mval": "coco-mval"}
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


Object = tuple[str, np.ndarray, np.ndarray | None]  # (name, gt HW bool, ignore HW bool | None)
INSTANCE_MODES = ("per-instance", "merged")


@dataclass
class Item:
    """One image and its objects: (name, gt HW bool, ignore HW bool | None)."""

    image_path: Path
    objects: list[Object]


class EmptyGroundTruth(SystemExit):
    """A ground-truth mask decodes to no object pixels: evaluating it would score a
    meaningless NoC, so the run stops with a one-line reason (exit status 1)."""


def read_mask(path: Path) -> tuple[np.ndarray, str]:
    """A ground-truth PNG/BMP -> (HW uint8, kind).

    kind ``binary``: 8-bit 0 background, 255 (> 128) object, 128 ignored boundary band
    (GrabCut, COCO-MVal, Berkeley). kind ``ids``: a palette PNG (mode ``P``, DAVIS style) or a
    grey image with other values: 0 background, 1..254 instance ids, 255 void (ignored).
    """
    with open_image(path) as im:  # the checked open: allowlisted formats, pixel limit
        if im.mode == "P":
            return np.asarray(im), "ids"
        m = np.asarray(im.convert("L") if im.mode not in ("L", "1") else im)
    if m.dtype == bool:
        m = m.astype(np.uint8) * 255
    if set(np.unique(m).tolist()) <= {0, 128, 255}:
        return m, "binary"
    return m, "ids"


def mask_objects(path: Path, instances: str = "per-instance") -> list[Object]:
    """The objects of one ground-truth mask file: [(name, gt HW bool, ignore HW bool | None)].

    ``instances``: ``per-instance`` (one object per instance id) or ``merged`` (all ids as one
    foreground object, the RITM protocol for DAVIS). Void (255 in id masks, 128 in binary
    ones) is ignored in IoU. Raises ``EmptyGroundTruth`` when no object pixel is left.
    """
    m, kind = read_mask(path)
    if kind == "binary":
        ignore = m == 128
        objects = [(path.stem, m > 128, ignore)]
    else:
        ignore = m == 255
        ids = [int(v) for v in np.unique(m) if v not in (0, 255)]
        if instances == "merged":
            objects = [(path.stem, (m > 0) & ~ignore, ignore)]
        else:
            objects = [(f"{path.stem}:{v}", m == v, ignore) for v in ids]
    objects = [(n, gt, ig if ig.any() else None) for n, gt, ig in objects]
    if not any(gt.any() for _, gt, _ in objects):
        void = " (every pixel is void)" if ignore.all() else ""
        raise EmptyGroundTruth(
            f"{path}: the ground truth decodes empty{void}; fix or remove this mask "
            "(0 = background, 255 = void in palette masks, 128 = ignore in binary ones)"
        )
    return [o for o in objects if o[1].any()]


def _image_for(stem: str, images: dict[str, Path]) -> Path | None:
    """The image of a mask stem: same stem, or Berkeley's ``NNNNa`` / ``NNNNb`` -> ``NNNN``."""
    if stem in images:
        return images[stem]
    if len(stem) > 1 and stem[-1].isalpha() and stem[-1].islower() and stem[:-1] in images:
        return images[stem[:-1]]
    return None


def _folder_items(root: Path, instances: str = "per-instance") -> Iterator[Item]:
    """images/<stem>.* + masks/<stem>[a|b].*: objects per ``mask_objects``, grouped by image."""
    if not (root / "images").is_dir() or not (root / "masks").is_dir():
        raise SystemExit(f"{root} must contain images/ and masks/ folders")
    images = {p.stem: p for p in (root / "images").iterdir() if p.suffix.lower() in IMAGE_EXTS}
    grouped: dict[Path, list[Object]] = {}
    for mask_path in sorted((root / "masks").iterdir()):
        if mask_path.suffix.lower() not in IMAGE_EXTS:
            continue
        img = _image_for(mask_path.stem, images)
        if img is None:
            print(f"skipping {mask_path.name}: no image with that stem", file=sys.stderr)
            continue
        grouped.setdefault(img, []).extend(mask_objects(mask_path, instances))
    for img in sorted(grouped):
        yield Item(img, grouped[img])


def _coco_items(path: Path) -> Iterator[Item]:
    """Every non-crowd instance of a COCO instances JSON, grouped by image."""
    from pycocotools.coco import COCO

    coco = COCO(str(path))
    candidates = [path.parent, path.parent.parent]
    candidates += [d for d in path.parent.parent.iterdir() if d.is_dir()]
    for img_id in sorted(coco.getImgIds()):
        info = coco.loadImgs(img_id)[0]
        img = next(
            (d / info["file_name"] for d in candidates if (d / info["file_name"]).is_file()), None
        )
        if img is None:
            print(f"skipping {info['file_name']}: not found next to {path}", file=sys.stderr)
            continue
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id, iscrowd=False))
        objects = [
            (f"{Path(info['file_name']).stem}:{a['id']}", coco.annToMask(a).astype(bool), None)
            for a in anns
            if a.get("area", 1) > 0
        ]
        objects = [o for o in objects if o[1].any()]
        if objects:
            yield Item(img, objects)


def load_dataset(
    name: str, data_root: Path = DATA_ROOT, instances: str = "per-instance"
) -> list[Item]:
    """grabcut | coco-mval | COCO JSON path | folder path -> items (``instances``: how
    palette / id masks become objects, see ``mask_objects``)."""
    if instances not in INSTANCE_MODES:
        raise SystemExit(f"--instances must be one of {', '.join(INSTANCE_MODES)}")
    if name in NAMED:
        root = data_root / NAMED[name]
        if not root.is_dir():
            raise SystemExit(f"dataset folder {root} not found (set --data-root)")
        return list(_folder_items(root, instances))
    path = Path(name)
    if path.suffix == ".json" and path.is_file():
        return list(_coco_items(path))
    if path.is_dir():
        return list(_folder_items(path, instances))
    raise SystemExit(f"unknown dataset {name!r}: use grabcut, coco-mval, a COCO JSON or a folder")


class _Timed:
    """Wraps a segmenter to record process CPU time per decode (wall time is run_clicks')."""

    def __init__(self, inner: Segmenter):
        self.inner, self.cpu = inner, []

    def decode(self, *args, **kwargs):
        t0 = time.process_time()
        try:
            return self.inner.decode(*args, **kwargs)
        finally:
            self.cpu.append(time.process_time() - t0)


def evaluate(seg: Segmenter, items: list[Item], max_clicks: int = 20, quiet: bool = False) -> dict:
    """Run the protocol on every object; returns {"summary": {...}, "per_object": [...]}."""
    timed = _Timed(seg)
    per, latencies, embed_s = [], [], []
    n_obj = sum(len(it.objects) for it in items)
    cols = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*cols, disable=quiet, transient=True) as bar:
        task = bar.add_task("objects", total=n_obj)
        for item in items:
            try:
                image = load_rgb(item.image_path)
            except (OSError, ValueError) as err:
                print(f"skipping {item.image_path}: {err}", file=sys.stderr)
                bar.advance(task, len(item.objects))
                continue
            t0 = time.perf_counter()
            emb = seg.embed(image)
            embed_s.append(time.perf_counter() - t0)
            for name, gt, ignore in item.objects:
                if gt.shape != image.shape[:2]:
                    print(
                        f"skipping {name}: mask {gt.shape} != image {image.shape[:2]}",
                        file=sys.stderr,
                    )
                    bar.advance(task)
                    continue
                clicks = run_clicks(timed, emb, gt, ignore, max_clicks, 0.90, min_clicks=5)
                ious = [c[0] for c in clicks]
                latencies += [c[1] for c in clicks]
                padded = ious + [ious[-1]] * (max_clicks - len(ious))
                per.append(
                    {
                        "name": name,
                        "noc85": noc(ious, 0.85, max_clicks),
                        "noc90": noc(ious, 0.90, max_clicks),
                        "ious": [round(v, 4) for v in ious],
                        "miou": {k: padded[k - 1] for k in (1, 3, 5)},
                    }
                )
                bar.advance(task)
    if not per:
        raise SystemExit("no objects evaluated")
    lat = np.asarray(latencies) * 1000
    summary = {
        "objects": len(per),
        "noc85": float(np.mean([p["noc85"] for p in per])),
        "noc90": float(np.mean([p["noc90"] for p in per])),
        **{f"miou@{k}": float(np.mean([p["miou"][k] for p in per])) for k in (1, 3, 5)},
        "failures": int(sum(max(p["ious"]) < 0.90 for p in per)),
        "latency_p50_ms": float(np.percentile(lat, 50)),
        "latency_p95_ms": float(np.percentile(lat, 95)),
        "cpu_p50_ms": float(np.percentile(np.asarray(timed.cpu) * 1000, 50)),
        "embed_p50_s": float(np.median(embed_s)),
        "max_clicks": max_clicks,
    }
    return {"summary": summary, "per_object": per}


def build(backend: str, checkpoint: str | None, model: str) -> Segmenter:
    from engine.segment.registry import build_segmenter

    return build_segmenter(backend, model_type=model, checkpoint=checkpoint)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--dataset",
        required=True,
        help="grabcut | coco-mval | COCO instances JSON | folder with images/ + masks/",
    )
    ap.add_argument("--backend", default="classical", help="classical | sam")
    ap.add_argument("--checkpoint", default=None, help="SAM checkpoint .pth (sam backend)")
    ap.add_argument(
        "--model", default="vit_t", help="SAM model type: vit_t | vit_b | vit_l | vit_h"
    )
    ap.add_argument(
        "--instances",
        default="per-instance",
        choices=INSTANCE_MODES,
        help="palette / id masks: one object per instance id (per-instance) or all ids as one "
        "foreground (merged, the RITM protocol for DAVIS); 255 is void either way",
    )
    ap.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    ap.add_argument("--max-clicks", type=int, default=20, help="clicks per object (protocol: 20)")
    ap.add_argument(
        "--data-root", type=Path, default=DATA_ROOT, help="folder holding grabcut/ and coco-mval/"
    )
    ap.add_argument(
        "--json", type=Path, default=None, help="write summary + per-object results here"
    )
    ap.add_argument("--quiet", action="store_true", help="no progress bar and no table")
    args = ap.parse_args(argv)
    items = load_dataset(args.dataset, args.data_root, args.instances)[: args.limit]
    seg = build(args.backend, args.checkpoint, args.model)
    result = evaluate(seg, items, args.max_clicks, args.quiet)
    result["config"] = {
        "dataset": args.dataset,
        "backend": args.backend,
        "model_key": seg.model_key,
    }
    if not args.quiet:
        table = Table(
            title=f"{args.dataset} / {args.backend} ({result['summary']['objects']} objects)"
        )
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key, value in result["summary"].items():
            table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
        Console().print(table)
    print(json.dumps(result["summary"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
