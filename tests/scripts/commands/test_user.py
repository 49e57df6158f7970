"""`dataengine user`: add, list, token and passwd (text and --json) and their refusals."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from db.session import make_engine, make_session_factory
from db.users import authenticate, user_for_token
from scripts.cli import app

runner = CliRunner()


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (args, result.output)
    return result.stdout


def test_token_and_passwd_work_on_the_database(cli_db: str) -> None:
    _ok(["user", "add", "rev", "--role", "reviewer", "--password", "rev-secret-pw-7"])
    doc = json.loads(_ok(["user", "token", "rev", "--hours", "2", "-j"]))
    assert doc["user"] == "rev" and doc["hours"] == 2.0
    plain = _ok(["user", "token", "rev", "--hours", "1"]).strip()
    changed = json.loads(_ok(["user", "passwd", "rev", "--json"]))
    assert changed["user"] == "rev" and len(changed["password"]) >= 8
    engine = make_engine(cli_db)
    try:
        with make_session_factory(engine)() as s:
            assert user_for_token(s, token=doc["token"]) is None, "passwd revokes the tokens"
            assert user_for_token(s, token=plain) is None
            assert authenticate(s, name="rev", password=changed["password"]) is not None
            assert authenticate(s, name="rev", password="rev-secret-pw-7") is None
    finally:
        engine.dispose()
    said = _ok(["user", "passwd", "rev", "--password", "another-secret-pw-9"])
    assert said.strip() == "password of 'rev' set"
    table = _ok(["user", "list"])
    assert "rev" in table and "reviewer" in table and "yes" in table


def test_unknown_user_and_weak_password_fail_with_one_line(cli_db: str) -> None:
    for args in (["user", "token", "ghost"], ["user", "passwd", "ghost", "--password", "x" * 12]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1, (args, result.output)
        assert "ghost" in result.output and "Traceback" not in result.output
    weak = runner.invoke(app, ["user", "add", "w", "--role", "annotator", "--password", "abc"])
    assert weak.exit_code == 1 and "error:" in weak.output
    assert json.loads(_ok(["user", "list", "--json"])) == []
