"""Dropping a scratch database (tests, benchmarks) even while something still holds it.

``DROP DATABASE … WITH (FORCE)`` terminates the other sessions in that database, which needs
the privileges of their roles or ``pg_signal_backend``. An autovacuum worker that has just
started on the database has no role the stack's user can act for, so FORCE can be refused
(seen on a slower CI machine). A plain ``DROP DATABASE`` cancels autovacuum workers itself, so
when FORCE is refused the drop is retried plainly for a while."""

from __future__ import annotations

import time

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError


def drop_database(admin: Engine, name: str, *, timeout_s: float = 30.0) -> None:
    """Drop ``name`` if it exists; ``admin`` must be an AUTOCOMMIT engine on another database.

    Raises the last database error when the drop has not succeeded within ``timeout_s``."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"database name {name!r}: letters, digits and _ only")
    statements = (
        f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
        f'DROP DATABASE IF EXISTS "{name}"',
    )
    deadline = time.monotonic() + timeout_s
    while True:
        error: DBAPIError | None = None
        for statement in statements:
            try:
                with admin.connect() as conn:
                    conn.execute(text(statement))
                return
            except DBAPIError as exc:  # refused FORCE, or still in use: try the next form
                error = exc
        if time.monotonic() >= deadline:
            assert error is not None
            raise error
        time.sleep(0.5)
