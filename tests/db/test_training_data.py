"""Training data: accepted masks of ok images, grouped by image in id order."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from db.training_data import accepted_mask_rles
from tests.factories import make_image, make_mask, make_project


def test_accepted_masks_of_ok_images_only(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        p, other = make_project(s), make_project(s, name="other")
        a = make_image(s, project=p)
        b = make_image(s, project=p, sha256=None)
        make_image(s, project=p)  # no accepted mask: left out
        rejected = make_image(s, project=p, status="rejected")
        elsewhere = make_image(s, project=other)
        m1 = make_mask(s, image=a, status="accepted")
        make_mask(s, image=a, status="proposed")
        m2 = make_mask(s, image=a, status="accepted")
        m3 = make_mask(s, image=b, status="accepted")
        make_mask(s, image=rejected, status="accepted")
        make_mask(s, image=elsewhere, status="accepted")

        got = accepted_mask_rles(s, project_id=p.id)
        assert list(got) == [a.id, b.id]
        assert got[a.id] == (a.uri, a.sha256, [m1.rle, m2.rle])
        assert got[b.id] == (b.uri, None, [m3.rle])
        assert accepted_mask_rles(s, project_id=other.id + 1) == {}
