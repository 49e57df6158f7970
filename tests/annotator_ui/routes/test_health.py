"""Probes on both databases: /livez always, /readyz 503 with the reason when the model is
missing, the database is unreachable or behind; /api/health unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command

from db.migrate import alembic_config
from db.session import make_engine
from tests.webapp import NoModel, Web, start_web


@pytest.fixture
def web(db_url: str, tmp_path: Path) -> Iterator[Web]:
    with start_web(db_url, tmp_path, segmenter=NoModel()) as w:
        yield w


def test_live_and_ready(web: Web) -> None:
    assert web.client.get("/livez").json() == {"status": "ok"}
    r = web.client.get("/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ready", "reason": "ok"}
    health = web.client.get("/api/health").json()
    assert health["status"] == "ok" and health["backend"] == "none"


def test_not_ready_without_a_model(web: Web) -> None:
    seg, web.app.state.segmenter = web.app.state.segmenter, None
    try:
        r = web.client.get("/readyz")
        assert r.status_code == 503 and "no segmentation model" in r.json()["reason"]
        assert web.client.get("/livez").status_code == 200  # alive, just not ready
    finally:
        web.app.state.segmenter = seg


def test_not_ready_when_the_database_is_unreachable(web: Web) -> None:
    down = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")  # nothing listens
    real, web.app.state.engine = web.app.state.engine, down
    try:
        r = web.client.get("/readyz")
        assert r.status_code == 503
        body = r.json()
        assert body["status"] == "not ready" and body["reason"].startswith("database unreachable")
        assert "Traceback" not in r.text
        assert web.client.get("/livez").status_code == 200
    finally:
        web.app.state.engine = real
        down.dispose()
    assert web.client.get("/readyz").status_code == 200


def test_not_ready_when_the_database_is_behind(web: Web, db_url: str) -> None:
    cfg = alembic_config(db_url)
    command.downgrade(cfg, "-1")  # someone rolled the schema back under a running app
    r = web.client.get("/readyz")
    assert r.status_code == 503 and "dataengine db upgrade" in r.json()["reason"]
    command.upgrade(cfg, "heads")
    assert web.client.get("/readyz").status_code == 200
