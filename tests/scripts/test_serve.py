"""`dataengine serve`: the Prometheus multiprocess folder for several worker processes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scripts.commands.serve import prepare_multiprocess_metrics
from tests.webapp import settings_for


def test_multiprocess_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # setenv first so that monkeypatch restores the original (absent) value afterwards,
    # also undoing what prepare_multiprocess_metrics writes into os.environ
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "placeholder")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    settings = settings_for("sqlite://", tmp_path / "var")
    assert prepare_multiprocess_metrics(settings, 1) is None  # one process: in memory
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ

    stale = tmp_path / "var" / "prometheus" / "counter_123.db"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old run")
    folder = prepare_multiprocess_metrics(settings, 3)
    assert folder == stale.parent.resolve() and not stale.exists()
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(folder)

    mine = tmp_path / "ops-owned"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(mine))
    assert prepare_multiprocess_metrics(settings, 3) == mine  # the operator's folder, untouched


def test_environment_is_restored() -> None:
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ  # runs after the test above


def test_default_workers_is_one_per_usable_core() -> None:
    from scripts.commands.serve import default_workers

    assert default_workers() == len(os.sched_getaffinity(0)) >= 1
