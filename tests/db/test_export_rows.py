"""Export rows: kept images of a curation stage, masks by image, labels in use."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from db.export_rows import kept_image_ids, mask_labels, masks_by_image
from db.models import CurationDecision
from tests.factories import make_image, make_mask, make_project


def test_kept_masks_and_labels(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        p = make_project(s)
        a, b, c, d = (make_image(s, project=p) for _ in range(4))
        s.add_all([
            CurationDecision(image_id=a.id, stage="generalist", decision="drop"),
            CurationDecision(image_id=a.id, stage="generalist", decision="keep"),  # latest wins
            CurationDecision(image_id=b.id, stage="generalist", decision="keep"),
            CurationDecision(image_id=b.id, stage="generalist", decision="drop"),
            CurationDecision(image_id=c.id, stage="generalist", decision="pass", superseded=True),
            CurationDecision(image_id=d.id, stage="specialist", decision="pass"),
        ])  # fmt: skip
        s.flush()
        ids = [a.id, b.id, c.id, d.id]
        assert kept_image_ids(s, image_ids=ids, stage="generalist") == {a.id}
        assert kept_image_ids(s, image_ids=ids, stage="specialist") == {d.id}

        m1 = make_mask(s, image=a, status="accepted", label="dog")
        m2 = make_mask(s, image=a, status="proposed", label="cat")
        m3 = make_mask(s, image=b, status="accepted")
        make_mask(s, image=b, status="rejected", label="person")
        got = masks_by_image(s, image_ids=[a.id, b.id, c.id], statuses=("accepted",))
        assert {k: [m.id for m in v] for k, v in got.items()} == {
            a.id: [m1.id], b.id: [m3.id], c.id: []
        }  # fmt: skip
        both = masks_by_image(s, image_ids=[a.id], statuses=("accepted", "proposed"))
        assert [m.id for m in both[a.id]] == [m1.id, m2.id]
        assert masks_by_image(s, image_ids=[], statuses=("accepted",)) == {}
        labels = mask_labels(s, image_ids=[a.id, b.id], statuses=("accepted", "proposed"))
        assert set(labels) == {None, "cat", "dog"} and len(labels) == 3  # distinct
