"""Login throttling shared by every app process: failure counters in ``login_throttle``.

Each login attempt is *reserved* before the password is hashed: the counters of its keys
(``account:<name_key>``, ``addr:<client address>``) go up by one with a compare-and-swap,
so parallel guessers cannot all slip through between a read and a write, in one process
or several. After ``free`` failures a key is locked for ``base * 2**(failures - free)``
seconds (capped); a locked key refuses attempts without hashing anything. A successful
login clears its account key. Counters are forgotten after ``FORGET_AFTER`` without a
failure.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.models import LoginThrottle, utcnow

FORGET_AFTER = dt.timedelta(hours=1)
MAX_KEY_LENGTH = 200


@dataclass(frozen=True)
class Backoff:
    """``free`` failures allowed, then locks of ``base_seconds * 2**k`` up to ``max_seconds``."""

    free: int
    base_seconds: float
    max_seconds: float

    def lock_seconds(self, failures: int) -> float:
        if failures < self.free:
            return 0.0
        return min(self.max_seconds, self.base_seconds * 2.0 ** min(failures - self.free, 60))


def account_key(name_key: str) -> str:
    return f"account:{name_key}"[:MAX_KEY_LENGTH]


def address_key(address: str) -> str:
    return f"addr:{address}"[:MAX_KEY_LENGTH]


def locked_for(session: Session, *, keys: Sequence[str], now: dt.datetime | None = None) -> float:
    """Seconds until every key in ``keys`` accepts attempts again (0 when none is locked)."""
    now = now or utcnow()
    rows = session.scalars(select(LoginThrottle.locked_until).where(LoginThrottle.key.in_(keys)))
    waits = [(until - now).total_seconds() for until in rows if until is not None]
    return max([0.0, *waits])


def reserve_attempt(
    session: Session,
    *,
    keys: Sequence[tuple[str, Backoff]],
    now: dt.datetime | None = None,
) -> tuple[float, dt.datetime | None]:
    """Count one attempt against every key, unless one is locked.

    Returns ``(retry_after_seconds, None)`` when refused (nothing counted past the locked
    key), else ``(0.0, lock)`` where ``lock`` is the latest ``locked_until`` this attempt
    set (None if it set none). The caller commits before checking the password, so other
    processes see the attempt.
    """
    now = now or utcnow()
    wait = locked_for(session, keys=[k for k, _ in keys], now=now)
    if wait > 0:
        return wait, None
    latest: dt.datetime | None = None
    for key, backoff in keys:
        wait, lock = _bump(session, key=key, backoff=backoff, now=now)
        if wait > 0:
            return wait, None
        if lock is not None and (latest is None or lock > latest):
            latest = lock
    return 0.0, latest


def _bump(
    session: Session, *, key: str, backoff: Backoff, now: dt.datetime
) -> tuple[float, dt.datetime | None]:
    for _ in range(8):
        row = session.execute(
            select(LoginThrottle.failures, LoginThrottle.locked_until, LoginThrottle.updated_at)
            .where(LoginThrottle.key == key)
        ).first()  # fmt: skip
        if row is None:
            lock = _lock(backoff, 1, now)
            try:
                with session.begin_nested():
                    session.add(
                        LoginThrottle(key=key, failures=1, locked_until=lock, updated_at=now)
                    )
            except IntegrityError:
                continue  # another attempt created it first: read it again
            return 0.0, lock
        failures, until, updated = row
        if until is not None and until > now:
            return (until - now).total_seconds(), None
        fresh = 0 if updated is not None and now - updated > FORGET_AFTER else failures
        lock = _lock(backoff, fresh + 1, now)
        done = session.execute(
            update(LoginThrottle)
            .where(LoginThrottle.key == key, LoginThrottle.failures == failures)
            .values(failures=fresh + 1, locked_until=lock, updated_at=now)
        )  # fmt: skip
        if getattr(done, "rowcount", 0) == 1:
            return 0.0, lock
    return backoff.base_seconds, None  # heavy contention on this key: ask to come back


def _lock(backoff: Backoff, failures: int, now: dt.datetime) -> dt.datetime | None:
    seconds = backoff.lock_seconds(failures)
    return now + dt.timedelta(seconds=seconds) if seconds > 0 else None


def clear(session: Session, *, key: str) -> None:
    """Forget a key's failures (after a successful login)."""
    session.execute(delete(LoginThrottle).where(LoginThrottle.key == key))


def release(session: Session, *, key: str) -> None:
    """Take back one reserved attempt (a successful login from a shared address)."""
    session.execute(
        update(LoginThrottle)
        .where(LoginThrottle.key == key, LoginThrottle.failures > 0)
        .values(failures=LoginThrottle.failures - 1)
    )
