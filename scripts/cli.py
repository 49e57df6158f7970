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
    "embed",
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
    # plain click help: typer's rich help (typer.rich_utils, rich.markdown, pygments...) costs
    # more than the rest of `--help` together; the sub-apps inherit the root's mode
    rich_markup_mode=None,
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


HELP_ONLY = frozenset({"--help", "--version", "-V"})


def only_help(argv: list[str]) -> bool:
    """True when ``argv`` (without the program name) only asks for help or the version: no
    command will run, so settings and logging (pydantic) need not be loaded."""
    return not argv or not HELP_ONLY.isdisjoint(argv)


def main() -> None:
    """Entry point of the ``dataengine`` script: run the app; an unreachable database
    anywhere in a command ends it with one line on stderr and exit code 3."""
    from scripts.commands.common import EXIT_DB_UNREACHABLE, fail

    if not only_help(sys.argv[1:]):
        from annotator_ui.logs import configure_logging
        from engine.settings import Settings

        # DATAENGINE_LOG_FORMAT=json for JSON lines
        configure_logging(Settings(), level="WARNING")
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
