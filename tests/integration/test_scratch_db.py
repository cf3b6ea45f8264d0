"""Dropping a scratch database while a session FORCE may not terminate still holds it."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from pipeline.core.db.scratch import drop_database
from pipeline.core.settings import Settings
from pipeline.stack import postgres


def test_drop_waits_out_a_session_force_may_not_terminate(stack: Settings) -> None:
    """CI once failed at teardown: FORCE was refused for a session of another role. A
    superuser session (which the stack's role may never terminate) stands in for it."""
    name = f"nf_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(stack.database_url("postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        holder = threading.Thread(
            target=postgres._psql, args=(stack, "SELECT pg_sleep(4)"), kwargs={"database": name}
        )
        holder.start()
        deadline = time.monotonic() + 10
        with admin.connect() as conn:
            while time.monotonic() < deadline:
                held = conn.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE datname = :n"), {"n": name}
                ).scalar_one()
                if held:
                    break
                time.sleep(0.1)
        assert held, "the superuser session never connected"
        with admin.connect() as conn:  # FORCE alone is refused here
            try:
                conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
                refused = False
            except Exception as exc:
                refused = "superuser" in str(exc) or "terminate" in str(exc)
        assert refused
        started = time.monotonic()
        drop_database(admin, name, timeout_s=30)
        waited = time.monotonic() - started
        holder.join(10)
        with admin.connect() as conn:
            left = conn.execute(
                text("SELECT count(*) FROM pg_database WHERE datname = :n"), {"n": name}
            ).scalar_one()
        assert left == 0 and waited < 30
    finally:
        drop_database(admin, name)
        admin.dispose()


@pytest.mark.parametrize(
    "name", ['x"; DROP DATABASE postgres; --', "a" * 64, "db\u00b2", "\u0394b_x", "1abc", ""]
)
def test_a_name_that_is_not_a_plain_identifier_is_refused(stack: Settings, name: str) -> None:
    """64 characters would be cut to 63 by PostgreSQL and drop another database."""
    admin = create_engine(stack.database_url("postgres"), isolation_level="AUTOCOMMIT")
    try:
        with pytest.raises(ValueError, match="letters, digits"):
            drop_database(admin, name)
    finally:
        admin.dispose()


def test_a_held_lock_ends_in_an_error_within_the_timeout(stack: Settings) -> None:
    """Found by attack: a transaction holding a lock on the database (from another database)
    blocked the drop for as long as it stayed open."""
    name = f"nf_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(stack.database_url("postgres"), isolation_level="AUTOCOMMIT")
    holder = create_engine(stack.database_url("postgres"))
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        with holder.connect() as held:
            held.execute(text(f"COMMENT ON DATABASE \"{name}\" IS 'held'"))  # open transaction
            started = time.monotonic()
            with pytest.raises(DBAPIError):
                drop_database(admin, name, timeout_s=2)
            assert time.monotonic() - started < 15
            held.rollback()
        drop_database(admin, name, timeout_s=10)
        with admin.connect() as conn:
            left = conn.execute(
                text("SELECT count(*) FROM pg_database WHERE datname = :n"), {"n": name}
            ).scalar_one()
        assert left == 0
    finally:
        holder.dispose()
        drop_database(admin, name)
        admin.dispose()


def test_an_error_that_cannot_pass_is_raised_at_once(stack: Settings) -> None:
    """An engine that is not AUTOCOMMIT: DROP DATABASE cannot run in a transaction block."""
    engine = create_engine(stack.database_url("postgres"))
    try:
        started = time.monotonic()
        with pytest.raises(DBAPIError, match="transaction block"):
            drop_database(engine, "nf_test_never_created", timeout_s=30)
        assert time.monotonic() - started < 5
    finally:
        engine.dispose()
