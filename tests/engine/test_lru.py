"""The one LRU helper: eviction order, recency on read, and consistency under threads."""

from __future__ import annotations

import threading

import pytest

from engine.lru import LRU


def test_evicts_least_recently_used() -> None:
    lru: LRU[str, int] = LRU(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1  # a is now the newest
    lru.put("c", 3)
    assert "b" not in lru and lru.keys() == ["a", "c"]
    assert lru.get("b", -1) == -1
    assert lru.pop("a") == 1 and len(lru) == 1


def test_zero_keeps_nothing_and_negative_is_refused() -> None:
    lru: LRU[str, int] = LRU(0)
    lru.put("a", 1)
    assert len(lru) == 0
    with pytest.raises(ValueError, match=">= 0"):
        LRU(-1)


def test_get_or_put_computes_once_per_miss() -> None:
    lru: LRU[int, int] = LRU(4)
    calls: list[int] = []

    def make() -> int:
        calls.append(7)
        return 49

    for _ in range(3):
        assert lru.get_or_put(7, make) == 49
    assert calls == [7]


def test_consistent_under_threads() -> None:
    """8 threads hammer one small LRU with puts, gets and pops; it never exceeds its
    size, never raises, and every value read back belongs to its key."""
    lru: LRU[int, tuple[int, int]] = LRU(16)
    errors: list[BaseException] = []
    wrong: list[tuple[int, object]] = []
    start = threading.Barrier(8)

    def work(seed: int) -> None:
        try:
            start.wait()
            for i in range(4000):
                key = (seed * 7919 + i * 31) % 40
                if i % 3 == 0:
                    lru.put(key, (key, seed))
                elif i % 3 == 1:
                    got = lru.get(key)
                    if got is not None and got[0] != key:
                        wrong.append((key, got))
                elif i % 11 == 0:
                    lru.pop(key)
                else:
                    got = lru.get_or_put(key, lambda k=key: (k, -1))
                    if got[0] != key:
                        wrong.append((key, got))
                if len(lru) > 16:
                    wrong.append((-1, len(lru)))
        except Exception as err:  # noqa: BLE001 - reported by the main thread
            errors.append(err)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and wrong == []
    assert len(lru) <= 16 and len(set(lru.keys())) == len(lru)
