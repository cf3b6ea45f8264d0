"""Accounts and login sessions in Postgres."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from monitoring.web.security import (
    DUMMY_HASH,
    hash_password,
    new_token,
    token_digest,
    verify_password,
)
from pipeline.core.errors import NewsflowError

ROLES = ("reviewer", "admin")
USERNAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,63}$")


class UserError(NewsflowError):
    """A bad username, password or role, or a duplicate account."""


@dataclasses.dataclass(frozen=True)
class User:
    id: int
    username: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def add_user(engine: Engine, username: str, password: str, role: str) -> User:
    if not USERNAME.match(username):
        raise UserError(
            "usernames are 2-64 characters: lower-case letters, digits, '.', '_' or '-'"
        )
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    try:
        hashed = hash_password(password)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    try:
        with engine.begin() as conn:
            uid = conn.execute(
                text(
                    "INSERT INTO users (username, password_hash, role) VALUES (:u, :h, :r) "
                    "RETURNING id"
                ),
                {"u": username, "h": hashed, "r": role},
            ).scalar_one()
    except IntegrityError:
        raise UserError(f"user {username!r} exists") from None
    return User(int(uid), username, role)


def authenticate(engine: Engine, username: str, password: str) -> User | None:
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT id, username, role, password_hash FROM users "
                "WHERE username = :u AND NOT disabled"
            ),
            {"u": username},
        ).first()
    if row is None:
        verify_password(password, DUMMY_HASH)  # same cost as a real check
        return None
    if not verify_password(password, row.password_hash):
        return None
    return User(int(row.id), row.username, row.role)


def start_session(engine: Engine, user: User, hours: float) -> tuple[str, str]:
    """A new session: (cookie token, CSRF token)."""
    token, csrf = new_token(), new_token()
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours)
    with engine.begin() as conn:
        conn.execute(
            text("DELETE FROM web_sessions WHERE expires_at < now()"),
        )
        conn.execute(
            text(
                "INSERT INTO web_sessions (token_hash, user_id, csrf_token, expires_at) "
                "VALUES (:t, :u, :c, :e)"
            ),
            {"t": token_digest(token), "u": user.id, "c": csrf, "e": expires},
        )
    return token, csrf


def session_user(engine: Engine, token: str) -> tuple[User, str] | None:
    """The signed-in user and the session's CSRF token, or None."""
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT u.id, u.username, u.role, s.csrf_token FROM web_sessions s "
                "JOIN users u ON u.id = s.user_id "
                "WHERE s.token_hash = :t AND s.expires_at > now() AND NOT u.disabled"
            ),
            {"t": token_digest(token)},
        ).first()
    if row is None:
        return None
    return User(int(row.id), row.username, row.role), str(row.csrf_token)


def end_session(engine: Engine, token: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            text("DELETE FROM web_sessions WHERE token_hash = :t"), {"t": token_digest(token)}
        )
