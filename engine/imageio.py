"""Reading images safely: the one checked open, probe (verify, decode, orientation, mode),
load as RGB, thumbnails. (Stored uris of local paths: ``engine.uris``; perceptual hash:
``engine.phash``.)

Every decode in the project goes through :func:`open_image`: formats are an allowlist
checked on what Pillow detects (never the extension; no PostScript/EPS, PDF, XBM ...), and
the pixel count is checked from the header, before any pixel is decoded, against a limit
passed by the caller (``Settings.max_image_pixels`` at the edges). Pillow's own
decompression-bomb check (``PIL.Image.MAX_IMAGE_PIXELS``) is left at its default and stays
active on top: nothing here changes it process-wide.

Everything returns or takes HWC uint8 RGB arrays in the *display* orientation
(EXIF orientation applied, first frame of multi-frame files), which is the pixel frame every
mask uses.

File names that are not valid UTF-8 (``b"\\xff.jpg"``) are stored as percent-encoded
``file://`` URIs (``engine.uris.path_to_uri``), which every function here also accepts.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from engine.phash import phash
from engine.storage import DEFAULT_MAX_BYTES, StorageError, is_remote, read_bytes
from engine.uris import display_path, safe_text, sha256_file, uri_to_path

ImageFile.LOAD_TRUNCATED_IMAGES = False
EXIF_ORIENTATION_TAG = 0x0112
DEFAULT_MAX_PIXELS = 100_000_000
DEFAULT_MIN_SIDE = 32

# Formats decoded (as Pillow names its plugins). Pillow's JPEG plugin reports many camera
# JPEGs as "MPO" (multi-picture: the photo plus a preview), accepted as JPEG.
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF", "PPM")
_FORMAT_ALIASES = {"JPEG": ("MPO",)}
# Formats whose extra frames are animation/pages (flagged, first frame used). MPO's second
# frame is a camera preview of the same picture, so MPO is not flagged.
_MULTI_FRAME_FLAGGED = ("GIF", "WEBP", "TIFF", "PNG")
# Magic numbers of formats we refuse, to name them in the reason (Pillow is never asked).
_REFUSED_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%!PS", "PostScript/EPS (Pillow would run Ghostscript on it)"),
    (b"\xc5\xd0\xd3\xc6", "PostScript/EPS (Pillow would run Ghostscript on it)"),
    (b"%PDF", "PDF"),
    (b"#define", "XBM"),
    (b"/* XPM */", "XPM"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"icns", "ICNS"),
    (b"8BPS", "PSD"),
    (b"\x97JB2", "JBIG2"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"SIMPLE  =", "FITS"),
    (b"\x01\xda", "SGI"),
    (b"\x59\xa6\x6a\x95", "Sun raster"),
)
_SUFFIX = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "TIFF": ".tif"}
_SUFFIX |= {"BMP": ".bmp", "GIF": ".gif", "PPM": ".ppm"}


class ImageRejected(ValueError):
    """The file is not a usable image; ``str(err)`` is the reason recorded at ingest."""


def format_suffix(fmt: str | None) -> str:
    """The file extension for a format Pillow detected (for the managed store)."""
    return _SUFFIX.get(fmt or "", ".img")


# --- the one checked open -----------------------------------------------------------------------


def _refused_format(head: bytes) -> str | None:
    for magic, name in _REFUSED_MAGIC:
        if head.startswith(magic):
            return name
    return None


def _bomb_reason(err: Exception, max_pixels: int) -> str:
    return (
        f"too large: {err} (Pillow's decompression-bomb limit, "
        f"{2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6:.0f} MP, applies on top of "
        f"DATAENGINE_MAX_IMAGE_PIXELS={max_pixels})"
    )


@contextmanager
def open_image(
    src: str | os.PathLike[str] | BinaryIO,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    formats: tuple[str, ...] = ALLOWED_FORMATS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Iterator[Image.Image]:
    """Open an image lazily after checking it, before any pixel is decoded. The one way this
    project opens image files.

    ``src``: a path, a stored uri (:func:`uri_to_path`; ``s3://``, ``gs://``, ``az://`` and
    ``http(s)://`` objects are read through ``engine.storage``, at most ``max_bytes``) or a
    binary file object. The file's
    format (as Pillow detects it from the content) must be in ``formats``; its header size
    (width x height, before EXIF rotation) must be at most ``max_pixels``; Pillow's own
    decompression-bomb check also applies. Yields the Pillow image positioned at frame 0, not
    yet decoded; closed on exit. Raises :class:`ImageRejected` with a reason otherwise.
    """
    if max_pixels <= 0:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    owned = not hasattr(src, "read")
    fp: str | BinaryIO
    if owned and is_remote(src):  # type: ignore[arg-type]
        fp = io.BytesIO(_remote_bytes(os.fspath(src), max_bytes))  # type: ignore[arg-type]
    else:
        fp = src if not owned else uri_to_path(src)  # type: ignore[arg-type,assignment]
    Image.init()  # registers every plugin (idempotent), so each allowed format can be named
    try:
        img = Image.open(fp, formats=list(formats))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        # the warning arrives as an exception only where warnings are errors (-W error)
        raise ImageRejected(_bomb_reason(err, max_pixels)) from err
    except UnidentifiedImageError as err:
        raise ImageRejected(_unidentified_reason(fp)) from err
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageRejected(f"corrupt: {safe_text(str(err) or type(err).__name__)}") from err
    try:
        _check_header(img, max_pixels=max_pixels, formats=formats)
        yield img
    finally:
        if owned:  # a caller's stream stays open
            img.close()


def _remote_bytes(uri: str, max_bytes: int) -> bytes:
    """A remote object's bytes (``engine.storage``), bounded; ImageRejected with the reason."""
    try:
        return read_bytes(uri, max_bytes=max_bytes)
    except StorageError as err:
        raise ImageRejected(safe_text(str(err))) from err


def _unidentified_reason(fp: str | BinaryIO) -> str:
    try:
        if isinstance(fp, str):
            with open(fp, "rb") as f:
                head = f.read(16)
        else:
            fp.seek(0)
            head = fp.read(16)
    except OSError:
        head = b""
    refused = _refused_format(head)
    if refused is not None:
        return f"unsupported format: {refused}; allowed: {', '.join(ALLOWED_FORMATS)}"
    return "not an image: Pillow cannot identify the file format"


def _check_header(img: Image.Image, *, max_pixels: int, formats: tuple[str, ...]) -> None:
    accepted = set(formats).union(*(_FORMAT_ALIASES.get(f, ()) for f in formats))
    if img.format not in accepted:
        raise ImageRejected(
            f"unsupported format: {img.format}; allowed: {', '.join(ALLOWED_FORMATS)}"
        )
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ImageRejected(f"corrupt: invalid size {w}x{h}")
    if w * h > max_pixels:
        raise ImageRejected(
            f"too large: {w}x{h} = {w * h / 1e6:.0f} MP exceeds the {max_pixels / 1e6:.0f} MP "
            "limit (DATAENGINE_MAX_IMAGE_PIXELS)"
        )


# --- probe and load -----------------------------------------------------------------------------


@dataclass
class ProbeResult:
    """What ingest records about a file. width/height are after EXIF orientation.

    ``flags`` maps a flag to its explanation for files kept with a caveat, e.g.
    ``{"multi-frame": "animated GIF: only the first frame is used"}``.
    """

    path: Path | str  # a str for a remote uri (engine.storage)
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
    flags: dict[str, str] = field(default_factory=dict)

    def image_columns(self) -> dict[str, Any]:
        """The ``image`` row's columns this probe fills (``db.images.add_image`` keywords)."""
        return {
            "sha256": self.sha256,
            "ok": self.ok,
            "reason": self.reason,
            "file_size": self.file_size,
            "width": self.width,
            "height": self.height,
            "format": self.format,
            "mode": self.mode,
            "rgb_conversion": self.rgb_conversion,
            "exif_orientation": self.exif_orientation,
            "phash": self.phash,
            "meta": {"flags": dict(self.flags)} if self.flags else {},
        }


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
        arr = np.asarray(img, dtype=np.int32)  # 4 bytes a pixel: the limit bounds the memory
        grey = np.clip(arr // 257 if arr.max() > 255 else arr, 0, 255).astype(np.uint8)
        return Image.fromarray(np.dstack([grey] * 3))
    if mode == "F":
        grey = np.clip(np.asarray(img, dtype=np.float64), 0, 255).astype(np.uint8)
        return Image.fromarray(np.dstack([grey] * 3))
    return img.convert("RGB")


def _decode_reason(err: Exception) -> str:
    msg = safe_text(str(err) or type(err).__name__)
    return f"truncated: {msg}" if "truncated" in msg.lower() else f"corrupt: {msg}"


def _multi_frame(img: Image.Image) -> str | None:
    """A note when the file holds animation frames or pages (frame 0 is what we use)."""
    if img.format not in _MULTI_FRAME_FLAGGED or not getattr(img, "is_animated", False):
        return None
    kind = "multi-page TIFF" if img.format == "TIFF" else f"animated {img.format}"
    img.seek(0)
    return f"{kind}: only the first frame is used"


def probe(
    path: str | os.PathLike[str],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = DEFAULT_MIN_SIDE,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ProbeResult:
    """Verify and fully decode one file or object. Never raises for bad files: returns
    ok=False + reason.

    Rejected before decoding: unreadable (``not found`` for a missing object), empty, more
    than ``max_bytes`` bytes (objects; read at most once, bounded), a format outside
    ``ALLOWED_FORMATS``, more than ``max_pixels`` pixels, a side under ``min_side`` px (too
    small to segment). Multi-frame files are kept (frame 0) with ``flags["multi-frame"]``.
    ``path``: a local path, a stored uri, or a remote uri (``engine.storage``), which stays
    the result's ``path`` as a str.
    """
    if is_remote(path):
        uri = os.fspath(path)
        try:
            data = read_bytes(uri, max_bytes=max_bytes)
        except StorageError as err:
            return ProbeResult(uri, None, None, False, safe_text(str(err)))
        res = ProbeResult(uri, hashlib.sha256(data).hexdigest(), len(data), False)
        if not data:
            res.reason = "empty file: 0 bytes"
            return res
        return _decode_checks(res, lambda: io.BytesIO(data), max_pixels, min_side)
    path = Path(uri_to_path(path))
    try:
        size = path.stat().st_size
    except OSError as err:
        return ProbeResult(path, None, None, False, safe_text(f"unreadable: {err.strerror or err}"))
    if not path.is_file():
        return ProbeResult(path, None, None, False, "not a regular file")
    try:
        digest = sha256_file(path)
    except OSError as err:
        return ProbeResult(path, None, size, False, safe_text(f"unreadable: {err.strerror or err}"))
    res = ProbeResult(path, digest, size, False)
    if size == 0:
        res.reason = "empty file: 0 bytes"
        return res
    return _decode_checks(res, lambda: path, max_pixels, min_side)


def _decode_checks(
    res: ProbeResult,
    source: Callable[[], Path | BinaryIO],
    max_pixels: int,
    min_side: int,
) -> ProbeResult:
    """The header checks, ``verify`` and a full decode of frame 0; fills ``res``."""
    try:
        with open_image(source(), max_pixels=max_pixels) as img:
            w, h = img.size
            if min(w, h) < min_side:
                raise ImageRejected(
                    f"too small: {w}x{h}; segmenting needs both sides of at least {min_side} px "
                    "(DATAENGINE_MIN_IMAGE_SIDE)"
                )
            img.verify()  # structure and checksums
        with open_image(source(), max_pixels=max_pixels) as img:
            res.format = img.format
            res.mode = img.mode
            if note := _multi_frame(img):
                res.flags["multi-frame"] = note
            res.exif_orientation = int(img.getexif().get(EXIF_ORIENTATION_TAG, 1) or 1)
            img.load()  # full decode of frame 0: catches truncation
            res.rgb_conversion = _conversion(img.mode, "transparency" in img.info)
            w, h = img.size
            if res.exif_orientation in (5, 6, 7, 8):
                w, h = h, w
            res.width, res.height = w, h
            res.phash = phash(_to_rgb(ImageOps.exif_transpose(img)))
    except ImageRejected as err:
        res.reason = safe_text(str(err))
        return res
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as err:
        res.reason = _decode_reason(err)
        return res
    res.ok = True
    return res


def load_rgb(
    path: str | os.PathLike[str] | BinaryIO, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Load a file (path, stored uri or binary file) as HWC uint8 RGB in display orientation
    (first frame). Raises :class:`ImageRejected` on bad or oversize files."""
    try:
        with open_image(path, max_pixels=max_pixels) as img:
            img.load()
            out = _to_rgb(ImageOps.exif_transpose(img))
            return np.ascontiguousarray(np.asarray(out, dtype=np.uint8))
    except ImageRejected:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as err:
        where = display_path(path) if not hasattr(path, "read") else "stream"  # type: ignore[arg-type]
        raise ImageRejected(f"cannot decode {where}: {_decode_reason(err)}") from err


def thumbnail(
    path: str | os.PathLike[str], *, size: int, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """An RGB Pillow image with long side at most ``size``, display orientation, first frame.

    JPEGs are decoded at a reduced DCT scale (``draft``), so a large photo costs a fraction of
    a full decode. Raises :class:`ImageRejected` like :func:`load_rgb`.
    """
    if size <= 0:
        raise ValueError(f"thumbnail size must be positive, got {size}")
    try:
        with open_image(path, max_pixels=max_pixels) as img:
            img.draft("RGB", (size, size))
            img.load()
            out = _to_rgb(ImageOps.exif_transpose(img))
            if out is img:
                out = img.copy()
    except ImageRejected:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as err:
        raise ImageRejected(f"cannot decode {display_path(path)}: {_decode_reason(err)}") from err
    out.thumbnail((size, size), Image.Resampling.LANCZOS)
    return out
