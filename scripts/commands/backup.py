"""`dataengine backup --out FILE`: a consistent copy of the database while the app runs."""

from __future__ import annotations

from pathlib import Path

import typer

from scripts.commands.common import JsonFlag, console, domain_errors, print_json


def backup_command(
    out: Path = typer.Option(..., "--out", "-o", help="Backup file to create (never overwritten)."),
    as_json: JsonFlag = False,
) -> None:
    """Back up the configured database to FILE.

    SQLite: the online backup API, consistent while the app writes; restore by copying
    FILE to the database path (app stopped). PostgreSQL: pg_dump --format=custom; restore
    with pg_restore. Without pg_dump this prints the command and exits 1.
    """
    from db.backup import backup_database
    from engine.settings import Settings

    settings = Settings()
    with domain_errors():
        path = backup_database(url=settings.resolved_database_url, out=out)
    size = path.stat().st_size
    if as_json:
        print_json({"backup": str(path), "bytes": size})
        return
    console.print(f"backup written to {path} ({size} bytes)")


def register(app: typer.Typer) -> None:
    app.command("backup")(backup_command)
