"""`newsflow status`: one screen for on-call: services, throughput, consumer lag, champion,
recent drift runs, retraining decisions and open review items."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from pipeline.core.db import drift_runs, predictions, reviews
from pipeline.core.db import events as model_events
from pipeline.core.settings import Settings


@dataclasses.dataclass
class Status:
    services: list[dict[str, Any]]
    throughput_per_min: float | None
    lag: int | None
    champion: dict[str, Any] | None
    serving_versions: dict[str, int]
    drift_runs: list[dict[str, Any]]
    model_events: list[dict[str, Any]]
    open_review_items: int | None


def consumer_lag(settings: Settings) -> int | None:
    """Messages in `articles` not yet committed by the workers' consumer group."""
    from confluent_kafka import Consumer, TopicPartition

    try:
        c = Consumer(
            {
                "bootstrap.servers": settings.kafka_bootstrap,
                "group.id": settings.worker_name,
                "enable.auto.commit": False,
            }
        )
        meta = c.list_topics(settings.topic_articles, timeout=5)
        parts = [
            TopicPartition(settings.topic_articles, p)
            for p in meta.topics[settings.topic_articles].partitions
        ]
        committed = c.committed(parts, timeout=5)
        lag = 0
        for tp in committed:
            _, high = c.get_watermark_offsets(tp, timeout=5)
            lag += max(0, high - max(tp.offset, 0))
        c.close()
        return lag
    except Exception:
        return None


@dataclasses.dataclass(frozen=True)
class Outside:
    """What the status reads from outside the database: services, consumer lag, champion
    (Kafka and the registry answer in tens to hundreds of milliseconds)."""

    services: list[dict[str, Any]]
    lag: int | None
    champion: dict[str, Any] | None


def read_outside(settings: Settings) -> Outside:
    from pipeline.stack import stack_status

    services = [s.to_json() for s in stack_status(settings)]
    champion = None
    try:
        from pipeline.core import registry

        info = registry.version_by_alias(settings, registry.CHAMPION)
        champion = dataclasses.asdict(info) if info else None
    except Exception as exc:
        champion = {"error": str(exc)}
    return Outside(services, consumer_lag(settings), champion)


class OutsideCache:
    """:func:`read_outside` at most once per ``ttl_s`` (the web dashboard: a page load
    should not wait on Kafka and the registry each time; figures at most ``ttl_s`` old).
    Thread-safe; ``clock`` and ``read`` are injectable for tests."""

    def __init__(
        self,
        settings: Settings,
        ttl_s: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
        read: Callable[[Settings], Outside] = read_outside,
    ) -> None:
        self.settings, self.ttl_s, self.clock, self.read = settings, ttl_s, clock, read
        self._lock = threading.Lock()
        self._value: Outside | None = None
        self._at = 0.0

    def __call__(self) -> Outside:
        with self._lock:
            now = self.clock()
            if self._value is None or now - self._at >= self.ttl_s:
                self._value, self._at = self.read(self.settings), now
            return self._value


def gather(
    settings: Settings, engine: Engine, *, outside: Callable[[], Outside] | None = None
) -> Status:
    """The status; ``outside`` supplies services, lag and champion (default: read now)."""
    out = outside() if outside else read_outside(settings)
    try:
        with engine.connect() as conn:
            per_min = predictions.throughput_per_min(conn)
            serving = predictions.serving_versions(conn)
            drift = [dataclasses.asdict(r) for r in drift_runs.recent_drift_runs(conn, limit=5)]
            events = [
                dataclasses.asdict(e) for e in model_events.recent_model_events(conn, limit=8)
            ]
            open_items = reviews.pending_review_count(conn)
    except Exception:
        return Status(out.services, None, out.lag, out.champion, {}, [], [], None)
    return Status(out.services, per_min, out.lag, out.champion, serving, drift, events, open_items)
