"""`dataengine project`: create, labels (replace the taxonomy) and list, text and --json."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from scripts.cli import app

runner = CliRunner()


def test_labels_replace_the_taxonomy(cli_db: str) -> None:
    assert runner.invoke(app, ["project", "create", "p", "--labels", "dog"]).exit_code == 0
    result = runner.invoke(app, ["project", "labels", "p", "cat, car ,bus"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "p: cat, car, bus"
    result = runner.invoke(app, ["project", "labels", "p", "cat,dog", "--json"])
    assert json.loads(result.stdout) == {"name": "p", "labels": ["cat", "dog"]}
    listed = json.loads(runner.invoke(app, ["project", "list", "-j"]).stdout)
    assert [(p["name"], p["labels"]) for p in listed] == [("p", ["cat", "dog"])]


def test_unknown_project_and_duplicate_name_fail_with_one_line(cli_db: str) -> None:
    result = runner.invoke(app, ["project", "labels", "nope", "a,b"])
    assert result.exit_code == 1 and "nope" in result.output
    assert "Traceback" not in result.output
    assert runner.invoke(app, ["project", "create", "p"]).exit_code == 0
    again = runner.invoke(app, ["project", "create", "p"])
    assert again.exit_code == 1 and "error:" in again.output
