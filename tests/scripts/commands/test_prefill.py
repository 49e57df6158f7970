"""`dataengine prefill --ray` and `dataengine embed --ray` through the CLI (SQLite and
PostgreSQL, a local Ray cluster started once for the module); the option errors are in
``test_ray_options``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from typer.testing import CliRunner

from scripts.cli import app

runner = CliRunner()

try:
    import ray
except ImportError:
    if os.environ.get("CI") == "1":
        raise
    pytest.skip("Ray is not installed: pip install -e '.[ray]'", allow_module_level=True)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    from engine.flywheel.ray_cluster import connect

    yield connect(num_cpus=2)
    ray.shutdown()


@pytest.fixture
def db_env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DATAENGINE_DATABASE_URL", db_url)
    monkeypatch.setenv("DATAENGINE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.chdir(tmp_path)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(4):
        im = Image.new("RGB", (64 + i, 48), (30 * i, 90, 200 - 30 * i))
        im.paste((250, 250, 250), (10, 10, 30 + i, 30))
        im.save(photos / f"{i}.png")
    assert runner.invoke(app, ["ingest", str(photos), "-p", "p"]).exit_code == 0
    return tmp_path


def _json(args: list[str]) -> Any:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (args, result.output)
    return json.loads(result.stdout)


def test_prefill_and_embed_on_ray(cluster: Any, db_env: Path) -> None:
    ray_args = ["--ray", "--actors", "1", "--batch-size", "2"]
    first = _json(["prefill", "-p", "p", "-b", "classical", *ray_args, "--json"])
    assert (first["done"], first["failed"], first["skipped"], first["total"]) == (4, 0, 0, 4)
    assert first["proposals"] > 0
    again = _json(["prefill", "-p", "p", "-b", "classical", *ray_args, "--json"])
    assert (again["done"], again["skipped"]) == (0, 4)
    assert ray.is_initialized()  # the command left the process's own connection alone

    embedded = _json(["embed", "-p", "p", "-b", "classical", *ray_args, "--json"])
    assert (embedded["embedded"], embedded["cached"], embedded["failed"]) == (4, 0, 0)
    assert any((db_env / "var" / "cache").rglob("*")), "the actors wrote the cache folder"
    cached = _json(["embed", "-p", "p", "-b", "classical", *ray_args, "--json"])
    assert (cached["embedded"], cached["cached"]) == (0, 4)
