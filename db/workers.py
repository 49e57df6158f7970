"""Pre-fill worker heartbeats: each ``dataengine worker`` process upserts its row.

Workers usually run in other processes (or machines) than the web app, so their
liveness lives in the database; ``annotator_ui.observability`` reads it at scrape time
(``dataengine_worker_last_seen_timestamp_seconds{worker}``).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.errors import InvalidInput
from db.models import WorkerHeartbeat, utcnow


def record_heartbeat(
    session: Session,
    *,
    worker_id: str,
    hostname: str,
    pid: int,
    backend: str,
    model_key: str,
    passes: int,
    images_done: int,
    images_failed: int,
    now: dt.datetime | None = None,
) -> WorkerHeartbeat:
    """Create or update the worker's row with ``last_seen_at = now`` and its running totals.

    The caller commits. Counts are totals of this worker run (not increments).
    """
    if not worker_id or len(worker_id) > 200:
        raise InvalidInput("worker_id must be 1-200 characters (e.g. host:pid:random)")
    if min(passes, images_done, images_failed) < 0:
        raise InvalidInput("heartbeat counts must be >= 0")
    now = now or utcnow()
    row = session.get(WorkerHeartbeat, worker_id)
    if row is None:
        row = WorkerHeartbeat(worker_id=worker_id, started_at=now)
        session.add(row)
    row.hostname = hostname[:255]
    row.pid = pid
    row.backend = backend[:32]
    row.model_key = model_key[:200]
    row.last_seen_at = now
    row.passes = passes
    row.images_done = images_done
    row.images_failed = images_failed
    session.flush()
    return row


def list_heartbeats(
    session: Session, *, seen_since: dt.datetime | None = None
) -> list[WorkerHeartbeat]:
    """Worker rows, newest heartbeat first; ``seen_since`` drops workers silent before it."""
    q = select(WorkerHeartbeat).order_by(WorkerHeartbeat.last_seen_at.desc())
    if seen_since is not None:
        q = q.where(WorkerHeartbeat.last_seen_at >= seen_since)
    return list(session.scalars(q))
