"""`dataengine serve`: run the web app with uvicorn."""

from __future__ import annotations

import typer

from scripts.commands.common import open_db


def serve_command(
    host: str | None = typer.Option(None, help="Bind address (default DATAENGINE_HOST)."),
    port: int | None = typer.Option(None, help="Port (default DATAENGINE_PORT)."),
    workers: int = typer.Option(1, help="uvicorn worker processes."),
) -> None:
    """Serve the annotator app and API (OpenAPI docs at /docs)."""
    import uvicorn

    from annotator_ui.settings import Settings

    settings = Settings()
    open_db(settings)  # refuse to start on a database that is behind, with the fix
    uvicorn.run(
        "annotator_ui.main:app",
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_level="info",
        factory=False,
    )


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
