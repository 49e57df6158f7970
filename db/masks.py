"""Mask data functions: review decisions, edits and additions with optimistic versions
(which masks are listed and shown: ``db.mask_listing``).

Masks are COCO RLE ``{"size": [h, w], "counts": str}`` in full-resolution image pixels,
``bbox`` COCO XYWH. Every change to a row bumps ``version``; callers pass the version they
saw and get ``Conflict`` when someone changed the mask in between. An edit never
overwrites: ``fix`` adds a ``model_edited`` row whose ``parent_id`` is the old one, which
becomes ``superseded``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.errors import Conflict, InvalidInput, NotFound
from db.models import Image, Mask, Project, utcnow

OPS = ("accept", "reject", "fix", "add", "relabel", "delete")


def get_mask(session: Session, *, mask_id: int) -> Mask:
    mask = session.get(Mask, mask_id)
    if mask is None:
        raise NotFound(f"no mask with id {mask_id}")
    return mask


def find_by_client_key(session: Session, *, user_id: int, client_key: str) -> Mask | None:
    """The mask this user created with this ``Idempotency-Key`` (add or fix), if any."""
    return session.scalars(
        select(Mask).where(Mask.author_id == user_id, Mask.client_key == client_key)
    ).first()


def _finite_score(score: float | None) -> float | None:
    if score is None:
        return None
    if not math.isfinite(float(score)):
        raise InvalidInput(f"score must be a finite number, got {score}")
    return float(score)


def _check(mask: Mask, version: int | None, image_id: int | None = None) -> None:
    if image_id is not None and mask.image_id != image_id:
        raise InvalidInput(f"mask {mask.id} belongs to image {mask.image_id}, not {image_id}")
    if version is not None and version != mask.version:
        raise Conflict(
            f"mask {mask.id} was changed by someone else (now version {mask.version}, you had "
            f"version {version}); reload the image and redo this change"
        )


def _bump(mask: Mask, user_id: int, **meta: Any) -> None:
    mask.version += 1
    mask.updated_at = utcnow()
    mask.meta = {**(mask.meta or {}), **meta, "decided_by": user_id}


def check_label(session: Session, *, image_id: int, label: str | None) -> str | None:
    """A stripped label that the project's taxonomy allows (any label if it has none)."""
    if label is None:
        return None
    label = label.strip() or None
    image = session.get(Image, image_id)
    if image is None:
        raise NotFound(f"no image with id {image_id}")
    taxonomy = session.get(Project, image.project_id).labels or []  # type: ignore[union-attr]
    if label is not None and taxonomy and label not in taxonomy:
        raise InvalidInput(
            f"label {label!r} is not in the project's taxonomy: {', '.join(map(str, taxonomy))}"
        )
    return label


def _geometry(session: Session, *, image_id: int, shape: dict[str, Any]) -> tuple[Any, ...]:
    """Check a mask's geometry against the image; returns (rle, bbox, area).

    ``shape`` holds ``rle`` (COCO RLE), ``bbox`` (XYWH) and ``area`` (pixels), already
    computed from the decoded mask by the caller (``engine.masks``).
    """
    image = session.get(Image, image_id)
    if image is None:
        raise NotFound(f"no image with id {image_id}")
    rle, bbox, area = shape.get("rle"), shape.get("bbox"), shape.get("area")
    if not isinstance(rle, dict) or "size" not in rle or bbox is None or area is None:
        raise InvalidInput("a mask needs rle {size, counts}, bbox and area")
    if image.height and image.width and list(rle["size"]) != [image.height, image.width]:
        raise InvalidInput(
            f"mask size {list(rle['size'])} does not match image {image_id} "
            f"([{image.height}, {image.width}] as [h, w])"
        )
    if int(area) <= 0:
        raise InvalidInput("mask is empty")
    return rle, list(bbox), int(area)


def accept(
    session: Session, *, mask_id: int, version: int | None, user_id: int, label: str | None = None
) -> Mask:
    """Accept a proposal (optionally setting its label)."""
    mask = get_mask(session, mask_id=mask_id)
    _check(mask, version)
    if mask.status != "proposed":
        raise Conflict(f"mask {mask_id} is {mask.status}, only proposed masks can be accepted")
    if label is not None:
        mask.label = check_label(session, image_id=mask.image_id, label=label)
    mask.status = "accepted"
    _bump(mask, user_id)
    session.flush()
    return mask


def reject(session: Session, *, mask_id: int, version: int | None, user_id: int) -> Mask:
    """Reject a proposal."""
    mask = get_mask(session, mask_id=mask_id)
    _check(mask, version)
    if mask.status != "proposed":
        raise Conflict(f"mask {mask_id} is {mask.status}, only proposed masks can be rejected")
    mask.status = "rejected"
    _bump(mask, user_id)
    session.flush()
    return mask


def accept_all_confident(session: Session, *, image_id: int, user_id: int) -> list[Mask]:
    """Accept every confident proposal of an image; returns the masks accepted."""
    rows = session.scalars(
        select(Mask).where(
            Mask.image_id == image_id, Mask.status == "proposed", Mask.confident.is_(True)
        )
    ).all()
    for mask in rows:
        mask.status = "accepted"
        _bump(mask, user_id)
    session.flush()
    return list(rows)


def add(
    session: Session,
    *,
    image_id: int,
    shape: dict[str, Any],
    user_id: int,
    label: str | None = None,
    score: float | None = None,
    source: str = "human",
    parent_id: int | None = None,
    meta: dict[str, Any] | None = None,
    client_key: str | None = None,
) -> Mask:
    """Add an accepted mask drawn by a person (``source`` human or model_edited).

    ``shape``: ``{"rle": RLE, "bbox": XYWH, "area": int}`` (see ``_geometry``).
    ``client_key``: the request's ``Idempotency-Key``; unique per author (a second row with
    the same key raises IntegrityError at flush: the caller returns the first one).
    """
    clean, bbox, area = _geometry(session, image_id=image_id, shape=shape)
    mask = Mask(
        image_id=image_id,
        rle=clean,
        bbox=bbox,
        area=area,
        label=check_label(session, image_id=image_id, label=label),
        source=source,
        status="accepted",
        predicted_iou=_finite_score(score),
        parent_id=parent_id,
        author_id=user_id,
        meta=dict(meta or {}),
        client_key=client_key,
    )
    session.add(mask)
    session.flush()
    return mask


def fix(
    session: Session,
    *,
    mask_id: int,
    version: int | None,
    shape: dict[str, Any],
    user_id: int,
    label: str | None = None,
    score: float | None = None,
    meta: dict[str, Any] | None = None,
    client_key: str | None = None,
) -> Mask:
    """Replace a mask by a corrected one: new ``model_edited`` row, old one ``superseded``.

    ``client_key`` as for ``add`` (stored on the new row).
    """
    old = get_mask(session, mask_id=mask_id)
    _check(old, version)
    if old.status not in ("proposed", "accepted"):
        raise Conflict(f"mask {mask_id} is {old.status}; only proposed or accepted can be fixed")
    new = add(
        session,
        image_id=old.image_id,
        shape=shape,
        user_id=user_id,
        label=label if label is not None else old.label,
        score=score,
        source="model_edited" if old.source != "human" else "human",
        parent_id=old.id,
        meta=meta,
        client_key=client_key,
    )
    new.model_version_id = old.model_version_id
    new.round_id = old.round_id
    old.status = "superseded"
    _bump(old, user_id, superseded_by=new.id)
    session.flush()
    return new


def relabel(
    session: Session, *, mask_id: int, version: int | None, label: str | None, user_id: int
) -> Mask:
    mask = get_mask(session, mask_id=mask_id)
    _check(mask, version)
    mask.label = check_label(session, image_id=mask.image_id, label=label)
    _bump(mask, user_id)
    session.flush()
    return mask


def delete(session: Session, *, mask_id: int, version: int | None, user_id: int) -> Mask:
    """Withdraw a mask: it becomes ``rejected`` (rows are never removed; events refer to them)."""
    mask = get_mask(session, mask_id=mask_id)
    _check(mask, version)
    if mask.status in ("rejected", "superseded"):
        raise Conflict(f"mask {mask_id} is already {mask.status}")
    mask.status = "rejected"
    _bump(mask, user_id, deleted=True)
    session.flush()
    return mask


def apply_ops(
    session: Session, *, image_id: int, user_id: int, ops: list[dict[str, Any]]
) -> dict[str, Any]:
    """Apply a submit's operations in order, all or nothing (the caller's transaction).

    Each op: ``{"op": accept|reject|fix|add|relabel|delete, "mask_id": int, "version": int,
    "rle": RLE, "bbox": XYWH, "area": int, "label": str, "score": float, "key": str,
    "meta": dict}`` (fields as the op needs; rle/bbox/area computed by the caller).
    Returns ``{"created": {key: mask_id}, "changed": [mask_id, ...]}``.
    """
    created: dict[str, int] = {}
    changed: list[int] = []
    for i, op in enumerate(ops):
        kind = op.get("op")
        if kind not in OPS:
            raise InvalidInput(f"operation {i}: unknown op {kind!r}; choose one of {OPS}")
        if kind == "add":
            if not op.get("rle"):
                raise InvalidInput(f"operation {i}: add needs an rle")
            mask = add(
                session,
                image_id=image_id,
                shape=op,
                user_id=user_id,
                label=op.get("label"),
                score=op.get("score"),
                meta=op.get("meta"),
            )
            created[str(op.get("key") or f"op{i}")] = mask.id
            continue
        if op.get("mask_id") is None:
            raise InvalidInput(f"operation {i}: {kind} needs a mask_id")
        mask_id, version = int(op["mask_id"]), op.get("version")
        _check(get_mask(session, mask_id=mask_id), None, image_id)
        if kind == "accept":
            accept(
                session, mask_id=mask_id, version=version, user_id=user_id, label=op.get("label")
            )
        elif kind == "reject":
            reject(session, mask_id=mask_id, version=version, user_id=user_id)
        elif kind == "relabel":
            relabel(
                session, mask_id=mask_id, version=version, label=op.get("label"), user_id=user_id
            )
        elif kind == "delete":
            delete(session, mask_id=mask_id, version=version, user_id=user_id)
        else:  # fix
            if not op.get("rle"):
                raise InvalidInput(f"operation {i}: fix needs an rle")
            new = fix(
                session,
                mask_id=mask_id,
                version=version,
                shape=op,
                user_id=user_id,
                label=op.get("label"),
                score=op.get("score"),
                meta=op.get("meta"),
            )
            created[str(op.get("key") or f"op{i}")] = new.id
        changed.append(mask_id)
    return {"created": created, "changed": changed}


def revert(
    session: Session, *, mask_id: int, version: int | None, status: str, user_id: int
) -> Mask:
    """Set a mask's status back (undo / redo of a decision, an add or a fix)."""
    mask = get_mask(session, mask_id=mask_id)
    _check(mask, version)
    allowed = ("proposed", "accepted", "rejected", "superseded")
    if mask.source == "model" and status not in allowed:
        raise InvalidInput(f"status must be one of {allowed}")
    if mask.source != "model" and status not in allowed[1:]:
        raise InvalidInput(f"a {mask.source} mask cannot be {status!r}; use one of {allowed[1:]}")
    mask.status = status
    _bump(mask, user_id, reverted=True)
    session.flush()
    return mask


def revert_many(
    session: Session, *, image_id: int, changes: Sequence[tuple[int, int, str]], user_id: int
) -> list[Mask]:
    """Set several masks of one image back to a status, all or nothing (undo / redo of an
    accept-all in one request). ``changes``: ``(mask_id, version seen, status)``; the first
    mask of another image, stale version or status not allowed raises before the caller
    commits (so nothing changes)."""
    out = []
    for mask_id, version, status in changes:
        mask = get_mask(session, mask_id=mask_id)
        if mask.image_id != image_id:
            raise InvalidInput(
                f"mask {mask_id} is on image {mask.image_id}, not {image_id}; "
                "send one request per image"
            )
        out.append(
            revert(session, mask_id=mask_id, version=version, status=status, user_id=user_id)
        )
    return out
