"""Images as the review canvas shows them: metadata and the file (as stored, converted to
JPEG, a reduced rendition, or streamed / redirected from object storage). Who may read an
image is ``routes.tasks.ensure_can_read``'s rule."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Response
from fastapi.responses import FileResponse

from annotator_ui import renditions
from annotator_ui.deps import CurrentUser, SessionDep, SettingsDep
from annotator_ui.routes.tasks import ensure_can_read
from annotator_ui.schemas import ImageOut
from db.errors import NotFound
from db.images import require_ok
from db.models import Image

router = APIRouter(tags=["tasks"])


@router.get("/api/images/{image_id}")
def image_meta(image_id: int, session: SessionDep, user: CurrentUser) -> ImageOut:
    return ImageOut.of(ensure_can_read(session, user=user, image_id=image_id))


IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif")
STORED_TYPES = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png"}
STORED_TYPES |= {"WEBP": "image/webp", "GIF": "image/gif"}


def _remote_file(image: Image, settings: Any) -> Response:
    """An object-storage image sent as stored: a 307 to a presigned URL (s3, when
    ``presigned_redirect`` is on), else the object streamed through (``max_image_bytes``)."""
    from fastapi.responses import RedirectResponse, StreamingResponse

    from engine.storage import StorageError, iter_chunks, presigned_url

    try:
        if settings.presigned_redirect:
            url = presigned_url(image.uri, expires_s=settings.presigned_expiry_seconds)
            if url is not None:
                return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})
        chunks = iter_chunks(image.uri, max_bytes=settings.max_image_bytes)
    except StorageError as err:
        raise NotFound(f"image {image.id}'s object cannot be read: {err}") from err
    return StreamingResponse(
        chunks,
        media_type=STORED_TYPES[image.format or ""],
        headers={"Cache-Control": "private, max-age=3600"},
    )


@router.get(
    "/api/images/{image_id}/file",
    response_model=None,
    response_class=Response,
    responses={200: {"description": "The image file.", "content": {t: {} for t in IMAGE_TYPES}}},
)
def image_file(
    image_id: int,
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    width: int | None = Query(None, ge=16, le=16384),
) -> Response:
    """The image in display orientation (EXIF applied, first frame), as the masks' pixel frame.

    404 for an image not ingested ``ok``. Files needing no conversion are sent as stored;
    others are decoded through ``engine.imageio.load_rgb`` (format allowlist, pixel limit
    ``DATAENGINE_MAX_IMAGE_PIXELS`` checked from the header first) and sent as JPEG.
    ``width`` (below the image's): a reduced JPEG rendition of that width (height in
    proportion) for the review canvas's fit view, made once per process (JPEG files are
    decoded at a reduced DCT scale) and then served from memory.
    """
    from PIL import Image as PILImage

    from engine.imageio import ImageRejected, load_rgb
    from engine.storage import is_remote
    from engine.uris import display_path, uri_to_path

    image = require_ok(image=ensure_can_read(session, user=user, image_id=image_id))
    multi_frame = "multi-frame" in ((image.meta or {}).get("flags") or {})
    as_stored = image.exif_orientation in (None, 1) and not multi_frame
    as_stored = as_stored and image.format in STORED_TYPES
    remote = is_remote(image.uri)
    if remote:
        src = image.uri
    else:
        src = uri_to_path(image.uri)
        if not Path(src).is_file():
            raise NotFound(f"image file missing: {display_path(src)} (moved since ingest?)")
        if image.file_size is not None and Path(src).stat().st_size != image.file_size:
            raise NotFound(f"image {image_id}'s file changed since ingest; ingest it again")
    if width is not None and image.width and image.height and width < image.width:
        renditions.note_request(image, width)
        body = renditions.cached(
            src,
            image,
            width,
            as_stored=as_stored and not remote,
            max_pixels=settings.max_image_pixels,
        )
        return Response(
            body, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"}
        )
    if as_stored:
        if remote:
            return _remote_file(image, settings)
        return FileResponse(src, headers={"Cache-Control": "private, max-age=3600"})
    try:
        rgb = load_rgb(src, max_pixels=settings.max_image_pixels)
    except ImageRejected as err:
        raise NotFound(f"image {image_id} cannot be read: {err}") from err
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format="JPEG", quality=92)
    return Response(
        buf.getvalue(), media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"}
    )
