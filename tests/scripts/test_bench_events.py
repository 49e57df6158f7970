"""scripts/bench_events.py with small batches on both databases: every run is accounted for."""

from __future__ import annotations

import re

import pytest

from scripts import bench_events


def test_small_batches_are_stored_or_refused(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bench_events.main(["--n", "7", "--database-url", db_url])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    found = [re.search(r"stored (\d+), rejected (\d+)", line).groups() for line in lines]
    assert found == [("7", "0"), ("7", "0"), ("0", "7")]
    assert lines[2].startswith("curator, no lease")
    assert all(re.search(r"\d+ events/s", line) for line in lines)


def test_heartbeats_are_numbered_in_order() -> None:
    events = bench_events.heartbeats(3, image_id=4, lease_id=None)
    assert [e["seq"] for e in events] == [0, 1, 2]
    assert {e["image_id"] for e in events} == {4}
    assert len({e["uuid"] for e in events}) == 3
