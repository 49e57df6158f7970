"""`dataengine export --project P --format F --out DIR`: every exporter, written atomically."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

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
)

# format name -> "module:function". Each function has the signature
#   fn(session, *, project, out: Path, stage: str | None, options: dict) -> dict (counts)
# and writes everything (including manifest.json) into ``out``, a fresh temporary folder.
# The mask exporters also take ``progress=fn(done, total)`` and ``copy_images``.
MASK_FORMATS = ("coco", "sa1b", "labelme")
EXPORTERS: dict[str, str] = {
    "coco": "engine.interop.exporters.coco:export_coco",
    "sa1b": "engine.interop.exporters.sa1b:export_sa1b",
    "labelme": "engine.interop.exporters.labelme:export_labelme",
    "label-studio": "engine.interop.exporters.label_studio:export_label_studio",
    "hf-imagefolder": "engine.interop.exporters.hf_imagefolder:export_hf_imagefolder",
    "kohya": "engine.interop.exporters.kohya:export_kohya",
    "events": "engine.interop.exporters.events:export_events",
}


def resolve(fmt: str) -> Any:
    if fmt not in EXPORTERS:
        fail(f"unknown format {fmt!r}; choose one of {', '.join(EXPORTERS)}")
    module, func = EXPORTERS[fmt].split(":")
    return getattr(importlib.import_module(module), func)


def export_command(
    project: str = typer.Option(..., "--project", "-p", help="Project name."),
    fmt: str = typer.Option(..., "--format", "-f", help=f"One of: {', '.join(EXPORTERS)}."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (must not exist)."),
    stage: str | None = typer.Option(
        None,
        help="Curation stage whose keeps are exported (hf-imagefolder, kohya: default specialist).",
    ),
    include: str = typer.Option(
        "final",
        help="Masks to export (coco, sa1b, label-studio): 'final' (accepted) or "
        "'all' (proposals with scores too).",
    ),
    boxes: bool = typer.Option(False, help="label-studio: add RectangleLabels boxes too."),
    copy_images: bool = typer.Option(
        False, "--copy-images",
        help="coco, sa1b, labelme: copy the images into the export, where each format's "
        "readers look (coco: data/, sa1b: sa1b/, labelme: labelme/); checked by sha256."),
    events_format: str = typer.Option(
        "jsonl", "--events-format",
        help="events: 'jsonl' or 'parquet' (events + per-image effort tables; docs/effort.md)."),
    idle_seconds: float | None = typer.Option(
        None, "--idle-seconds",
        help="events: idle cap for the per-image effort table (default DATAENGINE_IDLE_SECONDS)."),
    as_json: JsonFlag = False,
) -> None:  # fmt: skip
    """Export a project. Written to a temporary folder and renamed: never partial."""
    from db.projects import get_project
    from db.session import transaction
    from engine.interop.exporters.atomic import record_export, write_atomically
    from engine.settings import Settings

    exporter = resolve(fmt)
    settings = Settings()
    factory = open_db(settings)
    options: dict[str, object] = {"include": include, "boxes": boxes}
    if fmt in MASK_FORMATS:
        options["copy_images"] = copy_images
    elif copy_images:
        fail(f"--copy-images applies to {', '.join(MASK_FORMATS)}; {fmt} exports carry images")
    if fmt == "events":
        options = {"events_format": events_format,
                   "idle_seconds": idle_seconds if idle_seconds is not None else settings.idle_seconds}  # fmt: skip
    if out.exists():
        fail(f"{out} exists; choose a new --out folder (exports are never merged)")
    with domain_errors(), transaction(factory) as s, json_output(as_json), progress() as bar:
        p = get_project(s, name=project)
        task = bar.add_task(f"{fmt} export", total=None, status="")
        kwargs: dict[str, Any] = {}
        if fmt in MASK_FORMATS:

            def on_image(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            kwargs["progress"] = on_image
        counts, manifest_sha = write_atomically(
            out,
            lambda tmp: exporter(s, project=p, out=tmp, stage=stage, options=options, **kwargs),
        )
        record_export(
            s,
            project_id=p.id,
            kind=fmt,
            out=out,
            counts=counts,
            manifest_sha256=manifest_sha,
            params={"stage": stage, **options},
        )
    if as_json:
        print_json(
            {"format": fmt, "out": str(out), "counts": counts, "manifest_sha256": manifest_sha}
        )
        return
    from rich.table import Table

    table = Table("what", "count", title=f"{fmt} export -> {out}")
    for k, v in counts.items():
        table.add_row(str(k), str(v))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)
