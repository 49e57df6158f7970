"""`dataengine db ...`: create, upgrade and inspect the database schema."""

from __future__ import annotations

import typer

from annotator_ui.settings import Settings
from db.migrate import current_heads, script_heads, upgrade
from db.session import make_engine
from scripts.commands.common import console

db_app = typer.Typer(help="Create, upgrade and inspect the database schema.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(
    revision: str = typer.Argument("heads", help="Target revision (default: latest)."),
) -> None:
    """Create the database or upgrade it to the latest schema (idempotent)."""
    settings = Settings()
    url = settings.resolved_database_url
    upgrade(url, revision)
    console.print(
        f"database at {make_engine(url).url.render_as_string(hide_password=True)} "
        f"is at {', '.join(sorted(script_heads(url)))}"
    )


@db_app.command("current")
def db_current() -> None:
    """Show the schema revision of the database and the one the code needs."""
    settings = Settings()
    url = settings.resolved_database_url
    have = current_heads(make_engine(url))
    want = script_heads(url)
    console.print(
        f"database: {', '.join(sorted(have)) or 'empty'}; code: {', '.join(sorted(want))}"
    )
    if have != want:
        console.print("[yellow]behind: run `dataengine db upgrade`[/]")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
