"""Label Studio annotations into the product: accept / fix / new by region id, re-import by the
annotation's ids is a no-op, unlabelled regions import, lead_time is imported effort,
predictions listed by id are refused without Label Studio's URL and token."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.models import Event, Image, Mask
from db.session import transaction
from engine.flywheel.effort import derive_effort
from engine.ingest import ingest
from engine.interop.importers import import_files
from engine.interop.importers.label_studio_annotation import stamp
from engine.interop.label_studio import image_url, mask_to_brush
from engine.masks import decode_rle
from tests.factories import box_mask, make_mask

H, W = 60, 80


def _image(factory: sessionmaker[Session], tmp_path: Path) -> Image:
    path = tmp_path / "img" / "pic.png"
    path.parent.mkdir(parents=True)
    PILImage.fromarray(np.full((H, W, 3), 120, dtype=np.uint8)).save(path)
    ingest(factory, project="p", paths=[path])
    with transaction(factory) as s:
        image = s.scalars(select(Image)).one()
        image.project.labels = ["cat", "dog"]
        s.expunge(image)
        return image


def _region(mask: np.ndarray, rid: str, labels: list[str]) -> dict[str, Any]:
    return {
        "id": rid,
        "type": "brushlabels",
        "from_name": "mask",
        "to_name": "image",
        "original_width": W,
        "original_height": H,
        "value": {"format": "rle", "rle": mask_to_brush(mask), "brushlabels": labels},
    }


def _export(image: Image, result: list[dict[str, Any]], **ann: Any) -> list[dict[str, Any]]:
    annotation = {
        "id": 501,
        "completed_by": 1,
        "was_cancelled": False,
        "lead_time": 17.25,
        "created_at": "2024-06-01T10:00:00.123456Z",
        "updated_at": "2024-06-01T10:00:00.123456Z",
        "result": result,
        **ann,
    }
    return [{"id": 77, "data": {"image": image_url(image)}, "annotations": [annotation]}]


def _write(tmp_path: Path, name: str, doc: Any) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def test_kept_edited_and_new_regions(factory: sessionmaker[Session], tmp_path: Path) -> None:
    image = _image(factory, tmp_path)
    with transaction(factory) as s:
        im = s.get(Image, image.id)
        keep = make_mask(s, image=im, mask=box_mask(H, W, 2, 2, 20, 20), confident=True)
        edit = make_mask(s, image=im, mask=box_mask(H, W, 30, 2, 50, 20), confident=True)
        drop = make_mask(s, image=im, mask=box_mask(H, W, 2, 30, 20, 50), confident=True)
        hidden = make_mask(s, image=im, mask=box_mask(H, W, 60, 30, 75, 50), confident=False)
        ids = keep.id, edit.id, drop.id, hidden.id
    edited = box_mask(H, W, 30, 2, 45, 25)
    new = box_mask(H, W, 50, 40, 70, 55)
    doc = _export(
        image,
        [
            _region(box_mask(H, W, 2, 2, 20, 20), f"m{ids[0]}", ["cat"]),
            _region(edited, f"m{ids[1]}", []),
            _region(new, "n1", []),
        ],
    )
    report = import_files(
        factory, fmt="label-studio", project="p", paths=[_write(tmp_path, "a.json", doc)]
    )
    assert report.rejected == [] and report.skipped == []
    assert report.summary()["accepted"] == 1 and report.summary()["fixed"] == 1
    with transaction(factory) as s:
        rows = {m.id: m for m in s.scalars(select(Mask))}
        assert (rows[ids[0]].status, rows[ids[0]].source, rows[ids[0]].label) == (
            "accepted",
            "model",
            "cat",
        )
        assert rows[ids[1]].status == "superseded"
        (fix,) = [m for m in rows.values() if m.parent_id == ids[1]]
        assert fix.source == "model_edited" and np.array_equal(decode_rle(fix.rle), edited)
        (added,) = [m for m in rows.values() if m.source == "human"]
        assert added.label is None and np.array_equal(decode_rle(added.rle), new)
        assert rows[ids[2]].status == "rejected"  # shown, deleted in Label Studio
        assert rows[ids[3]].status == "proposed"  # never shown
        n_rows = len(rows)
        effort = derive_effort(list(s.scalars(select(Event))))
    assert effort.imported == {image.id: 17.25}  # lead_time is imported effort, not measured

    # the same annotation again, in a file with other bytes (webhook then export): no-op
    doc[0]["annotations"][0]["updated_at"] = "2024-06-01T12:00:00.123456+02:00"  # same instant
    doc[0]["exported_at"] = "later"
    again = import_files(
        factory, fmt="label-studio", project="p", paths=[_write(tmp_path, "b.json", doc)]
    )
    assert again.masks == 0 and again.summary()["events"] == 0
    assert any("already imported" in why for _, _, why in again.skipped)
    with transaction(factory) as s:
        assert len(s.scalars(select(Mask)).all()) == n_rows


def test_newer_version_replaces_the_older_rows(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    image = _image(factory, tmp_path)
    a, b = box_mask(H, W, 2, 2, 20, 20), box_mask(H, W, 40, 10, 60, 40)
    first = _export(image, [_region(a, "r1", ["cat"]), _region(b, "r2", ["dog"])])
    import_files(
        factory, fmt="label-studio", project="p", paths=[_write(tmp_path, "1.json", first)]
    )
    second = _export(image, [_region(a, "r1", ["cat"])], updated_at="2024-06-02T00:00:00Z")
    report = import_files(
        factory, fmt="label-studio", project="p", paths=[_write(tmp_path, "2.json", second)]
    )
    assert report.masks == 0  # r1 unchanged: its row stays
    with transaction(factory) as s:
        status = {m.meta["label_studio"]["region_id"]: m.status for m in s.scalars(select(Mask))}
    assert status == {"r1": "accepted", "r2": "superseded"}


def test_predictions_listed_by_id_are_refused_without_label_studio(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    image = _image(factory, tmp_path)
    doc = _export(image, [])
    doc[0]["predictions"] = [3, 4]  # Label Studio's default JSON export
    path = _write(tmp_path, "ids.json", doc)
    report = import_files(
        factory, fmt="label-studio", project="p", paths=[path], options={"predictions": True}
    )
    (outcome,) = report.files
    assert outcome.status == "rejected"
    assert "--ls-url" in outcome.reason and "--ls-token" in outcome.reason
    report = import_files(factory, fmt="label-studio", project="p", paths=[path])
    assert report.rejected == []  # without --predictions the ids are not needed


def test_stamp_normalises_label_studio_spellings() -> None:
    assert stamp({"updated_at": "2024-06-01T10:00:00Z"}) == stamp(
        {"updated_at": "2024-06-01T12:00:00+02:00"}
    )
    assert stamp({"created_at": "2024-06-01T10:00:00"}) == "2024-06-01T10:00:00+00:00"
    assert stamp({}) == ""
