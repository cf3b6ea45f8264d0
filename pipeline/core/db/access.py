"""Shared plumbing of the data-access modules under ``pipeline.core.db``.

A read takes either an :class:`~sqlalchemy.Engine` (it opens a connection of its own) or a
:class:`~sqlalchemy.Connection` the caller already holds: several reads on one connection, or
reads while a session-level advisory lock is held on it. Nothing connects at import time.
Bulk inserts bind a batch as one array per column (:func:`unnest_rows`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeAlias

from sqlalchemy import (
    Connection,
    Engine,
    FromClause,
    Select,
    String,
    Text,
    bindparam,
    cast,
    column,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import TypeEngine

Db: TypeAlias = Engine | Connection


@contextlib.contextmanager
def connected(db: Db) -> Iterator[Connection]:
    """The caller's connection as it is, or a new one from the engine (closed afterwards)."""
    if isinstance(db, Connection):
        yield db
    else:
        with db.connect() as conn:
            yield conn


def unnest_rows(
    table: FromClause, rows: Sequence[Mapping[str, Any]], *, as_text: Sequence[str] = ()
) -> Select[Any]:
    """``SELECT * FROM unnest(<one array per column>)``: a batch's rows bound as one array
    per column, so the statement's text (and its parsing, client and server side) does not
    grow with the batch as a multi-row VALUES list does. A column in ``as_text`` (an array
    column: unnest would flatten it) travels as its array literal and is cast back."""
    names = list(rows[0])

    def carried(name: str) -> TypeEngine[Any]:
        # Strings travel unbounded: an explicit cast to VARCHAR(n) would silently cut an
        # over-long value, where the INSERT's own assignment to the column raises.
        typ = table.c[name].type
        return Text() if name in as_text or isinstance(typ, String) else typ

    arrays = [
        cast(bindparam(f"u_{n}", [r[n] for r in rows], type_=ARRAY(carried(n))), ARRAY(carried(n)))
        for n in names
    ]
    derived = (
        func.unnest(*arrays).table_valued(*(column(n, carried(n)) for n in names)).render_derived()
    )
    return select(
        *(
            cast(derived.c[n], table.c[n].type).label(n) if n in as_text else derived.c[n]
            for n in names
        )
    )
