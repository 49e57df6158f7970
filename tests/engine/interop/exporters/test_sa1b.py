"""SA-1B export: one JSON per image with the SA-1B annotation fields, masks pixel-exact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from sqlalchemy.orm import Session, sessionmaker

from db.session import transaction
from engine.interop.exporters.atomic import write_atomically
from engine.interop.exporters.sa1b import export_sa1b
from tests.factories import box_mask, make_image, make_mask, make_project

FIELDS = {
    "id",
    "segmentation",
    "bbox",
    "area",
    "predicted_iou",
    "stability_score",
    "crop_box",
    "point_coords",
}


def _export(factory: sessionmaker[Session], out: Path, **options: object) -> dict:
    with transaction(factory) as s:
        from db.projects import get_project

        p = get_project(s, name="sa")
        counts, _ = write_atomically(
            out, lambda tmp: export_sa1b(s, project=p, out=tmp, stage=None, options=dict(options))
        )
    return counts


def test_sa1b_files(factory: sessionmaker[Session], tmp_path: Path) -> None:
    with transaction(factory) as s:
        p = make_project(s, name="sa")
        a = make_image(s, project=p, width=64, height=48, uri="/data/a.jpg")
        b = make_image(s, project=p, width=32, height=32, uri="/data/b.jpg")
        human = make_mask(
            s, image=a, mask=box_mask(48, 64, 3, 4, 20, 30), source="human", status="accepted"
        )
        prop = make_mask(
            s,
            image=a,
            mask=box_mask(48, 64, 30, 10, 60, 40),
            status="proposed",
            predicted_iou=0.88,
            stability=0.95,
            point_coords=[[45.0, 25.0]],
            crop_box=[0.0, 0.0, 64.0, 48.0],
        )
        ids = {"a": a.id, "b": b.id, "human": human.id, "prop": prop.id}

    counts = _export(factory, tmp_path / "final")
    assert counts == {"images": 2, "annotations": 1}
    doc = json.loads((tmp_path / f"final/sa_{ids['a']}.json").read_text())
    assert doc["image"] == {"image_id": ids["a"], "width": 64, "height": 48, "file_name": "a.jpg"}
    (ann,) = doc["annotations"]
    assert set(ann) == FIELDS and ann["id"] == ids["human"]
    assert (
        ann["predicted_iou"] is None
        and ann["point_coords"] == []
        and ann["crop_box"] == [0, 0, 64, 48]
    )
    empty = json.loads((tmp_path / f"final/sa_{ids['b']}.json").read_text())
    assert empty["annotations"] == [] and empty["image"]["file_name"] == "b.jpg"
    manifest = json.loads((tmp_path / "final/manifest.json").read_text())
    assert set(manifest["files"]) == {f"sa_{ids['a']}.json", f"sa_{ids['b']}.json"}

    _export(factory, tmp_path / "all", include="all")
    doc = json.loads((tmp_path / f"all/sa_{ids['a']}.json").read_text())
    by_id = {x["id"]: x for x in doc["annotations"]}
    prop_ann = by_id[ids["prop"]]
    assert prop_ann["predicted_iou"] == pytest.approx(0.88) and prop_ann[
        "stability_score"
    ] == pytest.approx(0.95)
    assert prop_ann["point_coords"] == [[45.0, 25.0]] and prop_ann["crop_box"] == [
        0.0,
        0.0,
        64.0,
        48.0,
    ]
    assert prop_ann["bbox"] == [30.0, 10.0, 30.0, 30.0] and prop_ann["area"] == 900
    decoded = mask_utils.decode(prop_ann["segmentation"]).astype(bool)  # str counts, as SA-1B
    assert np.array_equal(decoded, box_mask(48, 64, 30, 10, 60, 40))
    assert isinstance(prop_ann["segmentation"]["counts"], str) and prop_ann["segmentation"][
        "size"
    ] == [48, 64]
