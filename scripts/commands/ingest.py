"""`dataengine ingest PATH... --project NAME`: verify, decode and record images."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from scripts.commands.common import (
    JsonFlag,
    console,
    fail,
    json_output,
    open_db,
    print_json,
    progress,
    require_paths,
)

if TYPE_CHECKING:
    from engine.imageio import ProbeResult
    from engine.ingest import IngestSummary
    from engine.settings import Settings


def summary_json(summary: IngestSummary) -> dict[str, Any]:
    """The ``--json`` document of an ingest run (paths printable: non-UTF-8 bytes escaped)."""
    return {
        "added": summary.added,
        "duplicates": summary.duplicates,
        "rejected": dict(sorted(summary.rejected.items())),
        "skipped": dict(sorted(summary.skipped.items())),
        "flagged": dict(sorted(summary.flagged.items())),
        "seen": summary.seen,
        "rejected_files": [{"path": p, "reason": r} for p, r in summary.rejected_files],
        "skipped_files": [{"path": p, "reason": r} for p, r in summary.skipped_files],
        "flagged_files": [{"path": p, "flag": r} for p, r in summary.flagged_files],
        "image_ids": list(summary.image_ids),
    }


def print_summary(summary: IngestSummary) -> None:
    from rich.table import Table

    table = Table("outcome", "files", title="ingest summary")
    table.add_row("added", str(summary.added))
    table.add_row("duplicates (already in project)", str(summary.duplicates))
    for reason, n in sorted(summary.rejected.items()):
        table.add_row(f"rejected: {reason}", str(n))
    for reason, n in sorted(summary.skipped.items()):
        table.add_row(f"skipped: {reason}", str(n))
    for flag, n in sorted(summary.flagged.items()):
        table.add_row(f"added, flagged {flag}", str(n))
    table.add_row("total entries walked", str(summary.seen))
    console.print(table)
    # paths are printable already (non-UTF-8 bytes as \xff escapes); markup=False keeps
    # a file named "[red]" from being read as rich markup
    for path, reason in summary.rejected_files:
        console.print(f"  rejected {path}: {reason}", markup=False, highlight=False)
    for path, reason in summary.skipped_files:
        console.print(f"  skipped {path}: {reason}", markup=False, highlight=False)
    for path, note in summary.flagged_files:
        console.print(f"  flagged {path}: {note}", markup=False, highlight=False)


def run_ingest(
    settings: Settings,
    project: str,
    paths: list[Path | str],
    copy: bool,
    *,
    manifest: Path | None = None,
    workers: int = 1,
) -> IngestSummary:
    """Ingest with a progress bar (counts, ETA); returns the summary (used by `up` too)."""
    from rich.markup import escape

    from engine.ingest import ingest
    from engine.uris import display_path

    factory = open_db(settings)
    with progress() as bar:
        task = bar.add_task("ingest", total=None, status="")

        def on_total(n: int) -> None:
            bar.update(task, total=n)

        def on_file(res: ProbeResult, outcome: str) -> None:
            name = display_path(res.path).rstrip("/").rsplit("/", 1)[-1]
            bar.update(task, advance=1, status=f"{outcome}: {escape(name)}")  # "[/x].jpg"

        summary = ingest(
            factory,
            project=project,
            paths=paths,
            manifest=manifest,
            copy_to=settings.image_store if copy else None,
            max_pixels=settings.max_image_pixels,
            min_side=settings.min_image_side,
            max_bytes=settings.max_image_bytes,
            workers=workers,
            on_file=on_file,
            on_total=on_total,
        )
    return summary


def ingest_command(
    paths: list[str] = typer.Argument(
        None,
        help="Files or folders (walked recursively), file:// uris, or object-storage uris and "
        "prefixes (s3://bucket/photos/, gs://..., az://..., https://host/x.jpg).",
    ),
    project: str = typer.Option(..., "--project", "-p", help="Project name (created if missing)."),
    manifest: Path | None = typer.Option(
        None, "--manifest", help="A .csv, .jsonl or .parquet file of image uris (column 'uri')."
    ),
    workers: int = typer.Option(
        8, "--workers", min=1, max=256, help="Threads reading and probing images in parallel."
    ),
    copy: bool = typer.Option(False, "--copy", help="Copy images into the managed store."),
    max_pixels: int | None = typer.Option(
        None, help="Reject images above this many pixels (default: DATAENGINE_MAX_IMAGE_PIXELS)."
    ),
    as_json: JsonFlag = False,
) -> None:
    """Ingest images: verify, decode, record size/orientation/mode, deduplicate by sha256.

    Bad files (corrupt, truncated, empty, non-image, a format outside JPEG/PNG/WebP/TIFF/
    BMP/GIF/PPM, too large, too small, a missing object) are recorded with their reason and
    never stop the batch; hidden files and unreadable folders are listed as skipped. Animated
    GIF/WebP/PNG and multi-page TIFF are added with their first frame and listed as flagged.
    A local PATH that does not exist stops the command before anything is ingested (exit 1).
    Object storage credentials come from the environment (AWS_*, GOOGLE_*, AZURE_*).
    """
    from engine.manifest import ManifestError, read_manifest
    from engine.settings import Settings
    from engine.storage import is_remote

    paths = list(paths or [])
    if not paths and manifest is None:
        fail("give PATH... or --manifest FILE (nothing was done)", code=2)
    require_paths([Path(p) for p in paths if not is_remote(p) and "://" not in p])
    if manifest is not None:
        try:
            read_manifest(manifest)  # a manifest that cannot be read stops before any work
        except ManifestError as err:
            fail(str(err))
    settings = Settings()
    if max_pixels is not None:
        settings.max_image_pixels = max_pixels
    with json_output(as_json):
        summary = run_ingest(
            settings, project, list(paths), copy, manifest=manifest, workers=workers
        )
    if as_json:
        print_json(summary_json(summary))
    else:
        print_summary(summary)


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest_command)
