"""Reduced JPEG renditions of an image for the review canvas's fit view, and their look-ahead.

The canvas asks ``GET /api/images/{id}/file?width=W/2**k`` (``k`` in 1..3, from its size and
the image's) for its first view. A rendition is made once per app process and kept in memory
(``RENDITIONS``, an LRU of ``RENDITIONS_KEPT`` JPEG byte strings keyed by
``(image_id, sha256, width)``). Made on the first request, a 4000 px photo's rendition took
440-540 ms of the annotator's first open; so when ``next`` leases an image, ``queue_ahead``
queues the renditions of that image and the next few of the project as idle jobs
(``annotator_ui.idle_work``), at the reduction this process was last asked for (``k`` of the
last ``?width=`` request), or at ``k = 1`` for photos at least ``AHEAD_MIN_WIDTH`` wide
before any was asked. Smaller images, with no request seen, get none (they are sent whole).
Each process has its own cache: with several ``serve`` workers, a rendition made ahead by one
serves only the requests that reach that one.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

from sqlalchemy import select

from db.errors import NotFound
from db.models import Image
from engine.lru import LRU

RENDITIONS_KEPT = 64  # reduced JPEGs kept in memory (a few hundred kB each)
RENDITIONS: LRU[tuple[Any, ...], bytes] = LRU(RENDITIONS_KEPT)
RENDER_AHEAD = 4  # the leased image and the next few of the project
AHEAD_MIN_WIDTH = 2048  # before any ``?width=`` request: only photos this wide, at W/2
_LAST_SCALE: dict[str, int] = {}  # "k": the reduction exponent last asked in this process


def make(src: Any, image: Image, width: int, as_stored: bool, max_pixels: int) -> bytes:
    """The image reduced to ``width`` pixels (height in proportion) as JPEG bytes.

    ``src``: a local path or a remote URI; ``as_stored``: the file's own pixels are the
    display frame (JPEG files are then decoded at a reduced DCT scale). NotFound when the
    image cannot be decoded.
    """
    from PIL import Image as PILImage

    from engine.imageio import ImageRejected, load_rgb

    height = max(1, round(image.height * width / image.width))
    try:
        if as_stored and image.format in ("JPEG", "MPO"):
            with PILImage.open(src) as im:
                im.draft("RGB", (width, height))  # libjpeg decodes at 1/2, 1/4 or 1/8 scale
                small = im.convert("RGB").resize((width, height), PILImage.Resampling.BILINEAR)
        else:
            rgb = load_rgb(src, max_pixels=max_pixels)
            small = PILImage.fromarray(rgb).resize((width, height), PILImage.Resampling.BILINEAR)
    except (ImageRejected, OSError) as err:
        raise NotFound(f"image {image.id} cannot be read: {err}") from err
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=88)
    return buf.getvalue()


def cached(src: Any, image: Image, width: int, *, as_stored: bool, max_pixels: int) -> bytes:
    """The rendition from this process's cache, made (and kept) on a miss."""
    return RENDITIONS.get_or_put(
        (image.id, image.sha256, width),
        lambda: make(src, image, width, as_stored, max_pixels),
    )


def note_request(image: Image, width: int) -> None:
    """Remember the reduction ``k`` (width == round(W / 2**k)) a client asked for."""
    if image.width and width < image.width:
        k = round(math.log2(image.width / width))
        if 1 <= k <= 3 and round(image.width / 2**k) == width:
            _LAST_SCALE["k"] = k


def ahead_width(image_width: int | None) -> int | None:
    """The width to prepare for an image ``image_width`` px wide; None for none."""
    if not image_width:
        return None
    k = _LAST_SCALE.get("k")
    if k is None:
        k = 1 if image_width >= AHEAD_MIN_WIDTH else 0
    width = round(image_width / 2**k)
    return width if k and width >= 16 else None


def local_source(image: Image) -> tuple[str, bool] | None:
    """``(path, as_stored)`` of a local image whose file is unchanged since ingest; None for
    a remote, missing or changed one (those are left to the request itself)."""
    from engine.storage import is_remote
    from engine.uris import uri_to_path

    if is_remote(image.uri):
        return None
    src = uri_to_path(image.uri)
    path = Path(src)
    if not path.is_file() or (
        image.file_size is not None and path.stat().st_size != image.file_size
    ):
        return None
    multi_frame = "multi-frame" in ((image.meta or {}).get("flags") or {})
    as_stored = image.exif_orientation in (None, 1) and not multi_frame and bool(image.format)
    return str(src), as_stored


def queue_ahead(app: Any, image_id: int, image_width: int | None) -> None:
    """Queue (idle job) the renditions of ``image_id`` and the next few images of its project;
    nothing (not even the job's query) when the leased image itself would get none."""
    work = getattr(app.state, "idle_work", None)
    if work is not None and ahead_width(image_width) is not None:
        work.submit(("renditions", image_id), lambda: _queue_upcoming(app, image_id))


def _queue_upcoming(app: Any, image_id: int) -> None:
    """Idle job: one job per upcoming image whose rendition is not cached yet."""
    with app.state.session_factory() as session:
        image = session.get(Image, image_id)
        if image is None:
            return
        upcoming = session.scalars(
            select(Image)
            .where(Image.project_id == image.project_id, Image.id >= image.id, Image.status == "ok")
            .order_by(Image.id)
            .limit(RENDER_AHEAD)
        ).all()
        session.expunge_all()
    max_pixels = app.state.settings.max_image_pixels
    for im in upcoming:
        width = ahead_width(im.width)
        if width is None or not im.height or RENDITIONS.get((im.id, im.sha256, width)):
            continue
        source = local_source(im)
        if source is None:
            continue
        src, as_stored = source
        app.state.idle_work.submit(
            ("rendition", im.id, width),
            lambda i=im, s=src, w=width, a=as_stored: _prepare(s, i, w, a, max_pixels),
        )


def _prepare(src: str, image: Image, width: int, as_stored: bool, max_pixels: int) -> None:
    """Idle job: make and keep one rendition; an unreadable image is left to its request."""
    try:
        cached(src, image, width, as_stored=as_stored, max_pixels=max_pixels)
    except NotFound:
        return
