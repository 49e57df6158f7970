"""Event rows for export: one project's events with lease, round and user, keyset pages."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session, sessionmaker

from db.event_rows import event_page
from db.models import Event, Lease, Round, utcnow
from tests.factories import make_image, make_project, make_user


def test_event_pages_join_lease_round_and_user(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        p, other, u = make_project(s), make_project(s), make_user(s, name="ann")
        a, elsewhere = make_image(s, project=p), make_image(s, project=other)
        rnd = Round(project_id=p.id, number=3)
        s.add(rnd)
        s.flush()
        lease = Lease(image_id=a.id, user_id=u.id, stage="annotate", round_id=rnd.id,
                      arm="control", expires_at=utcnow() + dt.timedelta(minutes=5))  # fmt: skip
        s.add(lease)
        s.flush()
        for i, (img, lease_id) in enumerate([(a, lease.id), (a, None), (elsewhere, None),
                                             (a, None)]):  # fmt: skip
            s.add(Event(uuid=f"e{i}", user_id=u.id, image_id=img.id, lease_id=lease_id,
                        session_id="s", seq=i, kind="click", payload={"i": i},
                        client_time=float(i)))  # fmt: skip
        s.flush()
        first = event_page(s, project_id=p.id, limit=2)
        assert [r.uuid for r in first] == ["e0", "e1"]
        assert (first[0].stage, first[0].round, first[0].arm) == ("annotate", 3, "control")
        assert first[0].completed_at is None and first[0].user_name == "ann"
        assert (first[1].stage, first[1].round, first[1].arm) == (None, None, None)
        rest = event_page(s, project_id=p.id, after_id=first[-1].id, limit=2)
        assert [r.uuid for r in rest] == ["e3"] and rest[0].payload == {"i": 3}
