"""Task submit: mask ops only on annotate leases from annotator-capable roles (a curation
lease never changes masks), and a retried submit gets the first answer instead of 409."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from db.models import Lease, Mask
from db.session import transaction
from engine.masks import encode_rle
from tests.factories import box_mask, make_image, make_mask, make_project
from tests.webapp import NoModel, Web, serve, start_web

H, W = 48, 64


@pytest.fixture
def web(db_url: str, tmp_path: Path) -> Iterator[Web]:
    with start_web(db_url, tmp_path, segmenter=NoModel()) as w:
        yield w


def setup_image(web: Web) -> dict[str, int]:
    with transaction(web.factory) as s:
        p = make_project(s, labels=[])
        im = make_image(s, project=p, width=W, height=H)
        m = make_mask(s, image=im, mask=box_mask(H, W, 2, 2, 12, 12), confident=True)
        return {"project": p.id, "image": im.id, "mask": m.id}


def snapshot(web: Web) -> list[tuple[Any, ...]]:
    with web.factory() as s:
        return [
            (m.id, m.status, m.version, m.label, m.area)
            for m in s.scalars(select(Mask).order_by(Mask.id))
        ]


def lease_of(web: Web, lease_id: int) -> Lease:
    with web.factory() as s:
        lease = s.get(Lease, lease_id)
        s.expunge(lease)
        return lease


MASK_OPS = [
    lambda ids: {"op": "accept", "mask_id": ids["mask"], "version": 1},
    lambda ids: {"op": "reject", "mask_id": ids["mask"], "version": 1},
    lambda ids: {"op": "add", "rle": encode_rle(box_mask(H, W, 20, 20, 30, 30))},
    lambda ids: {
        "op": "fix",
        "mask_id": ids["mask"],
        "version": 1,
        "rle": encode_rle(box_mask(H, W, 3, 3, 13, 13)),
    },  # fmt: skip
    lambda ids: {"op": "delete", "mask_id": ids["mask"], "version": 1},
]


@pytest.mark.parametrize("role", ["curator", "reviewer", "admin"])
def test_a_curation_lease_never_applies_mask_ops(web: Web, role: str) -> None:
    ids, c = setup_image(web), web.client
    task = c.post(
        "/api/tasks/next",
        json={"project_id": ids["project"], "stage": "generalist"},
        headers=web.as_(role),
    ).json()
    before = snapshot(web)
    for make in MASK_OPS:
        r = c.post(
            f"/api/tasks/{task['lease_id']}/submit",
            json={"ops": [make(ids)]},
            headers=web.as_(role),
        )
        assert r.status_code == 403, r.text
        assert "only on annotate leases" in r.json()["detail"]
    assert snapshot(web) == before
    lease = lease_of(web, task["lease_id"])
    assert lease.completed_at is None and lease.draft is None  # nothing stored either
    # without ops the curation lease submits as before
    r = c.post(f"/api/tasks/{task['lease_id']}/submit", json={}, headers=web.as_(role))
    assert r.status_code == 200 and r.json()["created"] == {}
    assert snapshot(web) == before


def test_annotators_still_submit_ops(web: Web) -> None:
    ids, c = setup_image(web), web.client
    ann = web.as_("annotator")
    task = c.post("/api/tasks/next", json={"project_id": ids["project"]}, headers=ann).json()
    ops = [MASK_OPS[0](ids), {**MASK_OPS[2](ids), "key": "new"}]
    r = c.post(f"/api/tasks/{task['lease_id']}/submit", json={"ops": ops}, headers=ann)
    assert r.status_code == 200 and set(r.json()["created"]) == {"new"}
    assert r.json()["counts"] == {"accepted": 2}


def test_retried_submit_returns_the_first_answer(web: Web) -> None:
    ids, c = setup_image(web), web.client
    ann = web.as_("annotator")
    task = c.post("/api/tasks/next", json={"project_id": ids["project"]}, headers=ann).json()
    body = {"ops": [{**MASK_OPS[2](ids), "key": "a"}], "note": "done"}
    path = f"/api/tasks/{task['lease_id']}/submit"
    first = c.post(path, json=body, headers=ann)
    assert first.status_code == 200
    after = snapshot(web)
    for _ in range(2):
        again = c.post(path, json=body, headers=ann)
        assert (again.status_code, again.json()) == (200, first.json())
    assert snapshot(web) == after  # no second mask
    # a different body on the submitted lease is still a conflict
    r = c.post(path, json={"ops": [], "note": "other"}, headers=ann)
    assert r.status_code == 409 and "already submitted" in r.json()["detail"]
    # someone else's retry is not theirs to replay
    r = c.post(path, json=body, headers=web.as_("reviewer"))
    assert r.status_code == 403
    assert snapshot(web) == after


def test_concurrent_identical_submits_apply_once(web: Web) -> None:
    ids, c = setup_image(web), web.client
    ann = web.as_("annotator")
    task = c.post("/api/tasks/next", json={"project_id": ids["project"]}, headers=ann).json()
    body = {"ops": [{**MASK_OPS[2](ids), "key": "a"}, MASK_OPS[0](ids)]}
    n = 6
    barrier = threading.Barrier(n)
    with serve(web.app) as url:
        # warm up: FastAPI builds each route on its first request, and its warnings filter
        # (not thread-safe) would let pydantic warnings escape under pytest's "error" filter
        assert httpx.post(url + "/api/tasks/999999/submit", json={}, headers=ann).status_code == 404

        def one(_: int) -> httpx.Response:
            with httpx.Client(base_url=url, timeout=60) as client:
                barrier.wait()
                return client.post(f"/api/tasks/{task['lease_id']}/submit", json=body, headers=ann)

        with ThreadPoolExecutor(n) as pool:
            answers = list(pool.map(one, range(n)))
    assert {r.status_code for r in answers} == {200}, [r.text for r in answers]
    assert len({r.text for r in answers}) == 1
    with web.factory() as s:
        added = s.scalars(select(Mask).where(Mask.source == "human")).all()
        assert len(added) == 1
        assert s.get(Mask, ids["mask"]).version == 2
