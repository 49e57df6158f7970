"""What every command needs: settings, a checked database, a console and a progress bar.

Imports stay light here and in every command module (typer, rich's console, the standard
library): ``dataengine --help`` must not pay for torch, SQLAlchemy models or pydantic.
Heavy modules are imported inside the functions that use them.

Exit codes of every command: 0 done, 1 failed (bad input, a missing path, a domain error;
one line on stderr says why), 2 usage error (click), 3 the database cannot be reached.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    from rich.progress import Progress
    from sqlalchemy.orm import Session, sessionmaker

    from engine.settings import Settings

console = Console()
err_console = Console(stderr=True, soft_wrap=True)

EXIT_FAILED = 1
EXIT_DB_UNREACHABLE = 3

# --json on every command that reports: one JSON document on stdout; tables, progress bars
# and notes go to stderr instead.
JsonFlag = Annotated[
    bool,
    typer.Option(
        "--json",
        "-j",
        help="Print one JSON document on stdout (tables and progress go to stderr).",
    ),
]


def open_db(settings: Settings) -> sessionmaker[Session]:
    """A session factory on the configured database; exits with the fix if it is behind
    (code 1) or cannot be reached (code 3).

    No connection pool: a command opens connections per session and closes them, so
    commands invoked in-process (tests, ``up``) leave nothing open behind them.
    """
    from sqlalchemy.exc import ArgumentError, OperationalError
    from sqlalchemy.pool import NullPool

    from db.errors import DatabaseBehind
    from db.migrate import check_up_to_date
    from db.session import make_engine, make_session_factory

    url = settings.resolved_database_url
    try:
        engine = make_engine(url, poolclass=NullPool)
    except ArgumentError as err:
        fail(f"DATAENGINE_DATABASE_URL is not a database URL ({err}); see .env.example")
    except OSError as err:  # the SQLite file's folder cannot be created
        fail(unreachable_message(url, err), EXIT_DB_UNREACHABLE)
    try:
        check_up_to_date(engine)
    except DatabaseBehind as err:
        fail(str(err))
    except OperationalError as err:
        fail(unreachable_message(url, err), EXIT_DB_UNREACHABLE)
    return make_session_factory(engine)


def unreachable_message(url: str, err: BaseException) -> str:
    """``cannot reach the database at <url without password>: <first line of the reason>``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        shown = "<unparsable DATAENGINE_DATABASE_URL>"
    reason = getattr(err, "orig", None) or err
    first = next((ln.strip() for ln in str(reason).splitlines() if ln.strip()), type(err).__name__)
    return f"cannot reach the database at {shown}: {first}"


def fail(message: str, code: int = EXIT_FAILED) -> None:
    """Print an error (no traceback) and exit."""
    from rich.markup import escape

    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def require_paths(paths: list[Path], what: str = "path") -> None:
    """Exit with one line naming every path that does not exist (before any work is done)."""
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        fail(f"no such {what}: {', '.join(missing)}; check the spelling (nothing was done)")


@contextmanager
def domain_errors() -> Iterator[None]:
    """Turn domain errors into a clean CLI error message."""
    from db.errors import DomainError

    try:
        yield
    except DomainError as err:
        fail(str(err))


@contextmanager
def json_output(as_json: bool) -> Iterator[None]:
    """With ``--json``, route the human console (tables, notes, progress) to stderr so that
    stdout holds only the JSON document written by :func:`print_json`."""
    if not as_json:
        yield
        return
    console.file = sys.stderr
    try:
        yield
    finally:
        console.file = None  # type: ignore[assignment]  # back to the current sys.stdout


def _jsonable(value: Any) -> Any:
    """JSON for what json cannot write: numpy scalars/arrays as numbers/lists, dates as ISO
    8601, sets as sorted lists, anything else (paths...) as its string."""
    if hasattr(value, "tolist"):  # numpy scalar or array
        return value.tolist()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


def print_json(data: Any) -> None:
    """Write ``data`` as one JSON document on stdout (see :func:`_jsonable` for odd types)."""
    typer.echo(json.dumps(data, indent=2, default=_jsonable))


def progress() -> Progress:
    """A progress bar with counts, elapsed time and ETA."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

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
