"""Users, argon2 passwords and tokens on both databases."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from db.errors import Conflict, InvalidInput
from db.users import authenticate, create_user, issue_token, revoke_token, user_for_token


def test_password_and_tokens(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        u = create_user(s, name="ann", role="annotator", password="long-enough-pw")
        s.commit()
        assert u.password_hash.startswith("$argon2")
        assert authenticate(s, name="ann", password="long-enough-pw") is u
        assert authenticate(s, name="ann", password="wrong-one") is None
        assert authenticate(s, name="nobody", password="long-enough-pw") is None
        token = issue_token(s, user=u, kind="session", hours=1)
        assert user_for_token(s, token=token) is u
        assert user_for_token(s, token=token + "x") is None
        expired = issue_token(s, user=u, kind="api", hours=-1)
        assert user_for_token(s, token=expired) is None
        revoke_token(s, token=token)
        assert user_for_token(s, token=token) is None


def test_user_errors(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        create_user(s, name="ann", role="annotator", password="long-enough-pw")
        with pytest.raises(Conflict):
            create_user(s, name="ann", role="admin", password="long-enough-pw")
        with pytest.raises(InvalidInput, match="unknown role"):
            create_user(s, name="bob", role="king", password="long-enough-pw")
        with pytest.raises(InvalidInput, match="8 characters"):
            create_user(s, name="bob", role="admin", password="short")
