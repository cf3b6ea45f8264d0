"""Benchmark of bounded storage: 45 simulated days into day-partitioned tables, the daily
retention job after each, the tables' size per day.

Where it writes: a scratch database created for the run, migrated to head, dropped at the
end unless ``keep_database`` (the caller times the web pages on it first, see
``newsflow db bench-retention``). Rows are generated in the database (``INSERT … SELECT
generate_series``), not sent through Kafka: this measures storage, not the stream.

Each simulated day (oldest first, the last one is today): the day partitions ahead are
created as the scheduler's job does, ``per_day`` articles arrive spread over the day with
one prediction each (model ``v1``, then ``v2`` from the middle of the run: a promotion),
``labelled_per_day`` of them get a labelled review item (the reviewers' budget; kept beyond
retention) and as many an expired one (dropped with their rows); then retention runs as if
at the day's end. The last day also gets one hour at the full 1,000 articles/min, so the
pages' recent-window queries see full-rate volume, and ``pending`` items wait in the queue.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, create_engine

from pipeline.core.db import articles, predictions, reviews, sizes
from pipeline.core.db.partitions import create_partitions_ahead, day_start, utc_today
from pipeline.core.db.retention import prune
from pipeline.core.db.scratch import create_database, drop_database
from pipeline.core.settings import Settings

Report = Callable[[str], None]
FULL_RATE_PER_DAY = 1_440_000  # 1,000 articles/min
LABELS = ("World", "Sports", "Business", "Sci/Tech")
BODY = (
    "Officials said on Tuesday that the talks would resume next week after a pause, "
    "while markets waited for figures on growth, trade and prices in the region. "
)


@dataclasses.dataclass(frozen=True)
class DayFigures:
    day: str
    inserted: int
    insert_s: float
    prune_s: float
    dropped: list[str]
    total_mb: float  # articles + predictions + review_items, every partition, indexes too
    day_partitions: int
    rows_articles: int
    rows_predictions: int
    kept_rows: int  # in the DEFAULT partitions: kept beyond retention


@dataclasses.dataclass
class RetentionBenchResult:
    days: int
    per_day: int
    scale: float  # of 1,000 articles/min
    retention_days: int
    labelled_per_day: int
    full_rate_hour: int
    database: str
    per_day_figures: list[DayFigures]
    explain: dict[str, str] = dataclasses.field(default_factory=dict)
    pages_ms: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)

    def flat_after_retention(self) -> tuple[float, float]:
        """(min, max) total MB over the days after the first ``retention_days + 2``."""
        sizes = [d.total_mb for d in self.per_day_figures[self.retention_days + 2 :]]
        return (min(sizes), max(sizes)) if sizes else (0.0, 0.0)

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        lo, hi = self.flat_after_retention()
        out["flat_after_retention_mb"] = {"min": lo, "max": hi}
        return out


def _insert_day(
    conn: Connection, *, prefix: str, start: datetime, seconds: float, n: int, version: str
) -> None:
    """``n`` articles spread over ``seconds`` from ``start``, a prediction each 50 ms later."""
    articles.insert_synthetic_articles(
        conn, prefix=prefix, start=start, seconds=seconds, n=n, body=BODY * 3
    )
    predictions.insert_synthetic_predictions(
        conn, prefix=prefix, start=start, seconds=seconds, n=n, version=version
    )


@contextmanager
def scratch_database(settings: Settings, *, keep: bool) -> Iterator[Settings]:
    """A new database migrated to head (dropped afterwards unless ``keep``)."""
    from pipeline.core.db.migrate import upgrade

    name = f"newsflow_retention_{uuid.uuid4().hex[:8]}"
    admin = create_engine(settings.database_url("postgres"), isolation_level="AUTOCOMMIT")
    create_database(admin, name)
    try:
        scratch = settings.model_copy(update={"pg_database": name})
        upgrade(scratch.database_url())
        yield scratch
    finally:
        if not keep:
            drop_database(admin, name)
        admin.dispose()


def _simulate_day(
    engine: Engine, day: date, i: int, *, days: int, per_day: int, labelled: int, retention: int
) -> DayFigures:
    start = day_start(day)
    end = start + timedelta(hours=23, minutes=59)
    t0 = time.perf_counter()
    create_partitions_ahead(engine, ahead=7, now=start)
    version = "v1" if i < days // 2 else "v2"
    prefix = f"d{i:02d}-"
    # today: up to an hour ago (the last hour comes at full rate, see _last_hour)
    span = min(86_399.0, (datetime.now(UTC) - start).total_seconds() - 3600)
    with engine.begin() as conn:
        _insert_day(
            conn, prefix=prefix, start=start, seconds=max(span, 60.0), n=per_day, version=version
        )
        every = max(1, per_day // max(labelled, 1))
        if labelled:
            for status, offset in (("done", 0), ("expired", every // 2)):
                reviews.insert_synthetic_reviews(
                    conn, prefix=prefix, day=start, every=every, status=status, offset=offset
                )
        predictions.recount_predictions(conn, since=start, until=end)
    insert_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    summary = prune(engine, retention_days=retention, now=end)
    prune_s = time.perf_counter() - t1
    with engine.connect() as conn:
        counts = sizes.count_table_rows(conn)
        total = sizes.product_tables_mb(conn)
    return DayFigures(
        day=day.isoformat(),
        inserted=per_day,
        insert_s=round(insert_s, 2),
        prune_s=round(prune_s, 2),
        dropped=[d.name for d in summary.dropped],
        total_mb=total,
        day_partitions=counts.prediction_partitions - 1,  # DEFAULT is not a day's
        rows_articles=counts.articles,
        rows_predictions=counts.predictions,
        kept_rows=counts.kept_predictions,
    )


def _last_hour(engine: Engine, *, rate_per_hour: int, pending: int) -> None:
    """One hour at full rate ending now, and ``pending`` items waiting for review."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        _insert_day(
            conn,
            prefix="live-",
            start=now - timedelta(hours=1),
            seconds=3590,
            n=rate_per_hour,
            version="v2",
        )
        reviews.queue_synthetic_pending(conn, prefix="live-", n=pending)
        predictions.record_model_labels(conn, labels={"v1": LABELS, "v2": LABELS})
        predictions.recount_predictions(conn, since=now - timedelta(hours=1), until=now)
        sizes.analyze_tables(conn)


def run_retention_bench(
    settings: Settings,
    engine: Engine,
    *,
    days: int = 45,
    per_day: int = 14_400,
    retention_days: int = 30,
    labelled_per_day: int = 1_440,
    full_rate_hour: int = 60_000,
    pending: int = 60,
    report: Report = lambda _: None,
) -> RetentionBenchResult:
    """Simulate ``days`` days ending today into the (scratch) database of ``engine``."""
    if days < 1 or per_day < 1 or retention_days < 1:
        raise ValueError("days, per_day and retention_days must be at least 1")
    today = utc_today()
    result = RetentionBenchResult(
        days=days,
        per_day=per_day,
        scale=per_day / FULL_RATE_PER_DAY,
        retention_days=retention_days,
        labelled_per_day=labelled_per_day,
        full_rate_hour=full_rate_hour,
        database=str(engine.url.database),
        per_day_figures=[],
    )
    for i in range(days):
        day = today - timedelta(days=days - 1 - i)
        figures = _simulate_day(
            engine,
            day,
            i,
            days=days,
            per_day=per_day,
            labelled=labelled_per_day,
            retention=retention_days,
        )
        result.per_day_figures.append(figures)
        report(
            f"{figures.day}: {figures.total_mb:8.1f} MB, {figures.day_partitions} day "
            f"partitions, {figures.rows_predictions:,} predictions ({figures.kept_rows:,} kept), "
            f"insert {figures.insert_s:.1f} s, prune {figures.prune_s:.1f} s"
        )
    _last_hour(engine, rate_per_hour=full_rate_hour, pending=pending)
    with engine.connect() as conn:
        result.explain = sizes.explain_page_queries(conn)
    return result
