"""Ingest on both databases: good photos, a zoo of bad files, dedupe, concurrency."""

from __future__ import annotations

import os
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from db.models import Image as ImageRow
from db.session import make_engine, make_session_factory
from engine.ingest import ingest


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose IHDR claims width x height (a decompression bomb header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


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
    _png_header_only(root / "bomb.png", 50_000, 50_000)
    Image.new("CMYK", (40, 30), (10, 200, 30, 5)).save(root / "cmyk.jpg")
    Image.fromarray(np.arange(50 * 40, dtype=np.uint16).reshape(50, 40) * 30).save(
        root / "deep16.png"
    )
    rotated = Image.fromarray(rng.integers(0, 255, (30, 70, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display: 70x30 stored -> 30x70 shown
    rotated.save(root / "rotated.jpg", exif=exif)
    Image.new("P", (20, 20), 3).save(root / "palette.gif")
    Image.new("RGBA", (20, 24), (255, 0, 0, 128)).save(root / "alpha.png")
    os.symlink("loop.jpg", root / "loop.jpg")  # a symlink that points at itself
    sub = root / "nested" / "deeper"
    sub.mkdir(parents=True)
    photo.resize((40, 30)).save(sub / "small.png")
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
    assert (rows["rotated.jpg"].width, rows["rotated.jpg"].height) == (30, 70)
    assert rows["rotated.jpg"].exif_orientation == 6
    assert rows["cmyk.jpg"].mode == "CMYK" and "CMYK" in rows["cmyk.jpg"].rgb_conversion
    assert rows["deep16.png"].mode.startswith("I") and "16-bit" in rows["deep16.png"].rgb_conversion
    assert "alpha" in rows["alpha.png"].rgb_conversion
    assert "50000x50000" in rows["bomb.png"].reason


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
    Image.new("RGB", (10, 10), (1, 2, 3)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes((tmp_path / "a.png").read_bytes())
    summary = ingest(factory, project="p", paths=[tmp_path])
    assert (summary.added, summary.duplicates) == (1, 1)


def test_copy_puts_bytes_in_the_managed_store(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    Image.new("RGB", (10, 10), (1, 2, 3)).save(tmp_path / "a.png")
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
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(
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
