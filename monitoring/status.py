"""`newsflow status`: one screen for on-call: services, throughput, consumer lag, champion,
recent drift runs, retraining decisions and open review items."""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import Engine, text

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


def gather(settings: Settings, engine: Engine) -> Status:
    from pipeline.stack import stack_status

    services = [s.to_json() for s in stack_status(settings)]
    champion = None
    try:
        from pipeline.core import registry

        info = registry.version_by_alias(settings, registry.CHAMPION)
        champion = dataclasses.asdict(info) if info else None
    except Exception as exc:
        champion = {"error": str(exc)}
    try:
        with engine.connect() as conn:
            per_min = conn.execute(
                text(
                    "SELECT count(*) / 5.0 FROM predictions "
                    "WHERE predicted_at >= now() - interval '5 minutes'"
                )
            ).scalar_one()
            serving: dict[str, int] = dict(
                conn.execute(
                    text(
                        "SELECT model_version, count(*) FROM predictions "
                        "WHERE predicted_at >= now() - interval '15 minutes' GROUP BY 1"
                    )
                ).all()
            )
            drift = [
                dict(r._mapping)
                for r in conn.execute(
                    text(
                        "SELECT id, started_at, level, window_size, psi_confidence, psi_topics, "
                        "estimated_accuracy, reviewed_accuracy, report_path FROM drift_runs "
                        "ORDER BY id DESC LIMIT 5"
                    )
                )
            ]
            events = [
                dict(r._mapping)
                for r in conn.execute(
                    text(
                        "SELECT id, at, kind, version, previous_version, reason FROM model_events "
                        "ORDER BY id DESC LIMIT 8"
                    )
                )
            ]
            open_items = conn.execute(
                text("SELECT count(*) FROM review_items WHERE status = 'pending'")
            ).scalar_one()
    except Exception:
        per_min, serving, drift, events, open_items = None, {}, [], [], None
    return Status(
        services,
        float(per_min) if per_min is not None else None,
        consumer_lag(settings),
        champion,
        {k: int(v) for k, v in serving.items()},
        drift,
        events,
        int(open_items) if open_items is not None else None,
    )
