"""`dataengine import` in text mode: the summary table, a rejected file with its reason (exit
1 when every file is rejected) and a skipped annotation whose image is not found."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from scripts.cli import app

runner = CliRunner()


def _coco(path: Path, file_name: str) -> Path:
    doc = {
        "images": [{"id": 1, "file_name": file_name, "width": 8, "height": 6}],
        "categories": [{"id": 1, "name": "dog"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
                         "segmentation": [[1, 1, 6, 1, 6, 4, 1, 4]], "bbox": [1, 1, 5, 3],
                         "area": 15}],
    }  # fmt: skip
    path.write_text(json.dumps(doc))
    return path


def test_text_report_lists_rejected_and_skipped(cli_db: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = runner.invoke(app, ["import", "-f", "coco", str(bad), "-p", "p"])
    assert result.exit_code == 1, "every file rejected"
    text = result.output.replace("\n", " ")
    assert "import summary" in text and "file rejected (nothing imported)" in text
    assert "bad.json" in text
    images = tmp_path / "imgs"
    images.mkdir()
    ann = _coco(tmp_path / "ann.json", "missing.png")
    result = runner.invoke(
        app, ["import", "-f", "coco", str(ann), "-p", "p", "--images", str(images)]
    )
    assert result.exit_code == 0, result.output
    text = result.output.replace("\n", " ")
    assert "skipped" in text and "missing.png" in text
