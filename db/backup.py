"""Consistent copies of the database while the app keeps writing.

SQLite: ``sqlite3.Connection.backup`` (the online backup API) copies every page in one
step under a read transaction, so the copy is one consistent snapshot even while other
connections write (WAL mode lets them go on). The copy is written to a temporary file
beside ``out`` and renamed, so ``out`` is either absent or complete.

PostgreSQL: ``pg_dump --format=custom`` (restore with ``pg_restore``); its snapshot is
consistent too. Without ``pg_dump`` on PATH, ``PgDumpMissing`` carries the command to run.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from db.errors import DomainError, InvalidInput


class PgDumpMissing(DomainError):
    """PostgreSQL backups need ``pg_dump``; the message has the exact command."""

    status_code = 503


def sqlite_path(url: str) -> Path:
    """The database file of a ``sqlite:///`` URL (InvalidInput for memory or other engines)."""
    parsed = make_url(url)
    if (
        parsed.get_backend_name() != "sqlite"
        or not parsed.database
        or parsed.database == ":memory:"
    ):
        raise InvalidInput(f"not a SQLite database file URL: {parsed.render_as_string()}")
    return Path(parsed.database)


def pg_dump_command(url: str, out: Path) -> list[str]:
    """``pg_dump`` arguments for a SQLAlchemy PostgreSQL URL (driver suffix and password
    dropped: pass the password as ``PGPASSWORD`` so it never shows in ``ps``)."""
    given = make_url(url)
    parsed = URL.create(
        "postgresql",
        username=given.username,
        host=given.host,
        port=given.port,
        database=given.database,
        query=given.query,
    )
    return [
        "pg_dump",
        "--format=custom",
        "--no-owner",
        f"--file={out}",
        f"--dbname={parsed.render_as_string(hide_password=False)}",
    ]


def backup_database(*, url: str, out: Path) -> Path:
    """Back up the database at ``url`` to ``out`` (file); returns ``out``.

    SQLite: a consistent page copy (open it as a database to restore). PostgreSQL: a
    ``pg_dump`` custom-format archive (``pg_restore --dbname=... FILE``). Refuses to
    overwrite an existing ``out``.
    """
    out = Path(out)
    if out.exists():
        raise InvalidInput(f"{out} exists; choose a new file name (backups never overwrite)")
    if not out.parent.is_dir():
        raise InvalidInput(f"folder {out.parent} does not exist; create it first")
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        _backup_sqlite(sqlite_path(url), out)
    elif backend == "postgresql":
        _backup_postgres(url, out)
    else:
        raise InvalidInput(f"no backup method for {backend} databases (sqlite, postgresql)")
    return out


def _backup_sqlite(src: Path, out: Path) -> None:
    if not src.is_file():
        raise InvalidInput(f"SQLite database {src} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        source = sqlite3.connect(src, timeout=30)
        target = sqlite3.connect(tmp)
        try:
            source.backup(target)  # pages=-1: all pages in one step, one snapshot
            target.execute("PRAGMA journal_mode=DELETE")  # a self-contained single file
        finally:
            target.close()
            source.close()
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _backup_postgres(url: str, out: Path) -> None:
    if shutil.which("pg_dump") is None:
        raise PgDumpMissing(
            "pg_dump is not installed here. Install the PostgreSQL client (e.g. apt-get "
            "install postgresql-client) or run on a machine that has it: "
            f"{' '.join(pg_dump_command(url, out))} (password in PGPASSWORD or ~/.pgpass)"
        )
    tmp = out.with_name(f".{out.name}.tmp")
    env = dict(os.environ)
    password = make_url(url).password
    if password:
        env["PGPASSWORD"] = str(password)
    try:
        done = subprocess.run(
            pg_dump_command(url, tmp), capture_output=True, text=True, check=False, env=env
        )
        if done.returncode != 0:
            raise InvalidInput(f"pg_dump failed ({done.returncode}): {done.stderr.strip()}")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
