"""The work queue: one image per person per stage, expiry without heartbeats, drafts kept
when a lease is lost, and no double hand-out under concurrent requests (both databases)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db import leases
from db.errors import Conflict, LeaseLost, NotFound, PermissionDenied
from db.models import Lease, Project, utcnow
from db.rounds import start_round
from db.session import transaction
from tests.factories import make_image, make_mask, make_project, make_queue
from tests.webapp import NoModel, Web, serve, start_web


def test_next_resume_expire_and_draft(factory: sessionmaker[Session]) -> None:
    pid, (ann, bob) = make_queue(factory, 2, 2)
    t0 = utcnow()
    with transaction(factory) as s:
        a1 = leases.next_lease(s, user_id=ann, project_id=pid, minutes=30, now=t0)
        assert leases.next_lease(s, user_id=ann, project_id=pid, now=t0).id == a1.id  # resume
        b1 = leases.next_lease(s, user_id=bob, project_id=pid, now=t0)
        assert b1.image_id != a1.image_id
        ids = (a1.id, b1.id, a1.image_id)
    later = t0 + dt.timedelta(minutes=20)
    with transaction(factory) as s:  # a heartbeat moves the expiry
        lease = leases.heartbeat(s, lease_id=ids[0], user_id=ann, minutes=30, now=later)
        assert lease.expires_at == later + dt.timedelta(minutes=30)
        with pytest.raises(PermissionDenied):
            leases.heartbeat(s, lease_id=ids[0], user_id=bob, now=later)
    too_late = later + dt.timedelta(minutes=31)
    with factory() as s:  # no heartbeat for 31 minutes: lost; the draft is kept
        with pytest.raises(LeaseLost, match="lost .* kept as a draft"):
            leases.heartbeat(s, lease_id=ids[0], user_id=ann, draft={"x": 1}, now=too_late)
        s.commit()
    with transaction(factory) as s:
        assert s.get(Lease, ids[0]).draft == {"x": 1}
        # bob finishes his image, then gets ann's expired one
        leases.complete(s, lease=s.get(Lease, ids[1]), now=too_late)
        b2 = leases.next_lease(s, user_id=bob, project_id=pid, now=too_late)
        assert b2.image_id == ids[2] and b2.draft is None  # drafts are never shown to others
        leases.complete(s, lease=b2, now=too_late)
    with transaction(factory) as s, pytest.raises(NotFound, match="no images left"):
        leases.next_lease(s, user_id=ann, project_id=pid, now=too_late)


def test_release_keeps_the_draft_for_the_same_person(factory: sessionmaker[Session]) -> None:
    pid, (ann, bob) = make_queue(factory, 1, 2)
    with transaction(factory) as s:
        first = leases.next_lease(s, user_id=ann, project_id=pid)
        leases.release(s, lease_id=first.id, user_id=ann, draft={"ops": [2]})
    with transaction(factory) as s:  # the image is free again; bob never sees ann's draft
        other = leases.next_lease(s, user_id=bob, project_id=pid)
        assert other.image_id == first.image_id and other.draft is None
        leases.release(s, lease_id=other.id, user_id=bob)
        with pytest.raises(PermissionDenied):
            leases.release(s, lease_id=other.id, user_id=ann)
    with transaction(factory) as s:
        back = leases.next_lease(s, user_id=ann, project_id=pid)
        assert back.image_id == first.image_id and back.draft == {"ops": [2]}
        leases.complete(s, lease=back)
        with pytest.raises(Conflict, match="already submitted"):
            leases.release(s, lease_id=back.id, user_id=ann)


def test_concurrent_next_never_hands_out_one_image_twice(
    factory: sessionmaker[Session],
) -> None:
    """Eight people ask at the same instant, three times each (threads, own sessions)."""
    n_users, rounds = 8, 3
    pid, users = make_queue(factory, n_users * rounds + 2, n_users)
    got: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(n_users)

    def work(user_id: int) -> None:
        try:
            for _ in range(rounds):
                barrier.wait(10)
                with transaction(factory) as s:
                    lease = leases.next_lease(s, user_id=user_id, project_id=pid)
                    leases.complete(s, lease=lease)
                    with lock:
                        got.append(lease.image_id)
        except BaseException as err:  # noqa: BLE001 - reported by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(got) == n_users * rounds
    assert len(set(got)) == len(got), f"an image was handed out twice: {sorted(got)}"


@pytest.fixture
def web(db_url: str, tmp_path: Path) -> Iterator[Web]:
    with start_web(db_url, tmp_path, segmenter=NoModel(), lease_minutes=30) as w:
        yield w


def test_concurrent_http_requests_get_distinct_images(web: Web) -> None:
    """Real uvicorn, real threads: simultaneous POST /api/tasks/next from 6 annotators."""
    with transaction(web.factory) as s:
        p = make_project(s)
        for _ in range(10):
            make_image(s, project=p)
        pid = p.id
    tokens = [web.add_user(f"ann{i}", "annotator")[1] for i in range(6)]
    barrier = threading.Barrier(len(tokens))
    answers: list[httpx.Response] = []
    lock = threading.Lock()
    with serve(web.app) as base:

        def ask(token: str) -> None:
            with httpx.Client(base_url=base, timeout=30) as c:
                barrier.wait(10)
                r = c.post(
                    "/api/tasks/next",
                    json={"project_id": pid},
                    headers={"Authorization": f"Bearer {token}"},
                )
                with lock:
                    answers.append(r)

        threads = [threading.Thread(target=ask, args=(t,)) for t in tokens]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert [r.status_code for r in answers] == [200] * len(tokens), [r.text for r in answers]
    images = [r.json()["image"]["id"] for r in answers]
    assert len(set(images)) == len(images), images


def test_submit_after_the_lease_was_lost_is_409_and_keeps_the_work(web: Web) -> None:
    c = web.client
    with transaction(web.factory) as s:
        p = make_project(s, labels=["dog"])
        im = make_image(s, project=p)
        m = make_mask(s, image=im, confident=True, predicted_iou=0.95)
        pid, mid = p.id, m.id
    ann = web.as_("annotator")
    task = c.post("/api/tasks/next", json={"project_id": pid}, headers=ann).json()
    lid = task["lease_id"]
    assert c.post(f"/api/tasks/{lid}/heartbeat", json={}, headers=ann).status_code == 200
    with transaction(web.factory) as s:  # the page slept past the expiry
        s.get(Lease, lid).expires_at = utcnow() - dt.timedelta(seconds=1)
    ops = [{"op": "accept", "mask_id": mid, "version": 1, "label": "dog"}]
    r = c.post(f"/api/tasks/{lid}/submit", json={"ops": ops}, headers=ann)
    assert r.status_code == 409
    assert "lease" in r.json()["detail"] and "lost" in r.json()["detail"]
    assert "draft" in r.json()["detail"]
    with web.factory() as s:
        lease = s.get(Lease, lid)
        assert lease.completed_at is None
        assert lease.draft["ops"][0]["mask_id"] == mid  # nothing lost
    # a direct mask change on the lost lease: 409 too, and queued in the draft
    r = c.post(f"/api/masks/{mid}/reject", json={"version": 1}, headers=ann)
    assert r.status_code == 409
    with web.factory() as s:
        assert s.get(Lease, lid).draft["pending_ops"][0]["op"] == "reject"
    # asking again gives the same image back with the draft
    again = c.post("/api/tasks/next", json={"project_id": pid}, headers=ann).json()
    assert again["image"]["id"] == task["image"]["id"] and again["draft"]["ops"]
    r = c.post(f"/api/tasks/{again['lease_id']}/submit", json={"ops": ops}, headers=ann)
    assert r.status_code == 200, r.text
    assert r.json()["counts"] == {"accepted": 1}


def _one_task(web: Web, control_fraction: float) -> tuple[int, dict, dict]:
    """A round, one image with a confident proposal, leased to an annotator:
    (project id, annotator headers, task)."""
    with transaction(web.factory) as s:
        p = make_project(s)
        start_round(s, project_id=p.id, model_version_id=None,
                    control_fraction=control_fraction, seed=3)  # fmt: skip
        im = make_image(s, project=p)
        make_mask(s, image=im, confident=True)
        pid = p.id
    ann = web.as_("annotator")
    task = web.client.post("/api/tasks/next", json={"project_id": pid}, headers=ann).json()
    return pid, ann, task


def test_control_arm_hides_proposals(web: Web) -> None:
    pid, ann, task = _one_task(web, control_fraction=1.0)
    assert task["arm"] == "control"
    r = web.client.get(f"/api/images/{task['image']['id']}/masks", headers=ann).json()
    assert r["arm"] == "control" and r["masks"] == []
    rev = web.client.get(f"/api/images/{task['image']['id']}/masks", headers=web.as_("admin"))
    assert rev.json()["arm"] == "control"
    with web.factory() as s:
        assert s.scalars(select(Lease.round_id)).one() is not None
        assert s.get(Project, pid) is not None


def test_submit_derives_the_image_metrics_row(web: Web) -> None:
    """A submit leaves the image's effort_cache row fresh (an idle job once the process
    answers no request), so metric queries never derive."""
    from db.models import EffortCache

    _, ann, task = _one_task(web, control_fraction=0.0)
    with web.factory() as s:
        assert s.get(EffortCache, task["image"]["id"]) is None
    r = web.client.post(f"/api/tasks/{task['lease_id']}/submit", json={"ops": []}, headers=ann)
    assert r.status_code == 200, r.text
    assert web.app.state.idle_work.wait_idle(), "the metrics job did not run"  # after the answer
    with web.factory() as s:
        row = s.get(EffortCache, task["image"]["id"])
        assert row is not None and row.lease_id == task["lease_id"]
        assert row.shown == 1 and row.final == 0
