"""LoginGuard: password checks run at most N at once; a full queue is refused at once."""

from __future__ import annotations

import threading

import anyio

from annotator_ui.login_guard import Busy, LoginGuard


def test_checks_are_bounded_and_the_queue_is_refused_when_full() -> None:
    guard = LoginGuard(max_concurrent=1, max_waiting=1)
    release = threading.Event()
    running = threading.Semaphore(0)
    peak = [0, 0]  # now, max
    lock = threading.Lock()

    def slow_check() -> bool:
        with lock:
            peak[0] += 1
            peak[1] = max(peak)
        running.release()
        release.wait(30)
        with lock:
            peak[0] -= 1
        return True

    async def main() -> list[object]:
        results: list[object] = []

        async def one() -> None:
            try:
                results.append(await guard.verify(slow_check))
            except Busy as err:
                results.append(err)

        async with anyio.create_task_group() as tg:
            tg.start_soon(one)
            await anyio.to_thread.run_sync(running.acquire)  # first check is running
            tg.start_soon(one)  # waits for the slot
            while guard._limiter is None or guard._limiter.statistics().tasks_waiting < 1:
                await anyio.sleep(0.01)
            await one()  # queue full: refused without waiting
            assert isinstance(results[-1], Busy)
            release.set()
        return results

    results = anyio.run(main)
    assert sorted(map(type, results), key=str) == sorted([Busy, bool, bool], key=str)
    assert peak[1] == 1


def test_unbounded_when_zero() -> None:
    guard = LoginGuard(max_concurrent=0, max_waiting=0)
    assert anyio.run(guard.verify, lambda: 42) == 42


def test_lock_cache() -> None:
    guard = LoginGuard(max_concurrent=1, max_waiting=1)
    guard.remember_lock(["account:a"], 60)
    assert 59 < guard.locked_for(["account:a", "addr:x"]) <= 60
    assert guard.locked_for(["account:b"]) == 0
