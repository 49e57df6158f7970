"""`dataengine models download`: a verified file:// download (text and --json), an unknown
model name and an unreachable mirror, each with one line and exit 1."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.segment.sam import models as sam_models
from scripts.cli import app

runner = CliRunner()


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A file:// mirror of vit_t whose registry sha256 is the mirror file's."""
    payload = b"a tiny stand-in for mobile_sam.pt" * 100
    src = tmp_path / "mirror.pt"
    src.write_bytes(payload)
    entry = dict(sam_models.MODELS["vit_t"], sha256=hashlib.sha256(payload).hexdigest())
    monkeypatch.setitem(sam_models.MODELS, "vit_t", entry)
    monkeypatch.setenv("DATAENGINE_DATA_DIR", str(tmp_path / "var"))
    return src.as_uri()


def test_download_prints_the_settings_to_use(mirror: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["models", "download", "vit_t", "--url", mirror])
    assert result.exit_code == 0, result.output
    target = tmp_path / "var" / "models" / "mobile_sam.pt"
    assert target.read_bytes() == Path(mirror[len("file://") :]).read_bytes()
    assert f"DATAENGINE_SAM_CHECKPOINT={target}" in result.output.replace("\n", "")
    doc = json.loads(
        runner.invoke(
            app,
            ["models", "download", "vit_t", "--url", mirror, "--dest", str(tmp_path / "d"), "-j"],
        ).stdout
    )
    assert doc["model"] == "vit_t" and Path(doc["path"]) == tmp_path / "d" / "mobile_sam.pt"
    assert doc["sha256"] == sam_models.MODELS["vit_t"]["sha256"]


def test_unknown_model_and_unreachable_mirror(tmp_path: Path) -> None:
    unknown = runner.invoke(app, ["models", "download", "vit_z", "--dest", str(tmp_path)])
    assert unknown.exit_code == 1 and "unknown model 'vit_z'" in unknown.output
    dest = tmp_path / "models"
    gone = runner.invoke(
        app, ["models", "download", "vit_t", "--dest", str(dest), "--url", "http://127.0.0.1:1/x"]
    )
    assert gone.exit_code == 1 and "download of vit_t failed" in gone.output
    assert "--url" in gone.output and "Traceback" not in gone.output
    assert list(dest.iterdir()) == [], "nothing half-written is left"
