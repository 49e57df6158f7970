"""Ingest on both databases: good photos, a zoo of bad and hostile files, dedupe, concurrency."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from db.models import Image as ImageRow
from db.session import make_engine, make_session_factory
from engine.imageio import load_rgb
from engine.ingest import ingest
from engine.uris import uri_to_path as load_uri_path
from tests.ingest_zoo import NON_UTF8, hostile_zoo, png_header_bomb, unreadable_folders


def make_bad_folder(root: Path) -> dict[str, str]:
    """Write the zoo; returns {file name: expected status or rejection category}."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8))
    photo.save(root / "good.jpg", quality=90)
    full = (root / "good.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (root / "notes.jpg").write_text("this is a text file, not a JPEG\n")
    (root / "empty.png").write_bytes(b"")
    png_header_bomb(root / "bomb.png", 50_000, 50_000)
    Image.new("CMYK", (48, 36), (10, 200, 30, 5)).save(root / "cmyk.jpg")
    Image.fromarray(np.arange(50 * 40, dtype=np.uint16).reshape(50, 40) * 30).save(
        root / "deep16.png"
    )
    rotated = Image.fromarray(rng.integers(0, 255, (36, 70, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display: 70x36 stored -> 36x70 shown
    rotated.save(root / "rotated.jpg", exif=exif)
    Image.new("P", (40, 40), 3).save(root / "palette.gif")
    Image.new("RGBA", (40, 48), (255, 0, 0, 128)).save(root / "alpha.png")
    os.symlink("loop.jpg", root / "loop.jpg")  # a symlink that points at itself
    sub = root / "nested" / "deeper"
    sub.mkdir(parents=True)
    photo.resize((48, 36)).save(sub / "small.png")
    os.symlink("..", sub / "up")  # a folder loop
    return {
        "good.jpg": "ok",
        "cmyk.jpg": "ok",
        "deep16.png": "ok",
        "rotated.jpg": "ok",
        "palette.gif": "ok",
        "alpha.png": "ok",
        "small.png": "ok",
        "truncated.jpg": "truncated",
        "notes.jpg": "not an image",
        "empty.png": "empty file",
        "bomb.png": "too large",
        "loop.jpg": "unreadable",
    }


def _rows(factory: sessionmaker[Session]) -> dict[str, ImageRow]:
    with factory() as s:
        return {Path(r.uri).name: r for r in s.scalars(select(ImageRow))}


def test_bad_files_are_recorded_with_reasons_and_never_stop_the_batch(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    expected = make_bad_folder(tmp_path / "zoo")
    summary = ingest(factory, project="zoo", paths=[tmp_path / "zoo"])
    rows = _rows(factory)
    assert set(rows) == set(expected)
    for name, want in expected.items():
        row = rows[name]
        if want == "ok":
            assert row.status == "ok", (name, row.reason)
            assert row.rgb_conversion and row.phash and len(row.phash) == 16
        else:
            assert row.status == "rejected", name
            assert row.reason.startswith(want), (name, row.reason)
    assert summary.added == 7
    assert sum(summary.rejected.values()) == 5
    assert summary.rejected["too large"] == 1
    assert (rows["rotated.jpg"].width, rows["rotated.jpg"].height) == (36, 70)
    assert rows["rotated.jpg"].exif_orientation == 6
    assert rows["cmyk.jpg"].mode == "CMYK" and "CMYK" in rows["cmyk.jpg"].rgb_conversion
    assert rows["deep16.png"].mode.startswith("I") and "16-bit" in rows["deep16.png"].rgb_conversion
    assert "alpha" in rows["alpha.png"].rgb_conversion
    assert "2500000000 pixels" in rows["bomb.png"].reason  # Pillow's own bomb check


def test_hostile_zoo_every_file_accounted_for(
    factory: sessionmaker[Session], tmp_path: Path, shared_data: Path
) -> None:
    root = tmp_path / "zoo"
    expected = hostile_zoo(root, shared_data)
    try:
        with unreadable_folders():
            summary = ingest(factory, project="zoo", paths=[root])
    finally:
        (root / "locked").chmod(0o755)
    outcome: dict[str, str] = {}
    for shown, reason in summary.rejected_files:
        outcome[shown] = reason
    for shown, reason in summary.skipped_files:
        outcome[shown] = "skipped:" + reason
    rows = {}
    with factory() as s:
        for r in s.scalars(select(ImageRow)):
            rows[r.uri] = r
    for r in rows.values():
        if r.status == "ok":
            flags = (r.meta or {}).get("flags") or {}
            shown = os.fsencode(load_uri_path(r.uri)).decode("utf-8", "backslashreplace")
            outcome[shown] = "ok+multi-frame" if "multi-frame" in flags else "ok"
    got = {str(Path(k).relative_to(root)): v for k, v in outcome.items()}
    assert set(got) == set(expected), sorted(got)
    for name, want in expected.items():
        assert got[name].startswith(want), (name, got[name])
    assert (
        summary.seen
        == len(expected)
        == summary.added + sum(summary.rejected.values()) + sum(summary.skipped.values())
    )
    assert summary.added == 4 and summary.flagged == {"multi-frame": 1}
    assert summary.skipped == {"hidden": 2, "unreadable folder": 1}
    # the non-UTF-8 name is stored as storable text and reads back to the same pixels
    raw = os.fsencode(root) + b"/" + NON_UTF8
    (odd,) = [r for r in rows.values() if r.uri.endswith("/%FF.jpg")]
    assert odd.status == "ok" and odd.uri.startswith("file://")
    assert (load_rgb(odd.uri) == load_rgb(os.fsdecode(raw))).all()
    # rejected rows carry no pixels data and text storable on PostgreSQL
    for r in rows.values():
        assert "\x00" not in (r.reason or "") and r.uri.encode("utf-8")
        if r.status != "ok":
            assert r.width is None and r.phash is None
    # a second run, with locked/ readable again: its one file is astronaut.jpg's bytes, so
    # nothing new is recorded and every entry is still accounted for
    again = ingest(factory, project="zoo", paths=[root])
    assert again.added == 0 and again.duplicates == 4 + 6 + 1 and again.skipped == {"hidden": 2}


def test_one_store_failure_never_stops_the_batch(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        Image.new("RGB", (40, 40), (i, 0, 0)).save(src / f"{i}.png")
    store = tmp_path / "store"
    store.mkdir()
    # the managed store's folder for image 1 is a file: copying it fails, the others go on
    from engine.uris import sha256_file

    (store / sha256_file(src / "1.png")[:2]).write_bytes(b"in the way")
    summary = ingest(factory, project="p", paths=[src], copy_to=store)
    assert summary.added == 2 and summary.rejected == {"store failed": 1}
    assert [p for p, _ in summary.rejected_files] == [str(src / "1.png")]


def test_reingest_adds_nothing(factory: sessionmaker[Session], tmp_path: Path) -> None:
    make_bad_folder(tmp_path / "zoo")
    ingest(factory, project="zoo", paths=[tmp_path / "zoo"])
    again = ingest(factory, project="zoo", paths=[tmp_path / "zoo"])
    assert again.added == 0 and sum(again.rejected.values()) == 0
    assert again.duplicates == 12
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(ImageRow)) == 12


def test_same_bytes_under_two_names_is_one_image(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    Image.new("RGB", (40, 40), (1, 2, 3)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes((tmp_path / "a.png").read_bytes())
    summary = ingest(factory, project="p", paths=[tmp_path])
    assert (summary.added, summary.duplicates) == (1, 1)


def test_copy_puts_bytes_in_the_managed_store(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    Image.new("RGB", (40, 40), (1, 2, 3)).save(tmp_path / "a.png")
    store = tmp_path / "store"
    ingest(factory, project="p", paths=[tmp_path / "a.png"], copy_to=store)
    row = next(iter(_rows(factory).values()))
    assert (
        Path(row.uri).is_relative_to(store.resolve())
        and Path(row.uri).read_bytes() == (tmp_path / "a.png").read_bytes()
    )


def test_pixel_limit_is_configurable(factory: sessionmaker[Session], tmp_path: Path) -> None:
    Image.new("RGB", (100, 100)).save(tmp_path / "a.png")
    summary = ingest(factory, project="p", paths=[tmp_path], max_pixels=5_000)
    assert summary.rejected["too large"] == 1


def test_shared_samples_and_tiny_coco(factory: sessionmaker[Session], shared_data: Path) -> None:
    summary = ingest(
        factory,
        project="shared",
        paths=[shared_data / "samples", shared_data / "tiny-coco" / "val2017"],
    )
    n_photos = len(list((shared_data / "samples").glob("*.jpg")))
    assert summary.added == n_photos + 50
    # the licence files in samples/ are not images: recorded, not fatal
    assert summary.rejected["not an image"] == len(list((shared_data / "samples").glob("LICENSE*")))


@pytest.mark.postgres
def test_concurrent_ingests_leave_no_duplicates(postgres_url: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(
            tmp_path / f"{i}.png"
        )
    engine = make_engine(postgres_url)
    factory = make_session_factory(engine)
    results = []
    barrier = threading.Barrier(3)

    def run() -> None:
        barrier.wait()
        results.append(ingest(factory, project="race", paths=[tmp_path]))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(ImageRow)) == 12
    assert sum(r.added for r in results) == 12
    assert sum(r.duplicates for r in results) == 24
    engine.dispose()
