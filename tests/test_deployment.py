"""docker-compose.yml parses, and every service's command exists in the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
import yaml

from scripts.cli import app

ROOT = Path(__file__).resolve().parents[1]


def _resolve(argv: list[str]) -> Any:
    cmd: Any = typer.main.get_command(app)
    for word in argv:
        if word.startswith("-"):
            break
        assert hasattr(cmd, "commands"), f"{argv}: {word!r} under a plain command"
        assert word in cmd.commands, f"{argv}: no CLI command {word!r}"
        cmd = cmd.commands[word]
    return cmd


def test_compose_parses_and_commands_exist() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "app", "worker"} <= set(services)
    assert "healthcheck" in services["postgres"]
    checked = 0
    for name, svc in services.items():
        command = svc.get("command")
        if name == "postgres":
            continue
        assert command and command[0] == "dataengine", name
        cmd = _resolve(command[1:])
        options = {o for p in cmd.params for o in getattr(p, "opts", [])}
        for word in command[1:]:
            if word.startswith("--"):
                assert word in options, f"{name}: {word} is not an option of {command}"
        checked += 1
    assert checked == 3
    assert set(compose["volumes"]) >= {"data", "models"}


def test_dockerfile_runs_the_cli() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["dataengine", "serve"' in text
