"""Mask routes: listing rules, review decisions, fix/add/relabel/delete/revert with optimistic
versions, lease checks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from db.models import Mask, Project
from db.session import transaction
from engine.masks import encode_rle
from tests.factories import box_mask, make_image, make_mask, make_project
from tests.webapp import NoModel, Web, start_web


@pytest.fixture
def web(db_url: str, tmp_path: Path) -> Iterator[Web]:
    with start_web(db_url, tmp_path, segmenter=NoModel()) as w:
        yield w


def setup_image(web: Web) -> dict[str, int]:
    with transaction(web.factory) as s:
        p = make_project(s, labels=["dog", "cat"])
        im = make_image(s, project=p)
        sure = make_mask(s, image=im, confident=True, predicted_iou=0.97)
        also = make_mask(
            s, image=im, mask=box_mask(48, 64, 30, 30, 60, 44), confident=True, predicted_iou=0.9
        )
        unsure = make_mask(s, image=im, confident=False, predicted_iou=0.5)
        ids = {"project": p.id, "image": im.id, "sure": sure.id, "also": also.id}
        ids["unsure"] = unsure.id
    return ids


def test_listing_review_and_versions(web: Web) -> None:
    ids = setup_image(web)
    c, ann = web.client, web.as_("annotator")
    r = c.post(f"/api/masks/{ids['sure']}/accept", json={"version": 1}, headers=ann)
    assert r.status_code == 403 and "no lease" in r.json()["detail"]  # not leased yet
    task = c.post("/api/tasks/next", json={"project_id": ids["project"]}, headers=ann).json()
    listed = c.get(f"/api/images/{ids['image']}/masks", headers=ann).json()["masks"]
    assert {m["id"] for m in listed} == {ids["sure"], ids["also"]}  # confident only
    full = c.get(f"/api/images/{ids['image']}/masks?all_proposals=true", headers=ann).json()
    assert len(full["masks"]) == 3 and full["masks"][0]["confidence"] is not None
    body = {"version": 1, "label": "dog", "lease_id": task["lease_id"]}
    r = c.post(f"/api/masks/{ids['sure']}/accept", json=body, headers=ann)
    assert r.status_code == 200 and r.json()["status"] == "accepted" and r.json()["version"] == 2
    # a stale version (someone changed it meanwhile) is a conflict
    r = c.post(f"/api/masks/{ids['sure']}/accept", json=body, headers=ann)
    assert r.status_code == 409 and "changed by someone else" in r.json()["detail"]
    r = c.patch(f"/api/masks/{ids['sure']}", json={"version": 2, "label": "zebra"}, headers=ann)
    assert r.status_code == 422 and "taxonomy" in r.json()["detail"]
    r = c.patch(f"/api/masks/{ids['sure']}", json={"version": 2, "label": "cat"}, headers=ann)
    assert r.json()["label"] == "cat" and r.json()["version"] == 3
    r = c.post(f"/api/masks/{ids['also']}/reject", json={"version": 1}, headers=ann)
    assert r.json()["status"] == "rejected"
    # undo the reject, then accept all confident
    r = c.post(
        f"/api/masks/{ids['also']}/revert", json={"version": 2, "status": "proposed"}, headers=ann
    )
    assert r.json()["status"] == "proposed"
    r = c.post(f"/api/images/{ids['image']}/masks/accept-all-confident", json={}, headers=ann)
    assert [m["id"] for m in r.json()] == [ids["also"]]
    with web.factory() as s:
        assert s.get(Mask, ids["unsure"]).status == "proposed"


def test_fix_add_delete(web: Web) -> None:
    ids = setup_image(web)
    c, ann = web.client, web.as_("annotator")
    c.post("/api/tasks/next", json={"project_id": ids["project"]}, headers=ann)
    better = encode_rle(box_mask(48, 64, 4, 4, 24, 22))
    r = c.post(f"/api/masks/{ids['sure']}/fix", json={"version": 1, "rle": better}, headers=ann)
    assert r.status_code == 200, r.text
    fixed = r.json()
    assert (fixed["source"], fixed["parent_id"], fixed["status"]) == (
        "model_edited",
        ids["sure"],
        "accepted",
    )
    assert fixed["area"] == 20 * 18
    with web.factory() as s:
        assert s.get(Mask, ids["sure"]).status == "superseded"
    new = encode_rle(box_mask(48, 64, 40, 2, 50, 10))
    r = c.post(f"/api/images/{ids['image']}/masks", json={"rle": new, "label": "dog"}, headers=ann)
    added = r.json()
    assert (added["source"], added["status"], added["label"]) == ("human", "accepted", "dog")
    wrong = encode_rle(np.ones((10, 10), dtype=bool))
    r = c.post(f"/api/images/{ids['image']}/masks", json={"rle": wrong}, headers=ann)
    assert r.status_code == 422 and "does not match image" in r.json()["detail"]
    empty = encode_rle(np.zeros((48, 64), dtype=bool))
    r = c.post(f"/api/images/{ids['image']}/masks", json={"rle": empty}, headers=ann)
    assert r.status_code == 422 and "empty" in r.json()["detail"]
    r = c.delete(f"/api/masks/{added['id']}?version=1", headers=ann)
    assert r.json()["status"] == "rejected"
    assert c.delete(f"/api/masks/{added['id']}?version=2", headers=ann).status_code == 409


def test_submit_applies_ops_all_or_nothing(web: Web) -> None:
    ids = setup_image(web)
    c, ann = web.client, web.as_("annotator")
    task = c.post("/api/tasks/next", json={"project_id": ids["project"]}, headers=ann).json()
    new = encode_rle(box_mask(48, 64, 40, 2, 50, 10))
    ops = [
        {"op": "accept", "mask_id": ids["sure"], "version": 1},
        {"op": "add", "rle": new, "label": "cat", "key": "k1"},
        {"op": "reject", "mask_id": ids["also"], "version": 7},  # stale: the whole submit fails
    ]
    r = c.post(f"/api/tasks/{task['lease_id']}/submit", json={"ops": ops}, headers=ann)
    assert r.status_code == 409 and "kept as a draft" in r.json()["detail"]
    with web.factory() as s:
        assert s.get(Mask, ids["sure"]).status == "proposed"  # rolled back
    ops[2]["version"] = 1
    r = c.post(f"/api/tasks/{task['lease_id']}/submit", json={"ops": ops}, headers=ann)
    assert r.status_code == 200, r.text
    # the less confident proposal was never shown: the summary leaves it out
    assert r.json()["counts"] == {"accepted": 2, "rejected": 1}
    assert set(r.json()["created"]) == {"k1"}
    # the image is done: nobody gets it again, and the lease cannot be submitted twice
    assert (
        c.post("/api/tasks/next", json={"project_id": ids["project"]}, headers=ann).status_code
        == 404
    )
    r = c.post(f"/api/tasks/{task['lease_id']}/submit", json={"ops": []}, headers=ann)
    assert r.status_code == 409


def test_less_confident_revealed_on_demand_and_counted_once_shown(web: Web) -> None:
    ids = setup_image(web)
    c, ann = web.client, web.as_("annotator")
    task = c.post("/api/tasks/next", json={"project_id": ids["project"]}, headers=ann).json()
    url = f"/api/images/{ids['image']}/masks"
    assert {m["id"] for m in c.get(url, headers=ann).json()["masks"]} == {ids["sure"], ids["also"]}
    revealed = c.get(f"{url}?include=less_confident", headers=ann).json()["masks"]
    assert {m["id"] for m in revealed} == {ids["sure"], ids["also"], ids["unsure"]}
    assert {m["id"]: m["confident"] for m in revealed}[ids["unsure"]] is False
    r = c.get(f"{url}?include=everything", headers=ann)
    assert r.status_code == 422 and "include=less_confident" in r.json()["detail"]
    # the client logs the reveal; from then on the hidden proposal was shown
    event = {"uuid": "reveal-0001", "session_id": "s1", "seq": 1, "client_time": 10.0,
             "kind": "reveal_less_confident", "image_id": ids["image"],
             "lease_id": task["lease_id"], "payload": {"mask_ids": [ids["unsure"]]}}  # fmt: skip
    r = c.post("/api/events", json={"events": [event]}, headers=ann)
    assert r.status_code == 200 and r.json()["stored"] == 1, r.text
    ops = [{"op": "accept", "mask_id": ids["sure"], "version": 1}]
    r = c.post(f"/api/tasks/{task['lease_id']}/submit", json={"ops": ops}, headers=ann)
    assert r.status_code == 200, r.text
    assert r.json()["counts"] == {"accepted": 1, "proposed": 2}  # "also" and "unsure"


def test_bulk_status_reverts_an_accept_all_in_one_request_all_or_nothing(web: Web) -> None:
    ids = setup_image(web)
    c, ann = web.client, web.as_("annotator")
    task = c.post("/api/tasks/next", json={"project_id": ids["project"]}, headers=ann).json()
    lease = task["lease_id"]
    rows = c.post(
        f"/api/images/{ids['image']}/masks/accept-all-confident",
        json={"lease_id": lease},
        headers=ann,
    ).json()
    assert {m["id"] for m in rows} == {ids["sure"], ids["also"]}
    url = f"/api/images/{ids['image']}/masks/bulk-status"
    # one stale version: 409 and nothing changed (the other mask stays accepted)
    stale = [
        {"mask_id": ids["sure"], "version": 2, "status": "proposed"},
        {"mask_id": ids["also"], "version": 1, "status": "proposed"},
    ]
    r = c.post(url, json={"lease_id": lease, "changes": stale}, headers=ann)
    assert r.status_code == 409 and "changed by someone else" in r.json()["detail"]
    with web.factory() as s:
        assert s.get(Mask, ids["sure"]).status == "accepted"
    # a mask of another image: 422 naming the fix, nothing changed
    with transaction(web.factory) as s:
        other = make_mask(s, image=make_image(s, project=s.get(Project, ids["project"])))
        other_id = other.id
    foreign = [*stale[:1], {"mask_id": other_id, "version": 1, "status": "proposed"}]
    r = c.post(url, json={"lease_id": lease, "changes": foreign}, headers=ann)
    assert r.status_code == 422 and "one request per image" in r.json()["detail"]
    # the undo: both back to proposed in one request, versions bumped
    good = [{"mask_id": m["id"], "version": m["version"], "status": "proposed"} for m in rows]
    r = c.post(url, json={"lease_id": lease, "changes": good}, headers=ann)
    assert r.status_code == 200, r.text
    assert {(m["id"], m["status"], m["version"]) for m in r.json()} == {
        (m["id"], "proposed", m["version"] + 1) for m in rows
    }
    with web.factory() as s:
        assert s.get(Mask, ids["sure"]).meta["reverted"] is True
    r = c.post(url, json={"lease_id": lease, "changes": []}, headers=ann)
    assert r.status_code == 422
