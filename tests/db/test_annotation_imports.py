"""Annotation imports: earlier import events and the confident proposals of an image, and
the mask and event rows an import adds."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from db.annotation_imports import (
    add_import_event,
    add_mask_row,
    confident_proposals,
    event_payloads,
    event_uuid_taken,
    find_mask,
)
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


def test_imported_rows(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        p, u = make_project(s), make_user(s)
        image = make_image(s, project=p)
        rle = {"size": [48, 64], "counts": "0"}
        row = add_mask_row(s, image_id=image.id, rle=rle, bbox=[0.0, 0.0, 1.0, 1.0], area=1,
                           label="dog", source="human", status="accepted", author_id=u.id,
                           meta={"label_studio": {"task_id": 1}}, confident=False)  # fmt: skip
        event = add_import_event(s, uuid="imp-1", user_id=u.id, image_id=image.id,
                                 session_id="label-studio:1:2", kind="import_lead_time",
                                 payload={"seconds": 3.0})  # fmt: skip
        assert row.id is None and event.id is None  # added, not flushed
        s.flush()
        assert find_mask(s, mask_id=row.id) is row and find_mask(s, mask_id=row.id + 1000) is None
        assert (row.label, row.status, row.confident) == ("dog", "accepted", False)
        assert (event.seq, event.client_time, event.visible) == (0, 0.0, True)
        assert event_payloads(s, image_id=image.id, kind="import_lead_time") == [{"seconds": 3.0}]
