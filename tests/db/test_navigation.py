"""Skip sends an image to the back of my queue (a release does not); previous reopens the
image I finished last when nobody has taken it since (both databases)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.orm import Session, sessionmaker

from db import leases, navigation
from db.errors import Conflict, NotFound
from db.models import Lease, utcnow
from db.rounds import start_round
from db.session import transaction
from tests.factories import make_image, make_project, make_user


def seed(factory: sessionmaker[Session], n_images: int) -> tuple[int, list[int], int, int]:
    with transaction(factory) as s:
        p = make_project(s)
        images = [make_image(s, project=p).id for _ in range(n_images)]
        return p.id, images, make_user(s).id, make_user(s).id


def test_skip_gives_a_different_image_and_the_skipped_one_comes_last(
    factory: sessionmaker[Session],
) -> None:
    pid, images, ann, bob = seed(factory, 3)
    t = utcnow()
    with transaction(factory) as s:
        first = leases.next_lease(s, user_id=ann, project_id=pid, now=t)
        assert first.image_id == images[0]
        navigation.skip(s, lease_id=first.id, user_id=ann, draft={"points": [[1, 2, 1]]}, now=t)
        second = leases.next_lease(s, user_id=ann, project_id=pid, now=t)
        assert second.image_id == images[1]
        # bob is not affected by ann's skip: the lowest free id is the skipped one
        assert leases.next_lease(s, user_id=bob, project_id=pid, now=t).image_id == images[0]
        leases.complete(s, lease=second, now=t)
        third = leases.next_lease(s, user_id=ann, project_id=pid, now=t)
        assert third.image_id == images[2]
        navigation.skip(s, lease_id=third.id, user_id=ann, now=t + dt.timedelta(seconds=1))
        # both free images of ann's were skipped: the longest-skipped first (bob holds #0)
        again = leases.next_lease(s, user_id=ann, project_id=pid, now=t + dt.timedelta(seconds=2))
        assert again.image_id == images[2]


def test_a_plain_release_keeps_the_order(factory: sessionmaker[Session]) -> None:
    pid, images, ann, _ = seed(factory, 2)
    with transaction(factory) as s:
        first = leases.next_lease(s, user_id=ann, project_id=pid)
        leases.release(s, lease_id=first.id, user_id=ann)
        assert leases.next_lease(s, user_id=ann, project_id=pid).image_id == images[0]


def test_previous_reopens_a_skipped_image_with_its_draft(factory: sessionmaker[Session]) -> None:
    pid, images, ann, _ = seed(factory, 3)
    t = utcnow()
    with transaction(factory) as s:
        with pytest.raises(NotFound, match="no earlier image"):
            navigation.previous_lease(s, user_id=ann, project_id=pid, now=t)
        first = leases.next_lease(s, user_id=ann, project_id=pid, now=t)
        navigation.skip(s, lease_id=first.id, user_id=ann, draft={"points": [[5, 5, 1]]}, now=t)
        second = leases.next_lease(s, user_id=ann, project_id=pid, now=t)
        back = navigation.previous_lease(s, user_id=ann, project_id=pid, now=t)
        assert back.image_id == images[0] and back.draft == {"points": [[5, 5, 1]]}
        assert not leases.is_live(s.get(Lease, second.id), t)  # the current one was given back


def test_previous_reopens_a_submitted_image_in_the_open_round(
    factory: sessionmaker[Session],
) -> None:
    pid, images, ann, bob = seed(factory, 3)
    t = utcnow()
    with transaction(factory) as s:
        start_round(s, project_id=pid, model_version_id=None)
        first = leases.next_lease(s, user_id=ann, project_id=pid, now=t)
        leases.complete(s, lease=first, now=t)
        first.submit_result = {"request_sha256": "x", "response": {}}
        leases.next_lease(s, user_id=ann, project_id=pid, now=t)
        back = navigation.previous_lease(s, user_id=ann, project_id=pid, now=t)
        assert back.id == first.id and back.completed_at is None and back.submit_result is None
        assert leases.is_live(back, t)
        leases.complete(s, lease=back, now=t + dt.timedelta(seconds=1))
        # a new round: the submission can no longer be reopened
        start_round(s, project_id=pid, model_version_id=None)
        with pytest.raises(Conflict, match="earlier round"):
            navigation.previous_lease(
                s, user_id=ann, project_id=pid, now=t + dt.timedelta(seconds=2)
            )


def test_previous_refuses_an_image_someone_else_took(factory: sessionmaker[Session]) -> None:
    pid, images, ann, bob = seed(factory, 2)
    t = utcnow()
    with transaction(factory) as s:
        first = leases.next_lease(s, user_id=ann, project_id=pid, now=t)
        navigation.skip(s, lease_id=first.id, user_id=ann, now=t)
        assert leases.next_lease(s, user_id=bob, project_id=pid, now=t).image_id == images[0]
        with pytest.raises(Conflict, match="someone else"):
            navigation.previous_lease(s, user_id=ann, project_id=pid, now=t)
