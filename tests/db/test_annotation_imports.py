"""Annotation imports: earlier import events and the confident proposals of an image."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from db.annotation_imports import confident_proposals, event_payloads, event_uuid_taken
from db.models import Event
from tests.factories import make_image, make_mask, make_project, make_user


def test_payloads_uuids_and_confident_proposals(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        p, u = make_project(s), make_user(s)
        a, b = make_image(s, project=p), make_image(s, project=p)
        for i, (img, kind) in enumerate(
            [
                (a, "import_lead_time"),
                (a, "click"),
                (a, "import_lead_time"),
                (b, "import_lead_time"),
            ]
        ):
            s.add(Event(uuid=f"u{i}", user_id=u.id, image_id=img.id, session_id="s", seq=i,
                        kind=kind, payload={"n": i}, client_time=float(i)))  # fmt: skip
        s.flush()
        assert event_payloads(s, image_id=a.id, kind="import_lead_time") == [{"n": 0}, {"n": 2}]
        assert event_payloads(s, image_id=b.id, kind="click") == []
        assert event_uuid_taken(s, uuid="u1") and not event_uuid_taken(s, uuid="nope")

        sure = make_mask(s, image=a, status="proposed", confident=True)
        make_mask(s, image=a, status="proposed", confident=False)
        make_mask(s, image=a, status="accepted", confident=True)
        make_mask(s, image=b, status="proposed", confident=True)
        assert [m.id for m in confident_proposals(s, image_id=a.id)] == [sure.id]
