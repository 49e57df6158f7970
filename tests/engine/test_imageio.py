"""Image loading and orientation; the one checked open against hostile files."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.imageio import ImageRejected, load_rgb, open_image, probe, thumbnail
from tests.ingest_zoo import animated_gif, eps_file, png_header_bomb


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


def test_load_rgb_rejects_bad_files(tmp_path: Path) -> None:  # noqa: D103
    (tmp_path / "x.jpg").write_text("text")
    with pytest.raises(ImageRejected, match="not an image"):
        load_rgb(tmp_path / "x.jpg")
    Image.new("RGB", (100, 100)).save(tmp_path / "big.png")
    with pytest.raises(ImageRejected, match="too large"):
        load_rgb(tmp_path / "big.png", max_pixels=100)


def test_pillow_bomb_check_is_never_switched_off() -> None:
    """No module of the project sets PIL.Image.MAX_IMAGE_PIXELS process-wide: it still has
    Pillow's default after everything this test session imported, and no source assigns it."""
    import engine.curation.auto  # noqa: F401  - decoders of the project, imported for effect
    import engine.flywheel.prefill  # noqa: F401
    import engine.ingest  # noqa: F401

    assert int(1024 * 1024 * 1024 // 4 // 3) == Image.MAX_IMAGE_PIXELS
    root = Path(__file__).resolve().parents[2]
    offenders = [
        str(p.relative_to(root))
        for folder in ("engine", "db", "annotator_ui", "scripts")
        for p in (root / folder).rglob("*.py")
        if re.search(r"\bMAX_IMAGE_PIXELS\s*=(?!=)", p.read_text())
    ]
    assert offenders == []


def test_bomb_header_is_rejected_before_decoding(tmp_path: Path) -> None:
    png_header_bomb(tmp_path / "bomb.png", 20_000, 20_000)  # 400 MP: Pillow's own check
    assert (tmp_path / "bomb.png").stat().st_size < 2_000
    with pytest.raises(ImageRejected, match=r"too large: .*400000000 pixels"):
        load_rgb(tmp_path / "bomb.png")
    png_header_bomb(tmp_path / "mid.png", 3_000, 2_000)  # 6 MP: under Pillow's, over ours
    with pytest.raises(ImageRejected, match=r"too large: 3000x2000 = 6 MP exceeds the 5 MP"):
        load_rgb(tmp_path / "mid.png", max_pixels=5_000_000)
    with pytest.raises(ImageRejected, match="too large"):
        thumbnail(tmp_path / "mid.png", size=256, max_pixels=5_000_000)
    res = probe(tmp_path / "mid.png", max_pixels=5_000_000)
    assert not res.ok and res.reason and res.reason.startswith("too large: 3000x2000")
    assert res.sha256 and res.width is None  # hashed, never decoded


def test_formats_are_an_allowlist_checked_on_content(tmp_path: Path) -> None:
    eps_file(tmp_path / "drawing.jpg")  # extension lies: content decides
    with pytest.raises(ImageRejected, match=r"unsupported format: PostScript/EPS"):
        load_rgb(tmp_path / "drawing.jpg")
    Image.new("RGB", (40, 40)).save(tmp_path / "icon.ico")
    assert probe(tmp_path / "icon.ico").reason.startswith("unsupported format: ICO")
    Image.new("1", (40, 40)).save(tmp_path / "x.xbm")
    assert probe(tmp_path / "x.xbm").reason.startswith("unsupported format: XBM")
    Image.new("RGB", (40, 40)).save(tmp_path / "qoi.qoi")  # Pillow reads it, we do not
    assert probe(tmp_path / "qoi.qoi").reason.startswith("not an image")
    (tmp_path / "notes.png").write_text("hello\n")
    assert probe(tmp_path / "notes.png").reason.startswith("not an image")
    for fmt, ext in (("TIFF", "tif"), ("WEBP", "webp"), ("BMP", "bmp"), ("PPM", "ppm")):
        Image.new("RGB", (40, 36), (9, 8, 7)).save(tmp_path / f"ok.{ext}", format=fmt)
        res = probe(tmp_path / f"ok.{ext}")
        assert res.ok and res.format == fmt, (fmt, res.reason)


def test_multi_frame_is_flagged_and_first_frame_used(tmp_path: Path) -> None:
    animated_gif(tmp_path / "anim.gif")
    res = probe(tmp_path / "anim.gif")
    assert res.ok and res.flags == {"multi-frame": "animated GIF: only the first frame is used"}
    rgb = load_rgb(tmp_path / "anim.gif")
    assert rgb.shape == (64, 64, 3) and (rgb[..., 0] > 200).all() and (rgb[..., 1] < 50).all()
    pages = [Image.new("L", (40, 40), v) for v in (10, 200)]
    pages[0].save(tmp_path / "pages.tif", save_all=True, append_images=pages[1:])
    assert probe(tmp_path / "pages.tif").flags == {
        "multi-frame": "multi-page TIFF: only the first frame is used"
    }
    assert (load_rgb(tmp_path / "pages.tif") == 10).all()
    Image.new("RGB", (40, 40)).save(tmp_path / "still.gif")
    assert probe(tmp_path / "still.gif").flags == {}


def test_too_small_truncated_empty(tmp_path: Path) -> None:
    Image.new("RGB", (10, 10)).save(tmp_path / "tiny.png")
    assert probe(tmp_path / "tiny.png").reason.startswith("too small: 10x10")
    assert probe(tmp_path / "tiny.png", min_side=8).ok
    Image.new("RGB", (300, 200), (1, 2, 3)).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    assert probe(tmp_path / "cut.jpg").reason.startswith("truncated")
    with pytest.raises(ImageRejected, match="truncated"):
        load_rgb(tmp_path / "cut.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert probe(tmp_path / "empty.jpg").reason == "empty file: 0 bytes"


def test_open_image_takes_streams_and_thumbnails_keep_orientation(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (50, 40)).save(buf, format="PNG")
    buf.seek(0)
    with open_image(buf, max_pixels=10_000) as img:
        assert img.size == (50, 40) and img.format == "PNG"
    buf.seek(0)  # the caller's stream is left open
    with pytest.raises(ImageRejected, match="too large"), open_image(buf, max_pixels=100):
        pass
    img = Image.fromarray(np.zeros((300, 700, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(tmp_path / "r.jpg", exif=exif)
    th = thumbnail(tmp_path / "r.jpg", size=128)
    assert th.mode == "RGB" and max(th.size) <= 128 and th.size[1] > th.size[0]
