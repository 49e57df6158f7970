"""GET /api/workers on both databases: heartbeats with live claims, silent workers marked,
reviewers and admins only."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from db.claims import claim_images
from db.models import utcnow
from db.session import transaction
from db.workers import record_heartbeat
from tests.factories import make_image, make_model_version, make_project
from tests.webapp import NoModel, Web, start_web


@pytest.fixture
def web(db_url: str, tmp_path: Path) -> Iterator[Web]:
    with start_web(db_url, tmp_path, segmenter=NoModel()) as w:
        yield w


def _beat(web: Web, worker_id: str, seen: dt.datetime, done: int) -> None:
    with transaction(web.factory) as s:
        record_heartbeat(s, worker_id=worker_id, hostname="gpu1", pid=7, backend="sam",
                         model_key="sam:vit_b", passes=3, images_done=done, images_failed=1,
                         now=seen)  # fmt: skip


def test_workers_lists_heartbeats_and_claims(web: Web) -> None:
    now = utcnow()
    _beat(web, "gpu1:7:aa", now - dt.timedelta(seconds=5), 40)
    _beat(web, "gpu1:8:bb", now - dt.timedelta(minutes=10), 12)  # silent: probably dead
    _beat(web, "gpu1:9:cc", now - dt.timedelta(days=3), 1)  # outside the default day
    with transaction(web.factory) as s:
        p = make_project(s)
        ids = [make_image(s, project=p).id for _ in range(3)]
        mv = make_model_version(s).id
        claim_images(s, image_ids=ids, model_version_id=mv, worker_id="gpu1:7:aa", seconds=60)
    r = web.client.get("/api/workers", headers=web.as_("reviewer"))
    assert r.status_code == 200, r.text
    got = {w["worker_id"]: w for w in r.json()}
    assert list(got) == ["gpu1:7:aa", "gpu1:8:bb"]  # newest heartbeat first
    live, silent = got["gpu1:7:aa"], got["gpu1:8:bb"]
    assert live["alive"] and live["live_claims"] == 3 and live["images_done"] == 40
    assert 4 <= live["seconds_since_seen"] < 60
    assert not silent["alive"] and silent["live_claims"] == 0
    everyone = web.client.get("/api/workers?minutes=10000", headers=web.as_("admin")).json()
    assert len(everyone) == 3
    assert web.client.get("/api/workers", headers=web.as_("annotator")).status_code == 403
    assert web.client.get("/api/workers").status_code == 401
    bad = web.client.get("/api/workers?minutes=0", headers=web.as_("admin"))
    assert bad.status_code == 422 and "Traceback" not in bad.text
