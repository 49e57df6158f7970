"""Automatic-proposal quality of a backend, and the confident-threshold sweep, no database.

For each image with ground truth (``--datasets``: tiny-coco val2017/train2017,
coco-panoptic-sample, penn-fudan-sample under ``../shared/data``): ``propose`` once, then
match every proposal against the ground-truth instances by mask IoU. A proposal is
*correct* when its IoU with some ground-truth object is >= ``--correct-iou`` (0.5).

Printed:

- the sweep table: for each candidate stability threshold (``--stability-thresh``, a comma
  list) and predicted-IoU threshold, the confident rule
  (``engine.flywheel.confident_rule.ConfidentRule`` with those thresholds, its area limits and box NMS) -> confident proposals per image, their precision (share
  correct) with a Wilson 95 % interval, the share with IoU >= 0.85 (accepted as is by the
  simulator), and on the sample photos (``../shared/data/samples``, no ground truth) the
  confident count per photo (min / median) and how many photos get >= ``--several``;
- recall of ground-truth instances at IoU 0.5 / 0.85 by all proposals, ROC AUC of
  ``predicted_iou`` for "correct", seconds per image.

``--pick`` chooses the threshold with the highest precision among those that give at
least ``--several`` confident masks on at least ``--photos-share`` of the sample photos
(the rule behind ``engine.segment.registry.DEFAULT_RULES``; see docs/prefill.md).

    .venv/bin/python scripts/eval_proposals.py --limit 10
    .venv/bin/python scripts/eval_proposals.py --thresholds 0.5,0.6,0.7 --pick
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from engine.flywheel.confident_rule import ConfidentRule
from engine.imageio import load_rgb, open_image
from engine.masks import encode_rle, rle_iou
from engine.segment.registry import build_segmenter
from scripts.sim_dataset import load_coco

DATA_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DATASETS = ("tiny-coco", "coco-panoptic", "penn-fudan")
DEFAULT_THRESHOLDS = "0.40,0.45,0.50,0.55,0.60,0.65,0.70,0.75,0.80,0.88"


@dataclass
class Scored:
    """One image's proposals without their masks: ``light`` (objects with predicted_iou,
    stability, area, bbox, as ``ConfidentRule.apply`` reads), ``best`` (P,) float64 best IoU
    with any ground truth (empty for photos without ground truth), ``size`` (H, W)."""

    name: str
    light: list[Any]
    best: np.ndarray
    size: tuple[int, int]
    best_gt: np.ndarray  # (G,) best IoU of each ground-truth instance with any proposal


def load_split(ann_file: Path, image_dir: Path) -> list[tuple[Path, list[np.ndarray]]]:
    """COCO instances JSON -> [(image path, [HW bool non-crowd instance masks])], by name."""
    data = load_coco([ann_file], [image_dir])
    return [(p, [i.mask for i in data[p]]) for p in sorted(data)]


def _penn_fudan(root: Path) -> list[tuple[Path, list[np.ndarray]]]:
    out = []
    for mask_path in sorted(root.glob("*_mask.png")):
        image = mask_path.with_name(mask_path.name.replace("_mask", ""))
        with open_image(mask_path) as im:
            ids = np.asarray(im)
        out.append((image, [ids == v for v in np.unique(ids) if v != 0]))
    return out


def load_ground_truth(names: list[str], root: Path) -> list[tuple[Path, list[np.ndarray]]]:
    """Dataset names (``DATASETS``) -> [(image path, [HW bool instance masks])]."""
    items: list[tuple[Path, list[np.ndarray]]] = []
    for name in names:
        if name == "tiny-coco":
            base = root / "tiny-coco"
            for split in ("val2017", "train2017"):
                items += load_split(base / "annotations" / f"instances_{split}.json", base / split)
        elif name == "coco-panoptic":
            base = root / "coco-panoptic-sample" / "sample_data"
            items += load_split(base / "panoptic_coco_detection_format.json", base / "input_images")
        elif name == "penn-fudan":
            items += _penn_fudan(root / "penn-fudan-sample")
        else:
            raise SystemExit(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    return [(p, [g for g in gts if g.any()]) for p, gts in items]


def iou_matrix(props: list[np.ndarray], gts: list[np.ndarray]) -> np.ndarray:
    """(P, G) float64 mask IoU via COCO RLE."""
    return rle_iou([encode_rle(m) for m in props], [encode_rle(m) for m in gts])


def auc(score: np.ndarray, y: np.ndarray) -> float:
    """ROC AUC (ties count half); nan when one class is missing."""
    pos, neg = score[y], score[~y]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    from scipy.stats import rankdata

    r = rankdata(np.concatenate([pos, neg]))
    return float((r[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k/n (nan, nan when n = 0)."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def score_images(seg: Any, items: list[tuple[Path, list[np.ndarray]]], what: str) -> list[Scored]:
    """Propose on every image and keep only what the sweep needs (no masks)."""
    out: list[Scored] = []
    cols = (TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*cols, transient=True) as bar:
        task = bar.add_task("", total=len(items))
        for path, gts in items:
            image = load_rgb(path)
            props = seg.propose(image)
            size = (int(image.shape[0]), int(image.shape[1]))
            if gts and props:
                ious = iou_matrix([p.mask for p in props], gts)
                best, best_gt = ious.max(1), ious.max(0)
            else:
                best, best_gt = np.zeros(len(props)), np.zeros(len(gts))
            light = [SimpleNamespace(predicted_iou=p.predicted_iou, stability=p.stability,
                                     area=p.area, bbox=list(p.bbox)) for p in props]  # fmt: skip
            out.append(Scored(path.name, light, best, size, best_gt))
            bar.advance(task)
    return out


def sweep(
    gt: list[Scored],
    photos: list[Scored],
    thresholds: list[float],
    *,
    stability: list[float],
    correct_iou: float,
    several: int,
) -> list[dict[str, Any]]:
    """One row per (stability, predicted-IoU) threshold pair (see the module docstring)."""
    rows = []
    for st, t in ((st, t) for st in stability for t in thresholds):
        rule = ConfidentRule(pred_iou_thresh=t, stability_thresh=st)
        conf = [rule.apply(s.light, s.size) for s in gt]
        best = np.concatenate([s.best[c] for s, c in zip(gt, conf, strict=True)])
        k, n = int((best >= correct_iou).sum()), len(best)
        lo, hi = wilson(k, n)
        per_photo = [int(rule.apply(s.light, s.size).sum()) for s in photos]
        rows.append({
            "stability_thresh": st, "pred_iou_thresh": t, "confident": n, "confident/image": n / max(len(gt), 1),
            "precision": k / n if n else float("nan"), "precision_lo": lo, "precision_hi": hi,
            "accepted_as_is": float((best >= 0.85).mean()) if n else float("nan"),
            "per_photo": dict(zip([s.name for s in photos], per_photo, strict=True)),
            "photo_min": min(per_photo, default=0),
            "photo_median": float(np.median(per_photo)) if per_photo else 0.0,
            "photos_with_several": sum(v >= several for v in per_photo),
        })  # fmt: skip
    return rows


def pick(rows: list[dict[str, Any]], n_photos: int, share: float) -> dict[str, Any] | None:
    """The row with the highest precision among those where at least ``share`` of the
    photos get several confident masks (ties: the lower threshold, more masks shown, then the
    higher stability threshold)."""
    ok = [r for r in rows if r["confident"] and r["photos_with_several"] >= share * n_photos]
    return max(
        ok,
        key=lambda r: (r["precision"], -r["pred_iou_thresh"], r["stability_thresh"]),
        default=None,
    )


def print_table(rows: list[dict[str, Any]], n_images: int, n_photos: int, several: int) -> None:
    print(f"\nconfident rule sweep: {n_images} images with ground truth, {n_photos} sample photos")
    print(f"{'stab>=':>6} {'pred_iou>=':>10} {'conf/img':>8} {'precision [95% CI]':>24} {'IoU>=.85':>8} "
          f"{'photo min':>9} {'median':>6} {f'photos>={several}':>10}")  # fmt: skip
    for r in rows:
        prec = (f"{r['precision']:.3f} [{r['precision_lo']:.3f},{r['precision_hi']:.3f}]"
                if r["confident"] else "-")  # fmt: skip
        acc = f"{r['accepted_as_is']:.3f}" if r["confident"] else "-"
        print(f"{r['stability_thresh']:>6.2f} {r['pred_iou_thresh']:>10.2f} {r['confident/image']:>8.2f} {prec:>24} {acc:>8} "
              f"{r['photo_min']:>9} {r['photo_median']:>6.1f} "
              f"{r['photos_with_several']:>6}/{n_photos}")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--backend", default="classical", help="Backend (classical | sam).")
    ap.add_argument("--checkpoint", default=None, help="SAM checkpoint .pth (sam backend).")
    ap.add_argument("--datasets", default=",".join(DATASETS),
                    help=f"Comma list of ground-truth sets: {', '.join(DATASETS)}.")  # fmt: skip
    ap.add_argument("--limit", type=int, default=None, help="Use only the first N GT images.")
    ap.add_argument("--thresholds", default=DEFAULT_THRESHOLDS,
                    help="Comma list of candidate predicted-IoU thresholds.")  # fmt: skip
    ap.add_argument("--stability-thresh", default="0.95",
                    help="Comma list of candidate stability thresholds.")  # fmt: skip
    ap.add_argument("--correct-iou", type=float, default=0.5,
                    help="A proposal is correct at this IoU with some ground truth.")  # fmt: skip
    ap.add_argument("--several", type=int, default=3,
                    help="'Several confident masks' on a sample photo means at least this many.")  # fmt: skip
    ap.add_argument("--photos-share", type=float, default=0.5,
                    help="--pick: the share of sample photos that must get several.")  # fmt: skip
    ap.add_argument("--pick", action="store_true", help="Print the threshold the rule picks.")
    ap.add_argument("--data-root", type=Path, default=DATA_ROOT, help="The shared data folder.")
    ap.add_argument("--json", type=Path, default=None, help="Write the table here as JSON.")
    return ap


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    try:
        thresholds = [float(v) for v in args.thresholds.split(",") if v.strip()]
        stabilities = [float(v) for v in args.stability_thresh.split(",") if v.strip()]
    except ValueError as err:
        raise SystemExit(
            f"--thresholds / --stability-thresh must be numbers separated by commas: {err}"
        ) from err
    if not args.data_root.is_dir():
        raise SystemExit(f"shared data not found at {args.data_root} (set --data-root)")
    items = load_ground_truth([d.strip() for d in args.datasets.split(",") if d.strip()],
                              args.data_root)  # fmt: skip
    items = items[: args.limit] if args.limit else items
    photos = sorted((args.data_root / "samples").glob("*.jpg"))
    seg = build_segmenter(args.backend, checkpoint=args.checkpoint)
    t0 = time.perf_counter()
    gt = score_images(seg, items, "ground truth")
    secs = (time.perf_counter() - t0) / max(len(items), 1)
    ph = score_images(seg, [(p, []) for p in photos], "sample photos")
    rows = sweep(gt, ph, thresholds, stability=stabilities,
                 correct_iou=args.correct_iou, several=args.several)  # fmt: skip
    best_p = np.concatenate([s.best for s in gt])
    best_g = np.concatenate([s.best_gt for s in gt])
    pred = np.concatenate([[p.predicted_iou for p in s.light] for s in gt]).astype(np.float64)
    summary = {
        "backend": args.backend, "images": len(gt), "gt_instances": len(best_g),
        "proposals/image": len(best_p) / max(len(gt), 1),
        "recall@0.5": float((best_g >= 0.5).mean()) if len(best_g) else float("nan"),
        "recall@0.85": float((best_g >= 0.85).mean()) if len(best_g) else float("nan"),
        "AUC predicted_iou (correct)": auc(pred, best_p >= args.correct_iou),
        "s/image": secs,
    }  # fmt: skip
    for k, v in summary.items():
        print(f"{k:28s} {v:.3f}" if isinstance(v, float) else f"{k:28s} {v}")
    print_table(rows, len(gt), len(ph), args.several)
    result: dict[str, Any] = {"summary": summary, "sweep": rows}
    if args.pick:
        chosen = pick(rows, len(ph), args.photos_share)
        result["picked"] = chosen
        if chosen is None:
            print("\nno threshold gives several confident masks on enough photos")
        else:
            print(f"\npicked pred_iou_thresh {chosen['pred_iou_thresh']:.2f}, stability_thresh "
                  f"{chosen['stability_thresh']:.2f}: precision "
                  f"{chosen['precision']:.3f} [{chosen['precision_lo']:.3f}, "
                  f"{chosen['precision_hi']:.3f}] (IoU >= {args.correct_iou}); confident per "
                  f"photo: {chosen['per_photo']}")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
