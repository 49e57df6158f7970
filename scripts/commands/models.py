"""`dataengine models ...`: list the SAM checkpoint registry, download one on request."""

from __future__ import annotations

from pathlib import Path

import typer

from scripts.commands.common import JsonFlag, console, fail, print_json

# engine.segment.sam.models.MODELS' names, spelled out so that --help needs no torch
# (a test keeps them equal)
MODEL_NAMES = ("vit_t", "vit_b", "vit_l", "vit_h")

models_app = typer.Typer(
    help="SAM / MobileSAM checkpoints: list the registry, download with a hash check.",
    no_args_is_help=True,
)


@models_app.command("list")
def models_list(as_json: JsonFlag = False) -> None:
    """Show every known model type with its file, size, sha256 and URL."""
    from rich.table import Table

    from engine.segment.sam.models import MODELS

    if as_json:
        print_json({name: dict(m) for name, m in MODELS.items()})
        return
    table = Table(title="SAM checkpoints (dataengine models download NAME)")
    for col in ("name", "file", "MB", "sha256", "description", "url"):
        table.add_column(col, overflow="fold")
    for name, m in MODELS.items():
        sha = m["sha256"][:12] + "…" if m["sha256"] else "not published"
        table.add_row(name, m["filename"], str(m["size_mb"]), sha, m["description"], m["url"])
    console.print(table)


@models_app.command("download")
def models_download(
    name: str = typer.Argument(..., help=f"Model type: one of {', '.join(MODEL_NAMES)}."),
    dest: Path | None = typer.Option(
        None, help="Folder to write into (default: <data_dir>/models)."
    ),
    url: str | None = typer.Option(None, help="Mirror URL to fetch instead of the official one."),
    as_json: JsonFlag = False,
) -> None:
    """Download a checkpoint with a progress bar; keep it only if its sha256 matches."""
    from engine.segment.sam.models import MODELS, ChecksumError, download
    from engine.settings import Settings

    if name not in MODELS:
        fail(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    folder = dest or Settings().data_dir / "models"
    try:
        path = download(name, folder, progress=not as_json, url=url)
    except ChecksumError as err:
        fail(str(err))
    except OSError as err:
        fail(f"download of {name} failed: {err}; check the network or pass --url to a mirror")
    if as_json:
        print_json({"model": name, "path": str(path), "sha256": MODELS[name]["sha256"]})
        return
    console.print(f"{name}: {path}")
    console.print(
        f"use it with: DATAENGINE_SAM_MODEL={name} DATAENGINE_SAM_CHECKPOINT={path} "
        f"DATAENGINE_SAM_CHECKPOINT_SHA256={MODELS[name]['sha256']}"
    )


def register(app: typer.Typer) -> None:
    """Add `models list` and `models download` to the CLI."""
    app.add_typer(models_app, name="models")
