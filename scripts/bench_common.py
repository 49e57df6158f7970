"""What the HTTP benchmarks share: a fresh migrated database and an app process on a
free loopback port, stopped at the end. Heavy imports (SQLAlchemy, httpx) stay inside
the functions, so a script's ``--help`` stays fast."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def fresh_database(db: str, pg_url: str, work: Path, prefix: str) -> Iterator[str]:
    """A fresh migrated database URL: ``db == "sqlite"`` a file ``work/bench.db``, else a
    new PostgreSQL database ``<prefix>_<random>`` on the server ``pg_url``, dropped after."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from db.migrate import upgrade

    if db == "sqlite":
        url = f"sqlite:///{work / 'bench.db'}"
        upgrade(url)
        yield url
        return
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_serve(
    url: str, data_dir: Path, port: int, *extra: str, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """``dataengine serve`` on 127.0.0.1:``port`` in a subprocess, on the migrated database
    ``url`` with ``data_dir`` as its data folder, WARNING logs and a Prometheus folder of its
    own; ``extra``: more serve options. Output goes to ``log`` (else this process's)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATAENGINE_DATABASE_URL": url,
        "DATAENGINE_DATA_DIR": str(data_dir),
        "DATAENGINE_LOG_LEVEL": "WARNING",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    cmd = [sys.executable, "-m", "scripts.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    if log is None:
        return subprocess.Popen([*cmd, *extra], env=env, cwd=ROOT)
    with open(log, "wb") as out:  # the child keeps its own copy
        return subprocess.Popen([*cmd, *extra], env=env, cwd=ROOT, stdout=out, stderr=out)


def serve_workers(pid: int) -> list[Any]:
    """The worker processes (``psutil.Process``) of the ``dataengine serve`` with this pid:
    multiprocessing's spawn children, not its helpers (the resource tracker); idle ones
    included."""
    import psutil

    found = []
    for child in psutil.Process(pid).children():
        try:
            line = " ".join(child.cmdline())
        except psutil.NoSuchProcess:
            continue
        if "spawn_main" in line and "resource_tracker" not in line:
            found.append(child)
    return found


@contextmanager
def serving(
    proc: subprocess.Popen[bytes],
    base: str,
    *,
    ready_path: str,
    start_timeout_s: float,
    stop_timeout_s: float,
    poll_s: float,
) -> Iterator[str]:
    """Wait until ``base + ready_path`` answers 200, yield ``base``, then stop ``proc``
    (terminate; kill after ``stop_timeout_s``). RuntimeError when the process exits or
    does not answer within ``start_timeout_s``."""
    import httpx

    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the app process exited during start-up ({proc.returncode})")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the app did not answer {ready_path} within {start_timeout_s:g} s"
                )
            try:
                if httpx.get(f"{base}{ready_path}", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(poll_s)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(stop_timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def add_database_args(ap: argparse.ArgumentParser) -> None:
    """``--db sqlite|postgres`` and ``--pg-url``: the options :func:`fresh_database` reads."""
    ap.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument(
        "--pg-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        help="PostgreSQL server (a fresh database is created on it and dropped after).",
    )
