"""docker-compose.yml parses, every service's command exists in the CLI (or is Ray's), and the
profiles (GPU worker, Ray head + workers), restart policies and the app healthcheck are there."""

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
        if name == "postgres" or name.startswith("ray-"):
            continue
        assert command and command[0] == "dataengine", name
        cmd = _resolve(command[1:])
        options = {o for p in cmd.params for o in getattr(p, "opts", [])}
        for word in command[1:]:
            if word.startswith("--"):
                assert word in options, f"{name}: {word} is not an option of {command}"
        checked += 1
    assert checked == 4  # migrate, app, worker, gpu-worker
    assert set(compose["volumes"]) >= {"data", "models"}


def test_dockerfile_runs_the_cli() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["dataengine", "serve"' in text


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_default_services_have_no_profile_and_extras_have_one() -> None:
    services = _compose()["services"]
    default = {n for n, s in services.items() if not s.get("profiles")}
    assert default == {"postgres", "migrate", "app", "worker"}
    assert services["gpu-worker"]["profiles"] == ["gpu"]
    assert services["ray-head"]["profiles"] == ["ray"]
    assert services["ray-worker"]["profiles"] == ["ray"]
    assert services["ray-gpu-worker"]["profiles"] == ["ray-gpu"]


def _gpu_devices(svc: dict[str, Any]) -> list[dict[str, Any]]:
    return svc.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])


def test_gpu_services_reserve_nvidia_gpus() -> None:
    services = _compose()["services"]
    for name in ("gpu-worker", "ray-gpu-worker"):
        devices = _gpu_devices(services[name])
        assert devices, f"{name} reserves no device"
        assert devices[0]["driver"] == "nvidia"
        assert devices[0]["capabilities"] == ["gpu"]
        assert services[name]["environment"]["DATAENGINE_DEVICE"] == "cuda"
        assert "cu" in services[name]["build"]["args"]["TORCH_INDEX"].rsplit("/", 1)[-1]
    gpu = services["gpu-worker"]
    assert gpu["environment"]["DATAENGINE_BACKEND"] == "sam"
    for name in ("app", "worker", "ray-head", "ray-worker"):
        assert not _gpu_devices(services[name]), f"{name} should not hold a GPU"


def test_ray_head_and_workers() -> None:
    services = _compose()["services"]
    head = services["ray-head"]["command"]
    assert head[:3] == ["ray", "start", "--head"]
    assert "--block" in head
    port = next(w.split("=", 1)[1] for w in head if w.startswith("--port="))
    for name in ("ray-worker", "ray-gpu-worker"):
        svc = services[name]
        cmd = svc["command"]
        assert cmd[:2] == ["ray", "start"] and "--block" in cmd
        assert f"--address=ray-head:{port}" in cmd
        assert svc["depends_on"]["ray-head"]["condition"] == "service_healthy"
    for name in ("ray-head", "ray-worker", "ray-gpu-worker"):
        svc = services[name]
        assert svc["build"]["args"]["DATAENGINE_EXTRAS"] == "[ray]"
        assert svc["environment"]["DATAENGINE_DATABASE_URL"].startswith("postgresql")
        assert "data:/data" in svc["volumes"]
    assert services["ray-head"]["healthcheck"]["test"][:2] == ["CMD", "ray"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "ARG DATAENGINE_EXTRAS" in dockerfile and "ARG TORCH_INDEX" in dockerfile


def test_restart_policies() -> None:
    services = _compose()["services"]
    for name, svc in services.items():
        if name == "migrate":
            assert svc["restart"] == "no", "the one-shot migration must not loop"
        else:
            assert svc.get("restart") == "unless-stopped", name


def test_app_healthcheck_calls_readyz() -> None:
    app_svc = _compose()["services"]["app"]
    check = app_svc["healthcheck"]
    assert check["test"][0] == "CMD"
    assert "/readyz" in " ".join(check["test"])
    port = app_svc["command"][app_svc["command"].index("--port") + 1]
    assert f"127.0.0.1:{port}/readyz" in " ".join(check["test"])
    assert {"interval", "timeout", "retries", "start_period"} <= set(check)


def test_readyz_route_exists() -> None:
    from annotator_ui.routes.health import router

    assert "/readyz" in {getattr(r, "path", None) for r in router.routes}
