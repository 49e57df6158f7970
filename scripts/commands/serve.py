"""`dataengine serve`: run the web app with uvicorn.

Logs follow ``DATAENGINE_LOG_FORMAT`` / ``DATAENGINE_LOG_LEVEL`` in every worker process.
With ``--workers N`` (N > 1) the Prometheus metrics of all processes are summed:
``PROMETHEUS_MULTIPROC_DIR`` is set to ``<data_dir>/prometheus`` (emptied at start)
unless it is already set, before the worker processes import ``prometheus_client``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from scripts.commands.common import fail, open_db

APP = "annotator_ui.main:app"
LISTEN_MODES = ("per-worker", "shared")

if TYPE_CHECKING:
    from engine.settings import Settings


def prepare_multiprocess_metrics(settings: Settings, workers: int) -> Path | None:
    """Set up ``PROMETHEUS_MULTIPROC_DIR`` for several app processes; returns the folder.

    One process keeps its metrics in memory (None). A folder given in the environment is
    used as it is (the operator owns it); the default one is emptied first, as
    ``prometheus_client`` requires between runs.
    """
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        return Path(given)
    if workers <= 1:
        return None
    folder = (settings.data_dir / "prometheus").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    return folder


def default_workers() -> int:
    """One app process per CPU core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def serve_command(
    host: str | None = typer.Option(None, help="Bind address (default DATAENGINE_HOST)."),
    port: int | None = typer.Option(None, help="Port (default DATAENGINE_PORT)."),
    workers: int | None = typer.Option(
        None,
        min=1,
        max=256,
        help="uvicorn worker processes (default: one per CPU core; 1 = a single process).",
    ),
    listen: str = typer.Option(
        "per-worker",
        help="How several workers listen: per-worker (Linux: a SO_REUSEPORT socket each, the "
        "kernel spreads connections over them) or shared (one socket, uvicorn's default: a "
        "burst of keep-alive connections can all land on one worker).",
    ),
) -> None:
    """Serve the annotator app and API (OpenAPI docs at /docs; /livez, /readyz, /metrics).

    Several worker processes share the load: login throttling counts in the database, the
    Prometheus metrics of all of them are summed, the token cache of each lives for at most
    DATAENGINE_AUTH_CACHE_SECONDS.
    """
    import uvicorn
    from pydantic import ValidationError

    from annotator_ui import listeners
    from annotator_ui.logs import logging_config
    from engine.settings import Settings, UnsafeBinding, check_binding

    if listen not in LISTEN_MODES:
        fail(f"--listen must be one of {', '.join(LISTEN_MODES)}, not {listen!r}", code=2)
    try:
        settings = Settings()
    except ValidationError as err:
        fail("; ".join(e["msg"] for e in err.errors()), code=2)
    host = host or settings.host
    try:
        check_binding(settings, host)
    except UnsafeBinding as err:
        fail(str(err), code=2)
    workers = workers or default_workers()
    open_db(settings)  # refuse to start on a database that is behind, with the fix
    os.environ["DATAENGINE_HOST"] = host  # the app's lifespan checks the same address
    prepare_multiprocess_metrics(settings, workers)
    options: dict[str, Any] = {
        "host": host,
        "port": port or settings.port,
        "workers": workers,
        "log_config": logging_config(settings),
        "factory": False,
        # worker processes re-import this CLI (spawn) before they answer uvicorn's health
        # ping; measured 21-27 s here, far past the 5 s default, so they were killed in a loop
        "timeout_worker_healthcheck": 120,
    }
    if (
        workers > 1
        and listen == "per-worker"
        and listeners.per_worker_supported(host, options["port"])
    ):
        try:
            listeners.run_workers(uvicorn.Config(APP, **options))
        except OSError as err:
            fail(f"cannot listen on {host}:{options['port']}: {err}", code=1)
        return
    uvicorn.run(APP, **options)  # one process, or workers sharing one socket


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
