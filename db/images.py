"""Image data functions: record probed files, deduplicated by sha256 per project."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from db.errors import InvalidInput, NotFound
from db.models import Image, Project


def add_image(
    session: Session,
    *,
    project_id: int,
    uri: str,
    sha256: str | None,
    ok: bool,
    reason: str | None = None,
    **fields: Any,
) -> tuple[Image, bool]:
    """Insert an image row unless one with the same sha256 (or, if unreadable, uri) exists.

    Returns (image, created). Safe under concurrent ingests: a unique-constraint
    race resolves to the existing row. ``uri`` and ``reason`` must be storable text (valid
    UTF-8, no NUL: PostgreSQL refuses both), else :class:`InvalidInput`.
    """
    _check_storable("uri", uri)
    _check_storable("reason", reason)
    existing = find_existing(session, project_id=project_id, uri=uri, sha256=sha256)
    if existing is not None:
        return existing, False
    image = Image(
        project_id=project_id,
        uri=uri,
        sha256=sha256,
        status="ok" if ok else "rejected",
        reason=reason,
        **fields,
    )
    try:
        with session.begin_nested():
            session.add(image)
    except IntegrityError:
        existing = find_existing(session, project_id=project_id, uri=uri, sha256=sha256)
        if existing is None:
            raise
        return existing, False
    return image, True


def _check_storable(name: str, value: str | None) -> None:
    if value is None:
        return
    if "\x00" in value:
        raise InvalidInput(f"image {name} contains a NUL character; escape it before storing")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InvalidInput(
            f"image {name} is not valid UTF-8 ({err.reason} at {err.start}); store file names "
            "with engine.uris.path_to_uri, which percent-encodes them"
        ) from err


def find_existing(
    session: Session, *, project_id: int, uri: str, sha256: str | None
) -> Image | None:
    if sha256 is not None:
        q = select(Image).where(Image.project_id == project_id, Image.sha256 == sha256)
    else:
        q = select(Image).where(
            Image.project_id == project_id, Image.sha256.is_(None), Image.uri == uri
        )
    return session.scalars(q.limit(1)).first()


def find_image(session: Session, *, image_id: int) -> Image | None:
    """The image with this id, or None."""
    return session.get(Image, image_id)


def get_image(session: Session, *, image_id: int) -> Image:
    """The image row; NotFound if there is none.

    Not yet in the session, it is read together with its project (one statement; the
    project lands in the identity map too): the hot routes that read an image then read its
    project (heartbeat's answer, mask add's label check), and the second read was a round
    trip of its own."""
    if identity_key(Image, image_id) in session.identity_map:
        image = session.get(Image, image_id)
    else:
        row = session.execute(
            select(Image, Project)
            .join(Project, Project.id == Image.project_id)
            .where(Image.id == image_id)
        ).first()
        image = row[0] if row is not None else None
    if image is None:
        raise NotFound(f"no image with id {image_id}")
    return image


def require_ok(*, image: Image) -> Image:
    """``image`` if it was ingested ``ok``; otherwise NotFound: a rejected file is never decoded."""
    if image.status != "ok":
        raise NotFound(
            f"image {image.id} has no pixels to serve: it was {image.status} at ingest "
            f"({image.reason or 'no reason recorded'}); fix the file and ingest it again"
        )
    return image


def list_images(
    session: Session, *, project_id: int, status: str | None = "ok", limit: int | None = None
) -> list[Image]:
    q = select(Image).where(Image.project_id == project_id).order_by(Image.id)
    if status is not None:
        q = q.where(Image.status == status)
    if limit is not None:
        q = q.limit(limit)
    return list(session.scalars(q))


def image_ids(session: Session, *, project_id: int, status: str | None = "ok") -> list[int]:
    """Ids of the project's images (with ``status``; None: all), in id order."""
    q = select(Image.id).where(Image.project_id == project_id).order_by(Image.id)
    if status is not None:
        q = q.where(Image.status == status)
    return list(session.scalars(q))


def image_page(
    session: Session, *, project_id: int, after_id: int, limit: int, status: str | None = "ok"
) -> list[Image]:
    """One keyset page: the project's images with id > ``after_id`` (and ``status``; None:
    all), at most ``limit``, in id order. Walk a project by passing the last id back."""
    q = select(Image).where(Image.project_id == project_id, Image.id > after_id)
    if status is not None:
        q = q.where(Image.status == status)
    return list(session.scalars(q.order_by(Image.id).limit(limit)))


def images_by_id(session: Session, *, ids: Collection[int]) -> list[Image]:
    """The images with these ids, in id order (ids that do not exist are left out)."""
    if not ids:
        return []
    return list(session.scalars(select(Image).where(Image.id.in_(list(ids))).order_by(Image.id)))


def count_by_status(session: Session, *, project_id: int) -> dict[str, int]:
    rows = session.execute(
        select(Image.status, func.count())
        .where(Image.project_id == project_id)
        .group_by(Image.status)
    )
    return {status: n for status, n in rows}


def uri_page(
    session: Session, *, project_id: int, after_id: int, limit: int
) -> list[tuple[int, str]]:
    """One keyset page of (id, uri) of the project's ok images with id > ``after_id``, at
    most ``limit``, in id order (plain pairs, no ORM rows)."""
    q = (
        select(Image.id, Image.uri)
        .where(Image.project_id == project_id, Image.status == "ok", Image.id > after_id)
        .order_by(Image.id)
        .limit(limit)
    )
    return [(int(i), u) for i, u in session.execute(q).all()]


def find_ok_image(
    session: Session,
    *,
    project_id: int | None,
    sha256: str | None = None,
    image_id: int | None = None,
) -> Image | None:
    """The first ok image (by id; of ``project_id`` unless None) with this ``sha256``, or
    else with this ``image_id``; None when neither is given or nothing matches."""
    q = select(Image).where(Image.status == "ok")
    if project_id is not None:
        q = q.where(Image.project_id == project_id)
    if sha256 is not None:
        return session.scalars(q.where(Image.sha256 == sha256).order_by(Image.id).limit(1)).first()
    if image_id is not None:
        return session.scalars(q.where(Image.id == image_id)).first()
    return None


def ok_images_named(session: Session, *, project_id: int | None, basename: str) -> list[Image]:
    """The ok images (of ``project_id`` unless None) whose uri ends with ``basename`` (taken
    literally: ``%`` and ``_`` are escaped), in id order."""
    q = select(Image).where(Image.status == "ok", Image.uri.endswith(basename, autoescape=True))
    if project_id is not None:
        q = q.where(Image.project_id == project_id)
    return list(session.scalars(q.order_by(Image.id)))
