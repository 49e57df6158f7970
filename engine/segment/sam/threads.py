"""Worker threads for torch work: each runs its ops single-threaded, and the process-wide
default thread count is put back when the last concurrent pool closes
(``FastAutomaticMaskGenerator`` runs its decoder chunks on such a pool)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import torch

_threads_lock = threading.Lock()
_threads_users = 0
_threads_before = 0


@contextmanager
def single_threaded_workers(n: int) -> Iterator[ThreadPoolExecutor]:
    """A pool of ``n`` threads whose torch ops run single-threaded.

    Torch's thread count is per thread (OpenMP, MKL), but setting it also sets the
    process-wide default that threads started later pick up. So each worker sets 1 for
    itself, and when the last concurrent pool closes the default is put back to what the
    first caller had; callers' own threads are never changed.
    """
    global _threads_users, _threads_before
    with _threads_lock:
        if _threads_users == 0:
            _threads_before = torch.get_num_threads()
        _threads_users += 1
    try:
        with ThreadPoolExecutor(
            n, thread_name_prefix="amg", initializer=torch.set_num_threads, initargs=(1,)
        ) as pool:
            yield pool
    finally:
        with _threads_lock:
            _threads_users -= 1
            if _threads_users == 0:
                torch.set_num_threads(_threads_before)
