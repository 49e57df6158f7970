"""Masks of an image: list, review decisions, fixes, additions, labels.

Every change carries the mask ``version`` the client saw (409 if it changed since).
Annotators change masks only under a live lease (``routes.tasks.ensure_can_write``).
Proposals are listed only in the ``prefill`` arm, and only ``confident`` ones unless
``include=less_confident``. The decode endpoint is ``routes.decode``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from annotator_ui.deps import (
    AnnotatorUser,
    CurrentUser,
    IdempotencyKey,
    SessionDep,
    SettingsDep,
)
from annotator_ui.routes.tasks import (
    commit_then_raise,
    ensure_can_read,
    ensure_can_write,
    mask_shape,
)
from annotator_ui.schemas import (
    AcceptIn,
    BulkStatusIn,
    FixIn,
    LeaseIn,
    MaskOut,
    MasksOut,
    NewMaskIn,
    RelabelIn,
    RevertIn,
)
from db import lease_lookups, mask_listing
from db import masks as dbm
from db.errors import Conflict, InvalidInput, LeaseLost
from db.images import get_image, require_ok
from db.models import Mask, User

router = APIRouter(tags=["masks"])


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


def _replay(mask: Mask, *, image_id: int, parent_id: int | None, key: str) -> MaskOut:
    """The mask a retried add/fix created the first time (same key from the same user)."""
    if mask.image_id != image_id or mask.parent_id != parent_id:
        raise InvalidInput(
            f"Idempotency-Key {key!r} was already used for another change (mask {mask.id}); "
            "send a fresh key for each new action"
        )
    return MaskOut.of(mask)


def _store_once(
    session: Session,
    *,
    user: User,
    key: str | None,
    create: Callable[[], Mask],
    image_id: int,
    parent_id: int | None,
) -> MaskOut:
    """Run ``create()`` and commit; when a concurrent request with the same key won the race
    (unique ``(author_id, client_key)``, or its fix bumped the version we were checking),
    answer with its mask instead."""
    try:
        mask = create()
        session.commit()
    except (IntegrityError, Conflict):
        session.rollback()
        prior = dbm.find_by_client_key(session, user_id=user.id, client_key=key) if key else None
        if prior is None:
            raise
        return _replay(prior, image_id=image_id, parent_id=parent_id, key=str(key))
    return MaskOut.of(mask)


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
    arm = lease_lookups.arm_of(session, image_id=image_id, user_id=user.id)
    rows = mask_listing.list_masks(
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
    if lease_lookups.arm_of(session, image_id=image_id, user_id=user.id) != "prefill":
        raise InvalidInput(f"image {image_id} is in the control arm: it has no pre-fill to accept")
    rows = dbm.accept_all_confident(session, image_id=image_id, user_id=user.id)
    session.commit()
    return _masks_out(session, rows)


# --- edits -----------------------------------------------------------------------------------


@router.post("/api/images/{image_id}/masks")
def add_mask(
    image_id: int,
    body: NewMaskIn,
    session: SessionDep,
    settings: SettingsDep,
    user: AnnotatorUser,
    key: IdempotencyKey = None,
) -> MaskOut:
    """Add an object drawn by a person (source ``human``, status ``accepted``).

    ``rle``: COCO RLE of the image's ``[height, width]`` (422 otherwise, before decoding).
    With an ``Idempotency-Key`` header, a retry returns the first answer (same mask).
    """
    if key and (prior := dbm.find_by_client_key(session, user_id=user.id, client_key=key)):
        return _replay(prior, image_id=image_id, parent_id=None, key=key)
    shape = _checked_shape(
        session, image_id, body.rle.model_dump(), settings.mask_payload_max_bytes
    )
    change = {"op": "add", **body.model_dump(mode="json")}
    _write(session, user, image_id, body.lease_id, change)

    def create() -> Mask:
        return dbm.add(
            session,
            image_id=image_id,
            shape=shape,
            user_id=user.id,
            label=body.label,
            score=body.score,
            meta=body.meta,
            client_key=key,
        )

    return _store_once(
        session, user=user, key=key, create=create, image_id=image_id, parent_id=None
    )


def _checked_shape(session: Session, image_id: int, rle: dict[str, Any], max_bytes: int) -> Any:
    """The mask shape of a client's RLE for an image: 404 when the image is not ingested
    ``ok`` (before any check), then the one payload check of ``engine.mask_payload``."""
    image = require_ok(image=get_image(session, image_id=image_id))
    return mask_shape(rle, height=image.height, width=image.width, max_bytes=max_bytes)


@router.post("/api/masks/{mask_id}/fix")
def fix_mask(
    mask_id: int,
    body: FixIn,
    session: SessionDep,
    settings: SettingsDep,
    user: AnnotatorUser,
    key: IdempotencyKey = None,
) -> MaskOut:
    """Replace a mask by a corrected one (``model_edited``, parent = the old, now superseded).

    ``rle`` as for adding; with an ``Idempotency-Key`` a retry returns the first new mask.
    """
    old = dbm.get_mask(session, mask_id=mask_id)
    image_id = old.image_id
    if key and (prior := dbm.find_by_client_key(session, user_id=user.id, client_key=key)):
        return _replay(prior, image_id=image_id, parent_id=mask_id, key=key)
    shape = _checked_shape(
        session, image_id, body.rle.model_dump(), settings.mask_payload_max_bytes
    )
    change = {"op": "fix", "mask_id": mask_id, **body.model_dump(mode="json")}
    _write(session, user, image_id, body.lease_id, change)

    def create() -> Mask:
        return dbm.fix(
            session,
            mask_id=mask_id,
            version=body.version,
            shape=shape,
            user_id=user.id,
            label=body.label,
            score=body.score,
            meta=body.meta,
            client_key=key,
        )

    return _store_once(
        session, user=user, key=key, create=create, image_id=image_id, parent_id=mask_id
    )


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


@router.post("/api/images/{image_id}/masks/bulk-status")
def bulk_status(
    image_id: int, body: BulkStatusIn, session: SessionDep, user: AnnotatorUser
) -> list[MaskOut]:
    """Set the status of several masks of the image at once, all or nothing: the undo or
    redo of an accept-all in one request. Each change carries the version the client saw
    (409 for the whole batch if one changed since). The client still logs its ``undo`` /
    ``redo`` event; every mask's change is recorded in its ``meta`` as for one revert."""
    _write(
        session,
        user,
        image_id,
        body.lease_id,
        {"op": "bulk_status", "changes": [c.model_dump() for c in body.changes]},
    )
    rows = dbm.revert_many(
        session,
        image_id=image_id,
        changes=[(c.mask_id, c.version, c.status) for c in body.changes],
        user_id=user.id,
    )
    session.commit()
    return _masks_out(session, rows)
