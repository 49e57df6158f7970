"""Hostile effort events: nobody raises another image's effort, one bad item never stops a
batch, and odd rows already in the log never break the reviewers' event list.

Every test runs on SQLite and PostgreSQL (``db_url``): PostgreSQL refuses NaN and NUL in
JSON, which is exactly what used to turn one bad event into a 500 for the whole batch.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from db.models import Event, Lease, Project, utcnow
from db.rounds import start_round
from db.session import transaction
from engine.flywheel import events as ek
from tests.factories import make_image, make_mask, make_project
from tests.webapp import NoModel, Web, start_web


@pytest.fixture
def web(db_url: str, tmp_path: Path) -> Iterator[Web]:
    with start_web(db_url, tmp_path, segmenter=NoModel()) as w:
        yield w


def event(kind: str, t: float, image_id: int | None, lease_id: int | None, **kw: Any) -> dict:
    return {
        "uuid": str(uuid.uuid4()),
        "session_id": kw.pop("session_id", "page-1"),
        "seq": kw.pop("seq", 0),
        "kind": kind,
        "client_time": t,
        "visible": True,
        "image_id": image_id,
        "mask_id": kw.pop("mask_id", None),
        "lease_id": lease_id,
        "payload": kw.pop("payload", {}),
    }


def lease_next(web: Web, who: str, project_id: int) -> dict[str, Any]:
    r = web.client.post("/api/tasks/next", json={"project_id": project_id}, headers=web.as_(who))
    assert r.status_code == 200, r.text
    return r.json()


def count_events(web: Web) -> int:
    with web.factory() as s:
        return int(s.scalar(select(func.count()).select_from(Event)) or 0)


def figures(web: Web, project: str) -> list[dict[str, Any]]:
    r = web.client.get(
        "/api/metrics", params={"project": project, "reps": 10}, headers=web.as_("reviewer")
    )
    assert r.status_code == 200, r.text
    return r.json()["groups"]


def test_poisoned_heartbeats_leave_the_victims_effort_and_metrics_unchanged(web: Web) -> None:
    with transaction(web.factory) as s:
        victim_p, other_p = make_project(s), make_project(s)
        start_round(s, project_id=victim_p.id, model_version_id=None)
        make_image(s, project=victim_p)
        make_image(s, project=other_p)
        victim_pid, victim_name, other_pid = victim_p.id, victim_p.name, other_p.id
    # the victim does real work on their image and submits it
    task = lease_next(web, "annotator", victim_pid)
    image_id, lease_id = task["image"]["id"], task["lease_id"]
    work = [
        event(ek.IMAGE_OPEN, 0, image_id, lease_id, seq=0),
        event(ek.PROMPT_CLICK, 1500, image_id, lease_id, seq=1),
        event(ek.SUBMIT, 3500, image_id, lease_id, seq=2),
    ]
    r = web.client.post("/api/events", json={"events": work}, headers=web.as_("annotator"))
    assert r.json()["stored"] == 3
    assert web.client.post(
        f"/api/tasks/{lease_id}/submit", json={"ops": []}, headers=web.as_("annotator")
    ).is_success
    effort_url = f"/api/images/{image_id}/effort"
    before = web.client.get(effort_url, headers=web.as_("reviewer")).json()
    assert before["per_image"] == {str(image_id): pytest.approx(3.5)}
    metrics_before = figures(web, victim_name)
    assert sum(g["images_done"] for g in metrics_before) == 1
    n_before = count_events(web)

    # the attacker: an annotator working on another project's image
    _, attacker = web.add_user("mallory", "annotator")
    own = lease_next(web, attacker, other_pid)
    assert own["image"]["id"] != image_id
    poison = []
    for i in range(1000):
        variant = i % 4
        lease = (None, lease_id, own["lease_id"], None)[variant]  # none, the victim's, own
        poison.append(event(ek.HEARTBEAT, 10_000.0 * i, image_id, lease, seq=i, session_id="evil"))
    poison[3]["kind"] = ek.IMAGE_OPEN  # and one clock restart, as a real page would send
    r = web.client.post("/api/events", json={"events": poison}, headers=web.as_(attacker))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["stored"] == 0 and len(out["rejected"]) == 1000
    reasons = {x["reason"].split(":")[0] for x in out["rejected"]}
    assert any("no lease on image" in x for x in reasons)
    assert any("is not yours" in x for x in reasons)
    assert any(f"is for image {own['image']['id']}" in x for x in reasons)
    assert [x["index"] for x in out["rejected"]] == list(range(1000))
    assert out["acknowledged"] == [e["uuid"] for e in poison]  # refused for good: forget them

    # a curator (no curation lease on it) and a reviewer replaying the victim's uuids
    curator_hb = event(ek.HEARTBEAT, 1.0, image_id, None, session_id="cur")
    r = web.client.post("/api/events", json={"events": [curator_hb]}, headers=web.as_("curator"))
    assert r.json()["stored"] == 0 and "no lease on image" in r.json()["rejected"][0]["reason"]

    assert count_events(web) == n_before
    assert web.client.get(effort_url, headers=web.as_("reviewer")).json() == before
    assert figures(web, victim_name) == metrics_before


def test_events_after_the_grace_window_are_refused_within_it_accepted(web: Web) -> None:
    with transaction(web.factory) as s:
        p = make_project(s)
        make_image(s, project=p)
        pid = p.id
    task = lease_next(web, "annotator", pid)
    image_id, lease_id = task["image"]["id"], task["lease_id"]
    ann = web.as_("annotator")
    assert web.client.post(
        f"/api/tasks/{lease_id}/submit", json={"ops": []}, headers=ann
    ).is_success
    late = event(ek.SUBMIT, 10.0, image_id, lease_id)  # the outbox flushes after the submit
    r = web.client.post("/api/events", json={"events": [late]}, headers=ann).json()
    assert r["stored"] == 1, r
    with transaction(web.factory) as s:  # the submit was 16 minutes ago (grace: 15)
        s.get(Lease, lease_id).completed_at = utcnow() - dt.timedelta(minutes=16)
    stale = event(ek.HEARTBEAT, 20.0, image_id, None)
    r = web.client.post("/api/events", json={"events": [stale]}, headers=ann).json()
    assert r["stored"] == 0 and "ended within 15 min" in r["rejected"][0]["reason"]
    # the outbox replays the stored one after the window: a duplicate, not a refusal
    r = web.client.post("/api/events", json={"events": [late, stale]}, headers=ann).json()
    assert (r["stored"], r["duplicates"], [x["index"] for x in r["rejected"]]) == (0, 1, [1])
    assert r["acknowledged"] == [late["uuid"], stale["uuid"]]


def test_curators_send_curation_kinds_only(web: Web) -> None:
    cur = web.as_("curator")
    page = event(ek.SESSION_START, 0.0, None, None)
    decision = event(ek.MASK_ACCEPT, 1.0, None, None)
    r = web.client.post("/api/events", json={"events": [page, decision]}, headers=cur).json()
    assert r["stored"] == 1
    (refused,) = r["rejected"]
    assert refused["index"] == 1 and "not one your role may send" in refused["reason"]


def test_deep_payload_is_refused_and_old_odd_rows_still_list(web: Web) -> None:
    with transaction(web.factory) as s:
        p = make_project(s)
        make_image(s, project=p)
        pid = p.id
    task = lease_next(web, "annotator", pid)
    image_id, lease_id = task["image"]["id"], task["lease_id"]
    deep: dict[str, Any] = {}
    for _ in range(900):
        deep = {"a": deep}
    bad = event(ek.HEARTBEAT, 5.0, image_id, lease_id, payload=deep)
    good = event(ek.IMAGE_OPEN, 1.0, image_id, lease_id)
    r = web.client.post("/api/events", json={"events": [bad, good]}, headers=web.as_("annotator"))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["stored"] == 1
    assert out["rejected"] == [
        {
            "index": 0,
            "uuid": bad["uuid"],
            "reason": "payload: Value error, payload is nested deeper than 8 levels",
        }  # fmt: skip
    ]
    # rows written before events were validated: a 900-deep payload and a list payload
    with transaction(web.factory) as s:
        user_id = web.user_ids["annotator"]
        for i, payload in enumerate((deep, [1, 2, 3])):
            s.add(Event(uuid=str(uuid.uuid4()), user_id=user_id, image_id=image_id,
                        session_id="old", seq=i, kind=ek.HEARTBEAT, payload=payload,
                        client_time=100.0 + i, visible=True))  # fmt: skip
    r = web.client.get(f"/api/images/{image_id}/events", headers=web.as_("reviewer"))
    assert r.status_code == 200, r.text
    listed = {(e["session_id"], e["seq"]): e["payload"] for e in r.json()}
    assert listed[("page-1", 0)] == {}
    assert listed[("old", 1)] == {"value": [1, 2, 3]}
    cut = listed[("old", 0)]
    for _ in range(15):
        cut = cut["a"]
    assert cut == {"a": "<dict nested deeper than 16 levels, not listed>"}
    assert (
        web.client.get(f"/api/images/{image_id}/effort", headers=web.as_("reviewer")).status_code
        == 200
    )


def test_a_mixed_batch_stores_exactly_the_good_events(web: Web) -> None:
    with transaction(web.factory) as s:
        p = make_project(s)
        make_mask(s, image=make_image(s, project=p), confident=True)
        pid = p.id
    task = lease_next(web, "annotator", pid)
    image_id, lease_id = task["image"]["id"], task["lease_id"]

    def ev(**kw: Any) -> dict[str, Any]:
        return {**event(ek.HEARTBEAT, 10.0, image_id, lease_id), **kw}

    good = [ev(seq=1), ev(seq=2, kind=ek.ACCEPT_ALL_CONFIDENT, payload={"mask_ids": [1]})]
    items: list[tuple[Any, str]] = [
        (ev(seq="abc"), "seq"),
        (ev(client_time="NaN-marker"), "client_time"),  # becomes a raw NaN token below
        (ev(payload={"x": "NaN-marker"}), "not finite"),
        (ev(session_id="page\u0000one"), "session_id: Value error, must not contain a NUL"),
        (ev(payload={"note": "a\u0000b"}), "NUL"),
        (ev(payload=[1, 2]), "payload"),
        (ev(visible="yes"), "visible"),
        (ev(image_id=2**40), "image_id"),
        (ev(kind=ek.ACCEPT_ALL_CONFIDENT, payload={"mask_ids": ["x"]}), "mask_ids"),
        (ev(payload={"blob": "x" * 20_000}), "bytes"),
        (42, "must be an object"),
        ({"uuid": None}, "uuid"),
    ]
    batch = [good[0], *[item for item, _ in items], good[1]]
    text = json.dumps({"events": batch}).replace('"NaN-marker"', "NaN")
    assert "NaN" in text and "\\u0000" in text
    r = web.client.post(
        "/api/events",
        content=text,
        headers={**web.as_("annotator"), "Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["stored"] == 2
    assert [x["index"] for x in out["rejected"]] == list(range(1, len(items) + 1))
    for (_, expect), got in zip(items, out["rejected"], strict=True):
        assert expect in got["reason"], got
        assert "\u0000" not in got["reason"]
    good_uuids = {e["uuid"] for e in good}
    with web.factory() as s:
        stored = set(s.scalars(select(Event.uuid)))
    assert stored == good_uuids
    # refused items with a readable uuid are acknowledged too (a retry would not help)
    readable = {
        i["uuid"] for i, _ in items if isinstance(i, dict) and isinstance(i.get("uuid"), str)
    }
    assert set(out["acknowledged"]) == good_uuids | readable


def test_malformed_batches_are_422_not_500(web: Web) -> None:
    ann = web.as_("annotator")
    for body in ({"events": "x"}, {"events": [{}] * 1001}, {}, [1]):
        r = web.client.post("/api/events", json=body, headers=ann)
        assert r.status_code == 422, (body, r.text)
    with transaction(web.factory) as s:  # nothing was stored
        assert s.scalar(select(func.count()).select_from(Event)) == 0
        assert s.scalar(select(func.count()).select_from(Project)) == 0
