"""What ``newsflow replay`` (:mod:`monitoring.replay`, a proof tool) reads back to score a
simulated day: a stream's predictions in a time window, the review load of a window, row
counts and bytes of the product tables. Reads only."""

from __future__ import annotations

import dataclasses
from datetime import datetime

from sqlalchemy import text

from pipeline.core.db.access import Db, connected

TABLES = ("articles", "predictions", "review_items", "drift_runs", "model_events", "alerts")
PARTITIONED = ("articles", "predictions")


@dataclasses.dataclass(frozen=True)
class PredictedRow:
    article_id: str
    topic: str
    model_version: str


@dataclasses.dataclass(frozen=True)
class ReviewLoad:
    labelled: int  # labelled in the window (a check at its end labels into it)
    queued: int  # items created in the window
    expired: int  # items of the window's creation that expired since
    pending: int  # waiting now (any creation time)


def predictions_between(
    db: Db, *, prefix: str, start: datetime, end: datetime
) -> list[PredictedRow]:
    """Predictions of the stream ``<prefix>-*`` made in ``[start, end)``."""
    with connected(db) as conn:
        rows = conn.execute(
            text(
                "SELECT article_id, topic, model_version FROM predictions "
                "WHERE article_id LIKE :p AND predicted_at >= :a AND predicted_at < :b"
            ),
            {"p": f"{prefix}-%", "a": start, "b": end},
        ).all()
    return [PredictedRow(str(r[0]), str(r[1]), str(r[2])) for r in rows]


def review_load(db: Db, *, start: datetime, end: datetime) -> ReviewLoad:
    with connected(db) as conn:
        row = conn.execute(
            text(
                "SELECT count(*) FILTER (WHERE labelled_at > :a AND labelled_at <= :b), "
                "count(*) FILTER (WHERE created_at >= :a AND created_at < :b), "
                "count(*) FILTER (WHERE created_at >= :a AND created_at < :b "
                "AND status = 'expired'), count(*) FILTER (WHERE status = 'pending') "
                "FROM review_items"
            ),
            {"a": start, "b": end},
        ).one()
    return ReviewLoad(int(row[0]), int(row[1]), int(row[2]), int(row[3]))


def table_sizes(db: Db) -> dict[str, int]:
    """Rows per table, and the bytes of the partitioned tables (all their partitions)."""
    out: dict[str, int] = {}
    with connected(db) as conn:
        for table in TABLES:  # fixed names, never input
            out[f"{table}_rows"] = int(
                conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            )
        for table in PARTITIONED:
            out[f"{table}_bytes"] = int(
                conn.execute(
                    text(
                        "SELECT coalesce(sum(pg_total_relation_size(relid)), 0) "
                        "FROM pg_partition_tree(CAST(:t AS regclass))"
                    ),
                    {"t": table},
                ).scalar_one()
            )
    return out
