"""`dataengine import --format coco|labelme|label-studio|label-studio-brush PATH... --project P`: annotations in, whole files only."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from scripts.commands.common import (
    JsonFlag,
    console,
    domain_errors,
    fail,
    json_output,
    open_db,
    print_json,
    progress,
    require_paths,
)

if TYPE_CHECKING:
    from engine.interop.importers import ImportReport
    from engine.interop.importers.common import FileOutcome

# engine.interop.importers.IMPORTERS' names, spelled out so that --help needs no SQLAlchemy
# (a test keeps them equal)
IMPORT_FORMATS = ("coco", "labelme", "label-studio", "label-studio-brush")


def report_json(report: ImportReport) -> dict[str, Any]:
    """The ``--json`` document of an import run: the counts and every file's outcome."""
    return {**report.summary(), "file_outcomes": [asdict(f) for f in report.files]}


def print_report(report: ImportReport) -> None:
    """The counts, each rejected file with its reason, and every skipped item with its reason."""
    from rich.table import Table

    table = Table("what", "count", title="import summary")
    for key, value in report.summary().items():
        table.add_row(key.replace("_", " "), str(value))
    console.print(table)
    for f in report.rejected:
        console.print(f"  [red]file rejected (nothing imported)[/] {f.path}: {f.reason}")
    for path, item, reason in report.skipped:
        console.print(f"  [yellow]skipped[/] {Path(path).name}: {item}: {reason}")


def import_command(
    paths: list[Path] = typer.Argument(
        ..., help="Annotation files, or folders (every *.json under them)."
    ),
    fmt: str = typer.Option(
        ..., "--format", "-f", help=f"Input format: {', '.join(IMPORT_FORMATS)}."
    ),
    project: str = typer.Option(..., "--project", "-p", help="Project name (created if missing)."),
    images: list[Path] = typer.Option(
        [],
        "--images",
        help="Folder holding the images the files name; they are ingested on the fly "
        "(repeatable). Without it images must already be ingested (matched by file name).",
    ),
    add_labels: bool = typer.Option(
        False,
        "--add-labels",
        help="Add unknown labels to the project taxonomy instead of skipping their regions "
        "(a project with no labels yet always adopts the files' labels).",
    ),
    strict: bool = typer.Option(
        False, "--strict", help="Reject a whole file if any of its items would be skipped."
    ),
    force: bool = typer.Option(
        False, "--force", help="Import a file again even if the same bytes were imported before."
    ),
    predictions: bool = typer.Option(
        False,
        "--predictions",
        help="label-studio: import the tasks' predictions too, as scored model proposals.",
    ),
    as_proposals: bool = typer.Option(
        False,
        "--as-proposals",
        help="coco: store the masks as confident model proposals (model version "
        "'import:<file>', in a pre-fill round) for annotators to review, instead of final "
        "human masks.",
    ),
    score: float = typer.Option(
        1.0,
        "--score",
        help="With --as-proposals: the score of annotations without a 'score' field (0-1).",
    ),
    ls_url: str | None = typer.Option(
        None,
        "--ls-url",
        help="label-studio: Label Studio's URL, to fetch predictions its JSON export lists by "
        "id (with --predictions) and, for label-studio-brush, the tasks the files name.",
    ),
    ls_token: str | None = typer.Option(
        None, "--ls-token", help="Label Studio access token for --ls-url."
    ),
    tasks_file: Path | None = typer.Option(
        None,
        "--tasks",
        help="label-studio-brush: the project's Label Studio JSON export (maps the files' "
        "task ids to images); or give --ls-url/--ls-token.",
    ),
    user: str | None = typer.Option(
        None,
        "--user",
        help="Attribute the imported masks (and Label Studio lead_time events) to this user; "
        "default: no author, events by the inactive 'label-studio' service user.",
    ),
    as_json: JsonFlag = False,
) -> None:
    """Import annotations as human masks. Each file is committed whole or not at all;
    skipped items (unknown labels, images not found, malformed regions) are listed with
    their reasons. A PATH that does not exist stops the command before anything is imported."""
    from db.session import transaction
    from db.users import get_user
    from engine.interop.importers import import_files
    from engine.settings import Settings

    if fmt not in IMPORT_FORMATS:
        fail(f"unknown format {fmt!r}; choose one of {', '.join(IMPORT_FORMATS)}")
    if bool(ls_url) != bool(ls_token):
        fail("--ls-url and --ls-token go together")
    if as_proposals and fmt != "coco":
        fail(f"--as-proposals reads COCO files only; use -f coco (got -f {fmt})")
    if not 0.0 <= score <= 1.0:
        fail(f"--score must be between 0 and 1, got {score}")
    require_paths(paths, "annotation file or folder")
    for d in images:
        if not d.is_dir():
            fail(f"--images {d} is not a folder")
    # brush tasks are read before the progress bar starts: a bad file is one line, no bar
    tasks = _read_tasks(tasks_file, ls_url) if fmt == "label-studio-brush" else None
    settings = Settings()
    factory = open_db(settings)
    options: dict[str, object] = {
        "add_labels": add_labels,
        "strict": strict,
        "force": force,
        "predictions": predictions,
        "image_store": str(settings.image_store),  # labelme files with embedded imageData
        "as_proposals": as_proposals,
        "score": score,
        "ls_url": ls_url,
        "ls_token": ls_token,
    }
    if user:
        with domain_errors(), transaction(factory) as s:
            options["user_id"] = get_user(s, name=user).id
    with json_output(as_json), progress() as bar:
        task = bar.add_task("import", total=None, status="")

        def on_total(n: int) -> None:
            bar.update(task, total=n)

        def on_file(outcome: FileOutcome) -> None:
            state = f"{outcome.masks} masks" if outcome.status == "imported" else "rejected"
            bar.update(task, advance=1, status=f"{Path(outcome.path).name}: {state}")

        if fmt == "label-studio-brush":
            report = _import_brush(
                factory, project, paths, tasks, ls_url, ls_token, options, on_file
            )
        else:
            report = import_files(
                factory,
                fmt=fmt,
                project=project,
                paths=paths,
                image_dirs=images,
                options=options,
                max_pixels=settings.max_image_pixels,
                on_file=on_file,
                on_total=on_total,
            )
    if as_json:
        print_json(report_json(report))
    else:
        print_report(report)
    if report.rejected and len(report.rejected) == len(report.files):
        raise typer.Exit(1)


def _read_tasks(tasks_file: Path | None, ls_url: str | None) -> list[Any] | None:
    """The task list of ``--tasks`` (a Label Studio JSON export), or None when the tasks
    come from ``--ls-url``; exits with one line when neither is usable."""
    import json

    if tasks_file is None and not ls_url:
        fail("label-studio-brush needs the tasks: --tasks EXPORT.json or --ls-url/--ls-token")
    if tasks_file is None:
        return None
    require_paths([tasks_file], "--tasks file")
    try:
        tasks = json.loads(tasks_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        fail(f"--tasks {tasks_file}: not a readable Label Studio JSON export ({err})")
    if not isinstance(tasks, list):
        fail(f"--tasks {tasks_file}: expected a list of tasks (Label Studio JSON export)")
    return tasks


def _import_brush(
    factory: Any,
    project: str,
    paths: list[Path],
    tasks: list[Any] | None,
    ls_url: str | None,
    ls_token: str | None,
    options: dict[str, Any],
    on_file: Any,
) -> ImportReport:
    """``-f label-studio-brush``: Label Studio's BRUSH_TO_PNG/BRUSH_TO_NUMPY zips or folders
    (``tasks``: the export's task list, or None to fetch them through ``ls_url``)."""
    from db.projects import get_or_create_project
    from db.session import transaction
    from engine.interop.importers.label_studio_brush import import_brush_export
    from engine.interop.label_studio_api import LabelStudio

    with transaction(factory) as s:
        project_id = get_or_create_project(s, name=project).id
    ls = LabelStudio(ls_url, ls_token) if ls_url and ls_token else None
    try:
        return import_brush_export(
            factory,
            project_id=project_id,
            paths=paths,
            tasks=tasks,
            ls=ls,
            add_labels=bool(options.get("add_labels")),
            user_id=options.get("user_id"),
            on_file=on_file,
        )
    finally:
        if ls is not None:
            ls.close()


def register(app: typer.Typer) -> None:
    """Add this module's commands to the CLI."""
    app.command("import")(import_command)
