"""Label Studio's BRUSH_TO_PNG / BRUSH_TO_NUMPY exports, written by label_studio_sdk's own
converter (``save_brush_images_from_annotation``), import pixel-exact; unlabelled layers
import without a label; a second import adds nothing; bad files are skipped with reasons."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from label_studio_sdk.converter.brush import save_brush_images_from_annotation
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.models import Image, Mask
from db.session import transaction
from engine.ingest import ingest
from engine.interop.importers.label_studio_brush import import_brush_export
from engine.interop.label_studio import image_url, mask_to_brush
from engine.masks import decode_rle
from tests.factories import box_mask

H, W = 50, 70


def _setup(factory: sessionmaker[Session], tmp_path: Path) -> tuple[int, list[dict[str, Any]]]:
    path = tmp_path / "img" / "shot.png"
    path.parent.mkdir(parents=True)
    PILImage.fromarray(np.full((H, W, 3), 60, dtype=np.uint8)).save(path)
    ingest(factory, project="b", paths=[path])
    with transaction(factory) as s:
        image = s.scalars(select(Image)).one()
        image.project.labels = ["car", "tree"]
        tasks = [
            {
                "id": 9,
                "data": {"image": image_url(image)},
                "annotations": [{"id": 31, "updated_at": "2024-07-01T08:00:00Z", "lead_time": 4.0}],
            }
        ]
        return image.project_id, tasks


LAYERS = {
    "car": box_mask(H, W, 5, 5, 30, 25),
    "": box_mask(H, W, 40, 10, 65, 45),  # an unlabelled region
}


def _write_export(out: Path, fmt: str) -> None:
    out.mkdir()
    results = [
        {
            "type": "brushlabels",
            "rle": mask_to_brush(mask),
            "original_width": W,
            "original_height": H,
            "brushlabels": [label] if label else [],
        }
        for label, mask in LAYERS.items()
    ]
    save_brush_images_from_annotation(9, 31, "ann@example.com", "mask", results, str(out), fmt)


@pytest.mark.parametrize("fmt", ["png", "numpy"])
def test_brush_export_imports_pixel_exact(
    factory: sessionmaker[Session], tmp_path: Path, fmt: str
) -> None:
    project_id, tasks = _setup(factory, tmp_path)
    folder = tmp_path / "brush"
    _write_export(folder, fmt)
    zpath = tmp_path / "brush.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for f in sorted(folder.iterdir()):
            zf.write(f, f"export/{f.name}")
    report = import_brush_export(factory, project_id=project_id, paths=[zpath], tasks=tasks)
    assert report.rejected == [] and report.skipped == [], report
    assert report.masks == 2
    with transaction(factory) as s:
        got = {m.label or "": decode_rle(m.rle) for m in s.scalars(select(Mask))}
    assert set(got) == set(LAYERS)
    assert all(np.array_equal(got[k], LAYERS[k]) for k in LAYERS)
    again = import_brush_export(factory, project_id=project_id, paths=[folder], tasks=tasks)
    assert again.masks == 0  # the same annotation version: nothing twice


def test_bad_brush_files_are_skipped_with_reasons(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    project_id, tasks = _setup(factory, tmp_path)
    folder = tmp_path / "brush"
    _write_export(folder, "png")
    PILImage.fromarray(np.zeros((10, 10), np.uint8)).save(
        folder / "task-9-annotation-31-by-x-mask-tree-0.png"
    )  # wrong size
    (folder / "task-9-annotation-31-by-x-mask-car-1.png").write_bytes(b"not a png")
    (folder / "notes.png").write_bytes(b"")
    (folder / "task-404-annotation-1-by-x-mask-car-0.npy").write_bytes(b"")
    report = import_brush_export(factory, project_id=project_id, paths=[folder], tasks=tasks)
    assert report.masks == 2  # the good layers still import
    reasons = " | ".join(f"{item}: {why}" for _, item, why in report.skipped)
    assert "layer is 10x10, the image is 70x50" in reasons
    assert "unreadable brush layer" in reasons
    rejected = {f.path: f.reason for f in report.rejected}
    assert "not a Label Studio brush export name" in rejected["notes.png"]
    assert any("task 404 not found" in r for r in rejected.values())


def test_brush_export_needs_tasks(factory: sessionmaker[Session], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--ls-url"):
        import_brush_export(factory, project_id=1, paths=[tmp_path])
