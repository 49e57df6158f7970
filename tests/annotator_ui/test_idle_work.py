"""annotator_ui/idle_work.py: jobs wait while a request is in flight, are keyed and bounded;
through the app, next embeds the leased image and submit derives its metrics row."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotator_ui.idle_work import IdleWork, InFlight
from tests.factories import make_image, make_project
from tests.webapp import Web, start_web


@pytest.fixture
def web(db_url: str, tmp_path: Path) -> Iterator[Web]:
    with start_web(db_url, tmp_path) as w:  # a cached classical segmenter
        yield w


def test_jobs_wait_until_no_request_is_in_flight() -> None:
    in_flight = InFlight()
    work = IdleWork(in_flight, quiet_s=0.05).start()
    ran = threading.Event()
    try:
        in_flight.enter()
        assert work.submit("a", ran.set)
        assert not work.wait_idle(timeout=0.5)  # still queued: a request is in flight
        assert not ran.is_set() and work.status()["pending"] == 1
        in_flight.leave()
        assert work.wait_idle(timeout=30)
        assert ran.is_set() and work.status()["done"] == 1
    finally:
        work.stop()


def test_jobs_are_keyed_bounded_and_survive_a_failure() -> None:
    in_flight = InFlight()
    work = IdleWork(in_flight, quiet_s=0.0, max_pending=2)
    done: list[str] = []
    in_flight.enter()  # nothing runs while we queue
    work.start()
    try:
        assert work.submit("a", lambda: done.append("a"))
        assert not work.submit("a", lambda: done.append("a again"))
        assert work.submit("bad", lambda: int("not a number"))
        assert work.submit("c", lambda: done.append("c"))  # drops "a", the oldest
        assert work.status() | {"running": False} == {
            "pending": 2, "running": False, "submitted": 3, "done": 0, "failed": 0, "dropped": 1,
        }  # fmt: skip
        in_flight.leave()
        assert work.wait_idle(timeout=30)
        assert done == ["c"]
        status = work.status()
        assert (status["done"], status["failed"], status["pending"]) == (1, 1, 0)
    finally:
        work.stop()
    with pytest.raises(ValueError, match="max_pending"):
        IdleWork(in_flight, max_pending=0)


def test_next_embeds_ahead_and_submit_derives_metrics_when_idle(web: Web, tmp_path: Path) -> None:
    from db.models import EffortCache

    with web.factory() as s, s.begin():
        project = make_project(s)
        images = []
        for i in range(6):
            path = tmp_path / f"i{i}.png"
            Image.fromarray(np.full((48, 64, 3), 40 * i, np.uint8)).save(path)
            images.append(make_image(s, project=project, uri=str(path)))
        pid = project.id
        shas = [im.sha256 for im in images]
    ann = web.as_("annotator")
    seg = web.app.state.segmenter
    assert not any(seg.is_cached(sha) for sha in shas)
    task = web.client.post("/api/tasks/next", json={"project_id": pid}, headers=ann).json()
    assert web.app.state.idle_work.wait_idle(timeout=60)
    assert [seg.is_cached(sha) for sha in shas] == [True] * 4 + [False] * 2  # EMBED_AHEAD
    r = web.client.post(f"/api/tasks/{task['lease_id']}/submit", json={"ops": []}, headers=ann)
    assert r.status_code == 200, r.text
    assert web.app.state.idle_work.wait_idle(timeout=60)
    with web.factory() as s:
        row = s.get(EffortCache, task["image"]["id"])
        assert row is not None and row.lease_id == task["lease_id"]
    assert web.app.state.idle_work.status()["failed"] == 0
