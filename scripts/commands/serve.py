"""`dataengine serve`: run the web app with uvicorn."""

from __future__ import annotations

import os

import typer

from scripts.commands.common import fail, open_db


def serve_command(
    host: str | None = typer.Option(None, help="Bind address (default DATAENGINE_HOST)."),
    port: int | None = typer.Option(None, help="Port (default DATAENGINE_PORT)."),
    workers: int = typer.Option(1, help="uvicorn worker processes."),
) -> None:
    """Serve the annotator app and API (OpenAPI docs at /docs)."""
    import uvicorn
    from pydantic import ValidationError

    from annotator_ui.settings import Settings, UnsafeBinding, check_binding

    try:
        settings = Settings()
    except ValidationError as err:
        fail("; ".join(e["msg"] for e in err.errors()), code=2)
    host = host or settings.host
    try:
        check_binding(settings, host)
    except UnsafeBinding as err:
        fail(str(err), code=2)
    open_db(settings)  # refuse to start on a database that is behind, with the fix
    os.environ["DATAENGINE_HOST"] = host  # the app's lifespan checks the same address
    uvicorn.run(
        "annotator_ui.main:app",
        host=host,
        port=port or settings.port,
        workers=workers,
        log_level="info",
        factory=False,
    )


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
