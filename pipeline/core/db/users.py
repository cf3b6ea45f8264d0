"""Data access for the web app's accounts (``users``) and login sessions (``web_sessions``).

Passwords and tokens arrive here already hashed (``monitoring.web.security``): this module
stores and finds rows, it never sees a secret in the clear. Writes run on the caller's
connection (the caller commits); reads take an engine or a connection.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from pipeline.core.db.access import Db, connected
from pipeline.core.errors import NewsflowError


class DuplicateUser(NewsflowError):
    """An account with this username exists already."""


@dataclasses.dataclass(frozen=True)
class User:
    id: int
    username: str
    role: str  # reviewer | admin

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclasses.dataclass(frozen=True)
class StoredLogin:
    """An enabled account and its password hash, for checking a sign-in."""

    user: User
    password_hash: str


@dataclasses.dataclass(frozen=True)
class SessionUser:
    """The account behind a live session, and the session's CSRF token."""

    user: User
    csrf_token: str


def insert_user(conn: Connection, *, username: str, password_hash: str, role: str) -> User:
    """Add an account; raises :class:`DuplicateUser` when the username is taken."""
    try:
        with conn.begin_nested():
            uid = conn.execute(
                text(
                    "INSERT INTO users (username, password_hash, role) VALUES (:u, :h, :r) "
                    "RETURNING id"
                ),
                {"u": username, "h": password_hash, "r": role},
            ).scalar_one()
    except IntegrityError:
        raise DuplicateUser(f"user {username!r} exists") from None
    return User(int(uid), username, role)


def select_login(db: Db, *, username: str) -> StoredLogin | None:
    """The enabled account called ``username``, with its password hash."""
    with connected(db) as conn:
        row = conn.execute(
            text(
                "SELECT id, username, role, password_hash FROM users "
                "WHERE username = :u AND NOT disabled"
            ),
            {"u": username},
        ).first()
    if row is None:
        return None
    return StoredLogin(User(int(row.id), str(row.username), str(row.role)), str(row.password_hash))


def insert_web_session(
    conn: Connection, *, token_hash: str, user_id: int, csrf_token: str, expires_at: datetime
) -> None:
    """Store a new session, removing expired ones first."""
    conn.execute(text("DELETE FROM web_sessions WHERE expires_at < now()"))
    conn.execute(
        text(
            "INSERT INTO web_sessions (token_hash, user_id, csrf_token, expires_at) "
            "VALUES (:t, :u, :c, :e)"
        ),
        {"t": token_hash, "u": user_id, "c": csrf_token, "e": expires_at},
    )


def select_session_user(db: Db, *, token_hash: str) -> SessionUser | None:
    """The enabled account of an unexpired session, or None."""
    with connected(db) as conn:
        row = conn.execute(
            text(
                "SELECT u.id, u.username, u.role, s.csrf_token FROM web_sessions s "
                "JOIN users u ON u.id = s.user_id "
                "WHERE s.token_hash = :t AND s.expires_at > now() AND NOT u.disabled"
            ),
            {"t": token_hash},
        ).first()
    if row is None:
        return None
    return SessionUser(User(int(row.id), str(row.username), str(row.role)), str(row.csrf_token))


def delete_web_session(conn: Connection, *, token_hash: str) -> None:
    conn.execute(text("DELETE FROM web_sessions WHERE token_hash = :t"), {"t": token_hash})
