"""Login throttle counters on both databases: back-off, locks, and no race between guessers."""

from __future__ import annotations

import datetime as dt
import threading

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db import login_throttle as lt
from db.models import LoginThrottle, utcnow
from db.session import transaction

B = lt.Backoff(free=3, base_seconds=2.0, max_seconds=60.0)


def test_backoff_doubles_after_the_free_failures() -> None:
    assert [B.lock_seconds(n) for n in range(1, 10)] == [0, 0, 2, 4, 8, 16, 32, 60, 60]
    assert B.lock_seconds(10**6) == 60  # no overflow


def test_reserve_locks_then_refuses_without_counting(factory: sessionmaker[Session]) -> None:
    now = utcnow()
    keys = [(lt.account_key("ann"), B)]
    with transaction(factory) as s:
        assert lt.reserve_attempt(s, keys=keys, now=now) == (0.0, None)
        assert lt.reserve_attempt(s, keys=keys, now=now) == (0.0, None)
        wait, lock = lt.reserve_attempt(s, keys=keys, now=now)  # third: allowed, sets a lock
        assert wait == 0 and lock == now + dt.timedelta(seconds=2)
        wait, lock = lt.reserve_attempt(s, keys=keys, now=now + dt.timedelta(seconds=1))
        assert lock is None and abs(wait - 1.0) < 1e-6
        row = s.get(LoginThrottle, "account:ann")
        assert row is not None and row.failures == 3  # the refused attempt was not counted
    later = now + dt.timedelta(seconds=3)
    with transaction(factory) as s:
        wait, lock = lt.reserve_attempt(s, keys=keys, now=later)  # 4th: lock doubles
        assert wait == 0 and lock == later + dt.timedelta(seconds=4)
        lt.clear(s, key="account:ann")
        assert lt.locked_for(s, keys=["account:ann"], now=later) == 0.0


def test_old_failures_are_forgotten(factory: sessionmaker[Session]) -> None:
    now = utcnow()
    keys = [(lt.address_key("10.0.0.1"), B)]
    with transaction(factory) as s:
        for _ in range(2):
            lt.reserve_attempt(s, keys=keys, now=now)
        later = now + lt.FORGET_AFTER + dt.timedelta(seconds=1)
        assert lt.reserve_attempt(s, keys=keys, now=later) == (0.0, None)
        assert s.scalar(select(LoginThrottle.failures)) == 1


def test_a_locked_address_refuses_every_account(factory: sessionmaker[Session]) -> None:
    now = utcnow()
    addr = (lt.address_key("10.0.0.2"), lt.Backoff(free=2, base_seconds=5, max_seconds=5))
    with transaction(factory) as s:
        for name in ("a", "b"):
            assert lt.reserve_attempt(s, keys=[(lt.account_key(name), B), addr], now=now)[0] == 0
        wait, _ = lt.reserve_attempt(s, keys=[(lt.account_key("c"), B), addr], now=now)
        assert wait == 5.0
        assert s.get(LoginThrottle, "account:c") is None  # refused before counting anything


def test_parallel_guessers_get_exactly_the_free_attempts(factory: sessionmaker[Session]) -> None:
    """16 threads, each its own session and transaction, reserve at the same moment: the
    compare-and-swap lets exactly ``free`` through before the lock, on both databases."""
    backoff = lt.Backoff(free=4, base_seconds=600, max_seconds=600)
    start = threading.Barrier(16)
    results: list[float] = []
    errors: list[BaseException] = []

    def guess() -> None:
        try:
            start.wait()
            with transaction(factory) as s:
                wait, _ = lt.reserve_attempt(s, keys=[(lt.account_key("victim"), backoff)])
            results.append(wait)
        except Exception as err:  # noqa: BLE001  # reported below by the test thread
            errors.append(err)

    threads = [threading.Thread(target=guess) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sum(1 for w in results if w == 0) == backoff.free
    with factory() as s:
        assert s.get(LoginThrottle, "account:victim").failures == backoff.free  # type: ignore[union-attr]
