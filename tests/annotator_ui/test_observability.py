"""Request ids (header and log records) and /metrics on both databases: latency by route
template, decode latency, events stored, images pre-filled, queue depth, worker heartbeats."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image as PILImage
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

import annotator_ui.observability as obs
from annotator_ui.logs import RequestIdFilter
from db.projects import get_project
from db.session import transaction
from db.workers import record_heartbeat
from engine.flywheel import events as ek
from engine.flywheel.prefill import prefill_project
from engine.ingest import ingest
from tests.factories import make_image, make_project
from tests.webapp import Web, classical_segmenter, start_web


@pytest.fixture
def web(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Web]:
    monkeypatch.setattr(obs, "DB_CACHE_SECONDS", 0.0)  # read the database on every scrape
    with start_web(db_url, tmp_path, segmenter=classical_segmenter()) as w:
        yield w


def scrape(web: Web) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics parsed: (sample name, sorted labels) -> value."""
    r = web.client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(r.text)
        for s in fam.samples
    }


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_request_id_is_kept_or_made_and_returned(web: Web) -> None:
    c = web.client
    assert c.get("/livez", headers={"X-Request-ID": "edge-7f3a.1:2"}).headers["x-request-id"] == (
        "edge-7f3a.1:2"
    )
    for bad in ("has space", "x" * 129, "<script>", ""):
        rid = c.get("/livez", headers={"X-Request-ID": bad}).headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", rid), bad
    a, b = (c.get("/api/auth/me").headers["x-request-id"] for _ in range(2))  # 401s too
    assert a != b
    assert c.get("/no/such/page").headers["x-request-id"]


def test_request_id_on_log_records_and_on_500s(web: Web, caplog: pytest.LogCaptureFixture) -> None:
    def boom() -> None:
        logging.getLogger("dataengine.test").warning("about to fail")
        raise RuntimeError("boom")

    web.app.add_api_route("/test-boom", boom)
    caplog.handler.addFilter(RequestIdFilter())
    with caplog.at_level(logging.WARNING), TestClient(web.app, raise_server_exceptions=False) as c:
        r = c.get("/test-boom", headers={"X-Request-ID": "req-boom-1"})
    assert r.status_code == 500 and r.json() == {"detail": "internal server error"}
    assert r.headers["x-request-id"] == "req-boom-1"
    ours = [rec for rec in caplog.records if getattr(rec, "request_id", None) == "req-boom-1"]
    messages = {rec.getMessage() for rec in ours}
    assert {"about to fail", "unhandled error"} <= messages  # endpoint thread and 500 handler


def test_latency_by_route_template_and_decode(web: Web, shared_data: Path) -> None:
    summary = ingest(web.factory, project="obs", paths=[shared_data / "samples" / "dog.jpg"])
    image_id = summary.image_ids[0]
    with web.factory() as s:
        pid = get_project(s, name="obs").id
    ann = web.as_("annotator")
    web.client.post("/api/tasks/next", json={"project_id": pid}, headers=ann)
    decodes = sample("dataengine_decode_duration_seconds_count")
    r = web.client.post(
        f"/api/images/{image_id}/decode", json={"points": [[400, 300]], "labels": [1]}, headers=ann
    )
    assert r.status_code == 200, r.text
    web.client.post(f"/api/images/{image_id}/decode", json={"points": []}, headers=ann)  # 422
    assert sample("dataengine_decode_duration_seconds_count") == decodes + 1  # successes only

    got = scrape(web)
    key = (
        "dataengine_http_request_duration_seconds_count",
        (("method", "POST"), ("route", "/api/images/{image_id}/decode"), ("status", "200")),
    )
    assert got[key] >= 1
    routes = {dict(labels).get("route") for name, labels in got if "request_duration" in name}
    assert "/api/tasks/next" in routes and "/static/{path}" not in routes
    assert not any(r and re.search(r"/\d+(/|$)", r) for r in routes)  # templates, not raw paths
    web.client.get(f"/api/images/{10**9}/masks", headers=ann)
    web.client.get("/wp-login.php")
    routes = {dict(lb).get("route") for name, lb in scrape(web) if "request_duration" in name}
    assert "/api/images/{image_id}/masks" in routes and "unmatched" in routes
    assert "/wp-login.php" not in routes


def test_events_stored_counter(web: Web) -> None:
    with transaction(web.factory) as s:
        p = make_project(s)
        im = make_image(s, project=p)
        pid, iid = p.id, im.id
    ann = web.as_("annotator")
    task = web.client.post("/api/tasks/next", json={"project_id": pid}, headers=ann).json()
    events = [
        {
            "uuid": str(uuid.uuid4()),
            "session_id": "page-1",
            "seq": i,
            "kind": kind,
            "client_time": 100.0 * i,
            "visible": True,
            "image_id": iid,
            "lease_id": task["lease_id"],
            "payload": {},
        }
        for i, kind in enumerate([ek.SESSION_START, ek.IMAGE_OPEN])
    ]
    before = sample("dataengine_events_stored_total")
    out = web.client.post("/api/events", json={"events": events}, headers=ann).json()
    assert out["stored"] == 2
    assert sample("dataengine_events_stored_total") == before + 2
    web.client.post("/api/events", json={"events": events}, headers=ann)  # a replay stores nothing
    assert sample("dataengine_events_stored_total") == before + 2
    assert scrape(web)[("dataengine_events_stored_total", ())] == before + 2


def test_prefill_throughput_queue_depth_and_worker_heartbeats(web: Web) -> None:
    paths = []
    for i in range(2):  # two small real images the classical backend can pre-fill
        arr = np.zeros((64, 80, 3), np.uint8)
        arr[10 + i : 40, 20:60] = (200, 30 + 40 * i, 30)
        path = Path(web.app.state.settings.data_dir) / f"im{i}.png"
        PILImage.fromarray(arr).save(path)
        paths.append(path)
    ingest(web.factory, project="flow", paths=paths)
    with web.factory() as s:
        pid = get_project(s, name="flow").id

    got = scrape(web)
    assert got[("dataengine_database_up", ())] == 1
    assert got[("dataengine_prefill_queue_depth", (("project_id", str(pid)),))] == 2

    done = sample("dataengine_prefill_images_total", outcome="done")
    out = prefill_project(
        web.factory, project_id=pid, segmenter=web.app.state.segmenter, model_version_id=None
    )
    assert out.done == 2
    assert sample("dataengine_prefill_images_total", outcome="done") == done + 2
    got = scrape(web)
    assert ("dataengine_prefill_queue_depth", (("project_id", str(pid)),)) not in got

    with transaction(web.factory) as s:
        row = record_heartbeat(
            s,
            worker_id="gpu-1:4242:abcd",
            hostname="gpu-1",
            pid=4242,
            backend="sam",
            model_key="sam-vit_t-0123",
            passes=3,
            images_done=40,
            images_failed=1,
        )
        seen = row.last_seen_at.timestamp()
    got = scrape(web)
    labels = (("backend", "sam"), ("hostname", "gpu-1"), ("worker", "gpu-1:4242:abcd"))
    assert got[("dataengine_worker_last_seen_timestamp_seconds", labels)] == pytest.approx(seen)
    w = (("outcome", "done"), ("worker", "gpu-1:4242:abcd"))
    assert got[("dataengine_worker_images_prefilled_total", w)] == 40
