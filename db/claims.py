"""Pre-fill claims: which worker computes which (image, model version), until when.

A claim is a ``prefill_claim`` row keyed by (image, model version), so at most one exists
per pair. ``claim_images`` inserts the missing rows (ON CONFLICT DO NOTHING) and takes
over expired ones with a conditional UPDATE (``WHERE expires_at < now``), then reads back
which of the asked ids are now this worker's: the same statements are atomic per row on
SQLite (one writer at a time, ``BEGIN IMMEDIATE``) and on PostgreSQL (a concurrent UPDATE
of the same row waits and re-checks its WHERE), so a live claim is never taken twice.
A worker that dies stops renewing; its claims expire after ``seconds`` and the others pick
the images up. Every function takes the session and lets the caller commit: keep the
transaction short (one small batch).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db.errors import InvalidInput
from db.models import PrefillClaim, utcnow


def _check(worker_id: str, seconds: float) -> None:
    if not worker_id or len(worker_id) > 200:
        raise InvalidInput("worker_id must be 1-200 characters (e.g. host:pid:random)")
    if not seconds > 0:
        raise InvalidInput(f"claim seconds must be > 0 (DATAENGINE_CLAIM_SECONDS), got {seconds}")


def claim_images(
    session: Session,
    *,
    image_ids: Sequence[int],
    model_version_id: int,
    worker_id: str,
    seconds: float,
    now: dt.datetime | None = None,
) -> list[int]:
    """Claim ``image_ids`` for ``worker_id`` until ``now + seconds``; returns the ids that
    are this worker's now (new, expired and taken over, or already its own and renewed),
    ascending. Ids under another worker's live claim are left out."""
    _check(worker_id, seconds)
    ids = sorted({int(i) for i in image_ids})
    if not ids:
        return []
    now = now or utcnow()
    expires = now + dt.timedelta(seconds=seconds)
    pk = (PrefillClaim.model_version_id == model_version_id, PrefillClaim.image_id.in_(ids))
    # take over expired claims and renew our own (one conditional UPDATE)
    session.execute(
        update(PrefillClaim)
        .where(*pk)
        .where((PrefillClaim.expires_at < now) | (PrefillClaim.worker_id == worker_id))
        .values(worker_id=worker_id, claimed_at=now, expires_at=expires)
        .execution_options(synchronize_session=False)
    )
    rows = [
        {
            "image_id": i,
            "model_version_id": model_version_id,
            "worker_id": worker_id,
            "claimed_at": now,
            "expires_at": expires,
        }
        for i in ids
    ]
    dialect = session.get_bind().dialect.name
    ins = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = ins(PrefillClaim).on_conflict_do_nothing(index_elements=["image_id", "model_version_id"])
    session.execute(stmt, rows)
    mine = select(PrefillClaim.image_id).where(*pk, PrefillClaim.worker_id == worker_id)
    return sorted(session.scalars(mine))


def renew_claim(
    session: Session,
    *,
    image_id: int,
    model_version_id: int,
    worker_id: str,
    seconds: float,
    now: dt.datetime | None = None,
) -> bool:
    """Extend this worker's claim on the image; False when the claim is no longer its own
    (it expired and another worker took it over, or it was released)."""
    _check(worker_id, seconds)
    now = now or utcnow()
    res = session.execute(
        update(PrefillClaim)
        .where(
            PrefillClaim.image_id == image_id,
            PrefillClaim.model_version_id == model_version_id,
            PrefillClaim.worker_id == worker_id,
        )
        .values(expires_at=now + dt.timedelta(seconds=seconds))
        .execution_options(synchronize_session=False)
    )
    return bool(res.rowcount)  # type: ignore[attr-defined]


def release_claims(
    session: Session, *, worker_id: str, model_version_id: int, image_ids: Sequence[int]
) -> int:
    """Delete this worker's claims on ``image_ids`` (done, or given back); returns how many."""
    if not image_ids:
        return 0
    res = session.execute(
        delete(PrefillClaim)
        .where(
            PrefillClaim.worker_id == worker_id,
            PrefillClaim.model_version_id == model_version_id,
            PrefillClaim.image_id.in_([int(i) for i in image_ids]),
        )
        .execution_options(synchronize_session=False)
    )
    return int(res.rowcount)  # type: ignore[attr-defined]


def live_claims_by_worker(session: Session, *, now: dt.datetime | None = None) -> dict[str, int]:
    """{worker_id: number of unexpired claims} (for ``dataengine worker status``)."""
    now = now or utcnow()
    q = (
        select(PrefillClaim.worker_id, func.count())
        .where(PrefillClaim.expires_at >= now)
        .group_by(PrefillClaim.worker_id)
    )
    return {w: int(n) for w, n in session.execute(q).all()}


def purge_expired(session: Session, *, older_than: dt.datetime) -> int:
    """Delete claims that expired before ``older_than`` (left by dead workers); returns how many."""
    res = session.execute(
        delete(PrefillClaim)
        .where(PrefillClaim.expires_at < older_than)
        .execution_options(synchronize_session=False)
    )
    return int(res.rowcount)  # type: ignore[attr-defined]
