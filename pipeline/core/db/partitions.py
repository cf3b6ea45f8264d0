"""Day partitions of ``articles`` (by ``received_at``) and ``predictions`` (by
``predicted_at``): PostgreSQL declarative range partitions, one per UTC day, named
``<table>_pYYYYMMDD``, plus a DEFAULT partition ``<table>_default``.

The DEFAULT partition takes any row no day partition covers, so a write is never refused
for its timestamp (a clock far off, the partitions ahead not created for days). It also
holds the rows retention keeps beyond their day (see :mod:`pipeline.core.db.retention`).
When a day partition is created for a day the DEFAULT partition already has rows of, they
are moved into it. Every change of partitions holds :data:`PARTITIONS_LOCK` (transaction
level), so the scheduled job, ``stack up`` and ``db upgrade`` never collide.

Writes take the caller's :class:`~sqlalchemy.Connection` inside its transaction (the caller
commits); :func:`create_partitions_ahead` opens its own.

Example:
    >>> create_partitions_ahead(engine, ahead=7)  # doctest: +SKIP
    ['articles_p20261208', 'predictions_p20261208', ...]
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError

log = logging.getLogger("newsflow.partitions")

PARTITIONS_LOCK = 0x70617274  # "part": one change of partitions at a time
PARTITION_KEYS = {"articles": "received_at", "predictions": "predicted_at"}
# Creating or attaching a partition locks the parent table, which queues every worker's
# INSERT behind it: give up after this long rather than stall the stream (the next run retries).
PARTITION_LOCK_TIMEOUT = "5s"


@dataclasses.dataclass(frozen=True)
class DayPartition:
    """One day partition: rows whose key lies in ``[day 00:00 UTC, next day 00:00 UTC)``."""

    table: str
    name: str
    day: date


def utc_today(now: datetime | None = None) -> date:
    return (now or datetime.now(UTC)).astimezone(UTC).date()


def day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def default_name(table: str) -> str:
    return f"{table}_default"


def _key(table: str) -> str:
    if table not in PARTITION_KEYS:
        raise ValueError(f"{table!r} is not a day-partitioned table")
    return PARTITION_KEYS[table]


def is_partitioned(conn: Connection, table: str) -> bool:
    """True when ``table`` exists and is a partitioned table."""
    kind = conn.execute(
        text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:t)"), {"t": table}
    ).scalar()
    return kind == "p"


def list_day_partitions(conn: Connection, table: str) -> list[DayPartition]:
    """The day partitions of ``table``, oldest first (the DEFAULT partition is not one)."""
    pattern = re.compile(rf"{re.escape(table)}_p(\d{{8}})")
    names = conn.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(:t)"
        ),
        {"t": table},
    ).scalars()
    found = []
    for name in names:
        m = pattern.fullmatch(str(name))
        if m:
            found.append(DayPartition(table, str(name), datetime.strptime(m[1], "%Y%m%d").date()))
    return sorted(found, key=lambda p: p.day)


def lock_partitions(conn: Connection) -> None:
    """Hold :data:`PARTITIONS_LOCK` until the transaction ends (waits for another holder)."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PARTITIONS_LOCK})


def _literal(day: date) -> str:
    return f"'{day:%Y-%m-%d} 00:00:00+00'"


def _create_day(conn: Connection, table: str, day: date) -> None:
    """Create ``table``'s partition for ``day``; rows of that day in the DEFAULT partition
    move into it (attaching checks the DEFAULT partition holds none of them any more)."""
    key, name, default = _key(table), partition_name(table, day), default_name(table)
    lo, hi = _literal(day), _literal(day + timedelta(days=1))
    bounds = f"FOR VALUES FROM ({lo}) TO ({hi})"
    in_range = f"{key} >= {lo} AND {key} < {hi}"
    stray = conn.execute(
        text(f'SELECT EXISTS (SELECT 1 FROM ONLY "{default}" WHERE {in_range})')
    ).scalar_one()
    if not stray:
        conn.execute(text(f'CREATE TABLE "{name}" PARTITION OF "{table}" {bounds}'))
        return
    conn.execute(text(f'CREATE TABLE "{name}" (LIKE "{table}" INCLUDING DEFAULTS)'))
    # no new row of that day may land in DEFAULT between the move and the attach
    conn.execute(text(f'LOCK TABLE ONLY "{default}" IN EXCLUSIVE MODE'))
    conn.execute(
        text(
            f'WITH moved AS (DELETE FROM ONLY "{default}" WHERE {in_range} RETURNING *) '
            f'INSERT INTO "{name}" SELECT * FROM moved'
        )
    )
    conn.execute(text(f'ALTER TABLE "{table}" ATTACH PARTITION "{name}" {bounds}'))


def days_ahead(today: date, ahead: int) -> list[date]:
    """``today`` and the ``ahead`` days after it."""
    if ahead < 0:
        raise ValueError(f"days ahead must be >= 0, got {ahead}")
    return [today + timedelta(days=i) for i in range(ahead + 1)]


def ensure_partitions(
    conn: Connection, *, days: Iterable[date], tables: Iterable[str] = tuple(PARTITION_KEYS)
) -> list[str]:
    """Create what is missing of: each table's DEFAULT partition and its partitions for
    ``days``. Returns the names created. Takes :data:`PARTITIONS_LOCK`; the caller
    commits."""
    lock_partitions(conn)
    wanted = sorted(set(days))
    created: list[str] = []
    for table in tables:
        _key(table)
        default = default_name(table)
        if conn.execute(text("SELECT to_regclass(:t)"), {"t": default}).scalar() is None:
            conn.execute(text(f'CREATE TABLE "{default}" PARTITION OF "{table}" DEFAULT'))
            created.append(default)
        have = {p.day for p in list_day_partitions(conn, table)}
        for day in wanted:
            if day not in have:
                _create_day(conn, table, day)
                created.append(partition_name(table, day))
    return created


def create_partitions_ahead(
    engine: Engine, *, ahead: int, now: datetime | None = None
) -> list[str]:
    """:func:`ensure_partitions` for today (UTC) and ``ahead`` days, each day in a transaction
    of its own with a lock timeout (:data:`PARTITION_LOCK_TIMEOUT`): a day that cannot get its
    locks is logged and left to the next run, and the other days are still created. Nothing
    when the tables are not partitioned (migrations not applied yet)."""
    with engine.connect() as conn:
        if not all(is_partitioned(conn, t) for t in PARTITION_KEYS):
            return []
    created: list[str] = []
    for day in days_ahead(utc_today(now), ahead):
        try:
            with engine.begin() as conn:
                conn.execute(text(f"SET LOCAL lock_timeout = '{PARTITION_LOCK_TIMEOUT}'"))
                created += ensure_partitions(conn, days=[day])
        except OperationalError as exc:  # lock timeout: readers hold the parent table
            log.warning("partition for %s not created this time: %s", day, str(exc)[:200])
    return created
