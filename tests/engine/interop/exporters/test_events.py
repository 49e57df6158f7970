"""`dataengine export --format events`: the raw log and per-image effort as JSONL and Parquet,
read back with json / pyarrow, every column documented, keyset pages, never partial."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from db.errors import InvalidInput
from db.projects import get_project
from db.session import transaction
from engine.flywheel import events as ek
from engine.flywheel.effort import derive_effort
from engine.flywheel.effort_loader import image_effort
from engine.interop.exporters.atomic import write_atomically
from engine.interop.exporters.events import EFFORT_COLUMNS, EVENT_COLUMNS, export_events
from tests.engine.flywheel.test_effort_loader import World
from tests.factories import make_image, make_mask

DOCS = Path(__file__).resolve().parents[4] / "docs" / "effort.md"


def build(factory: sessionmaker[Session]) -> dict[str, Any]:
    with transaction(factory) as s:
        w = World(s)
        r1 = w.round()
        a, b = make_image(s, project=w.project), make_image(s, project=w.project)
        m = make_mask(s, image=a, source="human", status="accepted")
        la = w.lease(a, r1, done=True, arm="control")
        w.log(a, la, [
            (0, ek.IMAGE_OPEN), (2000, ek.PROMPT_CLICK, None, True, {"x": 1.0, "y": 2.0}),
            (5000, ek.OBJECT_COMMIT, m.id, True, {"parent_id": None}),
            (50000, ek.MASK_SELECT, m.id), (51000, ek.SUBMIT),
            (60000, ek.VISIBILITY, None, False),
        ])  # fmt: skip
        lb = w.lease(b, None, done=False)
        w.log(b, lb, [(0, ek.IMAGE_OPEN), (4000, ek.MASK_SELECT)])
        return {"project": w.project.name, "a": a.id, "b": b.id, "mask": m.id,
                "user": w.user.name, "lease_a": la.id}  # fmt: skip


def _cli(db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *args: str) -> Any:
    import scripts.commands.export as export_module
    from scripts.cli import app

    made = []
    real_open_db = export_module.open_db
    monkeypatch.setattr(
        export_module, "open_db", lambda st: made.append(real_open_db(st)) or made[-1]
    )
    monkeypatch.setenv("DATAENGINE_DATABASE_URL", db_url)
    monkeypatch.chdir(tmp_path)
    try:
        return CliRunner().invoke(app, ["export", *args])
    finally:
        for f in made:
            f.kw["bind"].dispose()


def _read(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_export_events_both_formats(
    fmt: str, factory: sessionmaker[Session], db_url: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    ids = build(factory)
    out = tmp_path / "ev"
    r = _cli(db_url, monkeypatch, tmp_path, "-p", ids["project"], "-f", "events", "-o", str(out),
             "--events-format", fmt, "--idle-seconds", "10")  # fmt: skip
    assert r.exit_code == 0, r.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"events": 8, "images": 2} and manifest["idle_s"] == 10.0
    events = _read(out / f"events.{fmt}")
    assert len(events) == 8 and set(events[0]) == set(EVENT_COLUMNS)
    assert [e["event_id"] for e in events] == sorted(e["event_id"] for e in events)
    click = next(e for e in events if e["kind"] == ek.PROMPT_CLICK)
    payload = click["payload"] if fmt == "jsonl" else json.loads(click["payload"])
    assert payload == {"x": 1.0, "y": 2.0}
    assert (click["round"], click["arm"], click["user_name"], click["lease_id"]) == (
        1, "control", ids["user"], ids["lease_a"],
    )  # fmt: skip
    assert click["lease_stage"] == "annotate" and click["lease_completed"] is True
    b_rows = [e for e in events if e["image_id"] == ids["b"]]
    assert {(e["round"], e["lease_completed"]) for e in b_rows} == {(None, False)}
    effort = {row["image_id"]: row for row in _read(out / f"image_effort.{fmt}")}
    assert set(effort[ids["a"]]) == set(EFFORT_COLUMNS)
    with factory() as s:
        want = image_effort(s, image_id=ids["a"], idle_s=10.0).per_image[ids["a"]]
    assert effort[ids["a"]]["seconds"] == want == 2 + 3 + 10 + 1  # 45 s gap capped at 10
    assert (effort[ids["a"]]["finished"], effort[ids["b"]]["finished"]) == (True, False)
    assert effort[ids["a"]]["objects"] == 1 and effort[ids["a"]]["object_cost_s"] == 3.0
    # a researcher recomputes from the exported rows with the same (or their own) rules
    mine = [{**e, "client_time": e["client_time_ms"]} for e in events if e["image_id"] == ids["a"]]
    assert derive_effort(mine, idle_s=10.0).per_image[ids["a"]] == want
    assert derive_effort(mine, idle_s=60.0).per_image[ids["a"]] == 51.0


def test_every_column_is_documented() -> None:
    text = DOCS.read_text()
    for name in (*EVENT_COLUMNS, *EFFORT_COLUMNS):
        assert f"`{name}`" in text, name


def test_keyset_pages_give_the_same_rows_and_bad_options_leave_nothing(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    ids = build(factory)
    outs = {}
    for page in (3, 5000):
        out = tmp_path / f"p{page}"
        with transaction(factory) as s:
            p = get_project(s, name=ids["project"])
            write_atomically(out, lambda tmp, p=p, page=page: export_events(
                s, project=p, out=tmp, options={"page": page}))  # fmt: skip
        outs[page] = (out / "events.jsonl").read_text()
    assert outs[3] == outs[5000] and len(outs[3].splitlines()) == 8
    for bad in ({"events_format": "csv"}, {"idle_seconds": 0}):
        with transaction(factory) as s, pytest.raises(InvalidInput, match="events format|idle"):
            p = get_project(s, name=ids["project"])
            write_atomically(tmp_path / "bad", lambda tmp, p=p, bad=bad: export_events(
                s, project=p, out=tmp, options=bad))  # fmt: skip
        assert not (tmp_path / "bad").exists() and not list(tmp_path.glob(".bad.*"))
