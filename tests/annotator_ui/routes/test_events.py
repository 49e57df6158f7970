"""Effort events: each UUID stored once (replays change nothing), bad items reported without
stopping the batch, and the effort derivation served per image."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from db.models import Event, Project
from db.session import transaction
from engine.flywheel import events as ek
from tests.factories import make_image, make_mask, make_project
from tests.webapp import NoModel, Web, serve, start_web


@pytest.fixture
def web(db_url: str, tmp_path: Path) -> Iterator[Web]:
    with start_web(db_url, tmp_path, segmenter=NoModel()) as w:
        yield w


def batch(image_id: int, lease_id: int, mask_id: int) -> list[dict[str, Any]]:
    rows = [
        (0, ek.SESSION_START, None),
        (100, ek.IMAGE_OPEN, None),
        (2100, ek.MASK_SELECT, mask_id),
        (4100, ek.MASK_ACCEPT, mask_id),
        (6100, ek.PROMPT_CLICK, None),
        (9100, ek.SUBMIT, None),
    ]
    return [
        {
            "uuid": str(uuid.uuid4()),
            "session_id": "page-1",
            "seq": i,
            "kind": kind,
            "client_time": t,
            "visible": True,
            "image_id": image_id,
            "mask_id": m,
            "lease_id": lease_id,
            "payload": {},
        }
        for i, (t, kind, m) in enumerate(rows)
    ]


def test_replaying_a_batch_changes_nothing(web: Web) -> None:
    with transaction(web.factory) as s:
        p = make_project(s)
        im = make_image(s, project=p)
        m = make_mask(s, image=im, confident=True)
        pid, mid = p.id, m.id
    ann = web.as_("annotator")
    task = web.client.post("/api/tasks/next", json={"project_id": pid}, headers=ann).json()
    events = batch(task["image"]["id"], task["lease_id"], mid)
    first = web.client.post("/api/events", json={"events": events}, headers=ann).json()
    assert first["stored"] == 6 and first["duplicates"] == 0
    assert first["acknowledged"] == [e["uuid"] for e in events]
    # the same batch again (a retry after a lost answer), and an overlapping one
    again = web.client.post("/api/events", json={"events": events}, headers=ann).json()
    assert again == {**first, "stored": 0, "duplicates": 6}
    extra = {**events[-1], "uuid": str(uuid.uuid4()), "seq": 6, "client_time": 9500.0}
    mixed = web.client.post(
        "/api/events", json={"events": [events[0], extra, extra]}, headers=ann
    ).json()
    assert mixed["stored"] == 1 and mixed["duplicates"] == 2
    with web.factory() as s:
        assert s.scalar(select(func.count()).select_from(Event)) == 7
        assert s.scalar(select(func.count(func.distinct(Event.uuid)))) == 7
    # in order for reviewers
    listed = web.client.get(
        f"/api/images/{task['image']['id']}/events", headers=web.as_("reviewer")
    ).json()
    assert [e["seq"] for e in listed] == list(range(7))
    # effort: 2 + 2 + 2 + 3 s between image_open and submit
    eff = web.client.get(f"/api/images/{task['image']['id']}/effort", headers=ann).json()
    assert eff["per_image"] == {str(task["image"]["id"]): pytest.approx(9.0)}
    assert [g["reason"] for g in eff["gaps"]][:2] == ["clock_restart", "counted"]
    assert {m["mask_id"]: m["seconds"] for m in eff["per_mask"]} == {mid: pytest.approx(2.0)}


def test_one_bad_event_never_stops_the_batch(web: Web) -> None:
    with transaction(web.factory) as s:
        pid = make_project(s).id
        make_image(s, project=s.get(Project, pid))
    ann = web.as_("annotator")
    image_id = web.client.post("/api/tasks/next", json={"project_id": pid}, headers=ann).json()[
        "image"
    ]["id"]
    good = {
        "uuid": str(uuid.uuid4()),
        "session_id": "s",
        "seq": 0,
        "kind": ek.IMAGE_OPEN,
        "client_time": 5.0,
        "image_id": image_id,
    }
    bad = [
        {**good, "uuid": str(uuid.uuid4()), "kind": "teleport"},
        {**good, "uuid": str(uuid.uuid4()), "image_id": 987654},
        {**good, "uuid": str(uuid.uuid4()), "client_time": "soon"},
        {**good, "uuid": "short"},
    ]
    r = web.client.post("/api/events", json={"events": [*bad, good]}, headers=ann).json()
    assert r["stored"] == 1
    reasons = [x["reason"] for x in r["rejected"]]
    assert any("unknown kind" in x for x in reasons) and any("no image" in x for x in reasons)
    assert any("client_time" in x for x in reasons) and any("uuid" in x for x in reasons)
    assert good["uuid"] in r["acknowledged"]


def test_client_uses_only_the_shared_event_vocabulary() -> None:
    """static/js/events.js mirrors engine/flywheel/events.py; the server rejects other kinds."""
    import re

    js = (Path(__file__).resolve().parents[3] / "annotator_ui/static/js/events.js").read_text()
    block = js[js.index("export const K = {") : js.index("};", js.index("export const K = {"))]
    kinds = set(re.findall(r'"([a-z_]+)"', block))
    assert kinds == set(ek.ALL_KINDS)


def test_the_same_batch_posted_concurrently_is_stored_once(web: Web) -> None:
    """Real uvicorn, real threads: four clients post the same 300-event batch at once (a
    retry racing the original). Each uuid is stored once and every answer acknowledges all."""
    with transaction(web.factory) as s:
        p = make_project(s)
        make_image(s, project=p)
        pid = p.id
    ann = web.as_("annotator")
    task = web.client.post("/api/tasks/next", json={"project_id": pid}, headers=ann).json()
    events = [
        {
            "uuid": str(uuid.uuid4()),
            "session_id": "race",
            "seq": i,
            "kind": ek.HEARTBEAT,
            "client_time": 10.0 * i,
            "image_id": task["image"]["id"],
            "lease_id": task["lease_id"],
        }
        for i in range(300)
    ]
    barrier = threading.Barrier(4)
    answers: list[httpx.Response] = []
    lock = threading.Lock()
    with serve(web.app) as base:

        def post() -> None:
            with httpx.Client(base_url=base, timeout=60) as c:
                barrier.wait(10)
                r = c.post("/api/events", json={"events": events}, headers=ann)
                with lock:
                    answers.append(r)

        threads = [threading.Thread(target=post) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert [r.status_code for r in answers] == [200] * 4, [r.text[:200] for r in answers]
    outs = [r.json() for r in answers]
    assert sum(o["stored"] for o in outs) == 300
    assert all(o["stored"] + o["duplicates"] == 300 and not o["rejected"] for o in outs)
    assert all(o["acknowledged"] == [e["uuid"] for e in events] for o in outs)
    with web.factory() as s:
        assert s.scalar(select(func.count()).select_from(Event)) == 300


def test_effort_and_metrics_agree_over_http_with_any_idle_cap(web: Web) -> None:
    """A task done through the API with tab switches after its submit: /effort and
    /api/metrics give the same seconds for every idle cap; nothing after submit counts."""
    with transaction(web.factory) as s:
        p = make_project(s)
        im = make_image(s, project=p)
        m = make_mask(s, image=im, confident=True)
        pid, name, mid = p.id, p.name, m.id
    ann, rev = web.as_("annotator"), web.as_("reviewer")
    task = web.client.post("/api/tasks/next", json={"project_id": pid}, headers=ann).json()
    image_id, lease_id = task["image"]["id"], task["lease_id"]
    events = batch(image_id, lease_id, mid)  # 9 s up to its submit at 9100 ms
    for i, (t, visible) in enumerate([(60000, False), (90000, True), (91000, False)]):
        events.append({**events[0], "uuid": str(uuid.uuid4()), "seq": 6 + i, "client_time": t,
                       "kind": ek.VISIBILITY, "visible": visible})  # fmt: skip
    events[2]["client_time"] = 42100.0  # a 40 s gap before the select: capped
    for e in events[3:6]:
        e["client_time"] += 40000.0
    assert web.client.post("/api/events", json={"events": events}, headers=ann).is_success
    assert web.client.post(
        f"/api/tasks/{lease_id}/submit", json={"ops": []}, headers=ann
    ).is_success
    for idle, want in ((None, 37.0), (5.0, 12.0), (100.0, 49.0)):
        q = {} if idle is None else {"idle_seconds": idle}
        eff = web.client.get(f"/api/images/{image_id}/effort", params=q, headers=rev).json()
        met = web.client.get("/api/metrics", params={"project": name, "reps": 20, **q},
                             headers=rev).json()  # fmt: skip
        assert eff["per_image"] == {str(image_id): pytest.approx(want)}, idle
        (group,) = met["groups"]
        assert group["active_seconds"] == pytest.approx(want) and group["round"] is None
        assert met["notes"] and "dataengine round start" in met["notes"][0]
    for bad in ("0", "-3", "abc"):
        for url in (f"/api/images/{image_id}/effort", "/api/metrics"):
            r = web.client.get(url, params={"project": name, "idle_seconds": bad}, headers=rev)
            assert r.status_code == 422 and "Traceback" not in r.text, (url, bad)
