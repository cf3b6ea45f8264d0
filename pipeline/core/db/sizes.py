"""Sizes, row counts and query plans of the product tables, for the proof tools (the
retention benchmark, ``newsflow db bench-retention``): what the tables weigh on disk, how
many rows they hold, statistics refreshed, and the plans of the pages' heaviest queries.

Reads take the caller's :class:`~sqlalchemy.Connection`."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection

from sqlalchemy import Connection, text

# The tables whose statistics a proof tool may refresh (names go into the statement).
ANALYSABLE = ("articles", "predictions", "review_items")

# The pages' heaviest queries, planned and timed on a benchmark's database.
PAGE_QUERIES = {
    "/models (per-version totals, last hour)": (
        "SELECT c.model_version, c.total, coalesce(h.n, 0) FROM (SELECT model_version, "
        "sum(predictions) AS total FROM prediction_counts GROUP BY 1) c LEFT JOIN "
        "(SELECT model_version, count(*) AS n FROM predictions WHERE predicted_at >= "
        "now() - interval '1 hour' GROUP BY 1) h ON h.model_version = c.model_version"
    ),
    "dashboard throughput (5 min)": (
        "SELECT count(*) / 5.0 FROM predictions WHERE predicted_at >= now() - interval '5 minutes'"
    ),
    "drift window (latest 1000 of a version)": (
        "SELECT confidence, topic FROM predictions WHERE model_version = 'v2' "
        "ORDER BY id DESC LIMIT 1000"
    ),
    "review item (by prediction and article id)": (
        "SELECT a.title FROM review_items r JOIN predictions p ON p.id = r.prediction_id "
        "JOIN articles a ON a.id = r.article_id WHERE r.status = 'pending' "
        "ORDER BY r.priority, r.id LIMIT 1"
    ),
}


@dataclasses.dataclass(frozen=True)
class TableRows:
    """Rows of the day-partitioned tables, and how ``predictions`` is partitioned."""

    articles: int
    predictions: int
    kept_predictions: int  # in predictions' DEFAULT partition: kept beyond retention
    prediction_partitions: int  # every partition of predictions, DEFAULT included


def product_tables_mb(conn: Connection) -> float:
    """MB on disk of ``articles``, ``predictions`` (every partition) and ``review_items``,
    indexes included, rounded to 0.01."""
    size = conn.execute(
        text(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "LEFT JOIN pg_inherits i ON i.inhrelid = c.oid WHERE c.relkind = 'r' AND "
            "(c.relname IN ('review_items') OR i.inhparent IN "
            "(to_regclass('articles'), to_regclass('predictions')))"
        )
    ).scalar_one()
    return round(float(size) / 1e6, 2)


def count_table_rows(conn: Connection) -> TableRows:
    """Every row counted (a full scan: for benchmarks, not for pages)."""
    counts = conn.execute(
        text(
            "SELECT (SELECT count(*) FROM articles), (SELECT count(*) FROM predictions), "
            "(SELECT count(*) FROM ONLY predictions_default), (SELECT count(*) FROM "
            "pg_inherits WHERE inhparent = to_regclass('predictions'))"
        )
    ).one()
    return TableRows(int(counts[0]), int(counts[1]), int(counts[2]), int(counts[3]))


def analyze_tables(conn: Connection, *, tables: Collection[str] = ANALYSABLE) -> None:
    """Refresh the planner's statistics of ``tables`` (each one of :data:`ANALYSABLE`)."""
    unknown = sorted(set(tables) - set(ANALYSABLE))
    if unknown:
        raise ValueError(f"not a table whose statistics may be refreshed: {', '.join(unknown)}")
    for table in tables:
        conn.execute(text(f"ANALYZE {table}"))


def explain_page_queries(conn: Connection) -> dict[str, str]:
    """The plan, with run times, of each of :data:`PAGE_QUERIES` (it runs them)."""
    out = {}
    for name, sql in PAGE_QUERIES.items():
        plan = conn.execute(text(f"EXPLAIN (ANALYZE, COSTS OFF, SUMMARY ON) {sql}")).scalars()
        out[name] = "\n".join(str(line) for line in plan)
    return out
