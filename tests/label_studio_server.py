"""A real Label Studio server for tests: installed once into its own virtualenv, started per test.

- Install: ``label-studio==LS_VERSION`` into ``~/.cache/dataengine/label-studio-<version>``
  (``DATAENGINE_LS_CACHE`` overrides the folder) with the pip of the Python running the
  tests, under a file lock so parallel runs wait for one install; a ``.complete`` marker is
  written last, so a half-finished install is redone. The first install takes minutes; pip
  reads the machine's usual index configuration (no other network at test time).
- Start: ``python -m label_studio.server start --no-browser`` on a free loopback port, with a
  temp data dir and the environment the README's "Label Studio" section documents
  (``ML_BLOCK_LOCAL_IP=false``, ``SSRF_PROTECTION_ENABLED=false``, local files serving with
  the image folder's document root, a legacy API token, no analytics or version check). A
  fresh database costs Label Studio minutes of migrations, so the first start keeps a
  migrated copy of its SQLite database in the cache and later starts begin from it.
- Ready: polled on ``/health`` and an authenticated API call (no fixed sleeps); the whole
  process group is killed when the context ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.webapp import free_port

LS_VERSION = "1.23.2"
USERNAME = "admin@example.com"
PASSWORD = "dataengine-ls-test-1"
TOKEN = "0123456789abcdef0123456789abcdef01234567"  # legacy API token, 40 hex like Label Studio's
START_TIMEOUT_S = 900.0  # a first start migrates a fresh database: minutes on a busy machine
DB_FILE = "label_studio.sqlite3"


@dataclass
class LabelStudioServer:
    url: str
    token: str
    data_dir: Path
    log: Path


def cache_dir() -> Path:
    root = os.environ.get("DATAENGINE_LS_CACHE") or Path.home() / ".cache" / "dataengine"
    return Path(root) / f"label-studio-{LS_VERSION}"


def ensure_installed() -> Path:
    """The virtualenv's python, installing Label Studio first if needed (file-locked)."""
    venv = cache_dir()
    python = venv / "bin" / "python"
    if (venv / ".complete").exists():
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"label-studio-{LS_VERSION}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be installing: wait for it
        if (venv / ".complete").exists():
            return python
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        log = venv.parent / f"label-studio-{LS_VERSION}-install.log"
        with open(log, "w") as out:
            done = subprocess.run(
                [str(python), "-m", "pip", "install", f"label-studio=={LS_VERSION}"],
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if done.returncode != 0:
            raise RuntimeError(f"pip install label-studio=={LS_VERSION} failed; see {log}")
        (venv / ".complete").write_text(LS_VERSION + "\n")
    return python


def environment(data_dir: Path, document_root: Path) -> dict[str, str]:
    """The Label Studio environment the README documents, for a test instance."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "DJANGO"))}
    env.pop("HOST", None)
    env.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(data_dir),
        DJANGO_DB="sqlite",
        LABEL_STUDIO_USERNAME=USERNAME,
        LABEL_STUDIO_PASSWORD=PASSWORD,
        LABEL_STUDIO_USER_TOKEN=TOKEN,
        LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",  # 1.23 disables legacy tokens otherwise
        ML_BLOCK_LOCAL_IP="false",
        SSRF_PROTECTION_ENABLED="false",
        LOCAL_FILES_SERVING_ENABLED="true",
        LOCAL_FILES_DOCUMENT_ROOT=str(document_root),
        LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED="true",
        LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=str(document_root),
        ML_TIMEOUT_HEALTH="30",  # 1 s and 3 s by default: too short on a busy test machine
        ML_TIMEOUT_SETUP="30",
        COLLECT_ANALYTICS="false",
        LATEST_VERSION_CHECK="false",
        SENTRY_DSN="",
        FRONTEND_SENTRY_DSN="",
        LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK="true",
        PYTHONUNBUFFERED="1",
    )
    return env


def _ready(url: str) -> bool:
    try:
        if httpx.get(f"{url}/health", timeout=5).status_code != 200:
            return False
        r = httpx.get(
            f"{url}/api/projects", headers={"Authorization": f"Token {TOKEN}"}, timeout=10
        )
    except httpx.HTTPError:
        return False
    return r.status_code == 200


@contextlib.contextmanager
def start_label_studio(tmp: Path, document_root: Path) -> Iterator[LabelStudioServer]:
    """A running Label Studio (module docstring); yields its URL and API token."""
    python = ensure_installed()
    data_dir = tmp / "label-studio-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    template = cache_dir() / f"template-{DB_FILE}"
    if template.exists():
        shutil.copyfile(template, data_dir / DB_FILE)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp / "label-studio.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                str(python),
                "-m",
                "label_studio.server",
                "start",
                "--no-browser",
                "--port",
                str(port),
                "--internal-host",
                "127.0.0.1",
            ],  # fmt: skip
            env=environment(data_dir, document_root),
            cwd=tmp,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killed whole at the end
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _ready(url):
            if proc.poll() is not None:
                raise RuntimeError(
                    f"Label Studio exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"Label Studio not ready after {START_TIMEOUT_S:.0f} s; {log}")
            time.sleep(1.0)
        if not template.exists():  # keep the migrated database for the next start
            partial = template.with_suffix(".partial")
            with sqlite3.connect(data_dir / DB_FILE) as src, sqlite3.connect(partial) as dst:
                src.backup(dst)  # a consistent copy while Label Studio runs
            partial.replace(template)
        yield LabelStudioServer(url=url, token=TOKEN, data_dir=data_dir, log=log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
