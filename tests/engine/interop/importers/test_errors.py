"""Bad input: every skipped item and rejected file comes with its reason; a file is all or nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from db.models import Image, Mask
from db.projects import create_project, get_project
from db.session import transaction
from engine.interop.importers import coco as coco_importer
from engine.interop.importers import import_files


def _image(folder: Path, name: str = "pic.png", size: tuple[int, int] = (40, 30)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    PILImage.fromarray(np.full((size[1], size[0], 3), 90, dtype=np.uint8)).save(path)
    return path


def _coco(annotations: list[dict[str, Any]], **image: Any) -> dict[str, Any]:
    return {
        "images": [{"id": 1, "file_name": "pic.png", "width": 40, "height": 30, **image}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
    }


GOOD = {
    "id": 10,
    "image_id": 1,
    "category_id": 1,
    "iscrowd": 0,
    "segmentation": [[2, 2, 20, 2, 20, 20, 2, 20]],
}


def _counts(factory: sessionmaker[Session]) -> tuple[int, int]:
    with transaction(factory) as s:
        return s.scalar(select(func.count(Mask.id))), s.scalar(select(func.count(Image.id)))


def _write(tmp_path: Path, name: str, doc: Any) -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def test_malformed_items_are_skipped_with_reasons(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    images = tmp_path / "images"
    _image(images)
    anns = [
        GOOD,
        {**GOOD, "id": 11, "segmentation": [[1, 2, 3, 4]]},  # a 2-point "polygon"
        {**GOOD, "id": 12, "segmentation": [[1, 2, 3, 4, 5]]},  # odd coordinate count
        {**GOOD, "id": 13, "segmentation": {"size": [10, 10], "counts": "abc"}},  # wrong size
        {**GOOD, "id": 14, "category_id": 99},
        {**GOOD, "id": 15, "image_id": 5},
        {**GOOD, "id": 16, "segmentation": "nonsense"},
    ]
    report = import_files(
        factory,
        fmt="coco",
        project="p",
        paths=[_write(tmp_path, "a.json", _coco(anns))],
        image_dirs=[images],
    )
    assert report.masks == 1 and report.rejected == []
    reasons = {item: why for _, item, why in report.skipped}
    assert "even count of >= 6 numbers" in reasons["annotation 11"]
    assert "even count of >= 6 numbers" in reasons["annotation 12"]
    assert "RLE size" in reasons["annotation 13"]
    assert "category_id 99" in reasons["annotation 14"]
    assert "image_id 5" in reasons["annotation 15"]
    assert "polygons or RLE" in reasons["annotation 16"]


def test_strict_mode_rejects_the_whole_file(factory: sessionmaker[Session], tmp_path: Path) -> None:
    images = tmp_path / "images"
    _image(images)
    doc = _coco([GOOD, {**GOOD, "id": 11, "segmentation": [[1, 2, 3, 4]]}])
    report = import_files(
        factory,
        fmt="coco",
        project="p",
        paths=[_write(tmp_path, "a.json", doc)],
        image_dirs=[images],
        options={"strict": True},
    )
    (rejected,) = report.rejected
    assert "strict mode" in rejected.reason and "annotation 11" in rejected.reason
    assert _counts(factory) == (0, 0)  # not even the image ingested on the fly
    with transaction(factory) as s:
        assert get_project(s, name="p").settings.get("imports", []) == []


def test_bad_files_do_not_stop_the_batch(factory: sessionmaker[Session], tmp_path: Path) -> None:
    images = tmp_path / "images"
    _image(images)
    files = [
        _write(tmp_path, "1-truncated.json", '{"images": [{"id": 1'),
        _write(tmp_path, "2-not-coco.json", {"hello": "world"}),
        _write(tmp_path, "3-good.json", _coco([GOOD])),
        _write(tmp_path, "4-empty-object.json", "{}"),
    ]
    (tmp_path / "5-not-utf8.json").write_bytes(b"\xff\xfe\x00garbage")
    files.append(tmp_path / "5-not-utf8.json")
    files.append(tmp_path / "6-missing.json")
    report = import_files(factory, fmt="coco", project="p", paths=files, image_dirs=[images])
    outcome = {Path(f.path).name: f for f in report.files}
    assert "not valid JSON" in outcome["1-truncated.json"].reason
    assert "'images' must be a list" in outcome["2-not-coco.json"].reason
    assert outcome["3-good.json"].status == "imported" and outcome["3-good.json"].masks == 1
    assert "'images' must be a list" in outcome["4-empty-object.json"].reason
    assert "not valid JSON" in outcome["5-not-utf8.json"].reason
    assert "cannot read" in outcome["6-missing.json"].reason
    assert _counts(factory) == (1, 1)


def test_a_crash_mid_file_leaves_nothing(
    factory: sessionmaker[Session], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = tmp_path / "images"
    _image(images)
    real = coco_importer.add_mask
    calls = {"n": 0}

    def flaky(*args: Any, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk full")
        return real(*args, **kw)

    monkeypatch.setattr(coco_importer, "add_mask", flaky)
    doc = _coco([{**GOOD, "id": i} for i in range(5)])
    with pytest.raises(RuntimeError, match="disk full"):
        import_files(
            factory,
            fmt="coco",
            project="p",
            paths=[_write(tmp_path, "a.json", doc)],
            image_dirs=[images],
        )
    assert _counts(factory) == (0, 0)


def test_unknown_labels_images_and_sizes(factory: sessionmaker[Session], tmp_path: Path) -> None:
    images = tmp_path / "images"
    _image(images)
    _image(images, "small.png", (20, 10))
    with transaction(factory) as s:
        create_project(s, name="p", labels=["cat"])
    doc = _coco(
        [
            GOOD,
            {**GOOD, "id": 11, "category_id": 2},
            {**GOOD, "id": 12, "image_id": 2},
            {**GOOD, "id": 13, "image_id": 3},
        ]
    )
    doc["images"] += [
        {"id": 2, "file_name": "small.png", "width": 40, "height": 30},
        {"id": 3, "file_name": "absent.png", "width": 40, "height": 30},
    ]
    path = _write(tmp_path, "a.json", doc)
    report = import_files(factory, fmt="coco", project="p", paths=[path], image_dirs=[images])
    reasons = {item: why for _, item, why in report.skipped}
    assert report.masks == 1
    assert (
        "unknown label 'dog'" in reasons["annotation 11"]
        and "--add-labels" in reasons["annotation 11"]
    )
    assert "size mismatch" in reasons["image small.png"]
    assert "not found" in reasons["image absent.png"] and "--images" in reasons["image absent.png"]
    assert "was not found" in reasons["annotation 13"]
    again = import_files(
        factory,
        fmt="coco",
        project="p",
        paths=[path],
        image_dirs=[images],
        options={"add_labels": True, "force": True},
    )
    assert again.masks == 2
    with transaction(factory) as s:
        assert get_project(s, name="p").labels == ["cat", "dog"]


def test_labelme_and_label_studio_file_errors(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    lm = _write(
        tmp_path,
        "x.json",
        {
            "version": "5.0.1",
            "shapes": [],
            "imagePath": "nowhere.jpg",
            "imageHeight": 10,
            "imageWidth": 10,
        },
    )
    report = import_files(factory, fmt="labelme", project="p", paths=[lm])
    assert "image 'nowhere.jpg' not found" in report.rejected[0].reason
    _image(tmp_path)
    shapes = [
        {
            "label": "cat",
            "points": [[1, 1], [30, 1], [30, 20]],
            "shape_type": "polygon",
            "group_id": None,
        },
        {"label": "cat", "points": [[1, 1], [3, 3]], "shape_type": "polygon", "group_id": None},
        {"label": "cat", "points": [[1, "a"]], "shape_type": "circle", "group_id": None},
        {
            "label": "cat",
            "points": [[1, 1], [5, 5]],
            "shape_type": "mask",
            "mask": "not-base64!",
            "group_id": None,
        },
    ]
    lm2 = _write(
        tmp_path,
        "y.json",
        {"shapes": shapes, "imagePath": "pic.png", "imageHeight": 30, "imageWidth": 40},
    )
    report = import_files(factory, fmt="labelme", project="p", paths=[lm2])
    assert report.masks == 1
    assert [why.split(":")[0] for _, _, why in report.skipped] == ["malformed region"] * 3
    minimal = _write(
        tmp_path, "min.json", [{"id": 1, "image": "/data/upload/1/abc-pic.png", "tag": []}]
    )
    report = import_files(factory, fmt="label-studio", project="p", paths=[minimal])
    assert "JSON-MIN" in report.rejected[0].reason
