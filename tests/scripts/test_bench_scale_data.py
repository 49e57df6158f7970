"""Scratch data of the scale benchmark: distinct synthetic photos the classical backend reads."""

from __future__ import annotations

import hashlib
from pathlib import Path

from engine.imageio import load_rgb
from scripts.bench_scale_data import work_images_folder


def test_work_images_are_distinct_rgb_photos(tmp_path: Path) -> None:
    folder = work_images_folder(tmp_path / "w", 3, 40)
    files = sorted(folder.iterdir())
    assert [f.name for f in files] == ["w0000.png", "w0001.png", "w0002.png"]
    assert len({hashlib.sha256(f.read_bytes()).hexdigest() for f in files}) == 3
    image = load_rgb(str(files[0]))
    assert image.shape == (40, 40, 3) and image.dtype.name == "uint8"
