"""The perceptual hash: robust to resizing and recompression, far apart for different photos."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from engine.imageio import load_rgb
from engine.phash import hamming, phash


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
