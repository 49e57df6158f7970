"""Ingest and pre-fill of the sample photos from object storage: a local S3 server (moto),
a local HTTP server and ``file://`` uris, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from db.models import Image, Mask, Prefill
from db.session import make_engine, make_session_factory
from engine.flywheel.prefill import prefill_project
from engine.ingest import ingest
from engine.manifest import ManifestError
from engine.uris import sha256_file
from tests.object_store import http_folder, make_bucket, s3_server, sample_photos
from tests.webapp import classical_segmenter

__all__ = ["http_folder", "s3_server"]  # fixtures used below


def _rows(factory: sessionmaker[Session]) -> dict[str, Image]:
    with factory() as s:
        return {im.uri: im for im in s.scalars(select(Image))}


def _prefill(factory: sessionmaker[Session], project: str) -> tuple[int, int]:
    """Pre-fill the project with the classical backend; (images done, masks stored)."""
    from db.projects import get_or_create_project

    with factory() as s:
        project_id = get_or_create_project(s, name=project).id
        s.commit()
    summary = prefill_project(
        factory, project_id=project_id, segmenter=classical_segmenter(), model_version_id=None
    )
    with factory() as s:
        masks = s.scalar(select(func.count()).select_from(Mask)) or 0
        prefills = s.scalar(select(func.count()).select_from(Prefill)) or 0
    assert summary.failed == 0 and prefills == summary.done
    return summary.done, masks


def test_ingest_and_prefill_from_s3(factory: sessionmaker[Session], s3_server: str) -> None:
    photos = sample_photos()
    objects = {f"photos/{p.name}": p.read_bytes() for p in photos}
    objects["photos/notes.jpg"] = b"this is a text file, not a JPEG\n"
    objects["photos/.DS_Store"] = b"hidden"
    objects["photos/sub/again.png"] = photos[0].read_bytes()  # same bytes: a duplicate
    objects["elsewhere/x.png"] = photos[1].read_bytes()  # outside the prefix
    make_bucket(s3_server, "bucket", objects)
    seen: list[str] = []
    summary = ingest(
        factory,
        project="p",
        paths=["s3://bucket/photos/", "s3://bucket/photos/missing.png"],
        workers=4,
        on_file=lambda res, outcome: seen.append(outcome),
    )
    assert summary.added == 3 and summary.duplicates == 1
    assert dict(summary.rejected) == {"not an image": 1, "unreadable": 1}
    assert ("s3://bucket/photos/missing.png", "unreadable: not found") in summary.rejected_files
    assert len(seen) == summary.seen == 6  # the hidden object is not listed at all
    rows = _rows(factory)
    for p in photos:
        im = rows[f"s3://bucket/photos/{p.name}"]
        assert (im.status, im.sha256, im.file_size) == ("ok", sha256_file(p), p.stat().st_size)
        assert im.width and im.height and im.phash
    assert rows["s3://bucket/photos/notes.jpg"].status == "rejected"
    done, masks = _prefill(factory, "p")
    assert done == 3 and masks > 0  # pre-fill read every image back from the bucket


def test_ingest_manifest_from_http_and_prefill(
    sqlite_url: str, http_folder: tuple[str, Path], tmp_path: Path
) -> None:
    """One database here: the S3 test above covers both engines; pre-fill is the slow part."""
    engine = make_engine(sqlite_url)
    factory = make_session_factory(engine)
    base, folder = http_folder
    photos = sample_photos()
    for p in photos:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "bad.png").write_bytes(photos[0].read_bytes()[:300])  # truncated
    manifest = tmp_path / "uris.jsonl"
    lines = [json.dumps({"uri": f"{base}/{p.name}"}) for p in photos]
    lines += [json.dumps(f"{base}/bad.png"), json.dumps({"uri": f"{base}/gone.png"}), "{oops"]
    manifest.write_text("\n".join(lines) + "\n")
    summary = ingest(factory, project="web", paths=[], manifest=manifest, workers=3)
    assert summary.added == 3
    assert sum(summary.rejected.values()) == 2 and summary.rejected["unreadable"] == 1
    assert summary.skipped_files == [
        (
            f"{manifest}:6",
            "bad manifest row: row 6 is not JSON "
            "(Expecting property name enclosed in double quotes)",
        )
    ]
    names = (*(p.name for p in photos), "bad.png", "gone.png")  # rejected ones recorded too
    assert set(_rows(factory)) == {f"{base}/{n}" for n in names}
    done, masks = _prefill(factory, "web")
    assert done == 3 and masks > 0
    engine.dispose()


def test_manifests_csv_parquet_and_file_uris(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    photos = sample_photos()
    local = tmp_path / "local"
    local.mkdir()
    for p in photos:
        (local / p.name).write_bytes(p.read_bytes())
    csv_path = tmp_path / "m.csv"
    csv_path.write_text(
        f"id,uri\n1,local/{photos[0].name}\n2,\n3,file://{local / photos[1].name}\n"
    )
    parquet_path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"path": [str(local / photos[2].name)]}), parquet_path)
    one = ingest(factory, project="f", paths=[], manifest=csv_path)
    assert one.added == 2 and dict(one.skipped) == {"bad manifest row": 1}
    two = ingest(factory, project="f", paths=[f"file://{local}/"], manifest=parquet_path, workers=2)
    assert (two.added, two.duplicates) == (1, 3)  # the folder's three, then parquet's one again
    assert set(_rows(factory)) == {str(local / p.name) for p in photos}
    with pytest.raises(ManifestError, match="unknown manifest format '.txt'"):
        ingest(factory, project="f", paths=[], manifest=tmp_path / "m.txt")


def test_serial_and_parallel_ingest_agree(factory: sessionmaker[Session], tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, p in enumerate(sample_photos() * 2):
        (folder / f"{i}_{p.name}").write_bytes(p.read_bytes() if i < 3 else b"junk" * i)
    order: dict[int, list[str]] = {}
    for workers in (1, 4):
        names: list[str] = []
        summary = ingest(
            factory,
            project=f"w{workers}",
            paths=[folder],
            workers=workers,
            on_file=lambda res, outcome, names=names: names.append(f"{res.path}:{outcome}"),
        )
        assert summary.added == 3 and summary.rejected["not an image"] == 3
        order[workers] = names
    assert order[1] == order[4]  # results are recorded in walk order whatever the pool does
    with pytest.raises(ValueError, match="workers must be at least 1"):
        ingest(factory, project="w", paths=[folder], workers=0)
