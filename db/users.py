"""Users, password hashing (argon2) and opaque session / API tokens.

Every way of creating or renaming a user (CLI, admin API, importers) goes through
``normalize_name``: NFKC, no control / format / invisible / space characters, no
confusable mixed-script names (Cyrillic ``а`` inside a Latin name), and case-insensitive
uniqueness through ``user_account.name_key`` (unique index). Passwords go through
``check_password`` (length, not blank, zxcvbn strength with its common-password lists).
Changing a password revokes every session and API token of that user.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import secrets
import unicodedata

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from confusable_homoglyphs import categories
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from zxcvbn import zxcvbn

from db.errors import Conflict, InvalidInput, NotFound
from db.models import ROLES, AuthToken, User, name_key, utcnow
from db.token_cache import TOKEN_CACHE

_hasher = PasswordHasher()

MAX_NAME_LENGTH = 100
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1000
MIN_PASSWORD_SCORE = 2  # zxcvbn 0..4; 2 = "somewhat guessable": resists online guessing
# Unicode categories refused in names: controls, format (zero-width, bidi), surrogates,
# private use, unassigned, every kind of space and line/paragraph separators.
_BAD_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"}
# Scripts that legitimately mix inside one name (Japanese, Korean); any other mix is refused.
_SCRIPT_MIXES = ({"HIRAGANA", "KATAKANA", "HAN"}, {"HANGUL", "HAN"})


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def normalize_name(name: str) -> str:
    """The NFKC form of a user name, or InvalidInput saying what to change.

    Refused: empty, longer than 100 characters, control / format / invisible characters or
    spaces of any kind, and letters of several scripts in one name (homoglyph spoofing such
    as a Cyrillic ``а`` in ``admin``; Japanese kana + kanji and Korean hangul + hanja are fine).
    """
    name = unicodedata.normalize("NFKC", name).strip()
    if not name:
        raise InvalidInput("user name must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(f"user name must have at most {MAX_NAME_LENGTH} characters")
    bad = [c for c in name if unicodedata.category(c) in _BAD_CATEGORIES]
    if bad:
        codes = ", ".join(sorted({f"U+{ord(c):04X}" for c in bad}))
        raise InvalidInput(
            f"user name contains spaces or invisible/control characters ({codes}); "
            "use letters, digits and punctuation such as . _ -"
        )
    scripts = {categories.alias(c) for c in name if c.isalpha()} - {"COMMON", "INHERITED"}
    if len(scripts) > 1 and not any(scripts <= mix for mix in _SCRIPT_MIXES):
        raise InvalidInput(
            f"user name mixes scripts ({', '.join(sorted(scripts))}), which can impersonate "
            "another name; write it in one script"
        )
    return name


def check_password(password: str, *, user_inputs: tuple[str, ...] = ()) -> None:
    """InvalidInput unless ``password`` is long enough, not blank and not easily guessed.

    Strength is zxcvbn's score (its dictionaries include common-password lists); words of
    ``user_inputs`` (e.g. the user name) count as guessable.
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput(f"password must have at most {MAX_PASSWORD_LENGTH} characters")
    if not password.strip():
        raise InvalidInput("password must not be only spaces")
    if "\x00" in password:
        raise InvalidInput("password must not contain NUL characters")
    # zxcvbn refuses > 72 characters; a long password's first 72 characters decide.
    result = zxcvbn(password[:72], user_inputs=list(user_inputs))
    if result["score"] < MIN_PASSWORD_SCORE:
        feedback = result.get("feedback") or {}
        hints = [feedback.get("warning") or "", *(feedback.get("suggestions") or [])]
        why = " ".join(h for h in hints if h) or "it is easy to guess"
        raise InvalidInput(f"password is too weak: {why}")


def create_user(session: Session, *, name: str, role: str, password: str) -> User:
    """Create a user; InvalidInput for an unknown role, bad name or weak password, Conflict
    if the name (compared case-insensitively after NFKC) is taken."""
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    name = normalize_name(name)
    check_password(password, user_inputs=(name,))
    key = name_key(name)
    if session.scalar(select(User.id).where(User.name_key == key)) is not None:
        raise Conflict(f"a user named {name!r} already exists (names ignore case)")
    user = User(name=name, name_key=key, role=role, password_hash=hash_password(password))
    try:
        with session.begin_nested():
            session.add(user)
    except IntegrityError as err:
        raise Conflict(f"a user named {name!r} already exists (names ignore case)") from err
    return user


def get_user(session: Session, *, name: str | None = None, user_id: int | None = None) -> User:
    """The user with this id, or with this name (NFKC, case-insensitive); NotFound otherwise."""
    user = (
        session.get(User, user_id)
        if user_id is not None
        else session.scalar(select(User).where(User.name_key == name_key(name or "")))
    )
    if user is None:
        raise NotFound(f"no user {name or user_id!r}")
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.id)))


def find_login(session: Session, *, name: str) -> User | None:
    """The user a login name refers to (NFKC, case-insensitive), active or not."""
    return session.scalar(select(User).where(User.name_key == name_key(name)))


def verify_password(user: User | None, password: str) -> bool:
    """True when ``user`` is active and ``password`` is theirs (argon2; CPU-heavy, ~50 ms).

    For a missing or inactive user a hash is still computed, so timing tells nothing.
    Rehashes in place (caller commits) when the argon2 parameters changed.
    """
    if user is None or not user.active:
        _hasher.hash(password)
        return False
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return True


def authenticate(session: Session, *, name: str, password: str) -> User | None:
    """The active user with this name and password, or None (same answer for either mistake)."""
    user = find_login(session, name=name)
    return user if verify_password(user, password) else None


def set_password(session: Session, *, user: User, password: str) -> int:
    """Set a new password (policy checked) and revoke every session and API token of the
    user; returns how many tokens were revoked."""
    check_password(password, user_inputs=(user.name,))
    user.password_hash = hash_password(password)
    return revoke_all_tokens(session, user_id=user.id)


def revoke_all_tokens(session: Session, *, user_id: int) -> int:
    """Delete every session and API token of a user (they are logged out everywhere)."""
    result = session.execute(delete(AuthToken).where(AuthToken.user_id == user_id))
    return int(getattr(result, "rowcount", 0) or 0)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(
    session: Session,
    *,
    user: User,
    kind: str = "session",
    hours: float = 12.0,
    max_hours: float | None = None,
) -> str:
    """Create a session or API token; returns the secret (only its hash is stored).

    ``hours`` must be finite and not above ``max_hours`` when given (InvalidInput); tokens
    always expire. A negative lifetime makes an already expired token (tests).
    """
    if not math.isfinite(hours):
        raise InvalidInput("token lifetime (hours) must be a finite number")
    if max_hours is not None and not 0 < hours <= max_hours:
        raise InvalidInput(f"token lifetime must be more than 0 and at most {max_hours:g} hours")
    secret = secrets.token_urlsafe(32)
    expires = utcnow() + dt.timedelta(hours=hours)
    session.add(
        AuthToken(user_id=user.id, token_sha256=_digest(secret), kind=kind, expires_at=expires)
    )
    session.flush()
    return secret


def cached_user_for_token(session: Session, *, token: str, cache_s: float) -> User | None:
    """The user ``user_for_token`` answered for this token within the last ``cache_s``
    seconds (still live), attached to ``session``; None when not cached. No query: safe to
    call from the event loop."""
    if cache_s <= 0:
        return None
    cached = TOKEN_CACHE.get(_digest(token), ttl_s=cache_s, now=utcnow())
    return session.merge(cached, load=False) if cached is not None else None


def user_for_token(session: Session, *, token: str, cache_s: float = 0.0) -> User | None:
    """The active user a live token belongs to, or None (one query: token joined to user).

    ``cache_s`` > 0: answers come from ``db.token_cache`` for up to that many seconds (no
    query); changes to users or tokens in this process clear it (see that module).
    """
    cached = cached_user_for_token(session, token=token, cache_s=cache_s)
    if cached is not None:
        return cached
    digest = _digest(token)
    now = utcnow()
    row = session.execute(
        select(AuthToken.expires_at, User)
        .join(User, User.id == AuthToken.user_id)
        .where(AuthToken.token_sha256 == digest)
    ).first()
    if row is None or (row.expires_at is not None and row.expires_at < now):
        return None
    user = row.User
    if not user.active:
        return None
    if cache_s > 0:
        TOKEN_CACHE.put(digest, user, row.expires_at)
    return user


def revoke_token(session: Session, *, token: str) -> None:
    session.execute(delete(AuthToken).where(AuthToken.token_sha256 == _digest(token)))


def ensure_inactive_user(session: Session, *, name: str, role: str = "annotator") -> User:
    """The account called exactly ``name``, created inactive (a random password nobody
    knows, so nobody can log in as it) on first use; safe when two imports race to create it."""
    user = session.scalar(select(User).where(User.name == name))
    if user is not None:
        return user
    user = User(
        name=name,
        role=role,
        password_hash=hash_password(secrets.token_urlsafe(32)),
        active=False,
    )
    try:
        with session.begin_nested():
            session.add(user)
    except IntegrityError:
        user = session.scalar(select(User).where(User.name == name))
        if user is None:
            raise
    return user
