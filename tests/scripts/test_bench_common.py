"""scripts/bench_common.py: the fresh database (SQLite and PostgreSQL, dropped after) and
the app-process wrapper (waits for readiness, stops the process, names a failed start)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from scripts.bench_common import free_port, fresh_database, serving
from tests.conftest import PG_URL


@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_fresh_database_is_migrated_then_dropped(db: str, tmp_path: Path) -> None:
    with fresh_database(db, PG_URL, tmp_path, "bench_common_test") as url:
        engine = create_engine(url)
        assert "alembic_version" in inspect(engine).get_table_names()
        engine.dispose()
    if db == "sqlite":
        assert url == f"sqlite:///{tmp_path / 'bench.db'}"
        return
    name = url.rsplit("/", 1)[1]
    assert name.startswith("bench_common_test_")
    admin = create_engine(PG_URL)
    with admin.connect() as conn:
        left = conn.scalar(text("SELECT count(*) FROM pg_database WHERE datname = :n"), {"n": name})
    admin.dispose()
    assert left == 0


def test_serving_waits_for_ready_then_stops_the_process(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "ready").write_text("ok")
    cmd = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    with serving(
        proc, base, ready_path="/ready", start_timeout_s=30, stop_timeout_s=10, poll_s=0.05
    ) as got:
        assert got == base
        assert proc.poll() is None
    assert proc.poll() is not None  # stopped on leaving


def test_serving_names_a_process_that_died_during_start_up() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(7)"])
    proc.wait()
    with (
        pytest.raises(RuntimeError, match=r"exited during start-up \(7\)"),
        serving(
            proc,
            f"http://127.0.0.1:{free_port()}",
            ready_path="/",
            start_timeout_s=30,
            stop_timeout_s=5,
            poll_s=0.05,
        ),
    ):
        pass
