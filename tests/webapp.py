"""Helpers for the web-app tests: the real app on a test database, users with tokens, and a
real uvicorn server in a thread (for concurrent HTTP requests and the browser test)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from annotator_ui.app import create_app
from db.models import ROLES
from db.session import make_engine, make_session_factory, transaction
from db.users import create_user, issue_token
from engine.settings import Settings
from tests.factories import PASSWORD


def classical_segmenter() -> Any:
    """The weight-free backend behind an in-memory embedding cache."""
    from engine.segment.registry import build_segmenter, with_cache

    return with_cache(build_segmenter("classical"), None, 8)


class NoModel:
    """Stands in for a segmenter in tests that never reach the model (auth, queue, events)."""

    name = "none"
    model_key = "none"


@dataclass
class Web:
    """A running app: ``client`` (TestClient), ``factory`` (sessions on its database) and
    ``tokens`` (role -> bearer token of a user with that role)."""

    app: FastAPI
    client: TestClient
    factory: sessionmaker[Session]
    tokens: dict[str, str] = field(default_factory=dict)
    user_ids: dict[str, int] = field(default_factory=dict)

    def as_(self, role_or_token: str) -> dict[str, str]:
        """Headers authenticating as the user of that role (or a raw token)."""
        token = self.tokens.get(role_or_token, role_or_token)
        return {"Authorization": f"Bearer {token}"}

    def add_user(self, name: str, role: str) -> tuple[int, str]:
        with transaction(self.factory) as s:
            user = create_user(s, name=name, role=role, password=PASSWORD)
            return user.id, issue_token(s, user=user, kind="api", hours=1)


def settings_for(db_url: str, data_dir: Path, **kw: Any) -> Settings:
    return Settings(database_url=db_url, data_dir=data_dir, _env_file=None, **kw)  # type: ignore[call-arg]


@contextmanager
def start_web(db_url: str, data_dir: Path, segmenter: Any = None, **settings: Any) -> Iterator[Web]:
    """The app (lifespan run) with one user per role (``<role>1``) and their tokens."""
    app = create_app(
        settings_for(db_url, data_dir, **settings),
        segmenter=segmenter if segmenter is not None else classical_segmenter(),
    )
    engine = make_engine(db_url)
    web = Web(app=app, client=TestClient(app), factory=make_session_factory(engine))
    for role in ROLES:
        web.user_ids[role], web.tokens[role] = web.add_user(f"{role}1", role)
    try:
        with web.client:
            yield web
    finally:
        engine.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(app: FastAPI, port: int | None = None) -> Iterator[str]:
    """Run ``app`` under uvicorn in a thread on 127.0.0.1; yields the base URL."""
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    while not server.started:  # poll for the condition; a failed start ends the thread
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start (see the log above)")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip


def require_chromium() -> Any:
    """``playwright.sync_api``; skip the test when Playwright or Debian's chromium is missing,
    except under ``CI`` (any non-empty value), where a missing browser is a failure."""
    missing = []
    try:
        import playwright.sync_api as sync_api
    except ImportError:
        missing.append("playwright (pip install -e '.[dev]')")
    if not CHROMIUM.exists():
        missing.append("Debian chromium (apt-get install -y chromium)")
    if missing:
        why = "browser test needs " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(f"{why}; CI is set, so this is a failure rather than a skip")
        pytest.skip(why)
    return sync_api


def launch_chromium(pw: Any) -> Any:
    """Debian's chromium, headless with the project's flags, from a ``sync_playwright()``."""
    return pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def submit_anyway(page: Any) -> None:
    """Ctrl+Enter on the review page; confirms the warning about unreviewed confident
    proposals ("Submit anyway") when it shows, then waits for the submit."""
    page.keyboard.press("Control+Enter")
    page.wait_for_function("() => deReview.submitted || document.querySelector('#navdialog[open]')")
    if page.locator("#navdialog[open]").count():
        page.click("#navdialog-ok")
    page.wait_for_function("() => deReview.submitted")
