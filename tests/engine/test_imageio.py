"""Image loading, orientation and perceptual hashing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.imageio import ImageRejected, hamming, load_rgb, phash, walk_files


def test_load_rgb_applies_exif_and_converts_modes(tmp_path: Path) -> None:
    img = Image.fromarray(np.zeros((30, 70, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(tmp_path / "r.jpg", exif=exif)
    assert load_rgb(tmp_path / "r.jpg").shape == (70, 30, 3)
    Image.new("CMYK", (8, 6)).save(tmp_path / "c.jpg")
    Image.fromarray(np.full((6, 8), 65535, np.uint16)).save(tmp_path / "d.png")
    Image.new("RGBA", (8, 6), (0, 0, 0, 0)).save(tmp_path / "a.png")
    for name in ("c.jpg", "d.png", "a.png"):
        arr = load_rgb(tmp_path / name)
        assert arr.shape == (6, 8, 3) and arr.dtype == np.uint8
    assert (load_rgb(tmp_path / "d.png") == 255).all()
    assert (load_rgb(tmp_path / "a.png") == 255).all()  # transparent -> white


def test_load_rgb_rejects_bad_files(tmp_path: Path) -> None:
    (tmp_path / "x.jpg").write_text("text")
    with pytest.raises(ImageRejected, match="not an image"):
        load_rgb(tmp_path / "x.jpg")
    Image.new("RGB", (100, 100)).save(tmp_path / "big.png")
    with pytest.raises(ImageRejected, match="too large"):
        load_rgb(tmp_path / "big.png", max_pixels=100)


def test_phash_is_robust_to_resize_and_recompression_but_separates_photos(
    shared_data: Path, tmp_path: Path
) -> None:
    photos = sorted((shared_data / "samples").glob("*.jpg"))[:4]
    hashes = [phash(load_rgb(p)) for p in photos]
    for p, h in zip(photos, hashes, strict=True):
        img = Image.open(p).convert("RGB")
        img.resize((img.width // 3, img.height // 3)).save(tmp_path / "s.jpg", quality=30)
        assert hamming(h, phash(load_rgb(tmp_path / "s.jpg"))) <= 8
    for i in range(len(hashes)):
        for j in range(i + 1, len(hashes)):
            assert hamming(hashes[i], hashes[j]) > 12


def test_walk_files_recurses_sorted_and_skips_hidden(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / ".hidden").mkdir()
    for p in ("b/2.png", "1.png", ".hidden/x.png", ".dot.png"):
        (tmp_path / p).write_bytes(b"")
    names = [p.relative_to(tmp_path).as_posix() for p in walk_files([tmp_path])]
    assert names == ["1.png", "b/2.png"]
