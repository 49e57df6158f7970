"""scripts/bench_load.py in tiny mode: a real `dataengine serve`, 2 annotators, a few seconds."""

from __future__ import annotations

import json

import pytest

from scripts import bench_load


def test_tiny_run_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    code = bench_load.main(
        [
            "--annotators",
            "2",
            "--seconds",
            "2",
            "--warmup",
            "0.5",
            "--images",
            "600",  # 2 annotators alone on a quick machine: ~100 images/s each
            "--workers",
            "1",
            "--json",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("route"))
    routes = [line.split()[0] for line in lines[header + 2 : header + 8]]
    assert routes == ["next", "events", "heartbeat", "mask", "submit", "mixed"]
    figures = json.loads(lines[-1])
    rows = figures["rows"]
    assert set(rows) == {*bench_load.ROUTES, "mixed"}
    for route in bench_load.ROUTES:
        assert rows[route]["errors"] == 0, route
        if rows[route]["n"]:  # on a busy machine a slow route may finish no call in 2 s
            assert 0 < rows[route]["p50"] <= rows[route]["p95"], route
    assert rows["mixed"]["n"] > 0 and figures["reference_req_per_s"] > 0
    assert rows["mixed"]["n"] == sum(rows[r]["n"] for r in bench_load.ROUTES)
    assert rows["mixed"]["req/s"] == pytest.approx(rows["mixed"]["n"] / 2)
    assert not figures["ran_out"]
    # no event lost or stored twice: counted over the whole run, rows read after the drain
    assert figures["event_rows"] > 0
    assert figures["events_sent_ok"] == figures["events_answered_stored"] == figures["event_rows"]
    assert "rows in the database (equal)" in out


def test_refuses_non_loopback() -> None:
    with pytest.raises(SystemExit, match="only targets loopback"):
        bench_load.main(["--url", "http://example.com:8000", "--target-db-url", "sqlite://"])
    with pytest.raises(SystemExit, match="only targets loopback"):
        bench_load.check_loopback("http://10.0.0.5/")
    bench_load.check_loopback("http://127.0.0.1:9/")
    bench_load.check_loopback("http://[::1]:9/")
