"""Prefill data functions: which images still need a model version's proposals, and the
``prefill`` row that marks one done (keyword-only)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, exists, insert, select
from sqlalchemy.orm import Session

from db.models import Image, Mask, Prefill, PrefillClaim, utcnow
from db.pages import count_images

PAGE_SIZE = 2000  # pending images read per keyset page (fewer round trips; memory stays one page)


def _pending_where(
    model_version_id: int, *, worker_id: str | None = None, now: Any = None
) -> list[Any]:
    """Conditions on ``Image`` rows: no prefill row for the model version and, with
    ``worker_id``, no live claim of another worker."""
    conds: list[Any] = [
        ~exists().where(Prefill.image_id == Image.id, Prefill.model_version_id == model_version_id)
    ]
    if worker_id is not None:
        conds.append(
            ~exists().where(
                PrefillClaim.image_id == Image.id,
                PrefillClaim.model_version_id == model_version_id,
                PrefillClaim.worker_id != worker_id,
                PrefillClaim.expires_at >= (now or utcnow()),
            )
        )
    return conds


def count_pending(
    session: Session,
    *,
    project_id: int,
    model_version_id: int,
    image_ids: Sequence[int] | None = None,
) -> tuple[int, int]:
    """(ok images considered, of which without a prefill row): two ``SELECT count(*)``."""
    where = [] if image_ids is None else [Image.id.in_(list(image_ids))]
    total = count_images(session, project_id=project_id, where=where)
    if total == 0:
        return 0, 0
    pending = count_images(
        session, project_id=project_id, where=[*where, *_pending_where(model_version_id)]
    )
    return total, pending


def pending_images(
    session: Session,
    *,
    project_id: int,
    model_version_id: int,
    after_id: int = 0,
    limit: int = PAGE_SIZE,
    image_ids: Sequence[int] | None = None,
    worker_id: str | None = None,
) -> list[tuple[int, str, str | None]]:
    """One keyset page: up to ``limit`` [(id, uri, sha256)] of ok images with id > ``after_id``
    and no prefill row for the model version, ascending id. With ``worker_id``, images under
    another worker's live claim are left out. Count them with ``count_pending``."""
    where = [Image.id > after_id, *_pending_where(model_version_id, worker_id=worker_id)]
    if image_ids is not None:
        where.append(Image.id.in_(list(image_ids)))
    q = (
        select(Image.id, Image.uri, Image.sha256)
        .where(Image.project_id == project_id, Image.status == "ok", *where)
        .order_by(Image.id)
        .limit(limit)
    )
    return [(int(r[0]), r[1], r[2]) for r in session.execute(q).all()]


def prefill_exists(session: Session, *, image_id: int, model_version_id: int) -> bool:
    """Whether the image has a ``prefill`` row (done or failed) for the model version."""
    q = select(Prefill.id).where(
        Prefill.image_id == image_id, Prefill.model_version_id == model_version_id
    )
    return session.scalar(q) is not None


def forget_failed_prefills(session: Session, *, project_id: int, model_version_id: int) -> None:
    """Delete the project's ``failed`` prefill rows of the model version (they are retried)."""
    session.execute(
        delete(Prefill).where(
            Prefill.model_version_id == model_version_id,
            Prefill.status == "failed",
            Prefill.image_id.in_(select(Image.id).where(Image.project_id == project_id)),
        )
    )


def add_prefill(
    session: Session,
    *,
    image_id: int,
    model_version_id: int,
    reason: str | None,
    n_confident: int,
    seconds: float,
    mask_rows: Sequence[dict[str, Any]],
) -> None:
    """Insert the image's ``prefill`` row (status ``failed`` with ``reason``, else ``done``)
    and flush it first, then its ``mask_rows`` (``engine.flywheel.prefill_rows.mask_rows``).
    A concurrent row for the same image and version raises ``IntegrityError`` at the flush,
    before any mask is written."""
    session.add(
        Prefill(
            image_id=image_id,
            model_version_id=model_version_id,
            status="failed" if reason else "done",
            reason=reason,
            n_proposals=len(mask_rows),
            n_confident=n_confident,
            seconds=seconds,
        )
    )
    session.flush()  # the unique (image, model version) row first: a concurrent loser stops here
    if mask_rows:
        session.execute(insert(Mask), list(mask_rows))


def _todo_where(model_version_id: int | None) -> list[Any]:
    """Conditions on ok ``Image`` rows still to do: without a prefill row for the model
    version, or (``model_version_id`` None: embedding) with a sha256."""
    if model_version_id is None:
        return [Image.sha256.is_not(None)]
    return _pending_where(model_version_id)


def todo_ids(
    session: Session,
    *,
    project_id: int,
    model_version_id: int | None,
    after_id: int = 0,
    limit: int = PAGE_SIZE,
) -> list[int]:
    """One keyset page of ids (ascending, id > ``after_id``, at most ``limit``) of the
    project's ok images still to do (see ``todo_rows``)."""
    q = (
        select(Image.id)
        .where(
            Image.project_id == project_id,
            Image.status == "ok",
            Image.id > after_id,
            *_todo_where(model_version_id),
        )
        .order_by(Image.id)
        .limit(limit)
    )
    return [int(i) for i in session.scalars(q)]


def todo_rows(
    session: Session, *, project_id: int, model_version_id: int | None, lo: int, hi: int
) -> list[tuple[int, str, str | None]]:
    """[(id, uri, sha256)] of the project's ok images with ``lo <= id <= hi`` still to do:
    without a prefill row for ``model_version_id``, or, when it is None, with a sha256."""
    q = (
        select(Image.id, Image.uri, Image.sha256)
        .where(
            Image.project_id == project_id,
            Image.status == "ok",
            Image.id.between(lo, hi),
            *_todo_where(model_version_id),
        )
        .order_by(Image.id)
    )
    return [(int(r[0]), r[1], r[2]) for r in session.execute(q).all()]


def count_embeddable(session: Session, *, project_id: int) -> int:
    """``SELECT count(*)`` of the project's ok images with a sha256 (the embedding cache key)."""
    return count_images(session, project_id=project_id, where=[Image.sha256.is_not(None)])


def add_prefill_unless_done(
    session: Session,
    *,
    image_id: int,
    model_version_id: int,
    failed: bool,
    reason: str | None,
    n_proposals: int,
    n_confident: int,
    seconds: float,
    mask_rows: Sequence[dict[str, Any]] = (),
) -> int | None:
    """INSERT the image's ``prefill`` row (``failed`` with ``reason``, else ``done``) ON
    CONFLICT (image, model version) DO NOTHING, then, only when it went in and is done, its
    ``mask_rows``. The new row's id, or None when another writer's row was there first."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    stmt = (
        dialect_insert(Prefill)
        .values(
            image_id=image_id,
            model_version_id=model_version_id,
            status="failed" if failed else "done",
            reason=reason if failed else None,
            n_proposals=n_proposals,
            n_confident=n_confident,
            seconds=seconds,
        )
        .on_conflict_do_nothing(index_elements=["image_id", "model_version_id"])
        .returning(Prefill.id)
    )
    won = session.scalar(stmt)
    if won is not None and not failed and mask_rows:
        session.execute(insert(Mask), list(mask_rows))
    return won


def any_prefill(session: Session, *, image_id: int) -> bool:
    """Whether any model version pre-filled the image (a ``prefill`` row, done or failed)."""
    return (
        session.scalar(select(Prefill.id).where(Prefill.image_id == image_id).limit(1)) is not None
    )


def add_imported_proposals(
    session: Session, *, image_id: int, model_version_id: int, proposals: int
) -> Prefill:
    """Count ``proposals`` more imported (confident) proposals on the image's ``done``
    prefill row of the model version, adding the row (zero counts) when there is none."""
    row = session.scalar(
        select(Prefill).where(
            Prefill.image_id == image_id, Prefill.model_version_id == model_version_id
        )
    )
    if row is None:
        row = Prefill(
            image_id=image_id,
            model_version_id=model_version_id,
            status="done",
            n_proposals=0,
            n_confident=0,
            seconds=0.0,
        )
        session.add(row)
    row.n_proposals = (row.n_proposals or 0) + proposals
    row.n_confident = (row.n_confident or 0) + proposals
    return row
