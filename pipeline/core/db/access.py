"""Shared plumbing of the data-access modules (``predictions``, ``drift_runs``, ``events``,
``reviews``, ``locks``).

A read takes either an :class:`~sqlalchemy.Engine` (it opens a connection of its own) or a
:class:`~sqlalchemy.Connection` the caller already holds: several reads on one connection, or
reads while a session-level advisory lock is held on it. Nothing connects at import time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TypeAlias

from sqlalchemy import Connection, Engine

Db: TypeAlias = Engine | Connection


@contextlib.contextmanager
def connected(db: Db) -> Iterator[Connection]:
    """The caller's connection as it is, or a new one from the engine (closed afterwards)."""
    if isinstance(db, Connection):
        yield db
    else:
        with db.connect() as conn:
            yield conn
