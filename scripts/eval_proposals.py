"""Fast proxy for automatic-proposal quality (what pre-fill can achieve), no database.

For each image of a COCO instances split (default: tiny-coco val2017): ``propose``, then
match every proposal against the non-crowd ground-truth instances by mask IoU. Prints

- instance recall at IoU 0.85 (the simulated annotator accepts) and 0.5 (it fixes):
  share of GT instances with some proposal at or above that IoU;
- proposals per image and, under the uncalibrated confident rule
  (``engine.flywheel.prefill.ConfidentRule`` with ``--pred-iou-thresh`` / ``--stability-thresh``),
  confident proposals per image and their precision (share with IoU >= 0.85 to some GT)
  and fix rate (0.5 <= IoU < 0.85);
- ROC AUC of ``predicted_iou`` (and of ``stability``) for "IoU >= 0.85 with some GT",
  and the Spearman correlation of ``predicted_iou`` with the best IoU;
- seconds per image (embed + propose, wall).

    .venv/bin/python scripts/eval_proposals.py --limit 10
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from engine.flywheel.prefill import ConfidentRule
from engine.imageio import load_rgb
from engine.masks import encode_rle, rle_iou
from engine.segment.classical.segmenter import ClassicalSegmenter
from scripts.simulate_flywheel import load_coco

DATA_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def load_split(ann_file: Path, image_dir: Path) -> list[tuple[Path, list[np.ndarray]]]:
    """COCO instances JSON -> [(image path, [HW bool non-crowd instance masks])], by name."""
    data = load_coco([ann_file], [image_dir])
    return [(p, [i.mask for i in data[p]]) for p in sorted(data)]


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


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--split", default="val2017", help="tiny-coco split (val2017|train2017).")
    ap.add_argument("--limit", type=int, default=None, help="Use only the first N images.")
    ap.add_argument("--pred-iou-thresh", type=float, default=0.65,
                    help="Confident rule: predicted IoU threshold (the simulator's classical "
                         "default).")  # fmt: skip
    ap.add_argument("--stability-thresh", type=float, default=0.95,
                    help="Confident rule: stability threshold.")  # fmt: skip
    args = ap.parse_args(argv)
    root = DATA_ROOT / "tiny-coco"
    items = load_split(root / "annotations" / f"instances_{args.split}.json", root / args.split)
    items = items[: args.limit] if args.limit else items
    seg = ClassicalSegmenter()
    rule = ConfidentRule(pred_iou_thresh=args.pred_iou_thresh,
                         stability_thresh=args.stability_thresh)  # fmt: skip
    best_gt: list[np.ndarray] = []
    best_p: list[np.ndarray] = []
    pred, stab, conf = [], [], []
    n_props, secs = [], []
    cols = (TextColumn("proposals"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*cols) as bar:
        task = bar.add_task("", total=len(items))
        for path, gts in items:
            image = load_rgb(path)
            t0 = time.perf_counter()
            props = seg.propose(image)
            secs.append(time.perf_counter() - t0)
            ious = iou_matrix([p.mask for p in props], gts)
            if gts:
                best_gt.append(ious.max(0) if len(props) else np.zeros(len(gts)))
            best_p.append(ious.max(1) if gts else np.zeros(len(props)))
            pred.append(np.array([p.predicted_iou for p in props], dtype=np.float64))
            stab.append(np.array([p.stability for p in props], dtype=np.float64))
            conf.append(rule.apply(props, image.shape[:2]))
            n_props.append(len(props))
            bar.advance(task)
    g = np.concatenate(best_gt)
    b, pi, st, cf = (np.concatenate(a) for a in (best_p, pred, stab, conf))
    good = b >= 0.85
    from scipy.stats import spearmanr

    res = {
        "images": len(items),
        "gt_instances": len(g),
        "recall@0.85": float((g >= 0.85).mean()),
        "recall@0.5": float((g >= 0.5).mean()),
        "proposals/image": float(np.mean(n_props)),
        "proposals>=0.85": int(good.sum()),
        "confident/image": float(cf.sum() / len(items)),
        "confident precision": float(good[cf].mean()) if cf.any() else float("nan"),
        "confident fix rate": float(((b >= 0.5) & ~good)[cf].mean()) if cf.any() else float("nan"),
        "AUC predicted_iou": auc(pi, good),
        "AUC stability": auc(st, good),
        "spearman predicted_iou~IoU": float(spearmanr(pi, b).statistic) if len(b) > 2 else 0.0,
        "s/image": float(np.mean(secs)),
    }
    for k, v in res.items():
        print(f"{k:28s} {v:.3f}" if isinstance(v, float) else f"{k:28s} {v}")
    return res


if __name__ == "__main__":
    main()
