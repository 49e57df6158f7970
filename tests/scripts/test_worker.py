"""`dataengine worker` records its heartbeat and totals in the database (both engines)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from typer.testing import CliRunner

from db.models import WorkerHeartbeat
from db.workers import list_heartbeats, record_heartbeat
from engine.ingest import ingest


def test_worker_pass_records_heartbeat(
    db_url: str, factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scripts.cli import app

    arr = np.zeros((48, 64, 3), np.uint8)
    arr[8:30, 10:50] = (220, 40, 40)
    PILImage.fromarray(arr).save(tmp_path / "a.png")
    ingest(factory, project="w", paths=[tmp_path / "a.png"])
    monkeypatch.setenv("DATAENGINE_DATABASE_URL", db_url)
    monkeypatch.setenv("DATAENGINE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["worker", "--passes", "2", "--interval", "0"])
    assert result.exit_code == 0, result.output
    with factory() as s:
        rows = list_heartbeats(s)
    assert len(rows) == 1
    row = rows[0]
    assert row.backend == "classical" and row.passes == 2
    assert row.images_done == 1 and row.images_failed == 0
    assert row.worker_id.startswith(f"{row.hostname}:{row.pid}:")
    assert row.last_seen_at > row.started_at
    # `dataengine worker status` lists it (and its claims: none left after the pass)
    status = CliRunner().invoke(app, ["worker", "status", "--json"])
    assert status.exit_code == 0, status.output
    (listed,) = json.loads(status.stdout)["workers"]
    assert listed["worker_id"] == row.worker_id and listed["images_done"] == 1
    assert listed["live_claims"] == 0 and listed["passes"] == 2
    table = CliRunner().invoke(app, ["worker", "status"])
    assert table.exit_code == 0 and "pre-fill workers (1 seen)" in table.output


def test_record_heartbeat_updates_in_place_and_checks_input(factory) -> None:
    from db.errors import InvalidInput
    from db.session import transaction

    fields = {"hostname": "h", "pid": 1, "backend": "classical", "model_key": "k"}
    for passes in (1, 2):
        with transaction(factory) as s:
            record_heartbeat(
                s, worker_id="h:1:x", passes=passes, images_done=passes, images_failed=0, **fields
            )
    with factory() as s:
        assert s.query(WorkerHeartbeat).count() == 1
        assert s.get(WorkerHeartbeat, "h:1:x").passes == 2
    with transaction(factory) as s, pytest.raises(InvalidInput, match="worker_id"):
        record_heartbeat(s, worker_id="", passes=0, images_done=0, images_failed=0, **fields)
    with transaction(factory) as s, pytest.raises(InvalidInput, match=">= 0"):
        record_heartbeat(s, worker_id="h:1:y", passes=-1, images_done=0, images_failed=0, **fields)
