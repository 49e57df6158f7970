"""The `dataengine` CLI: --help on every command (and what it imports), --version, --json,
one-line errors with exit codes, the short-option table, db upgrade and the foundation commands."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
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
    Image.new("RGB", (40, 32), (9, 9, 9)).save(photos / "a.png")
    (photos / "bad.jpg").write_text("nope")
    (photos / os.fsdecode(b"[bold]\xff.jpg")).write_text("no!")  # markup, not UTF-8
    (photos / ".DS_Store").write_bytes(b"\x00\x01")
    result = runner.invoke(app, ["ingest", str(photos), "--project", "p"])
    assert result.exit_code == 0, result.output
    assert "rejected: not an image" in result.output and "skipped: hidden" in result.output
    assert "[bold]\\xff.jpg: not an image" in result.output.replace("\n", "")
    assert re.search(r"total entries walked\W+4\b", result.output), result.output
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


# --- start-up cost: --help imports nothing heavy ------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
HEAVY = (
    "torch",
    "matplotlib",
    "cv2",
    "sklearn",
    "fastapi",
    "pycocotools",
    "sqlalchemy",
    "numpy",
    "scipy",
    "skimage",
    "alembic",
    "PIL",
    "pydantic_settings",  # the settings: loaded only when a command runs
    "typer.rich_utils",  # rich help rendering (rich_markup_mode=None)
)  # not pydantic: typer itself loads it to coerce the value of a group's --help option
_PROBE = """
import json, sys
from scripts.cli import main
argvs, heavy_names, report = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
for argv in argvs:
    sys.argv = ["dataengine", *argv]
    try:
        main()
    except SystemExit as done:
        if done.code not in (0, None):
            raise SystemExit(f"{argv}: exit {done.code}")
heavy = sorted(name for name in heavy_names if name in sys.modules)
with open(report, "w") as fh:
    json.dump(heavy, fh)
"""


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATAENGINE_DATABASE_URL"}
    env.update({"PYTHONPATH": str(ROOT), "COLUMNS": "200", **extra})
    return env


def test_help_of_every_command_imports_no_heavy_library(tmp_path: Path) -> None:
    """`dataengine --help`, `--version` and every `<cmd> --help`, run through the real entry
    point in a fresh interpreter, import none of torch, SQLAlchemy, the settings & co."""
    argvs = [["--help"], ["--version"]] + [[*p, "--help"] for p in _all_command_paths() if p]
    report = tmp_path / "heavy.json"
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(argvs), json.dumps(HEAVY), str(report)],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(report.read_text()) == []
    assert "Usage" in proc.stdout and "dataengine 0" in proc.stdout


def test_only_help_tells_help_and_version_from_commands() -> None:
    from scripts.cli import only_help

    for argv in ([], ["--help"], ["-V"], ["--version"], ["db", "upgrade", "--help"]):
        assert only_help(argv), argv
    for argv in (["db", "upgrade"], ["ingest", "photos", "-p", "x"], ["help"]):
        assert not only_help(argv), argv


def test_version_is_the_package_metadata() -> None:
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"dataengine {version('dataengine')}"


def test_names_spelled_out_for_help_match_their_sources() -> None:
    from db.models import ROLES
    from engine.interop.importers import IMPORTERS
    from engine.segment.sam.models import MODELS
    from scripts.commands.interop import IMPORT_FORMATS
    from scripts.commands.models import MODEL_NAMES
    from scripts.commands.user import ROLE_NAMES

    assert tuple(ROLES) == ROLE_NAMES
    assert (*IMPORTERS, "label-studio-brush") == IMPORT_FORMATS  # brush files: their own path
    assert tuple(MODELS) == MODEL_NAMES


# --- one option table for every command ---------------------------------------------------

SHORT = {"--project": "-p", "--out": "-o", "--format": "-f", "--backend": "-b", "--json": "-j"}
REPORTING = [
    ["db", "upgrade"],
    ["db", "current"],
    ["project", "create"],
    ["project", "labels"],
    ["project", "list"],
    ["ingest"],
    ["user", "add"],
    ["user", "list"],
    ["user", "token"],
    ["user", "passwd"],
    ["models", "list"],
    ["models", "download"],
    ["prefill"],
    ["embed"],
    ["round", "start"],
    ["round", "list"],
    ["metrics"],
    ["calibrate"],
    ["finetune-decoder"],
    ["report"],
    ["curate", "auto"],
    ["curate", "agreement"],
    ["curate", "train-ranker"],
    ["curate", "settings"],
    ["export"],
    ["import"],
    ["backup"],
    ["worker", "status"],
]


def _command(path: list[str]) -> Any:
    cmd: Any = typer.main.get_command(app)
    for word in path:
        cmd = cmd.commands[word]
    return cmd


def test_short_options_are_the_same_everywhere() -> None:
    checked = 0
    for path in _all_command_paths():
        for param in getattr(_command(path), "params", []):
            opts = set(getattr(param, "opts", [])) | set(getattr(param, "secondary_opts", []))
            for long, short in SHORT.items():
                if long in opts:
                    assert short in opts, f"dataengine {' '.join(path)}: {long} lacks {short}"
                    checked += 1
    assert checked >= 30


def test_every_reporting_command_has_json() -> None:
    for path in REPORTING:
        opts = {o for p in _command(path).params for o in getattr(p, "opts", [])}
        assert "--json" in opts, f"dataengine {' '.join(path)} has no --json"


# --- --json: one JSON document on stdout -----------------------------------------------------


def _json(args: list[str]) -> Any:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (args, result.output)
    return json.loads(result.stdout)


@pytest.fixture
def db_env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DATAENGINE_DATABASE_URL", db_url)
    monkeypatch.setenv("DATAENGINE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_json_outputs_of_the_main_commands(db_env: Path, shared_data: Path) -> None:
    from PIL import Image

    photos = db_env / "photos"
    photos.mkdir()
    for name in ("astronaut.jpg", "dog.jpg"):
        with Image.open(shared_data / "samples" / name) as im:
            im.convert("RGB").resize((96, 72)).save(photos / f"{Path(name).stem}.png")
    (photos / "bad.jpg").write_text("nope")

    up = _json(["db", "upgrade", "--json"])
    assert up["revision"] == up["code"] and up["revision"]
    assert _json(["db", "current", "-j"])["up_to_date"] is True
    made = _json(["project", "create", "p", "--labels", "person,dog", "--json"])
    assert made["name"] == "p" and made["labels"] == ["person", "dog"]

    ingested = _json(["ingest", str(photos), "-p", "p", "--json"])
    assert ingested["added"] == 2 and ingested["duplicates"] == 0
    assert ingested["rejected"] == {"not an image": 1}
    assert ingested["rejected_files"][0]["path"].endswith("bad.jpg")
    again = _json(["ingest", str(photos), "-p", "p", "-j"])
    assert again["added"] == 0 and again["duplicates"] >= 2

    listed = _json(["project", "list", "--json"])
    assert [(p["name"], p["images_ok"], p["rejected"]) for p in listed] == [("p", 2, 1)]
    user = _json(["user", "add", "ann", "--role", "annotator", "--json"])
    assert user["role"] == "annotator" and len(user["password"]) >= 8
    assert [u["name"] for u in _json(["user", "list", "--json"])] == ["ann"]

    filled = _json(["prefill", "-p", "p", "-b", "classical", "--json"])
    assert filled["done"] == 2 and filled["failed"] == 0 and filled["proposals"] > 0
    assert filled["confident"] <= filled["proposals"]

    curated = _json(["curate", "auto", "-p", "p", "--json"])
    assert curated["images"] == 2 and curated["passed"] + curated["failed"] == 2
    assert curated["rules"] == "default"
    assert _json(["curate", "settings", "-p", "p", "--json"])["overlap_fraction"] >= 0

    rounds = _json(["round", "list", "-p", "p", "--json"])
    assert isinstance(rounds, list)
    m = _json(["metrics", "-p", "p", "--reps", "20", "-j"])
    assert "groups" in m and "idle_s" in m

    out = db_env / "coco"
    exported = _json(["export", "-p", "p", "-f", "coco", "-o", str(out), "--include", "all", "-j"])
    assert exported["format"] == "coco" and Path(exported["out"]) == out
    assert len(exported["manifest_sha256"]) == 64
    coco_files = sorted(out.rglob("*.json"))
    ann_file = next(f for f in coco_files if "annotations" in json.loads(f.read_text()))
    imported = _json(
        ["import", "-f", "coco", str(ann_file), "-p", "q", "--images", str(photos), "--json"]
    )
    assert imported["files"] == 1 and imported["files_rejected"] == 0
    assert imported["file_outcomes"][0]["status"] == "imported"
    models = _json(["models", "list", "--json"])
    assert set(models) == {"vit_t", "vit_b", "vit_l", "vit_h"}


def test_json_mode_sends_tables_and_progress_to_stderr(db_env: Path) -> None:
    from PIL import Image

    runner.invoke(app, ["db", "upgrade"])
    Image.new("RGB", (64, 48), (200, 9, 9)).save(db_env / "red.png")
    result = runner.invoke(app, ["ingest", str(db_env / "red.png"), "-p", "p", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["added"] == 1  # nothing but the document on stdout
    human = runner.invoke(app, ["project", "list"])
    assert "images ok" in human.stdout, "the console is back on stdout after a --json command"


# --- one-line errors: missing paths, unreachable database --------------------------------------


def _cli(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The real entry point (``main``) in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "scripts.cli", *args],
        cwd=cwd,
        env=_clean_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_missing_paths_exit_1_with_one_line(tmp_path: Path) -> None:
    env = {"DATAENGINE_DATA_DIR": str(tmp_path / "var")}
    assert _cli(["db", "upgrade"], tmp_path, **env).returncode == 0
    (tmp_path / "ok").mkdir()
    cases = [
        ["ingest", str(tmp_path / "ok"), str(tmp_path / "nope"), "-p", "p"],
        ["import", "-f", "coco", str(tmp_path / "nope.json"), "-p", "p"],
        ["curate", "auto", "-p", "p", "--rules", str(tmp_path / "nope.toml")],
    ]
    for args in cases:
        proc = _cli(args, tmp_path, **env)
        assert proc.returncode == 1, (args, proc.stderr)
        line = _one_line_error(proc)
        assert "nope" in line, line
    listed = _cli(["project", "list", "--json"], tmp_path, **env)
    assert json.loads(listed.stdout) == [], "a refused ingest created nothing"


@pytest.mark.parametrize(
    "args", [["project", "list"], ["db", "upgrade"], ["db", "current"], ["ingest", ".", "-p", "x"]]
)
def test_unreachable_database_exit_3_with_one_line(tmp_path: Path, args: list[str]) -> None:
    url = "postgresql+psycopg://postgres:s3cret@127.0.0.1:1/nowhere"
    proc = _cli(args, tmp_path, DATAENGINE_DATABASE_URL=url)
    assert proc.returncode == 3, proc.stderr
    line = _one_line_error(proc)
    assert line.startswith(
        "error: cannot reach the database at postgresql+psycopg://postgres:***@127.0.0.1:1/nowhere: "
    ), line
    assert "s3cret" not in proc.stderr


@pytest.mark.parametrize("args", [["project", "list"], ["db", "upgrade"]])
def test_unusable_sqlite_path_exit_3_with_one_line(tmp_path: Path, args: list[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = _cli(args, tmp_path, DATAENGINE_DATABASE_URL=f"sqlite:///{blocker}/x.db")
    assert proc.returncode == 3, proc.stderr
    assert _one_line_error(proc).startswith(
        f"error: cannot reach the database at sqlite:///{blocker}"
    )


def _photos(tmp_path: Path, n: int = 2) -> Path:
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(n):
        Image.new("RGB", (48, 32), (40 * i, 90, 200 - 40 * i)).save(photos / f"{i}.png")
    return photos


def test_up_and_first_prefill_open_round_one(env: Path, tmp_path: Path) -> None:
    from sqlalchemy import select

    from db.models import Round
    from db.session import make_engine, make_session_factory
    from engine.settings import Settings

    photos = _photos(tmp_path)
    result = runner.invoke(app, ["up", str(photos), "--project", "demo", "--no-serve",
                                 "--password", "demo-admin-walrus-42"])  # fmt: skip
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

    from db.models import Event, Image, Lease, utcnow
    from db.session import make_engine, make_session_factory, transaction
    from engine.settings import Settings
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


def test_import_as_proposals_gives_a_prefilled_image(db_env: Path) -> None:
    from PIL import Image

    from engine.interop.dense_coco import dense_coco

    runner.invoke(app, ["db", "upgrade"])
    Image.new("RGB", (120, 80), (90, 120, 30)).save(db_env / "field.png")
    doc = dense_coco("field.png", 120, 80, n=9)
    for ann in doc["annotations"]:
        ann.pop("score")
    (db_env / "dense.json").write_text(json.dumps(doc))
    bad = runner.invoke(
        app, ["import", "-f", "labelme", str(db_env / "dense.json"), "-p", "d", "--as-proposals"]
    )
    assert bad.exit_code == 1 and "--as-proposals reads COCO files only" in bad.output
    bad = runner.invoke(app, ["import", "-f", "coco", "x", "-p", "d", "--score", "3"])
    assert bad.exit_code == 1 and "--score must be between 0 and 1" in bad.output
    out = _json(
        ["import", "-f", "coco", str(db_env / "dense.json"), "-p", "d", "--images", str(db_env)]
        + ["--as-proposals", "--score", "0.93", "--json"]
    )
    assert out["masks"] == 9 and out["files_rejected"] == 0
    from db.models import Mask
    from db.session import make_engine, make_session_factory

    engine = make_engine(os.environ["DATAENGINE_DATABASE_URL"])
    try:
        with make_session_factory(engine)() as s:
            rows = s.query(Mask).all()
            assert {(m.source, m.status, m.confident, m.predicted_iou) for m in rows} == {
                ("model", "proposed", True, 0.93)
            }
    finally:
        engine.dispose()


def test_label_studio_import_options_fail_with_one_line(tmp_path: Path) -> None:
    env = {"DATAENGINE_DATA_DIR": str(tmp_path / "var")}
    assert _cli(["db", "upgrade"], tmp_path, **env).returncode == 0
    (tmp_path / "brush").mkdir()
    export = tmp_path / "export.json"
    export.write_text("[]")
    (tmp_path / "one-task.json").write_text("{}")
    cases = {
        "--tasks EXPORT.json or --ls-url": ["-f", "label-studio-brush", str(tmp_path / "brush")],
        "--ls-url and --ls-token go together": [
            "-f", "label-studio", str(export), "--ls-url", "http://127.0.0.1:9",
        ],
        "expected a list of tasks": [
            "-f", "label-studio-brush", str(tmp_path / "brush"), "--tasks", str(tmp_path / "one-task.json"),
        ],
        "no such --tasks file: ": [
            "-f", "label-studio-brush", str(tmp_path / "brush"), "--tasks", str(tmp_path / "nope.json"),
        ],
    }  # fmt: skip
    for want, args in cases.items():
        proc = _cli(["import", *args, "-p", "p"], tmp_path, **env)
        assert proc.returncode == 1, (args, proc.stderr)
        assert want in _one_line_error(proc)
        assert proc.stdout == "", "refused before the progress bar starts"


def test_ingest_manifest_and_http_uris(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import functools
    import http.server
    import threading

    monkeypatch.setenv("DATAENGINE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("DATAENGINE_DATA_DIR", str(tmp_path / "var"))
    photos = _photos(tmp_path, 2)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(photos))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
        manifest = tmp_path / "uris.csv"
        manifest.write_text(f"uri\n{base}/0.png\n{base}/missing.png\n")
        got = _json(["ingest", "--manifest", str(manifest), "-p", "p", "--workers", "2", "-j"])
        assert got["added"] == 1 and got["rejected"] == {"unreadable": 1}
        got = _json(["ingest", f"{base}/1.png", f"file://{photos}/0.png", "-p", "p", "-j"])
        assert got["added"] == 1 and got["duplicates"] == 1  # file:// 0.png: the same bytes
        bad = runner.invoke(app, ["ingest", "--manifest", str(tmp_path / "m.txt"), "-p", "p"])
        assert bad.exit_code == 1 and "unknown manifest format" in bad.output
        assert runner.invoke(app, ["ingest", "-p", "p"]).exit_code == 2  # nothing to ingest
    finally:
        server.shutdown()
        server.server_close()
