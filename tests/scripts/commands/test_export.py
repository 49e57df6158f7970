"""`dataengine export`: labelme format, --copy-images (progress, a missing file skipped, not
fatal) and its refusal for formats that carry images already."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from db.session import transaction
from engine.interop.exporters.atomic import file_sha256
from scripts.cli import app
from tests.factories import box_mask, make_image, make_mask, make_project

runner = CliRunner()


@pytest.fixture
def project(
    db_url: str, factory: sessionmaker[Session], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    monkeypatch.setenv("DATAENGINE_DATABASE_URL", db_url)
    monkeypatch.setenv("DATAENGINE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.chdir(tmp_path)
    photo = tmp_path / "photo.png"
    PILImage.fromarray(np.zeros((48, 64, 3), dtype=np.uint8)).save(photo)
    with transaction(factory) as s:
        p = make_project(s, name="p")
        ok = make_image(s, project=p, uri=str(photo), sha256=file_sha256(photo))
        gone = make_image(s, project=p, uri=str(tmp_path / "gone.png"))
        for im in (ok, gone):
            make_mask(s, image=im, mask=box_mask(48, 64, 3, 3, 30, 20), status="accepted",
                      source="human", label="dog")  # fmt: skip
    return tmp_path


def test_labelme_export_with_copied_images(project: Path) -> None:
    out = project / "lm"
    result = runner.invoke(
        app, ["export", "-p", "p", "-f", "labelme", "-o", str(out), "--copy-images", "-j"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["counts"]["images"] == 2 and doc["counts"]["annotations"] == 2
    # the missing file is reported, the export goes on
    assert doc["counts"]["images_copied"] == 1 and doc["counts"]["images_not_copied"] == 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert "file missing" in manifest["images_not_copied"][0]["reason"]
    assert (out / "labelme/photo.png").read_bytes() == (project / "photo.png").read_bytes()
    assert json.loads((out / "labelme/photo.json").read_text())["imagePath"] == "photo.png"
    gone = json.loads((out / "labelme/gone.json").read_text())
    assert gone["imagePath"] == str((project / "gone.png").resolve())  # labelme still finds it
    assert "labelme export" in result.stderr  # the progress bar (stderr with --json)


def test_copy_images_only_for_mask_formats(project: Path) -> None:
    result = runner.invoke(
        app, ["export", "-p", "p", "-f", "kohya", "-o", str(project / "k"), "--copy-images"]
    )
    assert result.exit_code != 0 and "--copy-images applies to coco, sa1b, labelme" in result.output
    assert not (project / "k").exists()
