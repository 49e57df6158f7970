"""Users (names unique ignoring case: ``name_key``), their API tokens and the login throttle."""

from __future__ import annotations

import datetime as dt
import unicodedata
from typing import Any

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from db.models.base import (
    Base,
    BigId,
    utcnow,
)


def name_key(name: str) -> str:
    """The case-insensitive identity of a user name: NFKC, casefolded, NFKC again."""
    folded = unicodedata.normalize("NFKC", name).strip().casefold()
    return unicodedata.normalize("NFKC", folded)


def _default_name_key(context: Any) -> str:
    return name_key(str(context.get_current_parameters()["name"]))


class User(Base):
    """``name`` is shown as typed (NFKC); ``name_key`` (unique) makes names case-insensitive."""

    __tablename__ = "user_account"
    __table_args__ = (Index("ix_user_account_name_key", "name_key", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    name_key: Mapped[str] = mapped_column(String(100), default=_default_name_key)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AuthToken(Base):
    """A login session (cookie) or API token (bearer); only the sha256 of the secret is stored."""

    __tablename__ = "auth_token"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # session | api
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column()


class LoginThrottle(Base):
    """Failed-login counters shared by every app process (``db.login_throttle``).

    ``key`` is ``account:<name_key>`` or ``addr:<client address>``; attempts are refused
    until ``locked_until`` (exponential back-off after a few free failures).
    """

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column()
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
