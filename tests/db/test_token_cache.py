"""db/token_cache.py: token -> user answers reused for a few seconds, cleared on changes."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import event, update
from sqlalchemy.orm import Session, sessionmaker

from db.models import User, utcnow
from db.session import transaction
from db.token_cache import TOKEN_CACHE, TokenCache
from db.users import create_user, issue_token, revoke_token, set_password, user_for_token
from tests.factories import PASSWORD


def _token_queries(factory: sessionmaker[Session]) -> list[str]:
    statements: list[str] = []
    engine = factory.kw["bind"]

    def seen(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        if "auth_token" in statement:  # token lookups only (not SQLite's BEGIN IMMEDIATE)
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    return statements


def test_hits_cost_no_query_and_changes_clear(factory: sessionmaker[Session]) -> None:
    TOKEN_CACHE.clear()
    with transaction(factory) as s:
        user = create_user(s, name="ann", role="annotator", password=PASSWORD)
        token = issue_token(s, user=user, kind="api", hours=1)
        other = issue_token(s, user=user, kind="api", hours=1)
    queries = _token_queries(factory)
    with factory() as s:
        first = user_for_token(s, token=token, cache_s=5)
        n = len(queries)
        assert first is not None and n >= 1
        again = user_for_token(s, token=token, cache_s=5)
        assert again is first  # merged into the session's identity map
    with factory() as s:
        hit = user_for_token(s, token=token, cache_s=5)
        assert hit is not None and (hit.name, hit.role) == ("ann", "annotator")
        assert hit in s and len(queries) == n  # answered without a query
    with transaction(factory) as s:
        revoke_token(s, token=token)  # logout: a bulk delete on auth_token
    assert len(TOKEN_CACHE) == 0
    with factory() as s:
        assert user_for_token(s, token=token, cache_s=5) is None
        assert user_for_token(s, token=other, cache_s=5) is not None
    with transaction(factory) as s:  # a role change through the ORM clears it too
        s.get(User, user.id).role = "curator"  # type: ignore[union-attr]
    with factory() as s:
        changed = user_for_token(s, token=other, cache_s=5)
        assert changed is not None and changed.role == "curator"
    with transaction(factory) as s:  # so does a bulk update (deactivation)
        s.execute(update(User).where(User.id == user.id).values(active=False))
    with factory() as s:
        assert user_for_token(s, token=other, cache_s=5) is None


def test_password_change_and_no_cache(factory: sessionmaker[Session]) -> None:
    TOKEN_CACHE.clear()
    with transaction(factory) as s:
        user = create_user(s, name="bob", role="annotator", password=PASSWORD)
        token = issue_token(s, user=user, kind="api", hours=1)
    with factory() as s:
        assert user_for_token(s, token=token, cache_s=5) is not None
    with transaction(factory) as s:
        set_password(s, user=s.get(User, user.id), password=PASSWORD + "-new")  # type: ignore[arg-type]
    with factory() as s:
        assert user_for_token(s, token=token, cache_s=5) is None  # logged out everywhere
    with transaction(factory) as s:
        fresh = issue_token(s, user=s.get(User, user.id), kind="api", hours=1)  # type: ignore[arg-type]
    queries = _token_queries(factory)
    with factory() as s:
        for _ in range(3):
            assert user_for_token(s, token=fresh) is not None  # cache_s=0: always asks
    assert len(queries) == 3


def test_ttl_and_token_expiry() -> None:
    cache = TokenCache(max_entries=2)
    user = User(id=7, name="x", name_key="x", role="admin", password_hash="h", active=True)
    now = utcnow()
    cache.put("a", user, now + dt.timedelta(seconds=30))
    got = cache.get("a", ttl_s=5, now=now)
    assert got is not None and got is not user and got.id == 7  # a detached copy
    assert cache.get("a", ttl_s=0, now=now) is None  # older than the ttl
    assert cache.get("a", ttl_s=5, now=now + dt.timedelta(minutes=1)) is None  # token expired
    assert cache.get("a", ttl_s=5, now=now) is None  # and dropped
    for key in ("b", "c", "d"):
        cache.put(key, user, None)
    assert len(cache) <= 2  # bounded
    assert (cache.hits, cache.misses) == (1, 3)
