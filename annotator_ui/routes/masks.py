"""Masks of an image: list, review decisions, fixes, additions, labels; and the decode endpoint.

Every change carries the mask ``version`` the client saw (409 if it changed since).
Annotators change masks only under a live lease (``routes.tasks.ensure_can_write``).
Proposals are listed only in the ``prefill`` arm, and only ``confident`` ones unless
``include=less_confident``.
"""

from __future__ import annotations

import io
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from sqlalchemy.orm import Session

from annotator_ui.deps import AnnotatorUser, CurrentUser, SegmenterDep, SessionDep
from annotator_ui.routes.tasks import commit_then_raise, ensure_can_read, ensure_can_write
from annotator_ui.schemas import (
    AcceptIn,
    DecodeIn,
    DecodeOut,
    FixIn,
    LeaseIn,
    MaskOut,
    MasksOut,
    NewMaskIn,
    RelabelIn,
    RevertIn,
)
from db import leases
from db import masks as dbm
from db.errors import InvalidInput, LeaseLost
from db.models import User
from engine.masks import decode_rle, encode_rle, mask_bbox, rle_area, rle_bbox
from engine.segment.protocol import PromptError, validate_prompt

router = APIRouter(tags=["masks"])
LOGITS_KEPT = 256  # previous decodes kept for ``mask_input_id`` (per app)


class LogitsStore:
    """A small thread-safe LRU: id -> (user id, image id, low-res logits)."""

    def __init__(self, size: int = LOGITS_KEPT):
        self.size = size
        self._items: OrderedDict[str, tuple[int, int, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, user_id: int, image_id: int, logits: Any) -> str:
        key = uuid.uuid4().hex
        with self._lock:
            self._items[key] = (user_id, image_id, logits)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return key

    def get(self, key: str, user_id: int, image_id: int) -> Any:
        with self._lock:
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


def _masks_out(session: Session, masks: list[Any]) -> list[MaskOut]:
    return [MaskOut.of(m) for m in masks]


def _write(
    session: Session,
    user: User,
    image_id: int,
    lease_id: int | None,
    change: dict[str, Any],
) -> None:
    try:
        ensure_can_write(session, user=user, image_id=image_id, lease_id=lease_id, change=change)
    except LeaseLost as err:
        commit_then_raise(session, err)


def _shape(rle: dict[str, Any]) -> dict[str, Any]:
    try:
        arr = decode_rle(rle)
    except ValueError as err:
        raise InvalidInput(f"mask is not a valid COCO RLE: {err}") from err
    return {"rle": encode_rle(arr), "bbox": mask_bbox(arr), "area": int(arr.sum())}


# --- reading ---------------------------------------------------------------------------------


INCLUDE_VALUES = ("less_confident",)


@router.get("/api/images/{image_id}/masks")
def list_masks(
    image_id: int,
    session: SessionDep,
    user: CurrentUser,
    include: str | None = None,
    all_proposals: bool = False,
    history: bool = False,
) -> MasksOut:
    """Accepted masks and, in the prefill arm, confident proposals.

    ``include=less_confident`` also lists the proposals the confident rule hid (the review
    canvas asks for them when the annotator reveals them, and logs a
    ``reveal_less_confident`` event so that the metrics count them as shown);
    ``all_proposals=true`` is the older spelling of the same.
    """
    if include is not None and include not in INCLUDE_VALUES:
        raise InvalidInput(
            f"include={include!r} is not known; use include=less_confident or leave it out"
        )
    ensure_can_read(session, user=user, image_id=image_id)
    arm = leases.arm_of(session, image_id=image_id, user_id=user.id)
    rows = dbm.list_masks(
        session,
        image_id=image_id,
        proposals=arm == "prefill",
        all_proposals=all_proposals or include == "less_confident",
        history=history,
    )
    return MasksOut(image_id=image_id, arm=arm, masks=_masks_out(session, rows))


# --- review decisions ------------------------------------------------------------------------


@router.post("/api/masks/{mask_id}/accept")
def accept(mask_id: int, body: AcceptIn, session: SessionDep, user: AnnotatorUser) -> MaskOut:
    mask = dbm.get_mask(session, mask_id=mask_id)
    _write(
        session,
        user,
        mask.image_id,
        body.lease_id,
        {"op": "accept", "mask_id": mask_id, **body.model_dump()},
    )
    mask = dbm.accept(
        session, mask_id=mask_id, version=body.version, user_id=user.id, label=body.label
    )
    session.commit()
    return MaskOut.of(mask)


@router.post("/api/masks/{mask_id}/reject")
def reject(mask_id: int, body: AcceptIn, session: SessionDep, user: AnnotatorUser) -> MaskOut:
    mask = dbm.get_mask(session, mask_id=mask_id)
    _write(
        session,
        user,
        mask.image_id,
        body.lease_id,
        {"op": "reject", "mask_id": mask_id, **body.model_dump()},
    )
    mask = dbm.reject(session, mask_id=mask_id, version=body.version, user_id=user.id)
    session.commit()
    return MaskOut.of(mask)


@router.post("/api/images/{image_id}/masks/accept-all-confident")
def accept_all_confident(
    image_id: int, body: LeaseIn, session: SessionDep, user: AnnotatorUser
) -> list[MaskOut]:
    """Accept every confident proposal of the image (prefill arm only)."""
    _write(session, user, image_id, body.lease_id, {"op": "accept_all_confident"})
    if leases.arm_of(session, image_id=image_id, user_id=user.id) != "prefill":
        raise InvalidInput(f"image {image_id} is in the control arm: it has no pre-fill to accept")
    rows = dbm.accept_all_confident(session, image_id=image_id, user_id=user.id)
    session.commit()
    return _masks_out(session, rows)


# --- edits -----------------------------------------------------------------------------------


@router.post("/api/images/{image_id}/masks")
def add_mask(image_id: int, body: NewMaskIn, session: SessionDep, user: AnnotatorUser) -> MaskOut:
    """Add an object drawn by a person (source ``human``, status ``accepted``)."""
    change = {"op": "add", **body.model_dump(mode="json")}
    _write(session, user, image_id, body.lease_id, change)
    mask = dbm.add(
        session,
        image_id=image_id,
        shape=_shape(body.rle.model_dump()),
        user_id=user.id,
        label=body.label,
        score=body.score,
        meta=body.meta,
    )
    session.commit()
    return MaskOut.of(mask)


@router.post("/api/masks/{mask_id}/fix")
def fix_mask(mask_id: int, body: FixIn, session: SessionDep, user: AnnotatorUser) -> MaskOut:
    """Replace a mask by a corrected one (``model_edited``, parent = the old, now superseded)."""
    old = dbm.get_mask(session, mask_id=mask_id)
    change = {"op": "fix", "mask_id": mask_id, **body.model_dump(mode="json")}
    _write(session, user, old.image_id, body.lease_id, change)
    mask = dbm.fix(
        session,
        mask_id=mask_id,
        version=body.version,
        shape=_shape(body.rle.model_dump()),
        user_id=user.id,
        label=body.label,
        score=body.score,
        meta=body.meta,
    )
    session.commit()
    return MaskOut.of(mask)


@router.patch("/api/masks/{mask_id}")
def relabel(mask_id: int, body: RelabelIn, session: SessionDep, user: AnnotatorUser) -> MaskOut:
    """Set a mask's label (must be in the project's taxonomy when it has one)."""
    mask = dbm.get_mask(session, mask_id=mask_id)
    _write(
        session,
        user,
        mask.image_id,
        body.lease_id,
        {"op": "relabel", "mask_id": mask_id, **body.model_dump()},
    )
    mask = dbm.relabel(
        session, mask_id=mask_id, version=body.version, label=body.label, user_id=user.id
    )
    session.commit()
    return MaskOut.of(mask)


@router.delete("/api/masks/{mask_id}")
def delete_mask(
    mask_id: int,
    version: int,
    session: SessionDep,
    user: AnnotatorUser,
    lease_id: int | None = None,
) -> MaskOut:
    """Withdraw a mask (it becomes ``rejected``; rows are never removed)."""
    mask = dbm.get_mask(session, mask_id=mask_id)
    _write(
        session,
        user,
        mask.image_id,
        lease_id,
        {"op": "delete", "mask_id": mask_id, "version": version},
    )
    mask = dbm.delete(session, mask_id=mask_id, version=version, user_id=user.id)
    session.commit()
    return MaskOut.of(mask)


@router.post("/api/masks/{mask_id}/revert")
def revert(mask_id: int, body: RevertIn, session: SessionDep, user: AnnotatorUser) -> MaskOut:
    """Set a mask's status back (undo / redo)."""
    mask = dbm.get_mask(session, mask_id=mask_id)
    _write(
        session,
        user,
        mask.image_id,
        body.lease_id,
        {"op": "revert", "mask_id": mask_id, **body.model_dump()},
    )
    mask = dbm.revert(
        session, mask_id=mask_id, version=body.version, status=body.status, user_id=user.id
    )
    session.commit()
    return MaskOut.of(mask)


# --- decode ----------------------------------------------------------------------------------


def _embedding(seg: Any, sha256: str | None, uri: str) -> Any:
    from engine.imageio import load_rgb

    if sha256 and hasattr(seg, "embed_cached"):
        return seg.embed_cached(sha256, lambda: load_rgb(uri))
    return seg.embed(load_rgb(uri))


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
    image = ensure_can_read(session, user=user, image_id=image_id)
    if not image.width or not image.height:
        raise InvalidInput(f"image {image_id} has no size (rejected at ingest?)")
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
    emb = _embedding(seg, sha256, uri)
    t1 = time.perf_counter()
    mask_input = None
    if body.mask_input_id:
        mask_input = store.get(body.mask_input_id, user.id, image_id)
    elif prior_mask is not None and hasattr(seg, "mask_to_input"):
        mask_input = seg.mask_to_input(prior_mask, emb)
    elif prior_mask is not None and seg.name == "classical":
        mask_input = np.where(prior_mask, 1.0, -1.0).astype(np.float32)  # HW map is accepted
    try:
        res = seg.decode(emb, points, labels, box, mask_input)
    except PromptError as err:
        raise InvalidInput(f"bad prompt: {err}") from err
    t2 = time.perf_counter()
    key = store.put(user.id, image_id, res.logits) if res.logits is not None else None
    mask = np.asarray(res.mask, dtype=bool)
    if body.format == "png":
        from PIL import Image as PILImage

        buf = io.BytesIO()
        PILImage.fromarray(mask.astype(np.uint8) * 255).convert("1").save(buf, format="PNG")
        headers = {"X-Score": f"{float(res.score):.6f}"}
        if key:
            headers["X-Mask-Input-Id"] = key
        return Response(buf.getvalue(), media_type="image/png", headers=headers)
    rle = encode_rle(mask)  # area and box from the RLE: far cheaper than scanning pixels
    return DecodeOut(
        rle=rle,
        score=float(res.score),
        area=rle_area(rle),
        bbox=rle_bbox(rle),
        mask_input_id=key,
        embed_ms=(t1 - t0) * 1000,
        decode_ms=(t2 - t1) * 1000,
    )
