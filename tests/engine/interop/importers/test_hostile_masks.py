"""Hostile mask payloads in import files (COCO, Label Studio): each bad item is skipped with
its reason before any decoder allocates for it, the good items of the same file still land,
and nothing non-finite is stored."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.models import Mask
from engine.ingest import ingest
from engine.interop.importers import import_files
from engine.interop.label_studio import mask_to_brush
from tests.engine.interop.importers.test_errors import GOOD, _coco, _image, _write

H, W = 30, 40  # the size test_errors._image writes


def _brush_header(num: int) -> list[int]:
    bits = f"{num:032b}{7:05b}" + "".join(f"{s:04b}" for s in (2, 3, 7, 15)) + "0" * 11
    return [int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)]


def test_hostile_coco_segmentations_are_skipped(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    images = tmp_path / "images"
    _image(images)
    hostile: dict[int, Any] = {
        11: {"size": [1099511627776, 2], "counts": [1]},
        12: {"size": [20000, 20000], "counts": [400000000]},
        13: {"size": [H, W], "counts": [-5, H * W + 5]},
        14: {"size": [H, W], "counts": "1" * 200_000},
        15: [[0, 0, 1e12, 0, 1e12, 1e12]],
        16: [[0, 0, math.nan, 0, 10, 10]],
    }
    anns = [GOOD] + [{**GOOD, "id": i, "segmentation": seg} for i, seg in hostile.items()]
    doc = json.dumps(_coco(anns)).replace('"__nan__"', "NaN")
    report = import_files(
        factory,
        fmt="coco",
        project="p",
        paths=[_write(tmp_path, "a.json", doc)],
        image_dirs=[images],
    )
    assert report.rejected == [] and report.masks == 1
    reasons = {item: why for _, item, why in report.skipped}
    assert "does not match image" in reasons["annotation 11"]
    assert "does not match image" in reasons["annotation 12"]
    assert "negative run" in reasons["annotation 13"]
    assert "sum to" in reasons["annotation 14"]
    assert "far outside" in reasons["annotation 15"]
    assert "NaN" in reasons["annotation 16"]


def test_hostile_label_studio_regions_are_skipped(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    img = _image(tmp_path / "img", name="photo.png")
    ingest(factory, project="ls", paths=[img], min_side=1)  # 30x40: below the default
    good = np.zeros((H, W), dtype=bool)
    good[5:15, 5:20] = True

    def brush(rle: list[int], rid: str, score: Any = None) -> dict[str, Any]:
        region = {
            "id": rid,
            "type": "brushlabels",
            "from_name": "mask",
            "to_name": "image",
            "original_width": W,
            "original_height": H,
            "value": {"format": "rle", "rle": rle, "brushlabels": ["cat"]},
        }
        if score is not None:
            region["score"] = score
        return region

    task = {
        "id": 1,
        "data": {"image": "/data/upload/1/0badf00d-photo.png"},
        "annotations": [
            {
                "id": 2,
                "result": [
                    brush(_brush_header(2**32 - 1), "huge"),
                    brush(_brush_header(H * W * 4 + 400), "off"),
                    brush(mask_to_brush(good), "ok"),
                ],
            }
        ],
        "predictions": [
            {
                "id": 3,
                "result": [
                    brush(mask_to_brush(good), "nan", "__nan__"),
                    brush(mask_to_brush(good), "inf", "__inf__"),
                    brush(mask_to_brush(good), "fine", 0.75),
                ],
            }
        ],
    }
    doc = json.dumps([task]).replace('"__nan__"', "NaN").replace('"__inf__"', "Infinity")
    report = import_files(
        factory,
        fmt="label-studio",
        project="ls",
        paths=[_write(tmp_path, "ls.json", doc)],
        options={"predictions": True},
    )
    assert report.rejected == []
    reasons = " | ".join(f"{item}: {why}" for _, item, why in report.skipped)
    assert reasons.count("brush RLE declares") == 2, reasons
    assert reasons.count("finite") == 2, reasons
    with factory() as s:
        rows = list(s.scalars(select(Mask)))
        by_region = {m.meta["label_studio"]["region_id"]: m for m in rows}
        assert set(by_region) == {"ok", "fine"}
        assert by_region["fine"].predicted_iou == 0.75
        assert all(m.predicted_iou is None or math.isfinite(m.predicted_iou) for m in rows)
