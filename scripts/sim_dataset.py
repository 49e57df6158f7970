"""Ground truth for the flywheel simulator: COCO instances JSON or a folder of instance masks."""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.imageio import open_image
from engine.interop.importers.coco import segmentation_to_mask

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass
class Instance:
    mask: np.ndarray  # HW bool
    label: str
    ignore: np.ndarray | None = None


def load_coco(ann_files: list[Path], image_dirs: list[Path]) -> dict[Path, list[Instance]]:
    """COCO instances JSON(s) -> {image path: non-crowd instances}."""
    out: dict[Path, list[Instance]] = {}
    for ann_file, img_dir in zip(ann_files, image_dirs, strict=True):
        data = json.loads(ann_file.read_text())
        cats = {c["id"]: c["name"] for c in data.get("categories", [])}
        by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for a in data["annotations"]:
            if not a.get("iscrowd"):
                by_image[a["image_id"]].append(a)
        for im in data["images"]:
            path = img_dir / im["file_name"]
            if not path.exists():
                continue
            h, w = im["height"], im["width"]
            insts = []
            for a in by_image.get(im["id"], []):
                try:
                    m = segmentation_to_mask(a["segmentation"], h, w)
                except ValueError as err:  # a malformed instance never stops the dataset
                    print(f"  skipped annotation {a.get('id')} of {path.name}: {err}")
                    continue
                insts.append(Instance(m, cats.get(a["category_id"], "object")))
            out[path] = insts
    return out


def load_mask_folder(folder: Path) -> dict[Path, list[Instance]]:
    """``folder/<images>`` + ``folder/masks/<stem>.png|bmp``: 0 background, 128 ignore (GrabCut),
    other values are instance ids (a binary 255 mask is one instance)."""
    masks = {
        p.stem: p for p in (folder / "masks").iterdir() if p.suffix.lower() in (".png", ".bmp")
    }
    out: dict[Path, list[Instance]] = {}
    for img in sorted(folder.rglob("*")):
        if img.parent.name == "masks" or img.suffix.lower() not in (
            ".jpg",
            ".jpeg",
            ".png",
            ".bmp",
        ):
            continue
        mp = masks.get(img.stem)
        if mp is None:
            continue
        with open_image(mp) as mask_img:
            arr = np.asarray(mask_img.convert("L"))
        ignore = arr == 128
        insts = [Instance(arr == v, "object", ignore if ignore.any() else None)
                 for v in np.unique(arr) if v not in (0, 128)]  # fmt: skip
        out[img] = insts
    return out


def load_dataset(spec: str, images_dir: Path | None) -> dict[Path, list[Instance]]:
    if spec == "tiny-coco":
        root = SHARED / "tiny-coco"
        if not root.is_dir():
            sys.exit(f"tiny-coco not found at {root} (the shared test data)")
        splits = ["train2017", "val2017"]
        return load_coco([root / "annotations" / f"instances_{s}.json" for s in splits],
                         [root / s for s in splits])  # fmt: skip
    path = Path(spec)
    if path.is_file() and path.suffix == ".json":
        if images_dir is None:
            sys.exit("--images-dir is required with a COCO JSON dataset")
        return load_coco([path], [images_dir])
    if path.is_dir() and (path / "masks").is_dir():
        return load_mask_folder(path)
    sys.exit(f"--dataset must be tiny-coco, a COCO instances JSON, or a folder with masks/: {spec}")
