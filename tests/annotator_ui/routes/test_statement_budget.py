"""The annotation loop's hot routes stay within a budget of SQL statements per request.

The loop is ``scripts/bench_load.py``'s (next, events, heartbeat, mask add, events, submit),
run through the app on both databases; statements are counted on the app's own engine. One
more round trip per request costs the app CPU and latency under load, yet a load run on a
shared 2-core machine shows it only as noise: this count is the regression guard. Lower a
budget when a route gets cheaper; raise one only with a reason in the commit.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from db.session import transaction
from tests.factories import make_image, make_project
from tests.webapp import NoModel, Web, start_web

BUDGET = {"next": 5, "events": 2, "heartbeat": 2, "mask add": 3, "submit": 3}
H, W = 48, 64


@pytest.fixture
def web(db_url: str, tmp_path: Path) -> Iterator[Web]:
    with start_web(db_url, tmp_path, segmenter=NoModel()) as w:
        yield w


def _events(n: int, image_id: int, lease_id: int, seq: int) -> dict[str, Any]:
    kinds = ["image_open", "prompt_click", "object_commit", "submit"]
    return {
        "events": [
            {
                "uuid": str(uuid.uuid4()),
                "session_id": "budget",
                "seq": seq + i,
                "kind": kinds[(seq + i) % len(kinds)],
                "client_time": float(seq + i),
                "image_id": image_id,
                "lease_id": lease_id,
                "payload": {},
            }
            for i in range(n)
        ]
    }


def _one_image(web: Web, headers: dict[str, str], project_id: int, seq: int, count: Any) -> None:
    """One image through the loop; ``count(route)`` tags the statements of each request."""

    def call(route: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        count(route)
        r = web.client.post(path, json=body, headers=headers)
        count(None)
        assert r.status_code == 200, (route, r.text)
        return r.json()

    task = call("next", "/api/tasks/next", {"project_id": project_id})
    lease, image = task["lease_id"], task["image"]["id"]
    call("events", "/api/events", _events(4, image, lease, seq))
    call("heartbeat", f"/api/tasks/{lease}/heartbeat", {})
    band = {"size": [H, W], "counts": [16 * H, 32 * H, 16 * H]}
    call("mask add", f"/api/images/{image}/masks", {"rle": band, "label": "cat", "lease_id": lease})
    call("events", "/api/events", _events(2, image, lease, seq + 4))
    out = call("submit", f"/api/tasks/{lease}/submit", {"ops": []})
    assert out["counts"] == {"accepted": 1}


def test_hot_routes_stay_within_their_statement_budget(web: Web) -> None:
    with transaction(web.factory) as s:
        project = make_project(s, labels=["cat"])
        for _ in range(4):
            make_image(s, project=project, width=W, height=H)
        project_id = project.id
    headers = web.as_("annotator")
    statements: Counter[str] = Counter()
    requests: Counter[str] = Counter()
    route: list[str | None] = [None]

    def count(name: str | None) -> None:
        route[0] = name
        if name is not None:
            requests[name] += 1

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        # SQLite's explicit BEGIN IMMEDIATE (db.session) is transaction control, not a query
        if route[0] is not None and not statement.startswith("BEGIN"):
            statements[route[0]] += 1

    _one_image(web, headers, project_id, 0, lambda _name: None)  # warm: token cache, routes
    engine = web.app.state.engine
    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        for i in range(1, 4):
            _one_image(web, headers, project_id, 10 * i, count)
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
    per_request = {name: statements[name] / requests[name] for name in BUDGET}
    assert all(requests[name] >= 3 for name in BUDGET), requests
    over = {name: n for name, n in per_request.items() if n > BUDGET[name]}
    assert not over, f"statements per request over budget {BUDGET}: {over}"
