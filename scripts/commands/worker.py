"""`dataengine worker`: the pre-fill worker. Loads the configured model once, then keeps
every project pre-filled (new images, new rounds) until stopped. `dataengine worker status`
lists the workers' heartbeats and live claims."""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Any

import typer

from scripts.commands.common import JsonFlag, console, json_output, open_db, print_json
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
        from engine.flywheel.prefill import new_worker_id

        host = socket.gethostname()
        self.fields: dict[str, Any] = {
            "worker_id": new_worker_id(),
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
    ctx: typer.Context,
    interval: float = typer.Option(30.0, "--interval", help="Seconds between passes."),
    passes: int = typer.Option(0, "--passes", help="Stop after this many passes (0 = forever)."),
) -> None:
    """Pre-fill new images of every project with the configured backend, in a loop.

    Records a heartbeat in the database (``worker_heartbeat``: last seen, images done and
    failed) at start, every 10 s while pre-filling and after each pass; the app serves it
    at /metrics and /api/admin/workers (`dataengine worker status` lists them). Each project
    uses its current round's model version (e.g. a calibrated one) when that matches the
    loaded model, else the loaded model's own version. Safe to run several workers at once:
    they claim images DATAENGINE_CLAIM_BATCH at a time, so each image is computed by one of
    them; a dead worker's claims expire after DATAENGINE_CLAIM_SECONDS and the others take
    its images over. An idle pass costs two `count(*)` per project, whatever its size.
    """
    if ctx.invoked_subcommand is not None:
        return
    from annotator_ui.logs import configure_logging
    from db.errors import DomainError
    from db.projects import list_projects
    from engine.flywheel.prefill import Claims, prefill_project
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
    claims = Claims(
        worker_id=heartbeat.fields["worker_id"],
        seconds=settings.claim_seconds,
        batch=settings.claim_batch,
    )
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
                    max_pixels=settings.max_image_pixels,
                    claims=claims,
                    cache_embeddings=settings.prefill_cache_embeddings,
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


def status_command(
    minutes: float = typer.Option(
        60.0, "--minutes", help="Show workers seen in this many minutes (0 = all)."
    ),
    as_json: JsonFlag = False,
) -> None:
    """List pre-fill workers: last heartbeat, passes, images done and failed, live claims."""
    import datetime as dt

    from rich.table import Table

    from db.claims import live_claims_by_worker
    from db.models import utcnow
    from db.workers import list_heartbeats
    from engine.settings import Settings

    settings = Settings()
    factory = open_db(settings)
    now = utcnow()
    try:
        with factory() as s:
            since = now - dt.timedelta(minutes=minutes) if minutes > 0 else None
            rows = list_heartbeats(s, seen_since=since)
            claims = live_claims_by_worker(s, now=now)
    finally:
        factory.kw["bind"].dispose()
    out = [
        {
            "worker_id": r.worker_id,
            "backend": r.backend,
            "model_key": r.model_key,
            "started_at": r.started_at.isoformat(),
            "last_seen_at": r.last_seen_at.isoformat(),
            "seconds_since_seen": round((now - r.last_seen_at).total_seconds(), 1),
            "passes": r.passes,
            "images_done": r.images_done,
            "images_failed": r.images_failed,
            "live_claims": claims.get(r.worker_id, 0),
        }
        for r in rows
    ]
    with json_output(as_json):
        if as_json:
            print_json({"workers": out})
            return
        table = Table(
            "worker", "backend", "last seen", "passes", "done", "failed", "claims",
            title=f"pre-fill workers ({len(out)} seen)",
        )  # fmt: skip
        for w in out:
            table.add_row(
                w["worker_id"], w["backend"], f"{w['seconds_since_seen']:.0f} s ago",
                str(w["passes"]), str(w["images_done"]), str(w["images_failed"]),
                str(w["live_claims"]),
            )  # fmt: skip
        console.print(table)
        if not out:
            console.print("no worker seen; start one with `dataengine worker`")


def register(app: typer.Typer) -> None:
    worker_app = typer.Typer(invoke_without_command=True, no_args_is_help=False)
    worker_app.callback()(worker_command)
    worker_app.command("status")(status_command)
    app.add_typer(worker_app, name="worker")
