"""Read-only lease questions (``db.lease_lookups``): work accepted shortly after a lease
ended, who holds an image live, and a project's queue counts (both databases)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session, sessionmaker

from db import lease_lookups, leases
from db.models import Lease, Project, utcnow
from db.session import transaction
from tests.factories import make_image, make_project, make_queue


def test_recent_lease_and_live_holders(factory: sessionmaker[Session]) -> None:
    """Work arriving after a lease ended is accepted for ``grace`` only, in the given stages."""
    pid, (ann, bob) = make_queue(factory, 1, 2)
    t0 = utcnow()
    grace = dt.timedelta(minutes=15)
    with transaction(factory) as s:
        lease = leases.next_lease(s, user_id=ann, project_id=pid, minutes=30, now=t0)
        image_id, lease_id = lease.image_id, lease.id

        def recent(now: dt.datetime, **kw: object) -> int | None:
            kw = {"user_id": ann, "image_id": image_id, "grace": grace, "now": now, **kw}
            found = lease_lookups.recent_lease(s, **kw)  # type: ignore[arg-type]
            return found.id if found is not None else None

        assert recent(t0) == lease_id  # live
        assert lease_lookups.live_holders(s, image_id=image_id, now=t0) == {ann}
        assert recent(t0, user_id=bob) is None
        assert recent(t0, stages=("generalist",)) is None
        assert recent(t0, lease_id=lease_id + 1) is None
        expired = t0 + dt.timedelta(minutes=30)  # expires_at
        assert lease_lookups.live_holders(s, image_id=image_id, now=expired) == set()
        assert recent(expired + dt.timedelta(minutes=14)) == lease_id
        assert recent(expired + dt.timedelta(minutes=16)) is None
        s.get(Lease, lease_id).completed_at = t0 + dt.timedelta(minutes=40)  # submitted later
        assert recent(t0 + dt.timedelta(minutes=54)) == lease_id
        assert recent(t0 + dt.timedelta(minutes=56)) is None


def test_queue_counts(factory: sessionmaker[Session]) -> None:
    """total = ok images; done and leased count images (not leases) in the asked stage; an
    expired lease frees its image."""
    pid, (ann, bob) = make_queue(factory, 5, 2)
    t0 = utcnow()
    with transaction(factory) as s:
        make_image(s, project=s.get(Project, pid), status="rejected")
        make_image(s, project=make_project(s))  # another project's image counts nowhere
        leases.complete(s, lease=leases.next_lease(s, user_id=ann, project_id=pid, now=t0))
        leases.next_lease(s, user_id=bob, project_id=pid, minutes=30, now=t0)
        leases.next_lease(s, user_id=ann, project_id=pid, minutes=1, now=t0)
        leases.next_lease(s, user_id=ann, project_id=pid, stage="generalist", now=t0)
    with factory() as s:
        now = lease_lookups.queue_counts(s, project_id=pid, now=t0)
        assert now == {"total": 5, "done": 1, "leased": 2, "free": 2}
        later = lease_lookups.queue_counts(s, project_id=pid, now=t0 + dt.timedelta(minutes=5))
        assert later == {"total": 5, "done": 1, "leased": 1, "free": 3}
        other_stage = lease_lookups.queue_counts(s, project_id=pid, stage="generalist", now=t0)
        assert other_stage == {"total": 5, "done": 0, "leased": 1, "free": 4}
