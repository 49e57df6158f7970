"""`dataengine user ...`: add users with roles, list them, issue API tokens."""

from __future__ import annotations

import secrets

import typer

from scripts.commands.common import JsonFlag, console, domain_errors, fail, open_db, print_json

# db.models.ROLES, spelled out so that --help needs no SQLAlchemy (a test keeps them equal)
ROLE_NAMES = ("annotator", "curator", "reviewer", "admin")

user_app = typer.Typer(help="Manage users, roles and API tokens.", no_args_is_help=True)


@user_app.command("add")
def user_add(
    name: str = typer.Argument(..., help="Login name."),
    role: str = typer.Option(..., "--role", help=f"One of: {', '.join(ROLE_NAMES)}."),
    password: str | None = typer.Option(
        None,
        "--password",
        envvar="DATAENGINE_NEW_PASSWORD",
        help="Password (8+ characters, not a common or easily guessed one). "
        "Omitted: a random one is generated and printed.",
    ),
    as_json: JsonFlag = False,
) -> None:
    """Create a user with a role. Names are NFKC-normalised and unique ignoring case; no
    spaces, invisible characters or mixed scripts."""
    from db.models import ROLES
    from db.session import transaction
    from db.users import create_user
    from engine.settings import Settings

    if role not in ROLES:
        fail(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    pw = password or secrets.token_urlsafe(12)
    factory = open_db(Settings())
    with domain_errors(), transaction(factory) as s:
        user = create_user(s, name=name, role=role, password=pw)
        created = {"id": user.id, "name": user.name, "role": user.role}
    if as_json:
        print_json({**created, "password": None if password else pw})
        return
    console.print(
        f"created {user.role} {user.name!r}" + ("" if password else f" with password {pw}")
    )


@user_app.command("list")
def user_list(as_json: JsonFlag = False) -> None:
    """List users and roles."""
    from rich.table import Table

    from db.users import list_users
    from engine.settings import Settings

    factory = open_db(Settings())
    with factory() as s:
        users = [
            {"id": u.id, "name": u.name, "role": u.role, "active": u.active} for u in list_users(s)
        ]
    if as_json:
        print_json(users)
        return
    table = Table("id", "name", "role", "active")
    for u in users:
        table.add_row(str(u["id"]), u["name"], u["role"], "yes" if u["active"] else "no")
    console.print(table)


@user_app.command("token")
def user_token(
    name: str = typer.Argument(..., help="User to issue the token for."),
    hours: float = typer.Option(
        24 * 30, help="Lifetime in hours (at most the max_token_hours setting)."
    ),
    as_json: JsonFlag = False,
) -> None:
    """Issue a bearer token for scripts (Authorization: Bearer <token>)."""
    from db.session import transaction
    from db.users import get_user, issue_token
    from engine.settings import Settings

    settings = Settings()
    factory = open_db(settings)
    with domain_errors(), transaction(factory) as s:
        token = issue_token(
            s,
            user=get_user(s, name=name),
            kind="api",
            hours=hours,
            max_hours=settings.max_token_hours,
        )
    if as_json:
        print_json({"user": name, "token": token, "hours": hours})
        return
    console.print(token)


@user_app.command("passwd")
def user_passwd(
    name: str = typer.Argument(..., help="User whose password to set."),
    password: str | None = typer.Option(
        None,
        "--password",
        envvar="DATAENGINE_NEW_PASSWORD",
        help="New password (8+ characters, not easily guessed). Omitted: a random one is "
        "generated and printed.",
    ),
    as_json: JsonFlag = False,
) -> None:
    """Set a user's password; every session and API token of the user is revoked."""
    from db.session import transaction
    from db.users import get_user, set_password
    from engine.settings import Settings

    pw = password or secrets.token_urlsafe(12)
    factory = open_db(Settings())
    with domain_errors(), transaction(factory) as s:
        set_password(s, user=get_user(s, name=name), password=pw)
    if as_json:
        print_json({"user": name, "password": None if password else pw})
        return
    console.print(f"password of {name!r} set" + ("" if password else f" to {pw}"))


def register(app: typer.Typer) -> None:
    app.add_typer(user_app, name="user")
