"""Creating a scratch database (tests, benchmarks), and dropping it even while something still
holds it.

``DROP DATABASE … WITH (FORCE)`` terminates the other sessions in that database, which needs
the privileges of their roles or ``pg_signal_backend``. An autovacuum worker that has just
started on the database has no role the stack's user can act for, so FORCE can be refused
(seen on a slower CI machine). A plain ``DROP DATABASE`` cancels autovacuum workers itself, so
when FORCE is refused the drop is retried plainly for a while. Only errors that can pass are
retried (a session still connected, a lock held elsewhere: each wait is bounded by
``lock_timeout``); any other error is raised at once."""

from __future__ import annotations

import re
import time

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")  # PostgreSQL cuts longer names to 63 bytes
PASSING = {
    "55006",  # object_in_use: other sessions are still connected
    "55P03",  # lock_not_available: lock_timeout ran out
    "42501",  # insufficient_privilege: FORCE may not terminate some session
}


def _sqlstate(exc: DBAPIError) -> str | None:
    return getattr(exc.orig, "sqlstate", None)


def _check_name(name: str) -> None:
    if not NAME.fullmatch(name):
        raise ValueError(
            f"database name {name!r}: ASCII letters, digits and _ only, at most 63, "
            "not starting with a digit"
        )


def create_database(admin: Engine, name: str) -> None:
    """Create the empty database ``name``; ``admin`` must be an AUTOCOMMIT engine on another
    database."""
    _check_name(name)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))


def drop_database(admin: Engine, name: str, *, timeout_s: float = 30.0) -> None:
    """Drop ``name`` if it exists; ``admin`` must be an AUTOCOMMIT engine on another database.

    Raises the last database error when the drop has not succeeded within ``timeout_s``, and
    at once on an error that waiting cannot cure."""
    _check_name(name)
    statements = (
        f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
        f'DROP DATABASE IF EXISTS "{name}"',
    )
    deadline = time.monotonic() + timeout_s
    lock_ms = max(100, int(min(timeout_s, 5.0) * 1000))
    while True:
        error: DBAPIError | None = None
        for statement in statements:
            try:
                with admin.connect() as conn:
                    conn.execute(text(f"SET lock_timeout = {lock_ms}"))
                    conn.execute(text(statement))
                return
            except DBAPIError as exc:
                if _sqlstate(exc) not in PASSING:
                    raise
                error = exc
        if time.monotonic() >= deadline:
            assert error is not None
            raise error
        time.sleep(0.5)
