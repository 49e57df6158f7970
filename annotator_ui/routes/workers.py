"""Pre-fill workers (reviewer, admin): each ``dataengine worker``'s heartbeat and live claims.

Workers run in other processes or machines; they write ``worker_heartbeat`` (every 10 s
while pre-filling, after every pass) and claim images in ``prefill_claim``. The dashboard
lists them from here; Prometheus scrapes the same heartbeats at ``/metrics``.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from annotator_ui.deps import ReviewerUser, SessionDep
from db.claims import live_claims_by_worker
from db.models import utcnow
from db.workers import list_heartbeats

router = APIRouter(prefix="/api/workers", tags=["workers"])

# a worker that has not beaten for this long is shown as silent (it beats every 10 s while
# pre-filling and after each pass; passes default to every 30 s)
SILENT_AFTER = dt.timedelta(minutes=2)


class WorkerOut(BaseModel):
    """One worker process run."""

    worker_id: str = Field(description="<hostname>:<pid>:<random>, unique per run.")
    hostname: str
    pid: int
    backend: str
    model_key: str
    started_at: dt.datetime
    last_seen_at: dt.datetime
    seconds_since_seen: float
    alive: bool = Field(description=f"Seen in the last {SILENT_AFTER.seconds} s.")
    passes: int
    images_done: int
    images_failed: int
    live_claims: int = Field(description="Images it holds an unexpired claim on.")


MinutesQ = Annotated[
    float, Query(gt=0, le=60 * 24 * 30, description="Workers seen in this many minutes.")
]


@router.get("")
def workers(
    session: SessionDep, _user: ReviewerUser, minutes: MinutesQ = 24 * 60
) -> list[WorkerOut]:
    """Workers seen in the last ``minutes``, newest heartbeat first."""
    now = utcnow()
    rows = list_heartbeats(session, seen_since=now - dt.timedelta(minutes=minutes))
    claims = live_claims_by_worker(session, now=now)
    return [
        WorkerOut(
            worker_id=r.worker_id,
            hostname=r.hostname,
            pid=r.pid,
            backend=r.backend,
            model_key=r.model_key,
            started_at=r.started_at,
            last_seen_at=r.last_seen_at,
            seconds_since_seen=round((now - r.last_seen_at).total_seconds(), 1),
            alive=now - r.last_seen_at <= SILENT_AFTER,
            passes=r.passes,
            images_done=r.images_done,
            images_failed=r.images_failed,
            live_claims=claims.get(r.worker_id, 0),
        )
        for r in rows
    ]
