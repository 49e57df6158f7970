"""db.mask_listing: which masks are listed (largest first), which count as shown to the
annotator (confident proposals, the others once revealed, none in the control arm), and
the masks' parent links."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.mask_listing import REVEAL_KIND, list_masks, parent_links, revealed, shown_status_counts
from db.models import Event
from tests.factories import box_mask, make_image, make_mask, make_project, make_user


def test_listing_shown_counts_and_parents(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        image = make_image(s, project=make_project(s))
        big = make_mask(s, image=image, mask=box_mask(48, 64, 0, 0, 40, 40), confident=True)
        small = make_mask(s, image=image, mask=box_mask(48, 64, 0, 0, 10, 10), confident=False)
        done = make_mask(s, image=image, status="accepted")
        old = make_mask(s, image=image, status="superseded")
        edit = make_mask(s, image=image, status="accepted", source="model_edited", parent_id=old.id)
        ids = lambda rows: [m.id for m in rows]  # noqa: E731
        assert ids(list_masks(s, image_id=image.id)) == [big.id, done.id, edit.id]
        assert small.id in ids(list_masks(s, image_id=image.id, all_proposals=True))
        assert big.id not in ids(list_masks(s, image_id=image.id, proposals=False))
        assert old.id in ids(list_masks(s, image_id=image.id, history=True))

        def shown(arm: str) -> dict[str, int]:
            return shown_status_counts(s, image_id=image.id, lease_id=None, arm=arm)

        assert shown("prefill") == {"proposed": 1, "accepted": 2, "superseded": 1}
        assert shown("control") == {"accepted": 2, "superseded": 1}
        assert not s.scalar(select(revealed(image_id=image.id, lease_id=None)))
        user = make_user(s)
        s.add(Event(uuid="reveal-1", user_id=user.id, image_id=image.id, session_id="s",
                    kind=REVEAL_KIND, client_time=1.0))  # fmt: skip
        s.flush()
        assert s.scalar(select(revealed(image_id=image.id, lease_id=None)))
        assert shown("prefill")["proposed"] == 2
        links = parent_links(s, image_ids=[image.id])
        assert links[edit.id] == old.id and links[big.id] is None and len(links) == 5
        assert parent_links(s, image_ids=[]) == {}
