"""Worker threads run torch single-threaded and leave the process default as they found it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch

from engine.segment.sam.threads import single_threaded_workers


def test_workers_are_single_threaded_and_the_default_is_restored() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with single_threaded_workers(2) as outer, single_threaded_workers(1) as inner:
            assert set(outer.map(lambda _: torch.get_num_threads(), range(4))) == {1}
            assert inner.submit(torch.get_num_threads).result() == 1
        assert torch.get_num_threads() == 2
        with ThreadPoolExecutor(1) as fresh:  # a thread started now gets the process default
            assert fresh.submit(torch.get_num_threads).result() == 2
    finally:
        torch.set_num_threads(before)
