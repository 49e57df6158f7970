"""Proposal outcomes: a version's proposals on finished images, reveals and final masks."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from db.models import Event, Lease, Round, utcnow
from db.proposal_outcomes import final_masks, proposal_rows, revealed_images
from tests.factories import make_image, make_mask, make_model_version, make_project, make_user


def test_proposals_of_finished_images_with_reveals_and_finals(
    factory: sessionmaker[Session],
) -> None:
    with factory() as s:
        p, u = make_project(s), make_user(s)
        mv, other = make_model_version(s), make_model_version(s)
        rnd = Round(project_id=p.id, number=1)
        s.add(rnd)
        s.flush()
        done, unfinished = make_image(s, project=p), make_image(s, project=p)
        for img, completed in ((done, utcnow()), (unfinished, None)):
            lease = Lease(image_id=img.id, user_id=u.id, stage="annotate", round_id=rnd.id,
                          arm="control", expires_at=utcnow(), completed_at=completed)  # fmt: skip
            s.add(lease)
            s.flush()
            make_mask(s, image=img, source="model", model_version_id=mv.id)
        make_mask(s, image=done, source="model", model_version_id=other.id)
        final = make_mask(s, image=done, source="human", status="accepted")
        s.add(Event(uuid="r1", user_id=u.id, image_id=done.id, session_id="s", seq=1,
                    kind="reveal_less_confident", payload={}, client_time=0.0))  # fmt: skip
        s.flush()
        rows = proposal_rows(s, project_id=p.id, model_version_ids=[mv.id])
        assert [(r.image_id, r.arm, r.width) for r in rows] == [(done.id, "control", done.width)]
        assert revealed_images(s, project_id=p.id) == {done.id}
        finals = final_masks(s, image_ids={done.id, unfinished.id})
        assert finals == {done.id: [final.rle], unfinished.id: []}
