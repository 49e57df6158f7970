"""Users, argon2 passwords and tokens on both databases."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.errors import Conflict, InvalidInput
from db.models import AuthToken
from db.users import (
    authenticate,
    create_user,
    ensure_inactive_user,
    get_user,
    issue_token,
    list_users,
    revoke_token,
    set_password,
    user_for_token,
)

PW = "correct-horse-battery"


def test_password_and_tokens(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        u = create_user(s, name="ann", role="annotator", password="long-enough-pw")
        s.commit()
        assert u.password_hash.startswith("$argon2")
        assert authenticate(s, name="ann", password="long-enough-pw") is u
        assert authenticate(s, name="ann", password="wrong-one") is None
        assert authenticate(s, name="nobody", password="long-enough-pw") is None
        token = issue_token(s, user=u, kind="session", hours=1)
        assert user_for_token(s, token=token) is u
        assert user_for_token(s, token=token + "x") is None
        expired = issue_token(s, user=u, kind="api", hours=-1)
        assert user_for_token(s, token=expired) is None
        revoke_token(s, token=token)
        assert user_for_token(s, token=token) is None


def test_user_errors(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        create_user(s, name="ann", role="annotator", password="long-enough-pw")
        with pytest.raises(Conflict):
            create_user(s, name="ann", role="admin", password="long-enough-pw")
        with pytest.raises(InvalidInput, match="unknown role"):
            create_user(s, name="bob", role="king", password="long-enough-pw")
        with pytest.raises(InvalidInput, match="8 characters"):
            create_user(s, name="bob", role="admin", password="short")


# --- names: NFKC, case-insensitive, no invisible characters, no mixed scripts -------------


def test_names_are_normalised_and_unique_ignoring_case(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        admin = create_user(s, name="admin", role="admin", password=PW)
        s.commit()
        for twin in ("Admin", "ADMIN", "ａｄｍｉｎ", " admin "):  # case, fullwidth (NFKC), spaces
            with pytest.raises(Conflict, match="already exists"):
                create_user(s, name=twin, role="annotator", password=PW)
        assert get_user(s, name="ADMIN") is admin
        assert authenticate(s, name="Ａdmin", password=PW) is admin
        kanji = create_user(s, name="ユーザー名", role="annotator", password=PW)  # kana + kanji
        assert kanji.name == "ユーザー名"
        s.commit()
        assert [u.name for u in list_users(s)] == ["admin", "ユーザー名"]


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("\u0430dmin", "mixes scripts"),  # Cyrillic а + Latin dmin
        ("p\u0430ypal", "mixes scripts"),
        ("ad\u200bmin", "invisible"),  # zero-width space (Cf)
        ("ad\u202emin", "invisible"),  # right-to-left override (Cf)
        ("ad\x07min", "invisible"),  # control (Cc)
        ("ad min", "spaces"),
        ("ad\u00a0min", "spaces"),  # no-break space (NFKC -> space)
        ("   ", "empty"),
        ("x" * 101, "at most 100"),
    ],
)
def test_spoofing_names_are_refused(factory: sessionmaker[Session], name: str, why: str) -> None:
    with factory() as s:
        with pytest.raises(InvalidInput, match=why):
            create_user(s, name=name, role="annotator", password=PW)
        assert list_users(s) == []


@pytest.mark.parametrize(
    ("password", "why"),
    [
        (" " * 8, "only spaces"),
        ("\t" * 12, "only spaces"),
        ("12345678", "too weak"),
        ("password1", "too weak"),
        ("qwertyuiop", "too weak"),
        ("annabelle-1", "too weak"),  # the user name plus a digit
        ("short", "8 characters"),
    ],
)
def test_password_policy(factory: sessionmaker[Session], password: str, why: str) -> None:
    with factory() as s:
        with pytest.raises(InvalidInput, match=why):
            create_user(s, name="annabelle-1", role="annotator", password=password)
        u = create_user(s, name="annabelle", role="annotator", password=PW)
        with pytest.raises(InvalidInput, match=why):
            set_password(s, user=u, password=password)
        assert authenticate(s, name="annabelle", password=PW) is u


def test_password_change_revokes_every_token(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        u = create_user(s, name="ann", role="annotator", password=PW)
        other = create_user(s, name="bob", role="annotator", password=PW)
        tokens = [issue_token(s, user=u, kind=k, hours=1) for k in ("session", "api", "api")]
        kept = issue_token(s, user=other, kind="api", hours=1)
        s.commit()
        assert set_password(s, user=u, password="a-new-long-secret") == 3
        s.commit()
        assert all(user_for_token(s, token=t) is None for t in tokens)
        assert user_for_token(s, token=kept) is other
        assert authenticate(s, name="ann", password=PW) is None
        assert authenticate(s, name="ann", password="a-new-long-secret") is u


def test_token_lifetime_is_capped(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        u = create_user(s, name="ann", role="annotator", password=PW)
        for hours in (1e9, float("inf"), float("nan"), 0.0, -1.0, 24.01):
            with pytest.raises(InvalidInput, match="hours|finite"):
                issue_token(s, user=u, kind="api", hours=hours, max_hours=24)
        token = issue_token(s, user=u, kind="api", hours=24, max_hours=24)
        s.commit()
        row = s.scalar(select(AuthToken).where(AuthToken.user_id == u.id))
        assert row is not None and row.expires_at is not None
        assert user_for_token(s, token=token) is u


def test_ensure_inactive_user_creates_once_and_cannot_log_in(
    factory: sessionmaker[Session],
) -> None:
    with factory() as s:
        svc = ensure_inactive_user(s, name="label-studio")
        assert svc.active is False and svc.role == "annotator"
        assert ensure_inactive_user(s, name="label-studio").id == svc.id
        assert authenticate(s, name="label-studio", password="anything at all") is None
