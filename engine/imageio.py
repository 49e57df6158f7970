"""Reading images safely: probe (verify, decode, orientation, mode), load as RGB, perceptual hash.

Everything returns or takes HWC uint8 RGB arrays in the *display* orientation
(EXIF orientation applied), which is the pixel frame every mask uses.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError
from scipy.fft import dctn

ImageFile.LOAD_TRUNCATED_IMAGES = False
# Our own, configurable limit (checked from the header, before decoding) replaces Pillow's
# fixed one, so the rejection reason can name the size and the setting that governs it.
Image.MAX_IMAGE_PIXELS = None
EXIF_ORIENTATION_TAG = 0x0112
DEFAULT_MAX_PIXELS = 100_000_000


class ImageRejected(ValueError):
    """The file is not a usable image; ``str(err)`` is the reason recorded at ingest."""


@dataclass
class ProbeResult:
    """What ingest records about a file. width/height are after EXIF orientation."""

    path: Path
    sha256: str | None
    file_size: int | None
    ok: bool
    reason: str | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None
    mode: str | None = None
    rgb_conversion: str | None = None
    exif_orientation: int | None = None
    phash: str | None = None


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _conversion(mode: str, has_transparency: bool) -> str:
    if mode == "RGB":
        return "RGB as is"
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and has_transparency):
        return f"{mode} -> RGB, alpha composited on white"
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        return f"{mode} -> RGB, 16-bit scaled to 8-bit (/257), grey replicated"
    if mode == "F":
        return "F -> RGB, float clipped to 0..255"
    if mode == "CMYK":
        return "CMYK -> RGB via Pillow's naive conversion"
    if mode in ("L", "1"):
        return f"{mode} -> RGB, grey replicated"
    return f"{mode} -> RGB via Pillow convert"


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(img, dtype=np.int64)
        grey = np.clip(arr // 257 if arr.max() > 255 else arr, 0, 255).astype(np.uint8)
        return Image.fromarray(np.dstack([grey] * 3))
    if mode == "F":
        grey = np.clip(np.asarray(img, dtype=np.float64), 0, 255).astype(np.uint8)
        return Image.fromarray(np.dstack([grey] * 3))
    return img.convert("RGB")


def _open_checked(path: Path, max_pixels: int) -> Image.Image:
    """Open lazily and refuse oversize images before any pixel is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError as err:
        raise ImageRejected(f"too large: {err}") from err
    except UnidentifiedImageError as err:
        raise ImageRejected("not an image: Pillow cannot identify the file format") from err
    w, h = img.size
    if w <= 0 or h <= 0:
        img.close()
        raise ImageRejected(f"invalid size {w}x{h}")
    if w * h > max_pixels:
        img.close()
        raise ImageRejected(
            f"too large: {w}x{h} = {w * h / 1e6:.0f} MP exceeds the {max_pixels / 1e6:.0f} MP limit "
            "(DATAENGINE_MAX_IMAGE_PIXELS)"
        )
    return img


def probe(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ProbeResult:
    """Verify and fully decode one file. Never raises for bad files: returns ok=False + reason."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as err:
        return ProbeResult(path, None, None, False, f"unreadable: {err.strerror or err}")
    if not path.is_file():
        return ProbeResult(path, None, None, False, "not a regular file")
    try:
        digest = sha256_file(path)
    except OSError as err:
        return ProbeResult(path, None, size, False, f"unreadable: {err.strerror or err}")
    res = ProbeResult(path, digest, size, False)
    if size == 0:
        res.reason = "empty file (0 bytes)"
        return res
    try:
        with _open_checked(path, max_pixels) as img:
            img.verify()  # structure and checksums
        with _open_checked(path, max_pixels) as img:
            res.format = img.format
            res.mode = img.mode
            res.exif_orientation = int(img.getexif().get(EXIF_ORIENTATION_TAG, 1) or 1)
            img.load()  # full decode: catches truncation
            res.rgb_conversion = _conversion(img.mode, "transparency" in img.info)
            w, h = img.size
            if res.exif_orientation in (5, 6, 7, 8):
                w, h = h, w
            res.width, res.height = w, h
            res.phash = phash(_to_rgb(ImageOps.exif_transpose(img)))
    except ImageRejected as err:
        res.reason = str(err)
        return res
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        msg = str(err) or type(err).__name__
        if "truncated" in msg.lower():
            res.reason = f"truncated: {msg}"
        else:
            res.reason = f"corrupt: {msg}"
        return res
    res.ok = True
    return res


def load_rgb(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Load a file as HWC uint8 RGB in display orientation. Raises ImageRejected on bad files."""
    try:
        with _open_checked(Path(path), max_pixels) as img:
            img.load()
            out = _to_rgb(ImageOps.exif_transpose(img))
            return np.ascontiguousarray(np.asarray(out, dtype=np.uint8))
    except ImageRejected:
        raise
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageRejected(f"cannot decode {path}: {err}") from err


def phash(img: Image.Image | np.ndarray, hash_size: int = 8, highfreq: int = 4) -> str:
    """DCT perceptual hash (64 bits as 16 hex chars) of an RGB image."""
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    n = hash_size * highfreq
    grey = np.asarray(img.convert("L").resize((n, n), Image.Resampling.LANCZOS), dtype=np.float64)
    low = dctn(grey, norm="ortho")[:hash_size, :hash_size]
    bits = (low > np.median(low)).flatten()
    value = 0
    for b in bits:
        value = (value << 1) | int(b)
    return f"{value:0{hash_size * hash_size // 4}x}"


def hamming(a: str, b: str) -> int:
    """Bit distance between two hex hashes."""
    return bin(int(a, 16) ^ int(b, 16)).count("1")


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def walk_files(paths: list[Path]) -> list[Path]:
    """All files under ``paths`` (recursive, sorted, symlinked folders followed once).

    Every regular file and broken/looping link is returned, image or not, so ingest
    can record why it was rejected; hidden files and folders are skipped.
    """
    out: list[Path] = []
    seen_dirs: set[str] = set()
    for root in paths:
        root = Path(root)
        if not root.is_dir():
            out.append(root)
            continue
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            real = os.path.realpath(dirpath)
            if real in seen_dirs:
                dirnames[:] = []
                continue
            seen_dirs.add(real)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if not name.startswith("."):
                    out.append(Path(dirpath) / name)
    return out
