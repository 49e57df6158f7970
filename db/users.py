"""Users, password hashing (argon2) and opaque session / API tokens."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.errors import Conflict, InvalidInput, NotFound
from db.models import ROLES, AuthToken, User, utcnow

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def create_user(session: Session, *, name: str, role: str, password: str) -> User:
    """Create a user; InvalidInput for an unknown role or short password, Conflict if taken."""
    name = name.strip()
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    if not name:
        raise InvalidInput("user name must not be empty")
    if len(password) < 8:
        raise InvalidInput("password must have at least 8 characters")
    user = User(name=name, role=role, password_hash=hash_password(password))
    try:
        with session.begin_nested():
            session.add(user)
    except IntegrityError as err:
        raise Conflict(f"a user named {name!r} already exists") from err
    return user


def get_user(session: Session, *, name: str | None = None, user_id: int | None = None) -> User:
    user = (
        session.get(User, user_id)
        if user_id is not None
        else session.scalar(select(User).where(User.name == name))
    )
    if user is None:
        raise NotFound(f"no user {name or user_id!r}")
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.id)))


def authenticate(session: Session, *, name: str, password: str) -> User | None:
    """The active user with this name and password, or None (same answer for either mistake)."""
    user = session.scalar(select(User).where(User.name == name))
    if user is None or not user.active:
        _hasher.hash(password)  # constant-ish time for unknown users
        return None
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(
    session: Session, *, user: User, kind: str = "session", hours: float | None = 12.0
) -> str:
    """Create a session or API token; returns the secret (only its hash is stored)."""
    secret = secrets.token_urlsafe(32)
    expires = utcnow() + dt.timedelta(hours=hours) if hours is not None else None
    session.add(
        AuthToken(user_id=user.id, token_sha256=_digest(secret), kind=kind, expires_at=expires)
    )
    session.flush()
    return secret


def user_for_token(session: Session, *, token: str) -> User | None:
    """The active user a live token belongs to, or None."""
    row = session.scalar(select(AuthToken).where(AuthToken.token_sha256 == _digest(token)))
    if row is None or (row.expires_at is not None and row.expires_at < utcnow()):
        return None
    user = session.get(User, row.user_id)
    return user if user is not None and user.active else None


def revoke_token(session: Session, *, token: str) -> None:
    session.execute(delete(AuthToken).where(AuthToken.token_sha256 == _digest(token)))
