"""scripts/bench_cli.py: times real child processes of the CLI and names a failing one."""

from __future__ import annotations

import sys

import pytest

from scripts import bench_cli


def test_times_the_root_help(capsys: pytest.CaptureFixture[str]) -> None:
    bench_cli.main(["--runs", "1", "--only", "root", "db upgrade"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["command", "wall", "s", "cpu", "s", "MiB"]
    rows = {line.rsplit(None, 3)[0]: line.rsplit(None, 3)[1:] for line in out[1:3]}
    assert set(rows) == {"dataengine --help", "dataengine db upgrade --help"}
    for wall, cpu, mib in rows.values():
        assert float(wall) > 0 and float(cpu) > 0 and float(mib) > 10
    assert out[3].startswith("slowest: ") and "target 1 s" in out[3]


def test_every_command_path_is_listed() -> None:
    paths = bench_cli.command_paths()
    assert [] in paths
    assert ["db", "upgrade"] in paths
    assert ["ingest"] in paths
    assert len(paths) > 15


def test_a_failing_command_stops_the_run_with_its_error() -> None:
    with pytest.raises(SystemExit, match=r"(?s)no-such-command exited 2: .*No such command"):
        bench_cli.run_once([sys.executable, "-m", "scripts.cli"], ["no-such-command"])
