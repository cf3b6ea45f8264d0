"""Retention of the day-partitioned ``articles`` and ``predictions``: whole day partitions
older than the retention are dropped, the rows other features still use are kept.

Kept beyond retention (moved into the table's DEFAULT partition before their day's partition
is dropped, so every reader finds them where it always did):

- predictions a review item names that is labelled or still pending (reviewed accuracy,
  retraining data, the live check's reviewed items, agreement), and those items' articles;
- predictions inside the window of an active ``live`` drift reference of their model
  version (the champion's first live predictions), and their articles;
- articles of open topic candidates (and their predictions: accepting one queues reviews
  of them).

Review items that are neither labelled nor pending (expired, replaced, withdrawn) go with
their prediction, as the foreign key's ON DELETE CASCADE did before partitioning.

Predictions are dropped by ``predicted_at``; articles one day later by ``received_at``, so a
prediction made after midnight never outlives its article. A prediction made more than a
day after its article first arrived may outlive it until its own day is dropped.

Only one prune runs at a time: :data:`PRUNE_LOCK` is a session-level advisory lock held for
the whole run; a second run raises :class:`PruneBusyError` (or waits ``wait_s``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError

from pipeline.core.db.locks import advisory_unlock, try_advisory_lock
from pipeline.core.db.partitions import (
    DayPartition,
    day_start,
    default_name,
    is_partitioned,
    list_day_partitions,
    lock_partitions,
    utc_today,
)
from pipeline.core.errors import DatabaseError

PRUNE_LOCK = 0x7072756E  # "prun": one prune at a time
LOCK_TIMEOUT = "30s"  # a day's drop waits at most this long for readers and writers
# Per transaction: the lock wait; no JIT (the keep rules' subplans are cheap to run, but
# their estimates cross jit_above_cost and compiling took seconds a day); memory to hash
# the kept sets.
_SETUP = (
    f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'",
    "SET LOCAL jit = off",
    "SET LOCAL work_mem = '64MB'",
)

# A row ``x`` of predictions that retention keeps.
KEPT_PREDICTION = (
    "(EXISTS (SELECT 1 FROM review_items r WHERE r.prediction_id = x.id "
    "AND (r.label IS NOT NULL OR r.status = 'pending')) "
    "OR EXISTS (SELECT 1 FROM drift_references d WHERE d.status = 'active' "
    "AND d.kind = 'live' AND d.model_version = x.model_version "
    "AND x.predicted_at BETWEEN d.window_from AND d.window_to) "
    "OR EXISTS (SELECT 1 FROM topic_candidates c "
    "CROSS JOIN LATERAL jsonb_array_elements_text(c.members) AS m(id) "
    "WHERE c.status = 'open' AND m.id = x.article_id))"
)
# A row ``x`` of articles that retention keeps (kept predictions are in the DEFAULT
# partition by the time their articles' day is dropped).
KEPT_ARTICLE = (
    "(EXISTS (SELECT 1 FROM review_items r WHERE r.article_id = x.id "
    "AND (r.label IS NOT NULL OR r.status = 'pending')) "
    "OR EXISTS (SELECT 1 FROM ONLY predictions_default p WHERE p.article_id = x.id) "
    "OR EXISTS (SELECT 1 FROM topic_candidates c "
    "CROSS JOIN LATERAL jsonb_array_elements_text(c.members) AS m(id) "
    "WHERE c.status = 'open' AND m.id = x.id))"
)
_KEPT = {"predictions": KEPT_PREDICTION, "articles": KEPT_ARTICLE}
_KEY = {"predictions": "predicted_at", "articles": "received_at"}
_REVIEW_COLUMN = {"predictions": "prediction_id", "articles": "article_id"}


class PruneBusyError(DatabaseError):
    """Another prune holds :data:`PRUNE_LOCK`."""


@dataclasses.dataclass(frozen=True)
class PartitionDrop:
    """A day partition dropped (or, in a dry run, that would be): its rows, those kept
    beyond retention and its size on disk."""

    table: str
    name: str
    day: str
    rows: int
    kept: int
    bytes: int


@dataclasses.dataclass(frozen=True)
class PruneSummary:
    dry_run: bool
    retention_days: int
    predictions_before: datetime  # predictions older than this are dropped
    articles_before: datetime  # articles older than this are dropped
    dropped: tuple[PartitionDrop, ...]
    default_deleted: dict[str, int]  # old, no longer kept rows deleted from DEFAULT partitions
    review_items_deleted: int  # expired/replaced/withdrawn items of dropped rows
    seconds: float

    @property
    def bytes_freed(self) -> int:
        return sum(d.bytes for d in self.dropped)

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["predictions_before"] = self.predictions_before.isoformat()
        out["articles_before"] = self.articles_before.isoformat()
        out["bytes_freed"] = self.bytes_freed
        return out

    def lines(self) -> list[str]:
        """A short human summary."""
        verb = "would drop" if self.dry_run else "dropped"
        out = [
            f"retention {self.retention_days} days: predictions before "
            f"{self.predictions_before:%Y-%m-%d}, articles before {self.articles_before:%Y-%m-%d}"
        ]
        for d in self.dropped:
            out.append(
                f"  {verb} {d.name}: {d.rows:,} rows, {d.kept:,} kept beyond retention, "
                f"{d.bytes / 1e6:,.1f} MB"
            )
        if not self.dropped:
            out.append(f"  no day partition old enough to drop ({verb} nothing)")
        gone = ", ".join(f"{t} {n:,}" for t, n in self.default_deleted.items())
        out.append(f"  old rows no longer kept, deleted from DEFAULT partitions: {gone}")
        if not self.dry_run:
            out.append(
                f"  unlabelled review items of those rows deleted: {self.review_items_deleted:,}"
            )
        out.append(f"  {self.bytes_freed / 1e6:,.1f} MB freed in {self.seconds:.1f} s")
        return out


def cutoffs(now: datetime, retention_days: int) -> tuple[datetime, datetime]:
    """(predictions before, articles before): UTC midnights; articles keep one day more."""
    if retention_days < 1:
        raise ValueError(f"retention must be at least 1 day, got {retention_days}")
    predictions_before = day_start(utc_today(now) - timedelta(days=retention_days))
    return predictions_before, predictions_before - timedelta(days=1)


def holder_pid(conn: Connection) -> int | None:
    """The backend that holds :data:`PRUNE_LOCK`, if any."""
    pid = conn.execute(
        text(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid = 0 AND objid = :k AND objsubid = 1"
        ),
        {"k": PRUNE_LOCK},
    ).scalar()
    return None if pid is None else int(pid)


@contextmanager
def prune_lock(engine: Engine, *, wait_s: float = 0.0) -> Iterator[Connection]:
    """A connection holding :data:`PRUNE_LOCK` (session level) until the block ends."""
    with engine.connect() as conn:
        deadline = time.monotonic() + wait_s
        while not try_advisory_lock(conn, PRUNE_LOCK):
            if time.monotonic() >= deadline:
                pid = holder_pid(conn)
                conn.rollback()
                who = f" (database backend pid {pid})" if pid else ""
                raise PruneBusyError(
                    f"another prune is running{who}; this one did nothing. Wait for it "
                    "or run again with a wait."
                )
            conn.rollback()
            time.sleep(0.2)
        conn.commit()
        try:
            yield conn
        finally:
            conn.rollback()
            advisory_unlock(conn, PRUNE_LOCK)
            conn.commit()


def _count(conn: Connection, sql: str, params: dict[str, Any] | None = None) -> int:
    return int(conn.execute(text(sql), params or {}).scalar_one())


def _setup(conn: Connection) -> None:
    for statement in _SETUP:
        conn.execute(text(statement))


def _measure(conn: Connection, part: DayPartition) -> PartitionDrop:
    rows = _count(conn, f'SELECT count(*) FROM ONLY "{part.name}"')
    kept = _count(conn, f'SELECT count(*) FROM ONLY "{part.name}" x WHERE {_KEPT[part.table]}')
    size = _count(conn, "SELECT pg_total_relation_size(to_regclass(:n))", {"n": part.name})
    return PartitionDrop(part.table, part.name, part.day.isoformat(), rows, kept, size)


def _drop_day(conn: Connection, part: DayPartition) -> tuple[PartitionDrop, int]:
    """Copy the kept rows out, delete the unkept review items of the rest, drop the
    partition and put the kept rows back (the DEFAULT partition takes them: no day
    partition covers their day any more). One transaction, the caller's."""
    _setup(conn)
    lock_partitions(conn)
    measured = _measure(conn, part)
    conn.execute(
        text(
            f'CREATE TEMP TABLE nf_kept ON COMMIT DROP AS SELECT * FROM ONLY "{part.name}" x '
            f"WHERE {_KEPT[part.table]}"
        )
    )
    column = _REVIEW_COLUMN[part.table]
    reviews = conn.execute(
        text(
            f'DELETE FROM review_items r WHERE EXISTS (SELECT 1 FROM ONLY "{part.name}" x '
            f"WHERE x.id = r.{column}) AND NOT EXISTS (SELECT 1 FROM nf_kept k "
            f"WHERE k.id = r.{column})"
        )
    ).rowcount
    conn.execute(text(f'DROP TABLE "{part.name}"'))
    conn.execute(text(f"INSERT INTO {part.table} SELECT * FROM nf_kept"))
    conn.execute(text("DROP TABLE nf_kept"))
    return measured, int(reviews)


def _stale_default(table: str, before_param: str) -> str:
    return (
        f'ONLY "{default_name(table)}" AS x WHERE x.{_KEY[table]} < :{before_param} '
        f"AND NOT {_KEPT[table]}"
    )


def _clean_default(
    conn: Connection, table: str, before: datetime, *, dry_run: bool
) -> tuple[int, int]:
    """Rows of ``table``'s DEFAULT partition older than ``before`` and no longer kept
    (a review expired since, or rows that landed there before their day had a partition):
    (rows, review items) deleted, or counted in a dry run."""
    where = _stale_default(table, "b")
    _setup(conn)
    if dry_run:
        return _count(conn, f"SELECT count(*) FROM {where}", {"b": before}), 0
    column = _REVIEW_COLUMN[table]
    reviews = conn.execute(
        text(
            f"DELETE FROM review_items r WHERE EXISTS (SELECT 1 FROM {where} AND x.id = r.{column})"
        ),
        {"b": before},
    ).rowcount
    rows = conn.execute(text(f"DELETE FROM {where}"), {"b": before}).rowcount
    return int(rows), int(reviews)


def _ends(part: DayPartition) -> datetime:
    return day_start(part.day) + timedelta(days=1)


def prune(
    engine: Engine,
    *,
    retention_days: int,
    now: datetime | None = None,
    dry_run: bool = False,
    wait_s: float = 0.0,
) -> PruneSummary:
    """Drop the day partitions older than the retention (predictions first, then articles,
    oldest day first, one transaction per day) keeping what other features use; then
    delete old rows that are no longer kept from the DEFAULT partitions. ``dry_run``:
    measure only. Raises :class:`PruneBusyError` when another prune runs,
    :class:`~pipeline.core.errors.DatabaseError` when the tables are not partitioned or a
    day's partition stays locked (that day is left as it was)."""
    started = time.monotonic()
    now = now or datetime.now(UTC)
    predictions_before, articles_before = cutoffs(now, retention_days)
    before = {"predictions": predictions_before, "articles": articles_before}
    dropped: list[PartitionDrop] = []
    deleted = {"predictions": 0, "articles": 0}
    reviews = 0
    with prune_lock(engine, wait_s=wait_s) as conn:
        if not all(is_partitioned(conn, t) for t in before):
            conn.rollback()
            raise DatabaseError(
                "articles and predictions are not partitioned: run `newsflow db upgrade`"
            )
        old = {
            t: [p for p in list_day_partitions(conn, t) if _ends(p) <= b] for t, b in before.items()
        }
        conn.rollback()
        for table in ("predictions", "articles"):
            for part in old[table]:
                try:
                    with conn.begin():
                        if dry_run:
                            _setup(conn)
                            dropped.append(_measure(conn, part))
                            continue
                        measured, n = _drop_day(conn, part)
                        dropped.append(measured)
                        reviews += n
                except OperationalError as exc:
                    raise DatabaseError(
                        f"could not drop {part.name} (waited {LOCK_TIMEOUT} for its lock, or "
                        f"the database failed): {exc.orig}; that day is unchanged, the days "
                        "before it are done"
                    ) from exc
            with conn.begin():
                deleted[table], n = _clean_default(conn, table, before[table], dry_run=dry_run)
                reviews += n
    return PruneSummary(
        dry_run=dry_run,
        retention_days=retention_days,
        predictions_before=predictions_before,
        articles_before=articles_before,
        dropped=tuple(dropped),
        default_deleted=deleted,
        review_items_deleted=reviews,
        seconds=time.monotonic() - started,
    )
