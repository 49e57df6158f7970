"""`dataengine round start|list`, and `calibrate` / `finetune-decoder` refusing a project with
no model version, each with one line naming the option to pass."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from scripts.cli import app

runner = CliRunner()


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (args, result.output)
    return result.stdout


def test_rounds_start_close_and_list(cli_db: str) -> None:
    _ok(["project", "create", "p"])
    first = json.loads(_ok(["round", "start", "-p", "p", "--control-fraction", "0.5",
                            "--seed", "3", "-j"]))  # fmt: skip
    assert first == {"project": "p", "round": 1, "model_version_id": None,
                     "control_fraction": 0.5, "seed": 3}  # fmt: skip
    said = _ok(["round", "start", "-p", "p"])
    assert "round 2 of 'p' started: model version None, control fraction 0.2 (seed 0)" in said
    rounds = json.loads(_ok(["round", "list", "-p", "p", "--json"]))
    assert [(r["round"], r["seed"]) for r in rounds] == [(1, 3), (2, 0)]
    assert rounds[0]["ended_at"] is not None and rounds[1]["ended_at"] is None
    table = _ok(["round", "list", "-p", "p"])
    assert "open" in table and "0.50" in table
    missing = runner.invoke(app, ["round", "start", "-p", "p", "--model-version", "999"])
    assert missing.exit_code == 1 and "no model version 999" in missing.output


def test_calibrate_and_finetune_without_a_model_version(cli_db: str) -> None:
    _ok(["project", "create", "p"])
    cases = {
        ("calibrate", "-p", "p"): "pass --model-version, or start a round with one",
        ("calibrate", "-p", "p", "--model-version", "42"): "no model version with id 42",
        ("finetune-decoder", "-p", "p"): "no SAM model version to fine-tune: pass --model-version",
        ("round", "list", "-p", "nope"): "no project 'nope'",
    }
    for args, want in cases.items():
        result = runner.invoke(app, list(args))
        assert result.exit_code == 1, (args, result.output)
        assert want in result.output.replace("\n", " ") and "Traceback" not in result.output
