"""Curated exports: HF imagefolder (read back by `datasets`) and kohya, with byte-stable manifests."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from db.projects import get_project
from db.session import transaction
from engine.interop.exporters.atomic import file_sha256, write_atomically
from engine.interop.exporters.hf_imagefolder import export_hf_imagefolder
from engine.interop.exporters.kohya import export_kohya
from tests.curation_helpers import curated_project

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def _export(factory: sessionmaker[Session], fn, name: str, out: Path, stage: str | None = None):  # type: ignore[no-untyped-def]
    with transaction(factory) as s:
        p = get_project(s, name=name)
        return write_atomically(out, lambda tmp: fn(s, project=p, out=tmp, stage=stage, options={}))


@pytest.fixture
def curated(factory: sessionmaker[Session], shared_data: Path) -> dict:
    with transaction(factory) as s:
        info = curated_project(s, shared_data)
        return {"name": info["project"].name, "ids": [im.id for im in info["images"]]}


def test_hf_imagefolder_loads_with_datasets(factory, curated, tmp_path: Path) -> None:
    from datasets import load_dataset

    out = tmp_path / "hf"
    counts, sha = _export(factory, export_hf_imagefolder, curated["name"], out)
    assert counts["images"] == 4 and counts["captions_human"] == 3 and counts["captions_draft"] == 1
    ds = load_dataset(
        "imagefolder", data_dir=str(out), split="train", cache_dir=str(tmp_path / "cache")
    )
    assert len(ds) == 4
    rows = sorted(ds, key=lambda r: r["provenance"]["image_id"])
    ids = curated["ids"]
    assert [r["provenance"]["image_id"] for r in rows] == ids[:4]
    assert rows[0]["text"] == "a curated photo number 0" and rows[0]["caption_source"] == "human"
    assert rows[2]["text"] == "a photo of two dogs" and rows[2]["caption_source"] == "draft"
    assert rows[0]["rating"] == 5 and rows[1]["rating"] == 4
    assert rows[0]["tags"] == ["composition:good", "lighting:good"] and rows[1]["tags"] == []
    assert rows[0]["license"]["id"] in range(1, 9) and rows[0]["license"]["name"]
    img = rows[0]["image"]
    assert img.size[0] > 100 and img.size[1] > 100
    manifest = json.loads((out / "manifest.json").read_text())
    assert file_sha256(out / "manifest.json") == sha
    assert manifest["counts"]["images"] == 4 and manifest["stage"] == "specialist"
    for rel, digest in manifest["files"].items():
        assert file_sha256(out / rel) == digest
    assert len([f for f in manifest["files"] if f.endswith(".jpg")]) == 4
    assert len(manifest["licenses"]) == 4
    assert str(tmp_path) not in (out / "manifest.json").read_text()


def test_same_state_gives_identical_manifest_and_generalist_stage(
    factory, curated, tmp_path
) -> None:
    _export(factory, export_hf_imagefolder, curated["name"], tmp_path / "a")
    _export(factory, export_hf_imagefolder, curated["name"], tmp_path / "b")
    assert (tmp_path / "a/manifest.json").read_bytes() == (
        tmp_path / "b/manifest.json"
    ).read_bytes()
    assert (tmp_path / "a/train/metadata.jsonl").read_bytes() == (
        tmp_path / "b/train/metadata.jsonl"
    ).read_bytes()
    counts, _ = _export(
        factory, export_hf_imagefolder, curated["name"], tmp_path / "g", stage="generalist"
    )
    assert counts["images"] == 5
    with pytest.raises(FileExistsError):
        _export(factory, export_hf_imagefolder, curated["name"], tmp_path / "a")


def test_kohya_layout(factory, curated, tmp_path: Path) -> None:
    out = tmp_path / "kohya"
    counts, _ = _export(factory, export_kohya, curated["name"], out)
    assert counts["images"] == 4
    config = tomllib.loads((out / "dataset_config.toml").read_text())
    subset = config["datasets"][0]["subsets"][0]
    folder = out / subset["image_dir"]
    assert config["general"]["caption_extension"] == ".txt" and folder.is_dir()
    images = sorted(folder.glob("*.jpg"))
    assert len(images) == 4
    for im in images:
        assert im.with_suffix(".txt").read_text().strip()
    assert images[0].with_suffix(".txt").read_text() == "a curated photo number 0\n"
    again = tmp_path / "kohya2"
    _export(factory, export_kohya, curated["name"], again)
    assert (out / "manifest.json").read_bytes() == (again / "manifest.json").read_bytes()


def test_missing_file_is_skipped_and_listed(factory, curated, tmp_path: Path) -> None:
    from db.models import Image

    with transaction(factory) as s:
        s.get(Image, curated["ids"][1]).uri = str(tmp_path / "gone.jpg")
    counts, _ = _export(factory, export_hf_imagefolder, curated["name"], tmp_path / "x")
    manifest = json.loads((tmp_path / "x/manifest.json").read_text())
    assert counts["images"] == 3 and manifest["skipped"] == [
        {"image_id": curated["ids"][1], "reason": "file missing"}
    ]


def test_export_cli(factory, curated, db_url: str, tmp_path: Path, monkeypatch) -> None:
    import scripts.commands.export as export_module
    from scripts.cli import app

    made = []
    real_open_db = export_module.open_db
    monkeypatch.setattr(
        export_module, "open_db", lambda st: made.append(real_open_db(st)) or made[-1]
    )
    monkeypatch.setenv("DATAENGINE_DATABASE_URL", db_url)
    monkeypatch.chdir(tmp_path)
    try:
        result = CliRunner().invoke(
            app, ["export", "-p", curated["name"], "-f", "kohya", "-o", str(tmp_path / "k")]
        )
    finally:
        for f in made:
            f.kw["bind"].dispose()  # the CLI process would exit here; free its connections
    assert result.exit_code == 0, result.output
    assert (tmp_path / "k/manifest.json").exists() and not list(tmp_path.glob(".k.*"))


@pytest.mark.parametrize("fn", [export_hf_imagefolder, export_kohya])
def test_page_size_does_not_change_the_bytes(  # type: ignore[no-untyped-def]
    factory, curated, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fn
) -> None:
    """Records stream a page of images at a time; pages of 2 give the same export."""
    from engine.curation import selection

    _, whole = _export(factory, fn, curated["name"], tmp_path / "whole")
    monkeypatch.setattr(selection, "PAGE_SIZE", 2)
    with transaction(factory) as s:
        p = get_project(s, name=curated["name"])
        pages = list(selection.record_pages(s, project=p, stage=None))
    assert len(pages) >= 2 and all(len(page) <= 2 for page in pages)
    _, paged = _export(factory, fn, curated["name"], tmp_path / "paged")
    assert paged == whole  # manifest sha256 (which holds every file's sha256)
