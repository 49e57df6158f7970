"""`dataengine db ...`: create, upgrade and inspect the database schema."""

from __future__ import annotations

import typer

from scripts.commands.common import (
    EXIT_DB_UNREACHABLE,
    JsonFlag,
    console,
    fail,
    json_output,
    print_json,
    unreachable_message,
)

db_app = typer.Typer(help="Create, upgrade and inspect the database schema.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(
    revision: str = typer.Argument("heads", help="Target revision (default: latest)."),
    as_json: JsonFlag = False,
) -> None:
    """Create the database or upgrade it to the latest schema (idempotent)."""
    from db.migrate import current_heads, script_heads, upgrade
    from db.session import make_engine
    from engine.settings import Settings

    settings = Settings()
    url = settings.resolved_database_url
    try:
        upgrade(url, revision)
    except OSError as err:  # the SQLite file's folder cannot be created
        fail(unreachable_message(url, err), EXIT_DB_UNREACHABLE)
    engine = make_engine(url)
    shown = engine.url.render_as_string(hide_password=True)
    have = sorted(current_heads(engine))
    engine.dispose()
    if as_json:
        print_json({"database": shown, "revision": have, "code": sorted(script_heads(url))})
        return
    console.print(f"database at {shown} is at {', '.join(sorted(script_heads(url)))}")


@db_app.command("current")
def db_current(as_json: JsonFlag = False) -> None:
    """Show the schema revision of the database and the one the code needs (exit 1 if behind)."""
    from db.migrate import current_heads, script_heads
    from db.session import make_engine
    from engine.settings import Settings

    settings = Settings()
    url = settings.resolved_database_url
    try:
        engine = make_engine(url)
    except OSError as err:  # the SQLite file's folder cannot be created
        fail(unreachable_message(url, err), EXIT_DB_UNREACHABLE)
    have = current_heads(engine)
    engine.dispose()
    want = script_heads(url)
    with json_output(as_json):
        if as_json:
            print_json(
                {
                    "database": engine.url.render_as_string(hide_password=True),
                    "revision": sorted(have),
                    "code": sorted(want),
                    "up_to_date": have == want,
                }
            )
        else:
            console.print(
                f"database: {', '.join(sorted(have)) or 'empty'}; code: {', '.join(sorted(want))}"
            )
        if have != want:
            console.print("[yellow]behind: run `dataengine db upgrade`[/]")
            raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
