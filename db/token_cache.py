"""A short-lived, process-wide cache of token -> user, so an authenticated request costs no
query for its caller.

Every API request names its caller with a session cookie or bearer token; looking it up is a
token row and a user row. ``db.users.user_for_token(..., cache_s=S)`` keeps the answer here
for at most ``S`` seconds (``DATAENGINE_AUTH_CACHE_SECONDS`` at the app's edge; 0 = off).

Revocation: any flush or bulk statement that touches ``user_account`` or ``auth_token`` in
this process (logout, password change, role change, deactivation, token deletes) clears the
cache at once, and again when that transaction commits (so a lookup racing the change cannot
keep the old answer). Other processes (``dataengine serve --workers N``) see the change
within ``S`` seconds. A token's own expiry is checked on every hit.

Cached users are detached copies (column values only); ``user_for_token`` merges one into the
caller's session without loading (``Session.merge(load=False)``), so handlers get a normal
persistent ``User``.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

from sqlalchemy import event, inspect
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction, make_transient_to_detached

from db.models import AuthToken, User

MAX_ENTRIES = 10_000
_WATCHED = {User.__tablename__, AuthToken.__tablename__}
_TOUCHED = "dataengine.token_cache.touched"


class TokenCache:
    """token sha256 -> (detached user copy, token expiry, time cached); thread-safe."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._items: dict[str, tuple[User, dt.datetime | None, float]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, digest: str, *, ttl_s: float, now: dt.datetime) -> User | None:
        """The cached user for a token digest if cached less than ``ttl_s`` ago and the token
        has not expired (``now``: naive UTC, as stored); else None."""
        with self._lock:
            item = self._items.get(digest)
            if item is None or time.monotonic() - item[2] > ttl_s:
                self.misses += 1
                return None
            user, expires, _ = item
            if expires is not None and expires < now:
                self._items.pop(digest, None)
                self.misses += 1
                return None
            self.hits += 1
            return user

    def put(self, digest: str, user: User, expires: dt.datetime | None) -> None:
        """Keep a detached copy of ``user`` (its column values) for this token digest."""
        copy = _detached_copy(user)
        with self._lock:
            if len(self._items) >= self.max_entries:
                self._items.clear()  # rare: a flood of distinct tokens; start over
            self._items[digest] = (copy, expires, time.monotonic())

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


def _detached_copy(user: User) -> User:
    columns = {a.key: getattr(user, a.key) for a in inspect(User).column_attrs}
    copy = User(**columns)
    make_transient_to_detached(copy)
    return copy


TOKEN_CACHE = TokenCache()


@event.listens_for(Session, "after_flush")
def _after_flush(session: Session, _flush: UOWTransaction) -> None:
    changed = (*session.new, *session.dirty, *session.deleted)
    if any(isinstance(obj, User | AuthToken) for obj in changed):
        session.info[_TOUCHED] = True
        TOKEN_CACHE.clear()


@event.listens_for(Session, "do_orm_execute")
def _bulk_statement(state: ORMExecuteState) -> None:
    if not (state.is_update or state.is_delete or state.is_insert):
        return
    table = getattr(state.statement, "table", None)
    if getattr(table, "name", None) in _WATCHED:
        state.session.info[_TOUCHED] = True
        TOKEN_CACHE.clear()


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.info.pop(_TOUCHED, False):
        TOKEN_CACHE.clear()
