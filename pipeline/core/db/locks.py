"""Postgres session-level advisory locks (single flight across processes and hosts).

A session-level lock belongs to the connection that took it: pass the same
:class:`~sqlalchemy.Connection` to :func:`try_advisory_lock` and :func:`advisory_unlock`, and
keep it open while the lock is needed. Transaction control (``commit``) stays with the caller.
"""

from __future__ import annotations

from sqlalchemy import Connection, text


def try_advisory_lock(conn: Connection, key: int) -> bool:
    """``pg_try_advisory_lock(key)`` on ``conn``: True when this session now holds it."""
    return bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar_one())


def advisory_unlock(conn: Connection, key: int) -> bool:
    """``pg_advisory_unlock(key)`` on ``conn``: True when this session held it."""
    return bool(conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key}).scalar_one())
