"""The `dataengine` command line. Each module in COMMANDS adds its commands with ``register``.

The command modules import only typer and the standard library at import time (heavy
libraries are imported inside the command functions), so ``--help`` answers at once.
"""

from __future__ import annotations

import importlib
import sys

import typer

COMMANDS = [
    "up",
    "database",
    "project",
    "ingest",
    "user",
    "serve",
    "models",
    "prefill",
    "flywheel",
    "curate",
    "export",
    "interop",
    "worker",
    "backup",
]

app = typer.Typer(
    name="dataengine",
    help="Data Engine: model pre-fill, browser annotation, effort accounting, flywheel metrics, "
    "curation and exports. Settings come from DATAENGINE_* variables or .env (see .env.example). "
    "Exit codes: 0 done, 1 failed (reason on stderr), 2 usage error, 3 database unreachable.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def package_version() -> str:
    """The installed distribution's version (``pip install`` metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dataengine")
    except PackageNotFoundError:
        return "unknown (not installed; run `pip install -e .`)"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dataengine {package_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        "-V",
        callback=_version,
        is_eager=True,
        help="Print the installed version and exit.",
    ),
) -> None:
    """Global options (the help text is the Typer's ``help`` above)."""


for _name in COMMANDS:
    importlib.import_module(f"scripts.commands.{_name}").register(app)


def _database_unreachable(err: BaseException) -> str | None:
    """The one-line message for SQLAlchemy's OperationalError, else None (never imports it)."""
    exc = sys.modules.get("sqlalchemy.exc")
    if exc is None or not isinstance(err, exc.OperationalError):
        return None
    from engine.settings import Settings
    from scripts.commands.common import unreachable_message

    return unreachable_message(Settings().resolved_database_url, err)


def main() -> None:
    """Entry point of the ``dataengine`` script: run the app; an unreachable database
    anywhere in a command ends it with one line on stderr and exit code 3."""
    from annotator_ui.logs import configure_logging
    from engine.settings import Settings
    from scripts.commands.common import EXIT_DB_UNREACHABLE, fail

    configure_logging(Settings(), level="WARNING")  # DATAENGINE_LOG_FORMAT=json for JSON lines
    try:
        app()
    except Exception as err:
        message = _database_unreachable(err)
        if message is None:
            raise
        try:
            fail(message, EXIT_DB_UNREACHABLE)
        except typer.Exit as done:
            sys.exit(done.exit_code)


if __name__ == "__main__":
    main()
