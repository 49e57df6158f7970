"""`dataengine worker`: the pre-fill worker. Loads the configured model once, then keeps
every project pre-filled (new images, new rounds) until stopped."""

from __future__ import annotations

import logging
import time

import typer

from scripts.commands.common import console, open_db
from scripts.commands.prefill import load_segmenter

log = logging.getLogger("dataengine.worker")


def worker_command(
    interval: float = typer.Option(30.0, "--interval", help="Seconds between passes."),
    passes: int = typer.Option(0, "--passes", help="Stop after this many passes (0 = forever)."),
) -> None:
    """Pre-fill new images of every project with the configured backend, in a loop.

    Each project uses its current round's model version (e.g. a calibrated one) when
    that matches the loaded model, else the loaded model's own version. Safe to run
    several workers at once: each image is claimed by exactly one of them.
    """
    from annotator_ui.settings import Settings
    from db.errors import DomainError
    from db.projects import list_projects
    from engine.flywheel.prefill import prefill_project

    settings = Settings()
    factory = open_db(settings)
    segmenter = load_segmenter(
        settings, backend=None, model_type=None, checkpoint=None, sha256=None, device=None
    )
    console.print(f"worker: {segmenter.name} ({segmenter.model_key}), every {interval:.0f} s")
    done = 0
    while True:
        with factory() as s:
            projects = [(p.id, p.name) for p in list_projects(s)]
        for project_id, name in projects:
            try:
                summary = prefill_project(
                    factory, project_id=project_id, segmenter=segmenter, model_version_id=None
                )
            except DomainError as err:  # e.g. the round's model version needs another backend
                console.print(f"[yellow]{name}: skipped: {err}[/]")
                continue
            if summary.done or summary.failed:
                console.print(
                    f"{name}: {summary.done} pre-filled, {summary.failed} failed, "
                    f"{summary.confident} confident masks"
                )
        done += 1
        if passes and done >= passes:
            return
        time.sleep(interval)


def register(app: typer.Typer) -> None:
    app.command("worker")(worker_command)
