"""`dataengine worker`: the pre-fill worker. Loads the configured model once, then keeps
every project pre-filled (new images, new rounds) until stopped."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any

import typer

from scripts.commands.common import console, open_db
from scripts.commands.prefill import configured_segmenter

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger("dataengine.worker")
HEARTBEAT_SECONDS = 10.0  # at most this often while images are being pre-filled


class Heartbeat:
    """This worker's row in ``worker_heartbeat``: last-seen time and its running totals.

    A failed write (database briefly away) is logged and retried at the next beat; it
    never stops pre-fill.
    """

    def __init__(self, factory: sessionmaker[Session], *, backend: str, model_key: str):
        self.factory = factory
        host = socket.gethostname()
        self.fields: dict[str, Any] = {
            "worker_id": f"{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
            "hostname": host,
            "pid": os.getpid(),
            "backend": backend,
            "model_key": model_key,
        }
        self.passes = self.done = self.failed = 0
        self._last = 0.0

    def on_image(self, _image_id: int, outcome: str, _info: dict[str, Any]) -> None:
        self.done += outcome == "done"
        self.failed += outcome == "failed"
        if time.monotonic() - self._last >= HEARTBEAT_SECONDS:
            self.beat()

    def beat(self) -> None:
        from sqlalchemy.exc import SQLAlchemyError

        from db.session import transaction
        from db.workers import record_heartbeat

        try:
            with transaction(self.factory) as s:
                record_heartbeat(
                    s,
                    **self.fields,
                    passes=self.passes,
                    images_done=self.done,
                    images_failed=self.failed,
                )
            self._last = time.monotonic()
        except SQLAlchemyError as err:
            log.warning("worker heartbeat not recorded (retrying next beat): %s", err)


def worker_command(
    interval: float = typer.Option(30.0, "--interval", help="Seconds between passes."),
    passes: int = typer.Option(0, "--passes", help="Stop after this many passes (0 = forever)."),
) -> None:
    """Pre-fill new images of every project with the configured backend, in a loop.

    Records a heartbeat in the database (``worker_heartbeat``: last seen, images done and
    failed) at start, every 10 s while pre-filling and after each pass; the app serves it
    at /metrics. Each project uses its current round's model version (e.g. a calibrated
    one) when that matches the loaded model, else the loaded model's own version. Safe to run
    several workers at once: each image is claimed by exactly one of them.
    """
    from annotator_ui.logs import configure_logging
    from db.errors import DomainError
    from db.projects import list_projects
    from engine.flywheel.prefill import prefill_project
    from engine.settings import Settings

    settings = Settings()
    configure_logging(settings)  # DATAENGINE_LOG_LEVEL / _LOG_FORMAT (the CLI default is WARNING)
    factory = open_db(settings)
    segmenter = configured_segmenter(
        settings, backend=None, model_type=None, checkpoint=None, sha256=None, device=None
    )
    console.print(f"worker: {segmenter.name} ({segmenter.model_key}), every {interval:.0f} s")
    heartbeat = Heartbeat(factory, backend=segmenter.name, model_key=segmenter.model_key)
    heartbeat.beat()
    done = 0
    while True:
        with factory() as s:
            projects = [(p.id, p.name) for p in list_projects(s)]
        for project_id, name in projects:
            try:
                summary = prefill_project(
                    factory,
                    project_id=project_id,
                    segmenter=segmenter,
                    model_version_id=None,
                    on_image=heartbeat.on_image,
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
        heartbeat.passes = done
        heartbeat.beat()
        if passes and done >= passes:
            return
        time.sleep(interval)


def register(app: typer.Typer) -> None:
    app.command("worker")(worker_command)
