"""Dropping a scratch database while a session FORCE may not terminate still holds it."""

from __future__ import annotations

import threading
import time
import uuid

from sqlalchemy import create_engine, text

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


def test_a_name_that_is_not_a_plain_identifier_is_refused(stack: Settings) -> None:
    import pytest

    admin = create_engine(stack.database_url("postgres"), isolation_level="AUTOCOMMIT")
    try:
        with pytest.raises(ValueError, match="letters, digits"):
            drop_database(admin, 'x"; DROP DATABASE postgres; --')
    finally:
        admin.dispose()
