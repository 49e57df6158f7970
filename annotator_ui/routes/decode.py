"""The decode endpoint: one prompt -> one mask from the image's cached embedding.

``mask_input_id`` in an answer names the decode's low-res logits, kept per app
(``LogitsStore``) so that the next prompt on the same object refines it.
"""

from __future__ import annotations

import io
import threading
import time
import uuid
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response

from annotator_ui.deps import AnnotatorUser, SegmenterDep, SessionDep
from annotator_ui.routes.tasks import ensure_can_read
from annotator_ui.schemas import DecodeIn, DecodeOut
from db import masks as dbm
from db.errors import InvalidInput, NotFound
from db.images import require_ok
from engine.lru import LRU
from engine.masks import decode_rle, encode_rle, rle_area, rle_bbox
from engine.segment.protocol import PromptError, validate_prompt

router = APIRouter(tags=["masks"])
LOGITS_KEPT = 256  # previous decodes kept for ``mask_input_id`` (per app)


class LogitsStore:
    """Previous decodes for ``mask_input_id``: id -> (user id, image id, low-res logits), LRU."""

    def __init__(self, size: int = LOGITS_KEPT):
        self.size = size
        self._items: LRU[str, tuple[int, int, Any]] = LRU(size)

    def put(self, user_id: int, image_id: int, logits: Any) -> str:
        key = uuid.uuid4().hex
        self._items.put(key, (user_id, image_id, logits))
        return key

    def get(self, key: str, user_id: int, image_id: int) -> Any:
        item = self._items.get(key)
        if item is None or item[0] != user_id or item[1] != image_id:
            raise InvalidInput(
                f"unknown mask_input_id {key!r} (expired or from another image): "
                "start the object again"
            )
        return item[2]


_store_lock = threading.Lock()


def logits_store(app: Any) -> LogitsStore:
    """The app's store of previous decodes (for ``mask_input_id``), made on first use."""
    with _store_lock:
        store = getattr(app.state, "logits_store", None)
        if store is None:
            store = app.state.logits_store = LogitsStore()
        return store


def _embedding(seg: Any, sha256: str | None, uri: str, max_pixels: int) -> Any:
    from engine.imageio import ImageRejected, load_rgb

    def load() -> Any:
        try:
            return load_rgb(uri, max_pixels=max_pixels)
        except ImageRejected as err:
            raise NotFound(f"the image file cannot be read: {err}") from err

    if sha256 and hasattr(seg, "embed_cached"):
        return seg.embed_cached(sha256, load)
    return seg.embed(load())


@router.post("/api/images/{image_id}/decode", response_model=DecodeOut)
def decode(
    image_id: int,
    body: DecodeIn,
    request: Request,
    session: SessionDep,
    user: AnnotatorUser,
    seg: SegmenterDep,
) -> Any:
    """One prompt -> one mask (COCO RLE, or a PNG with ``format=png``) and its score.

    Points ``[[x, y]]`` and box ``[x0, y0, x1, y1]`` in full-resolution pixels; 422 for
    NaN, out-of-image or empty prompts. The image embedding comes from the segmenter's
    cache (computed once per image). ``mask_input_id`` from a previous answer refines it.
    """
    image = require_ok(image=ensure_can_read(session, user=user, image_id=image_id))
    if not image.width or not image.height:
        raise NotFound(f"image {image_id} has no recorded size; ingest it again")
    size, sha256, uri = (image.height, image.width), image.sha256, image.uri
    prior_mask = None
    if body.mask_id is not None:
        m = dbm.get_mask(session, mask_id=body.mask_id)
        if m.image_id != image_id:
            raise InvalidInput(f"mask {body.mask_id} is not on image {image_id}")
        prior_mask = decode_rle(m.rle)
    session.rollback()  # end the transaction: never hold the database while the model runs
    try:
        points, labels, box = validate_prompt(
            size,
            np.asarray(body.points, dtype=np.float64).reshape(-1, 2) if body.points else None,
            np.asarray(body.labels) if body.labels else None,
            np.asarray(body.box, dtype=np.float64) if body.box is not None else None,
        )
    except (PromptError, ValueError) as err:
        raise InvalidInput(f"bad prompt: {err}") from err
    store = logits_store(request.app)
    t0 = time.perf_counter()
    emb = _embedding(seg, sha256, uri, request.app.state.settings.max_image_pixels)
    t1 = time.perf_counter()
    mask_input = None
    if body.mask_input_id:
        mask_input = store.get(body.mask_input_id, user.id, image_id)
    try:
        if mask_input is None and prior_mask is not None and hasattr(seg, "mask_to_input"):
            # a fix starts from the mask being fixed (sam: its 1x256x256 low-res logits)
            mask_input = seg.mask_to_input(prior_mask, emb)
        elif mask_input is None and prior_mask is not None and seg.name == "classical":
            mask_input = np.where(prior_mask, 1.0, -1.0).astype(np.float32)  # HW map accepted
        mask = None
        if body.format != "png":  # no photo-size array
            rle, score, logits = seg.decode_rle(emb, points, labels, box, mask_input)
        else:
            res = seg.decode(emb, points, labels, box, mask_input)
            rle, score, logits, mask = None, res.score, res.logits, np.asarray(res.mask, bool)
    except PromptError as err:
        raise InvalidInput(f"bad prompt: {err}") from err
    t2 = time.perf_counter()
    key = store.put(user.id, image_id, logits) if logits is not None else None
    if mask is not None:
        if body.format == "png":
            from PIL import Image as PILImage

            buf = io.BytesIO()
            PILImage.fromarray(mask.astype(np.uint8) * 255).convert("1").save(buf, format="PNG")
            headers = {"X-Score": f"{float(score):.6f}"}
            if key:
                headers["X-Mask-Input-Id"] = key
            return Response(buf.getvalue(), media_type="image/png", headers=headers)
        rle = encode_rle(mask)
    # area and box from the RLE: far cheaper than scanning pixels
    return DecodeOut(
        rle=rle,
        score=float(score),
        area=rle_area(rle),
        bbox=rle_bbox(rle),
        mask_input_id=key,
        embed_ms=(t1 - t0) * 1000,
        decode_ms=(t2 - t1) * 1000,
    )
