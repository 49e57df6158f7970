"""The `dataengine` CLI: --help on every command, db upgrade, and the foundation commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from scripts.cli import app

runner = CliRunner()


def _all_command_paths() -> list[list[str]]:
    root = typer.main.get_command(app)
    paths: list[list[str]] = []

    def walk(cmd: Any, prefix: list[str]) -> None:
        paths.append(prefix)
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, [*prefix, name])

    walk(root, [])
    return paths


def test_every_command_has_help() -> None:
    paths = _all_command_paths()
    assert len(paths) > 10
    for path in paths:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage" in result.output


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DATAENGINE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("DATAENGINE_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env
    return tmp_path


def test_commands_refuse_a_database_that_is_behind(env: Path) -> None:
    result = runner.invoke(app, ["project", "list"])
    assert result.exit_code == 1
    assert "dataengine db upgrade" in result.output


def test_upgrade_then_ingest_and_users(env: Path, tmp_path: Path) -> None:
    from PIL import Image

    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0  # idempotent
    assert runner.invoke(app, ["db", "current"]).exit_code == 0
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (32, 24), (9, 9, 9)).save(photos / "a.png")
    (photos / "bad.jpg").write_text("nope")
    result = runner.invoke(app, ["ingest", str(photos), "--project", "p"])
    assert result.exit_code == 0, result.output
    assert "added" in result.output and "rejected: not an image" in result.output
    result = runner.invoke(
        app, ["user", "add", "ann", "--role", "annotator", "--password", "ann-secret-pw-7"]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, ["user", "add", "ann", "--role", "annotator", "--password", "ann-secret-pw-7"]
    )
    assert result.exit_code == 1 and "already exists" in result.output
    result = runner.invoke(app, ["user", "add", "x", "--role", "boss"])
    assert result.exit_code == 1 and "unknown role" in result.output
    result = runner.invoke(app, ["project", "list"])
    assert result.exit_code == 0 and "p" in result.output
