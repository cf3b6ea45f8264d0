"""Data access for ``predictions`` and ``model_labels``: the sink's bulk, idempotent insert
and each served version's label order; reads (joined with ``articles`` where a figure needs
the Kafka timestamp) of the drift window, throughput and serving versions for ``newsflow
status`` and the on-call pages, and the per-stream figures of ``newsflow run`` and the demo
(article ids ``<prefix>-<n>``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import NamedTuple

from sqlalchemy import Connection, text
from sqlalchemy.dialects.postgresql import insert

from pipeline.core.db.access import Db, connected, unnest_rows
from pipeline.core.db.articles import lock_article_ids
from pipeline.core.db.models import ModelLabelsRow, PredictionRow
from pipeline.core.db.partitions import day_start, utc_today
from pipeline.core.records import Prediction


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


@dataclasses.dataclass(frozen=True)
class VersionServing:
    """Predictions of one model version: in all, in the last hour, and the latest time."""

    model_version: str
    total: int
    last_hour: int
    last_at: datetime | None


def _like(prefix: str) -> dict[str, str]:
    return {"p": f"{prefix}-%"}


def _opt_float(value: float | None) -> float | None:
    return None if value is None else float(value)


def _array_literal(values: Sequence[float]) -> str:
    """A float list as a PostgreSQL array literal; ``repr`` round-trips a float exactly."""
    return "{" + ",".join(repr(float(v)) for v in values) + "}"


def insert_new_predictions(
    conn: Connection, *, predictions: Sequence[Prediction], ids_locked: bool = False
) -> dict[tuple[str, str], int]:
    """Store predictions, skipping any (article, model version) stored already (in any
    partition: looked up under the articles' transaction locks, which the caller may hold
    already in this transaction: ``ids_locked``) or offered twice. Returns the row id of
    each one stored now, by (article id, model version), and counts them in
    ``prediction_counts``."""
    if not predictions:
        return {}
    if not ids_locked:
        lock_article_ids(conn, ids=[p.article_id for p in predictions])
    stored = {
        (str(r[0]), str(r[1]))
        for r in conn.execute(
            # id by id through each partition's index, whatever its statistics (see
            # pipeline.core.db.articles._STORED)
            text(
                "SELECT p.article_id, p.model_version FROM unnest(CAST(:ids AS text[])) AS u(id) "
                "CROSS JOIN LATERAL (SELECT article_id, model_version FROM predictions "
                "WHERE predictions.article_id = u.id OFFSET 0) AS p"
            ),
            {"ids": sorted({p.article_id for p in predictions})},
        )
    }
    rows: dict[tuple[str, str], dict[str, object]] = {}
    for p in predictions:
        key = (p.article_id, p.model_version)
        if key in stored or key in rows:
            continue
        rows[key] = {
            "article_id": p.article_id,
            "model_version": p.model_version,
            "topic": p.topic,
            "confidence": p.confidence,
            "margin": p.margin,
            "probabilities": _array_literal(p.probabilities),
            "latency_ms": p.latency_ms,
            "received_at": p.received_at,
            "predicted_at": p.predicted_at,
        }
    if not rows:
        return {}
    values = list(rows.values())
    inserted = conn.execute(
        insert(PredictionRow)
        .from_select(
            list(values[0]),
            unnest_rows(PredictionRow.__table__, values, as_text=["probabilities"]),
        )
        .on_conflict_do_nothing(constraint="uq_prediction_article_version")
        .returning(
            PredictionRow.id,
            PredictionRow.article_id,
            PredictionRow.model_version,
            PredictionRow.predicted_at,
        )
    ).all()
    _count(conn, [(r.predicted_at, str(r.model_version)) for r in inserted])
    return {(str(r.article_id), str(r.model_version)): int(r.id) for r in inserted}


def _count(conn: Connection, stored: Sequence[tuple[datetime, str]]) -> None:
    """Add predictions just stored (their time and version) to ``prediction_counts``."""
    per: dict[tuple[date, str], tuple[int, datetime]] = {}
    for at, version in stored:
        key = (utc_today(at), version)
        n, last = per.get(key, (0, at))
        per[key] = (n + 1, max(last, at))
    if not per:
        return
    conn.execute(
        text(
            "INSERT INTO prediction_counts AS c (day, model_version, predictions, last_at) "
            "SELECT * FROM unnest(CAST(:d AS date[]), CAST(:v AS text[]), "
            "CAST(:n AS bigint[]), CAST(:t AS timestamptz[])) "
            "ON CONFLICT (day, model_version) DO UPDATE SET "
            "predictions = c.predictions + excluded.predictions, "
            "last_at = greatest(c.last_at, excluded.last_at)"
        ),
        {
            "d": [k[0] for k in per],
            "v": [k[1] for k in per],
            "n": [v[0] for v in per.values()],
            "t": [v[1] for v in per.values()],
        },
    )


def recount_predictions(conn: Connection, *, since: datetime, until: datetime) -> None:
    """Rebuild ``prediction_counts`` for the UTC days of ``[since, until)`` from the rows
    (for rows written around :func:`insert_new_predictions`: seed data, benchmarks)."""
    start, end = utc_today(since), utc_today(until)
    conn.execute(
        text("DELETE FROM prediction_counts WHERE day >= :a AND day <= :b"), {"a": start, "b": end}
    )
    conn.execute(
        text(
            "INSERT INTO prediction_counts (day, model_version, predictions, last_at) "
            "SELECT CAST((predicted_at AT TIME ZONE 'UTC') AS date), model_version, count(*), "
            "max(predicted_at) FROM predictions WHERE predicted_at >= :a AND predicted_at < :b "
            "GROUP BY 1, 2"
        ),
        {"a": day_start(start), "b": day_start(end) + timedelta(days=1)},
    )


def record_model_labels(conn: Connection, *, labels: Mapping[str, Sequence[str]]) -> None:
    """Keep each model version's label order (version -> labels); a version recorded
    already keeps its first order."""
    if not labels:
        return
    conn.execute(
        insert(ModelLabelsRow).on_conflict_do_nothing(index_elements=["model_version"]),
        [{"model_version": v, "labels": list(ls)} for v, ls in labels.items()],
    )


def select_latest_model_labels(db: Db) -> list[str]:
    """The label order recorded last (empty when none is)."""
    with connected(db) as conn:
        row = conn.execute(
            text("SELECT labels FROM model_labels ORDER BY recorded_at DESC LIMIT 1")
        ).first()
    return [str(t) for t in row[0]] if row else []


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


def count_predictions_by_version(db: Db) -> list[VersionServing]:
    """Every model version's predictions, the most recently serving version first: totals
    from ``prediction_counts`` (kept after retention drops the rows), the last hour counted
    on the ``predicted_at`` index."""
    with connected(db) as conn:
        rows = conn.execute(
            text(
                "SELECT c.model_version, c.total, coalesce(h.n, 0), c.last_at FROM "
                "(SELECT model_version, sum(predictions) AS total, max(last_at) AS last_at "
                "FROM prediction_counts GROUP BY 1) c LEFT JOIN "
                "(SELECT model_version, count(*) AS n FROM predictions "
                "WHERE predicted_at >= now() - interval '1 hour' GROUP BY 1) h "
                "ON h.model_version = c.model_version ORDER BY 4 DESC"
            )
        ).all()
    return [VersionServing(str(r[0]), int(r[1]), int(r[2]), r[3]) for r in rows]


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


def insert_synthetic_predictions(
    conn: Connection, *, prefix: str, start: datetime, seconds: float, n: int, version: str
) -> None:
    """Benchmarks only: a prediction by ``version`` for each article of
    :func:`pipeline.core.db.articles.insert_synthetic_articles` (same arguments), made 50 ms
    after it arrived; not counted in ``prediction_counts`` (see
    :func:`recount_predictions`)."""
    conn.execute(
        text(
            "INSERT INTO predictions (article_id, model_version, topic, confidence, margin, "
            "probabilities, latency_ms, received_at, predicted_at) SELECT :p || g, :v, "
            "(ARRAY['World','Sports','Business','Sci/Tech'])[1 + g % 4], 0.4 + (g % 60) / 100.0, "
            "(g % 60) / 100.0, ARRAY[0.4 + (g % 60) / 100.0, 0.2, 0.2, 0.2], 12.5, "
            ":s + make_interval(secs => g * :span / :n), "
            ":s + make_interval(secs => g * :span / :n + 0.05) FROM generate_series(1, :n) g"
        ),
        {"p": prefix, "s": start, "n": n, "span": seconds, "v": version},
    )


@dataclasses.dataclass(frozen=True)
class StreamPredictions:
    """Prediction rows of a stream (article ids ``<prefix>-<n>``) and its distinct articles."""

    rows: int
    articles: int


def count_stream_predictions(db: Db, *, prefix: str) -> StreamPredictions:
    """How many prediction rows the stream ``prefix`` has, and for how many articles."""
    with connected(db) as conn:
        rows, distinct = conn.execute(
            text(
                "SELECT count(*), count(DISTINCT article_id) FROM predictions "
                "WHERE article_id LIKE :p"
            ),
            _like(prefix),
        ).one()
    return StreamPredictions(int(rows), int(distinct))
