"""The ``--ray`` options of `dataengine prefill` and `dataengine embed`: bad values exit 1
with the reason, before any cluster or database is reached."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from scripts.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--address", "auto"], "--address needs --ray"),
        (["--ray", "--actors", "0"], "--actors must be >= 1"),
        (["--ray", "--batch-size", "0"], "--batch-size must be >= 1"),
    ],
)
def test_option_errors_exit_1(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATAENGINE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.chdir(tmp_path)
    for command in ("prefill", "embed"):
        result = runner.invoke(app, [command, "-p", "p", *args])
        assert result.exit_code == 1, result.output
        assert message in result.output
