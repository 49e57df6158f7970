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
        app, ["user", "add", "ann", "--role", "annotator", "--password", "12345678"]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, ["user", "add", "ann", "--role", "annotator", "--password", "12345678"]
    )
    assert result.exit_code == 1 and "already exists" in result.output
    result = runner.invoke(app, ["user", "add", "x", "--role", "boss"])
    assert result.exit_code == 1 and "unknown role" in result.output
    result = runner.invoke(app, ["project", "list"])
    assert result.exit_code == 0 and "p" in result.output


def _photos(tmp_path: Path, n: int = 2) -> Path:
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(n):
        Image.new("RGB", (48, 32), (40 * i, 90, 200 - 40 * i)).save(photos / f"{i}.png")
    return photos


def test_up_and_first_prefill_open_round_one(env: Path, tmp_path: Path) -> None:
    from sqlalchemy import select

    from annotator_ui.settings import Settings
    from db.models import Round
    from db.session import make_engine, make_session_factory

    photos = _photos(tmp_path)
    result = runner.invoke(app, ["up", str(photos), "--project", "demo", "--no-serve",
                                 "--password", "pw-12345678"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "round 1 opened" in result.output
    result = runner.invoke(app, ["prefill", "--project", "demo"])  # a second pre-fill
    assert result.exit_code == 0, result.output
    engine = make_engine(Settings().resolved_database_url)
    with make_session_factory(engine)() as s:
        rounds = s.scalars(select(Round)).all()
    engine.dispose()
    assert [(r.number, r.ended_at, r.control_fraction) for r in rounds] == [(1, None, 0.0)]
    assert rounds[0].model_version_id is not None
    result = runner.invoke(app, ["metrics", "--project", "demo", "--idle-seconds", "5"])
    assert result.exit_code == 0, result.output
    assert "idle cap 5.0 s" in result.output and "no annotation work recorded yet" in result.output
    result = runner.invoke(app, ["metrics", "--project", "demo", "--idle-seconds", "0"])
    assert result.exit_code == 1 and "must be positive" in result.output


def test_metrics_show_work_done_without_a_round(env: Path, tmp_path: Path) -> None:
    import datetime as dt
    import json

    from annotator_ui.settings import Settings
    from db.models import Event, Image, Lease, utcnow
    from db.session import make_engine, make_session_factory, transaction
    from tests.factories import make_user

    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    assert (
        runner.invoke(app, ["ingest", str(_photos(tmp_path, 1)), "--project", "p"]).exit_code == 0
    )
    engine = make_engine(Settings().resolved_database_url)
    with transaction(make_session_factory(engine)) as s:
        image = s.query(Image).one()
        user = make_user(s)
        now = utcnow()
        lease = Lease(image_id=image.id, user_id=user.id, stage="annotate", completed_at=now,
                      expires_at=now + dt.timedelta(minutes=5))  # fmt: skip
        s.add(lease)
        s.flush()
        for seq, (t, kind) in enumerate([(0, "image_open"), (50000, "mask_select"),
                                         (52000, "submit")]):  # fmt: skip
            s.add(Event(uuid=f"cli-no-round-{seq}", user_id=user.id, image_id=image.id,
                        lease_id=lease.id, session_id="s", seq=seq, kind=kind, client_time=t))  # fmt: skip
    engine.dispose()
    result = runner.invoke(app, ["metrics", "--project", "p"])
    assert result.exit_code == 0, result.output
    assert "no round" in result.output and "dataengine round start --project p" in " ".join(
        result.output.split()
    )
    result = runner.invoke(app, ["metrics", "--project", "p", "--json", "--idle-seconds", "10"])
    m = json.loads(result.output)
    assert [(g["round"], g["images_done"], g["active_seconds"]) for g in m["groups"]] == [
        (None, 1, 12.0)
    ]
    report = tmp_path / "r.html"
    result = runner.invoke(app, ["report", "--project", "p", "--out", str(report), "--reps", "20",
                                 "--idle-seconds", "10"])  # fmt: skip
    assert result.exit_code == 0, result.output
    page = report.read_text()
    assert "<td>no round</td>" in page and "Idle cap 10.0 s" in page
    assert "dataengine round start" in page
