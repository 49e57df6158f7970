"""Worked images and done leases: which images the metrics count, and in which round / arm."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from db.models import Event, Lease, Mask, Round, utcnow
from db.worked_images import done_leases, shown_to_annotator, worked_image_page, worked_images
from tests.factories import make_image, make_mask, make_project, make_user


def test_worked_images_and_done_leases(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        p, u = make_project(s), make_user(s)
        rnd = Round(project_id=p.id, number=1, control_fraction=0.5)
        s.add(rnd)
        s.flush()
        done, open_, events_only, untouched = (make_image(s, project=p) for _ in range(4))
        for img, completed, arm in ((done, utcnow(), "control"), (open_, None, "prefill")):
            s.add(Lease(image_id=img.id, user_id=u.id, stage="annotate", round_id=rnd.id,
                        arm=arm, expires_at=utcnow(), completed_at=completed))  # fmt: skip
        s.add(Event(uuid="e1", user_id=u.id, image_id=events_only.id, session_id="s", seq=1,
                    kind="image_open", payload={}, client_time=0.0))  # fmt: skip
        s.flush()
        rows = {r.image_id: r for r in s.execute(worked_images(project_id=p.id))}
        assert set(rows) == {done.id, open_.id, events_only.id}  # not the untouched image
        assert (rows[done.id].round, rows[done.id].arm) == (1, "control")
        assert rows[done.id].lease_id is not None and rows[open_.id].lease_id is None
        assert (rows[events_only.id].round, rows[events_only.id].arm) == (None, "prefill")
        one = s.execute(worked_images(project_id=None, image_id=open_.id)).all()
        assert [r.image_id for r in one] == [open_.id]
        finished = s.execute(done_leases(project_id=p.id)).all()
        assert [(r.image_id, r.arm, r.round) for r in finished] == [(done.id, "control", 1)]
        assert s.execute(done_leases(project_id=p.id, image_id=open_.id)).all() == []
        assert untouched.id not in rows


def test_shown_to_annotator_counts_hidden_proposals_once_revealed(
    factory: sessionmaker[Session],
) -> None:
    with factory() as s:
        p, u = make_project(s), make_user(s)
        img = make_image(s, project=p)
        sure = make_mask(s, image=img, source="model", confident=True)
        hidden = make_mask(s, image=img, source="model", confident=False)
        make_mask(s, image=img, source="human")
        done = worked_images(project_id=p.id).subquery("done")
        s.add(Event(uuid="e0", user_id=u.id, image_id=img.id, session_id="s", seq=1,
                    kind="image_open", payload={}, client_time=0.0))  # fmt: skip
        s.flush()

        def shown() -> set[int]:
            q = (
                Mask.__table__.select()
                .with_only_columns(Mask.id)
                .join(done, done.c.image_id == Mask.image_id)
                .where(shown_to_annotator(done=done))
            )
            return set(s.scalars(q))

        assert shown() == {sure.id}
        s.add(Event(uuid="e2", user_id=u.id, image_id=img.id, session_id="s", seq=2,
                    kind="reveal_less_confident", payload={}, client_time=1.0))  # fmt: skip
        s.flush()
        assert shown() == {sure.id, hidden.id}


def test_worked_image_page_walks_by_image_id(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        p, u = make_project(s), make_user(s)
        imgs = [make_image(s, project=p) for _ in range(3)]
        make_image(s, project=p)  # no work: not a unit
        for i, img in enumerate(imgs):
            s.add(Event(uuid=f"w{i}", user_id=u.id, image_id=img.id, session_id="s", seq=i,
                        kind="image_open", payload={}, client_time=0.0))  # fmt: skip
        s.flush()
        first = worked_image_page(s, project_id=p.id, limit=2)
        assert [r.image_id for r in first] == [imgs[0].id, imgs[1].id]
        assert first[0].lease_id is None and first[0].round is None
        rest = worked_image_page(s, project_id=p.id, after_image_id=imgs[1].id, limit=2)
        assert [r.image_id for r in rest] == [imgs[2].id]
