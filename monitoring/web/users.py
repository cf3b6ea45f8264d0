"""Accounts and login sessions: the rules (usernames, roles, password strength, constant-time
sign-in) over :mod:`pipeline.core.db.users`, which stores them."""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import Engine

from monitoring.web.security import (
    DUMMY_HASH,
    hash_password,
    new_token,
    token_digest,
    verify_password,
)
from pipeline.core.db import users as db_users
from pipeline.core.db.users import User
from pipeline.core.errors import NewsflowError

__all__ = [
    "ROLES",
    "USERNAME",
    "User",
    "UserError",
    "add_user",
    "authenticate",
    "end_session",
    "session_user",
    "start_session",
]

ROLES = ("reviewer", "admin")
USERNAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,63}$")


class UserError(NewsflowError):
    """A bad username, password or role, or a duplicate account."""


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
            return db_users.insert_user(conn, username=username, password_hash=hashed, role=role)
    except db_users.DuplicateUser as exc:
        raise UserError(str(exc)) from None


def authenticate(engine: Engine, username: str, password: str) -> User | None:
    login = db_users.select_login(engine, username=username)
    if login is None:
        verify_password(password, DUMMY_HASH)  # same cost as a real check
        return None
    if not verify_password(password, login.password_hash):
        return None
    return login.user


def start_session(engine: Engine, user: User, hours: float) -> tuple[str, str]:
    """A new session: (cookie token, CSRF token)."""
    token, csrf = new_token(), new_token()
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours)
    with engine.begin() as conn:
        db_users.insert_web_session(
            conn,
            token_hash=token_digest(token),
            user_id=user.id,
            csrf_token=csrf,
            expires_at=expires,
        )
    return token, csrf


def session_user(engine: Engine, token: str) -> tuple[User, str] | None:
    """The signed-in user and the session's CSRF token, or None."""
    found = db_users.select_session_user(engine, token_hash=token_digest(token))
    return (found.user, found.csrf_token) if found else None


def end_session(engine: Engine, token: str) -> None:
    with engine.begin() as conn:
        db_users.delete_web_session(conn, token_hash=token_digest(token))
