"""Hostile use of the auth API on both databases: guessing, token lifetimes, password
changes and resets, spoofed user names, NUL bytes."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from annotator_ui import login_guard
from annotator_ui.app import create_app
from annotator_ui.routes import auth as auth_routes
from db.models import LoginThrottle, utcnow
from tests.factories import PASSWORD
from tests.webapp import NoModel, Web, settings_for, start_web


@pytest.fixture
def web(db_url: str, tmp_path: Path) -> Iterator[Web]:
    with start_web(
        db_url,
        tmp_path,
        segmenter=NoModel(),
        login_free_failures_account=3,
        login_free_failures_address=50,
        # long enough that a loaded machine (argon2 on 2 busy cores) never outlives it
        # mid-test; the test that needs it over ends it in the database instead of waiting
        login_backoff_seconds=120.0,
        login_backoff_max_seconds=120.0,
        max_token_hours=48,
    ) as w:
        yield w


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names whose password was checked (argon2) by the login route (the real check runs)."""
    seen: list[str] = []
    real = auth_routes.verify_password

    def counting(user: Any, password: str) -> bool:
        seen.append(user.name if user is not None else "?")
        return real(user, password)

    monkeypatch.setattr(auth_routes, "verify_password", counting)
    return seen


def login(web: Web, name: str, password: str) -> Any:
    return web.client.post("/api/auth/login", json={"name": name, "password": password})


def test_guessing_one_account_is_throttled_before_hashing(
    web: Web, hashes: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    codes = [login(web, "annotator1", f"guess-{i}").status_code for i in range(8)]
    assert codes[:3] == [401, 401, 401]
    assert set(codes[3:]) == {429}
    assert len(hashes) == 3  # refused attempts never reach argon2
    r = login(web, "annotator1", PASSWORD)  # even the right password waits
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 1 and "try again" in r.json()["detail"]
    # other accounts are not affected
    assert login(web, "curator1", PASSWORD).status_code == 200
    # after the back-off (the clock moved past it: the database's lock and this process's
    # remembered one) the right password works and clears the account's counter
    later = time.monotonic() + 200
    monkeypatch.setattr(login_guard, "time", SimpleNamespace(monotonic=lambda: later))
    with web.factory() as s:
        s.execute(
            update(LoginThrottle)
            .where(LoginThrottle.key == "account:annotator1")
            .values(locked_until=utcnow() - dt.timedelta(seconds=1))
        )
        s.commit()
    r = login(web, "annotator1", PASSWORD)
    assert r.status_code == 200
    with web.factory() as s:
        keys = set(s.scalars(select(LoginThrottle.key)))
    assert "account:annotator1" not in keys


def test_unknown_and_case_variant_names_share_the_account_counter(
    web: Web, hashes: list[str]
) -> None:
    for name in ("Annotator1", "ANNOTATOR1", "ａnnotator1"):
        assert login(web, name, "nope-nope-nope").status_code == 401
    assert login(web, "annotator1", "nope").status_code == 429
    for _ in range(3):
        assert login(web, "ghost", "nope-nope").status_code == 401
    assert login(web, "ghost", "nope-nope").status_code == 429
    assert len(hashes) == 6


def test_guessing_from_one_address_across_accounts(db_url: str, tmp_path: Path) -> None:
    with start_web(db_url, tmp_path, segmenter=NoModel(), login_free_failures_address=4) as web:
        codes = [login(web, f"user{i}", "wrong-guess").status_code for i in range(6)]
        assert codes == [401] * 4 + [429] * 2
        assert login(web, "admin1", PASSWORD).status_code == 429  # same address


def test_throttle_can_be_disabled(db_url: str, tmp_path: Path) -> None:
    with start_web(db_url, tmp_path, segmenter=NoModel(), login_throttle=False) as web:
        assert {login(web, "annotator1", "wrong").status_code for _ in range(7)} == {401}
        assert login(web, "annotator1", PASSWORD).status_code == 200


def test_token_lifetime_is_validated(web: Web) -> None:
    c, auth = web.client, web.as_("annotator")
    for hours in (1e9, 0, -1, 48.5, None, "a lot"):
        r = c.post("/api/auth/tokens", json={"hours": hours}, headers=auth)
        assert r.status_code == 422, (hours, r.text)
    for raw in ('{"hours": NaN}', '{"hours": Infinity}', '{"hours": 1e999}'):
        r = c.post(
            "/api/auth/tokens",
            content=raw,
            headers={**auth, "Content-Type": "application/json"},
        )
        assert r.status_code == 422, (raw, r.text)
        assert "finite" in r.json()["detail"]
    r = c.post("/api/auth/tokens", json={"hours": 48}, headers=auth)
    assert r.status_code == 200
    assert c.get("/api/auth/me", headers=web.as_(r.json()["token"])).status_code == 200


def test_password_change_revokes_sessions_and_tokens(web: Web) -> None:
    c = web.client
    first = login(web, "annotator1", PASSWORD).json()["token"]
    api = c.post("/api/auth/tokens", json={"hours": 2}, headers=web.as_(first)).json()["token"]
    body = {"current_password": "not-my-password", "new_password": "brand-new-secret-9"}
    assert c.post("/api/auth/password", json=body, headers=web.as_(first)).status_code == 403
    body = {"current_password": PASSWORD, "new_password": " " * 8}
    r = c.post("/api/auth/password", json=body, headers=web.as_(first))
    assert r.status_code == 422 and "spaces" in r.json()["detail"]
    body = {"current_password": PASSWORD, "new_password": "brand-new-secret-9"}
    r = c.post("/api/auth/password", json=body, headers=web.as_(first))
    assert r.status_code == 200
    fresh = r.json()["token"]
    for old in (first, api, web.tokens["annotator"]):
        assert c.get("/api/auth/me", headers=web.as_(old)).status_code == 401
    assert c.get("/api/auth/me", headers=web.as_(fresh)).status_code == 200
    assert login(web, "annotator1", PASSWORD).status_code == 401
    assert login(web, "annotator1", "brand-new-secret-9").status_code == 200


def test_admin_reset_revokes_and_checks_the_policy(web: Web) -> None:
    c, admin = web.client, web.as_("admin")
    uid = web.user_ids["curator"]
    r = c.patch(f"/api/admin/users/{uid}", json={"password": "password1"}, headers=admin)
    assert r.status_code == 422 and "weak" in r.json()["detail"]
    assert c.get("/api/auth/me", headers=web.as_("curator")).status_code == 200
    r = c.patch(f"/api/admin/users/{uid}", json={"password": "reset-by-admin-77"}, headers=admin)
    assert r.status_code == 200
    assert c.get("/api/auth/me", headers=web.as_("curator")).status_code == 401
    assert c.get("/api/auth/me", headers=admin).status_code == 200  # only that user's


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("Admin1", 409),
        ("ADMIN1", 409),
        ("\u0430dmin1", 422),  # Cyrillic а
        ("ad\u200bmin1", 422),  # zero-width space
        ("ad\u0000min", 422),  # NUL
        ("eight spaces", 422),
    ],
)
def test_spoofed_user_names_are_refused(web: Web, name: str, status: int) -> None:
    body = {"name": name, "role": "admin", "password": "a-fine-password-1"}
    r = web.client.post("/api/admin/users", json=body, headers=web.as_("admin"))
    assert r.status_code == status, r.text
    assert isinstance(r.json()["detail"], str | list)
    names = [u["name"] for u in web.client.get("/api/admin/users", headers=web.as_("admin")).json()]
    assert len(names) == 4


def test_weak_passwords_are_refused_by_the_admin_api(web: Web) -> None:
    for pw in (" " * 8, "12345678", "password1"):
        body = {"name": "newbie", "role": "annotator", "password": pw}
        r = web.client.post("/api/admin/users", json=body, headers=web.as_("admin"))
        assert r.status_code == 422, (pw, r.text)


def test_nul_bytes_in_login_are_422(web: Web) -> None:
    for body in (
        {"name": "annotator1\u0000", "password": PASSWORD},
        {"name": "annotator1", "password": "abc\u0000def-ghi"},
        {"name": "\u0000", "password": "\u0000"},
    ):
        r = web.client.post("/api/auth/login", json=body)
        assert r.status_code == 422 and "NUL" in r.json()["detail"]


def test_throttle_is_shared_by_app_processes(web: Web, db_url: str, tmp_path: Path) -> None:
    """A second app on the same database (another process in production) sees the lock;
    a lock on one account does not refuse other accounts from the same address."""
    for i in range(3):
        assert login(web, "annotator1", f"guess-{i}").status_code == 401
    other = create_app(
        settings_for(db_url, tmp_path / "second", login_free_failures_account=3),
        segmenter=NoModel(),
    )
    with TestClient(other) as second:
        r = second.post("/api/auth/login", json={"name": "annotator1", "password": PASSWORD})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        r = second.post("/api/auth/login", json={"name": "curator1", "password": PASSWORD})
        assert r.status_code == 200
