"""One thread-safe LRU for every in-memory cache (embeddings, decoder contexts, logits).

``LRU`` is a lock around an ``OrderedDict``: every read that hits moves
the key to the newest end, every write evicts from the oldest end down to ``maxsize``.
All methods take the one lock, so concurrent threads (FastAPI's worker threads, the
pre-compute thread) never see a torn dict. Values are stored as given (no copies).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    """A bounded mapping that forgets the least recently used key first.

    ``maxsize`` 0 keeps nothing (``put`` is a no-op); negative sizes are refused.
    """

    def __init__(self, maxsize: int):
        if maxsize < 0:
            raise ValueError(f"LRU maxsize must be >= 0 (0 keeps nothing), got {maxsize}")
        self.maxsize = maxsize
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K, default: V | None = None) -> V | None:
        """The value (now the most recently used), or ``default``."""
        with self._lock:
            try:
                self._items.move_to_end(key)
            except KeyError:
                return default
            return self._items[key]

    def put(self, key: K, value: V) -> None:
        """Store ``value`` as the most recently used; evict the oldest beyond ``maxsize``."""
        if self.maxsize == 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)

    def get_or_put(self, key: K, make: Callable[[], V]) -> V:
        """The cached value, else ``make()`` stored and returned.

        ``make`` runs outside the lock (it may be slow); two threads missing the same key
        at once may both call it, and the later result wins. Use it for pure computations.
        """
        hit = self.get(key)
        if hit is not None:
            return hit
        value = make()
        self.put(key, value)
        return value

    def pop(self, key: K, default: V | None = None) -> V | None:
        with self._lock:
            return self._items.pop(key, default)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def keys(self) -> list[K]:
        """A snapshot of the keys, oldest first."""
        with self._lock:
            return list(self._items)

    def __contains__(self, key: object) -> bool:
        """Membership without touching the recency order."""
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
