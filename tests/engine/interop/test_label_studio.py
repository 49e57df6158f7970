"""Label Studio: export decoded by label_studio_sdk's own decoder, import of a Label Studio
JSON export (brush, polygon, rectangle, lead_time), and a lossless round trip."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from label_studio_sdk.converter import brush
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.models import Event, Image, Mask
from db.projects import get_project
from db.session import transaction
from engine.flywheel import events as event_kinds
from engine.ingest import ingest
from engine.interop.exporters.atomic import write_atomically
from engine.interop.exporters.label_studio import export_label_studio
from engine.interop.importers import import_files
from engine.interop.label_studio import mask_to_brush
from engine.masks import decode_rle, polygons_to_mask
from tests.factories import box_mask, make_mask, make_model_version

H, W = 90, 120


def _photos(folder: Path, n: int = 2) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        rgb = np.zeros((H, W, 3), dtype=np.uint8)
        rgb[..., i % 3] = 60 + 40 * i
        rgb[10 + i : 40, 20:70] = 255
        p = folder / f"photo{i}.png"
        PILImage.fromarray(rgb).save(p)
        paths.append(p)
    return paths


def _setup_project(factory: sessionmaker[Session], name: str, files: list[Path]) -> list[int]:
    ingest(factory, project=name, paths=files)
    with transaction(factory) as s:
        p = get_project(s, name=name)
        p.labels = ["dog", "cat"]
        return [
            im.id
            for im in s.scalars(select(Image).where(Image.project_id == p.id).order_by(Image.id))
        ]


def _export(
    factory: sessionmaker[Session], name: str, out: Path, **options: Any
) -> list[dict[str, Any]]:
    with transaction(factory) as s:
        p = get_project(s, name=name)
        write_atomically(
            out, lambda tmp: export_label_studio(s, project=p, out=tmp, stage=None, options=options)
        )
    return json.loads((out / "tasks.json").read_text())


def _sdk_decode(region: dict[str, Any]) -> np.ndarray:
    flat = brush.decode_rle(region["value"]["rle"])
    return flat.reshape(region["original_height"], region["original_width"], 4)[:, :, 3] > 0


def _blob(seed: int) -> np.ndarray:
    """An irregular mask (many runs), so the RLE is exercised beyond boxes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:H, :W]
    cx, cy = rng.uniform(30, 90), rng.uniform(20, 70)
    r = 15 + 6 * np.sin(np.arctan2(yy - cy, xx - cx) * 5)
    return (xx - cx) ** 2 + (yy - cy) ** 2 < r**2


def test_export_decodes_with_the_sdk_to_exact_pixels(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    ids = _setup_project(factory, "ls", _photos(tmp_path / "img"))
    with transaction(factory) as s:
        mv = make_model_version(s, name="classical-r1")
        im = s.get(Image, ids[0])
        a = make_mask(s, image=im, mask=_blob(1), source="human", status="accepted", label="dog")
        b = make_mask(
            s,
            image=im,
            mask=_blob(2),
            status="proposed",
            predicted_iou=0.7,
            calibrated_confidence=0.66,
            model_version_id=mv.id,
        )
        make_mask(s, image=im, mask=_blob(3), status="rejected", label="cat")
        want = {f"m{a.id}": (a, _blob(1)), f"m{b.id}": (b, _blob(2))}

    tasks = _export(factory, "ls", tmp_path / "final")
    assert len(tasks) == 2 and tasks[1]["predictions"] == []
    (pred,) = tasks[0]["predictions"]
    assert pred["model_version"] == "dataengine:final"
    (region,) = pred["result"]
    assert region["value"]["format"] == "rle" and region["value"]["brushlabels"] == ["dog"]
    assert (region["original_width"], region["original_height"]) == (W, H)
    assert np.array_equal(_sdk_decode(region), _blob(1))
    assert tasks[0]["data"]["image"].startswith("/data/local-files/?d=")
    config = (tmp_path / "final/label_config.xml").read_text()
    assert '<BrushLabels name="mask" toName="image">' in config and 'value="cat"' in config

    tasks = _export(factory, "ls", tmp_path / "all", include="all", boxes=True)
    preds = {p["model_version"]: p for p in tasks[0]["predictions"]}
    assert set(preds) == {"dataengine:final", "classical-r1"}
    assert preds["classical-r1"]["score"] == pytest.approx(0.66)
    for p in preds.values():
        brushes = [r for r in p["result"] if r["type"] == "brushlabels"]
        rects = [r for r in p["result"] if r["type"] == "rectanglelabels"]
        assert len(brushes) == len(rects) == 1
        row, pixels = want[brushes[0]["id"]]
        assert np.array_equal(_sdk_decode(brushes[0]), pixels)
        x, y, w, h = row.bbox
        v = rects[0]["value"]
        assert (v["x"], v["y"], v["width"], v["height"]) == pytest.approx(
            (100 * x / W, 100 * y / H, 100 * w / W, 100 * h / H)
        )


def _ls_export(image_url: str) -> list[dict[str, Any]]:
    """A Label Studio 'JSON' export of one task with three region kinds and one cancelled annotation."""
    brush_region = {
        "original_width": W,
        "original_height": H,
        "image_rotation": 0,
        "value": {"format": "rle", "rle": mask_to_brush(_blob(5)), "brushlabels": ["dog"]},
        "id": "Xb1",
        "from_name": "tag",
        "to_name": "image",
        "type": "brushlabels",
        "origin": "manual",
    }
    polygon = {
        "original_width": W,
        "original_height": H,
        "image_rotation": 0,
        "value": {
            "points": [[10.0, 10.0], [50.0, 12.5], [30.0, 60.0]],
            "closed": True,
            "polygonlabels": ["cat"],
        },
        "id": "Xp1",
        "from_name": "poly",
        "to_name": "image",
        "type": "polygonlabels",
        "origin": "manual",
    }
    rectangle = {
        "original_width": W,
        "original_height": H,
        "image_rotation": 0,
        "value": {
            "x": 50.0,
            "y": 50.0,
            "width": 25.0,
            "height": 20.0,
            "rotation": 0,
            "rectanglelabels": ["cat"],
        },
        "id": "Xr1",
        "from_name": "box",
        "to_name": "image",
        "type": "rectanglelabels",
        "origin": "manual",
    }
    unknown = {**polygon, "id": "Xp2", "value": {**polygon["value"], "polygonlabels": ["zebra"]}}
    broken = {
        **brush_region,
        "id": "Xb2",
        "value": {"format": "rle", "rle": [1, 2, 3], "brushlabels": ["dog"]},
    }
    return [
        {
            "id": 11,
            "annotations": [
                {
                    "id": 31,
                    "completed_by": 2,
                    "result": [brush_region, polygon, rectangle, unknown, broken],
                    "was_cancelled": False,
                    "ground_truth": False,
                    "created_at": "2024-05-02T09:00:00.000000Z",
                    "updated_at": "2024-05-02T09:00:41.000000Z",
                    "draft_created_at": None,
                    "lead_time": 41.25,
                    "prediction": {},
                    "result_count": 5,
                    "unique_id": "a1b2",
                    "import_id": None,
                    "last_action": None,
                    "task": 11,
                    "project": 1,
                    "updated_by": 2,
                    "parent_prediction": None,
                    "parent_annotation": None,
                    "last_created_by": None,
                },
                {
                    "id": 32,
                    "completed_by": 3,
                    "result": [],
                    "was_cancelled": True,
                    "ground_truth": False,
                    "created_at": "2024-05-02T09:05:00.000000Z",
                    "updated_at": "2024-05-02T09:05:00.000000Z",
                    "lead_time": 3.0,
                    "task": 11,
                    "project": 1,
                },
            ],
            "file_upload": "3f2a9c1d-photo0.png",
            "drafts": [],
            "predictions": [],
            "data": {"image": image_url},
            "meta": {},
            "created_at": "2024-05-02T08:00:00.000000Z",
            "updated_at": "2024-05-02T09:05:00.000000Z",
            "inner_id": 1,
            "total_annotations": 1,
            "cancelled_annotations": 1,
            "total_predictions": 0,
            "comment_count": 0,
            "unresolved_comment_count": 0,
            "last_comment_updated_at": None,
            "project": 1,
            "updated_by": 2,
            "comment_authors": [],
        },
        {
            "id": 12,
            "annotations": [],
            "predictions": [],
            "data": {"image": "/data/upload/1/0badf00d-gone.png"},
        },
    ]


def test_import_label_studio_export(factory: sessionmaker[Session], tmp_path: Path) -> None:
    ids = _setup_project(factory, "ls", _photos(tmp_path / "img"))
    export = tmp_path / "project-1-at-2024-05-02.json"
    export.write_text(json.dumps(_ls_export("/data/upload/1/3f2a9c1d-photo0.png")))
    report = import_files(factory, fmt="label-studio", project="ls", paths=[export])
    assert report.rejected == []
    reasons = " | ".join(f"{item}: {why}" for _, item, why in report.skipped)
    assert "unknown label 'zebra'" in reasons
    assert "Xb2: malformed region" in reasons
    assert "cancelled" in reasons
    assert "task 12: image 'gone.png' not found" in reasons
    with transaction(factory) as s:
        masks = {m.meta["label_studio"]["region_id"]: m for m in s.scalars(select(Mask))}
        events = list(s.scalars(select(Event).where(Event.kind == event_kinds.IMPORT_LEAD_TIME)))
        assert set(masks) == {"Xb1", "Xp1", "Xr1"}
        assert all(
            m.image_id == ids[0] and m.source == "human" and m.status == "accepted"
            for m in masks.values()
        )
        assert np.array_equal(decode_rle(masks["Xb1"].rle), _blob(5))
        poly = [0.1 * W, 0.1 * H, 0.5 * W, 0.125 * H, 0.3 * W, 0.6 * H]
        assert np.array_equal(decode_rle(masks["Xp1"].rle), polygons_to_mask([poly], H, W))
        assert masks["Xr1"].label == "cat" and masks["Xr1"].bbox == [60.0, 45.0, 30.0, 18.0]
        (event,) = events
        assert event.payload["seconds"] == 41.25 and event.image_id == ids[0]
        assert sorted(event.payload["mask_ids"]) == sorted(m.id for m in masks.values())
        assert masks["Xb1"].meta["label_studio"]["lead_time"] == 41.25
    again = import_files(factory, fmt="label-studio", project="ls", paths=[export])
    assert again.rejected[0].reason.startswith("already imported")


def test_round_trip_through_label_studio_is_lossless(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    files = _photos(tmp_path / "img", 3)
    _setup_project(factory, "a", files)
    with transaction(factory) as s:
        images = list(s.scalars(select(Image).order_by(Image.id)))
        original = {}
        for k, im in enumerate(images):
            for j, label in enumerate(["dog", "cat"]):
                pix = _blob(10 * k + j)
                make_mask(s, image=im, mask=pix, source="human", status="accepted", label=label)
                original[(im.sha256, label)] = pix
    tasks = _export(factory, "a", tmp_path / "out-a", boxes=True)
    # What Label Studio gives back once an annotator accepts the pre-annotations:
    for n, task in enumerate(tasks):
        task["id"] = 100 + n
        task["annotations"] = [
            {
                "id": 200 + n,
                "completed_by": 1,
                "was_cancelled": False,
                "lead_time": 7.5 + n,
                "created_at": "2024-05-02T10:00:00Z",
                "updated_at": "2024-05-02T10:00:00Z",
                "result": [dict(r, origin="prediction") for r in task["predictions"][0]["result"]],
            }
        ]
    ls_file = tmp_path / "ls-export.json"
    ls_file.write_text(json.dumps(tasks))
    _setup_project(factory, "b", files)
    report = import_files(factory, fmt="label-studio", project="b", paths=[ls_file])
    assert report.rejected == [] and report.masks == len(original)
    assert all(
        "repeats the box" in why for _, _, why in report.skipped
    )  # only the --boxes rectangles
    again = _export(factory, "b", tmp_path / "out-b")
    got = {}
    with transaction(factory) as s:
        for task in again:
            sha = task["data"]["dataengine_sha256"]
            for region in task["predictions"][0]["result"]:
                got[(sha, region["value"]["brushlabels"][0])] = _sdk_decode(region)
        n_events = len(
            list(s.scalars(select(Event).where(Event.kind == event_kinds.IMPORT_LEAD_TIME)))
        )
    assert set(got) == set(original)
    assert all(np.array_equal(got[k], original[k]) for k in original)
    assert n_events == len(tasks)
    print(f"Label Studio round trip: {len(tasks)} tasks, {len(original)} masks, all pixel-exact")

    # predictions import as scored proposals, pixel-exact too
    _setup_project(factory, "c", files)
    preds = import_files(
        factory, fmt="label-studio", project="c", paths=[ls_file], options={"predictions": True}
    )
    with transaction(factory) as s:
        proposals = [m for m in s.scalars(select(Mask)) if m.status == "proposed"]
    assert len(proposals) == len(original) and preds.masks == 2 * len(original)
    assert all(m.predicted_iou == 1.0 for m in proposals)


def test_box_masks_roundtrip_rectangles(factory: sessionmaker[Session], tmp_path: Path) -> None:
    """A rectangle region exported from a box mask re-imports as the same box."""
    _setup_project(factory, "r", _photos(tmp_path / "img", 1))
    with transaction(factory) as s:
        im = s.scalars(select(Image)).one()
        make_mask(
            s,
            image=im,
            mask=box_mask(H, W, 12, 8, 50, 40),
            source="human",
            status="accepted",
            label="dog",
        )
    tasks = _export(factory, "r", tmp_path / "o", boxes=True)
    rect = [r for r in tasks[0]["predictions"][0]["result"] if r["type"] == "rectanglelabels"][0]
    tasks[0]["annotations"] = [{"id": 1, "result": [rect], "lead_time": 1.0, "updated_at": "t"}]
    f = tmp_path / "rect.json"
    f.write_text(json.dumps(tasks))
    _setup_project(factory, "r2", _photos(tmp_path / "img", 1))
    import_files(factory, fmt="label-studio", project="r2", paths=[f])
    with transaction(factory) as s:
        p = get_project(s, name="r2")
        (m,) = s.scalars(select(Mask).join(Image).where(Image.project_id == p.id))
        assert np.array_equal(decode_rle(m.rle), box_mask(H, W, 12, 8, 50, 40))
