"""Backups: a consistent SQLite copy while a writer inserts, restored by opening it;
pg_dump for PostgreSQL (or the command to run when pg_dump is missing)."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import threading
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

import db.backup as backup_module
from db.backup import PgDumpMissing, backup_database
from db.errors import InvalidInput
from db.migrate import check_up_to_date, current_heads
from db.models import Image, Project
from db.session import make_engine, make_session_factory, transaction


def _image_rows(project_id: int, start: int, n: int) -> list[dict[str, object]]:
    return [
        {"project_id": project_id, "uri": f"/photos/{i}.jpg", "sha256": f"{i:064x}"}
        for i in range(start, start + n)
    ]


def test_sqlite_backup_is_consistent_while_a_writer_inserts(
    sqlite_url: str, tmp_path: Path
) -> None:
    engine = make_engine(sqlite_url)
    factory = make_session_factory(engine)
    with transaction(factory) as s:
        project = Project(name="p")
        s.add(project)
        s.flush()
        pid = project.id
        s.execute(insert(Image), _image_rows(pid, 0, 20_000))  # a few MB of pages to copy

    stop = threading.Event()
    written = [20_000]
    progressed = threading.Condition()
    errors: list[Exception] = []

    def writer() -> None:
        try:
            while not stop.is_set():
                with transaction(factory) as s:
                    s.execute(insert(Image), _image_rows(pid, written[0], 50))
                with progressed:
                    written[0] += 50
                    progressed.notify_all()
        except Exception as err:  # noqa: BLE001 - reported by the test
            errors.append(err)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        with progressed:  # the writer is running before the backup starts
            progressed.wait_for(lambda: written[0] >= 20_200 or bool(errors))
        before = written[0]
        out = backup_database(url=sqlite_url, out=tmp_path / "backup.db")
        with progressed:  # and keeps writing after it
            progressed.wait_for(lambda: written[0] >= before + 200 or bool(errors))
    finally:
        stop.set()
        thread.join()
    assert errors == []
    with factory() as s:
        live = s.scalar(select(func.count()).select_from(Image))
    engine.dispose()

    copy = sqlite3.connect(out)  # restore = open the copy
    try:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        n = copy.execute("SELECT count(*) FROM image").fetchone()[0]
        ids = [r[0] for r in copy.execute("SELECT id FROM image ORDER BY id")]
    finally:
        copy.close()
    assert before <= n < live  # a snapshot taken while the writer ran
    assert n % 50 == 0  # whole transactions only
    assert ids == list(range(1, n + 1))
    restored = make_engine(f"sqlite:///{out}")
    check_up_to_date(restored)  # the app would start on it
    assert current_heads(restored) == current_heads(make_engine(sqlite_url))
    restored.dispose()


def test_backup_refuses_to_overwrite_and_bad_urls(sqlite_url: str, tmp_path: Path) -> None:
    out = tmp_path / "b.db"
    out.write_bytes(b"keep me")
    with pytest.raises(InvalidInput, match="never overwrite"):
        backup_database(url=sqlite_url, out=out)
    assert out.read_bytes() == b"keep me"
    with pytest.raises(InvalidInput, match="does not exist"):
        backup_database(url=sqlite_url, out=tmp_path / "missing" / "b.db")
    with pytest.raises(InvalidInput, match="SQLite database file"):
        backup_database(url="sqlite://", out=tmp_path / "m.db")


@pytest.mark.postgres
def test_postgres_backup_with_pg_dump_and_restore(postgres_url: str, tmp_path: Path) -> None:
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        pytest.skip("pg_dump/pg_restore not installed (apt-get install postgresql-client)")
    engine = make_engine(postgres_url)
    with transaction(make_session_factory(engine)) as s:
        s.add(Project(name="dumped"))
    engine.dispose()
    out = backup_database(url=postgres_url, out=tmp_path / "pg.dump")
    assert out.read_bytes().startswith(b"PGDMP")  # pg_dump custom format
    assert not list(tmp_path.glob(".*tmp"))

    target = f"de_restore_{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{target}"'))
    restored_url = make_url(postgres_url).set(database=target)
    try:
        libpq = restored_url.set(drivername="postgresql").render_as_string(hide_password=False)
        subprocess.run(["pg_restore", "--no-owner", f"--dbname={libpq}", str(out)], check=True)
        restored = make_engine(restored_url.render_as_string(hide_password=False))
        check_up_to_date(restored)
        with restored.connect() as conn:
            assert conn.execute(text("SELECT name FROM project")).scalars().all() == ["dumped"]
        restored.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)'))
        admin.dispose()


def test_postgres_without_pg_dump_names_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backup_module.shutil, "which", lambda _name: None)
    url = "postgresql+psycopg://postgres:secret@db.example:5432/annot"
    with pytest.raises(PgDumpMissing) as info:
        backup_database(url=url, out=tmp_path / "x.dump")
    msg = str(info.value)
    assert "pg_dump --format=custom" in msg and "--dbname=postgresql://postgres@db.example" in msg
    assert "secret" not in msg and "psycopg" not in msg


def test_cli_backup(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from scripts.cli import app

    monkeypatch.setenv("DATAENGINE_DATABASE_URL", sqlite_url)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "cli.db"
    result = CliRunner().invoke(app, ["backup", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "backup written" in result.output and out.is_file()
    again = CliRunner().invoke(app, ["backup", "--out", str(out)])
    assert again.exit_code == 1 and "never overwrite" in again.output
