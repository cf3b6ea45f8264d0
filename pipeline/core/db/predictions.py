"""Reads of ``predictions`` (joined with ``articles`` where a figure needs the Kafka
timestamp): the drift window, throughput and serving versions for ``newsflow status``, and
the per-stream figures of ``newsflow run`` and the demo (article ids ``<prefix>-<n>``)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import text

from pipeline.core.db.access import Db, connected


class ConfidenceTopic(NamedTuple):
    confidence: float
    topic: str


class StreamLatency(NamedTuple):
    """Stored predictions of a stream and the p50/p95 seconds from the Kafka timestamp
    (``articles.enqueued_at``) to the committed row (None when nothing is stored)."""

    stored: int
    p50_s: float | None
    p95_s: float | None


@dataclasses.dataclass(frozen=True)
class PhaseStats:
    """One demo phase: rows, first/last ``predicted_at``, latency percentiles (seconds, as
    :class:`StreamLatency`) and the distinct model versions that served it."""

    stored: int
    first_at: datetime | None
    last_at: datetime | None
    p50_s: float | None
    p95_s: float | None
    model_versions: list[str]


def _like(prefix: str) -> dict[str, str]:
    return {"p": f"{prefix}-%"}


def _opt_float(value: float | None) -> float | None:
    return None if value is None else float(value)


def committed_at_sql(db: Db, alias: str = "p") -> str:
    """SQL for the time a prediction row was committed: the transaction's commit timestamp
    where Postgres tracks them (``newsflow stack up`` turns that on), else the worker's
    ``predicted_at`` (taken just before the write)."""
    with connected(db) as conn:
        on = conn.execute(text("SHOW track_commit_timestamp")).scalar_one() == "on"
    fallback = f"{alias}.predicted_at"
    return f"coalesce(pg_xact_commit_timestamp({alias}.xmin), {fallback})" if on else fallback


def latest_predictions(db: Db, model_version: str, *, limit: int) -> list[ConfidenceTopic]:
    """The last ``limit`` predictions of ``model_version`` (newest first, by id)."""
    with connected(db) as conn:
        rows = conn.execute(
            text(
                "SELECT confidence, topic FROM predictions WHERE model_version = :v "
                "ORDER BY id DESC LIMIT :n"
            ),
            {"v": model_version, "n": limit},
        ).all()
    return [ConfidenceTopic(float(r[0]), str(r[1])) for r in rows]


def predictions_since(db: Db, model_version: str, *, minutes: float) -> list[ConfidenceTopic]:
    """Predictions of ``model_version`` made in the last ``minutes`` (no particular order)."""
    with connected(db) as conn:
        rows = conn.execute(
            text(
                "SELECT confidence, topic FROM predictions WHERE model_version = :v "
                "AND predicted_at >= now() - make_interval(secs => :s)"
            ),
            {"v": model_version, "s": minutes * 60},
        ).all()
    return [ConfidenceTopic(float(r[0]), str(r[1])) for r in rows]


def throughput_per_min(db: Db) -> float:
    """Predictions per minute over the last 5 minutes."""
    with connected(db) as conn:
        value = conn.execute(
            text(
                "SELECT count(*) / 5.0 FROM predictions "
                "WHERE predicted_at >= now() - interval '5 minutes'"
            )
        ).scalar_one()
    return float(value)


def serving_versions(db: Db) -> dict[str, int]:
    """Predictions per model version over the last 15 minutes."""
    with connected(db) as conn:
        rows = conn.execute(
            text(
                "SELECT model_version, count(*) FROM predictions "
                "WHERE predicted_at >= now() - interval '15 minutes' GROUP BY 1"
            )
        ).all()
    return {str(r[0]): int(r[1]) for r in rows}


def prediction_count(db: Db, prefix: str) -> int:
    """Prediction rows of the stream ``<prefix>-*``."""
    with connected(db) as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM predictions WHERE article_id LIKE :p"), _like(prefix)
            ).scalar_one()
        )


def stream_latency(db: Db, prefix: str) -> StreamLatency:
    """Rows and p50/p95 latency to the committed row of the stream ``<prefix>-*``."""
    with connected(db) as conn:
        committed = committed_at_sql(conn)
        total, p50, p95 = conn.execute(
            text(
                "SELECT count(*), "
                "percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM "
                f"({committed} - a.enqueued_at))), "
                "percentile_cont(0.95) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM "
                f"({committed} - a.enqueued_at))) "
                "FROM predictions p JOIN articles a ON a.id = p.article_id "
                "WHERE p.article_id LIKE :p"
            ),
            _like(prefix),
        ).one()
    return StreamLatency(int(total), _opt_float(p50), _opt_float(p95))


def topic_counts(db: Db, prefix: str) -> dict[str, int]:
    """Predictions per topic of the stream ``<prefix>-*``, most frequent first."""
    with connected(db) as conn:
        rows = conn.execute(
            text(
                "SELECT topic, count(*) FROM predictions WHERE article_id LIKE :p "
                "GROUP BY topic ORDER BY 2 DESC"
            ),
            _like(prefix),
        ).all()
    return {str(r[0]): int(r[1]) for r in rows}


def stream_model_versions(db: Db, prefix: str) -> list[str]:
    """Distinct model versions that served the stream ``<prefix>-*`` (no particular order)."""
    with connected(db) as conn:
        rows = conn.execute(
            text("SELECT DISTINCT model_version FROM predictions WHERE article_id LIKE :p"),
            _like(prefix),
        ).all()
    return [str(r[0]) for r in rows]


def phase_stats(db: Db, prefix: str) -> PhaseStats:
    """Rows, time span, latency to the committed row and versions of the stream
    ``<prefix>-*``."""
    with connected(db) as conn:
        committed = committed_at_sql(conn)
        n, first, last, p50, p95, versions = conn.execute(
            text(
                "SELECT count(*), min(p.predicted_at), max(p.predicted_at), "
                "percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM "
                f"({committed} - a.enqueued_at))), "
                "percentile_cont(0.95) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM "
                f"({committed} - a.enqueued_at))), "
                "array_agg(DISTINCT p.model_version) FROM predictions p "
                "JOIN articles a ON a.id = p.article_id WHERE p.article_id LIKE :p"
            ),
            _like(prefix),
        ).one()
    return PhaseStats(
        int(n), first, last, _opt_float(p50), _opt_float(p95), [str(v) for v in versions or []]
    )
