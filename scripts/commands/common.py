"""What every command needs: settings, a checked database, a console and a progress bar."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from annotator_ui.settings import Settings
from db.errors import DatabaseBehind, DomainError
from db.migrate import check_up_to_date
from db.session import make_engine, make_session_factory

console = Console()
err_console = Console(stderr=True, soft_wrap=True)


def open_db(settings: Settings) -> sessionmaker[Session]:
    """A session factory on the configured database; exits with the fix if it is behind.

    No connection pool: a command opens connections per session and closes them, so
    commands invoked in-process (tests, ``up``) leave nothing open behind them.
    """
    engine = make_engine(settings.resolved_database_url, poolclass=NullPool)
    try:
        check_up_to_date(engine)
    except DatabaseBehind as err:
        fail(str(err))
    return make_session_factory(engine)


def fail(message: str, code: int = 1) -> None:
    """Print an error (no traceback) and exit."""
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


@contextmanager
def domain_errors() -> Iterator[None]:
    """Turn domain errors into a clean CLI error message."""
    try:
        yield
    except DomainError as err:
        fail(str(err))


def progress() -> Progress:
    """A progress bar with counts, elapsed time and ETA."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        transient=False,
    )
