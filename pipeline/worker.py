"""The Faust worker: one app, one agent on `articles`. The agent only routes: the work is
in :mod:`pipeline.batch`, run in a thread so the event loop keeps fetching and heartbeating.

Delivery: Faust's ``take_events`` acknowledges a batch only after the loop body finishes,
and the body finishes only once the batch is stored in Postgres and its dead letters are
delivered to Kafka; a failing database is retried with backoff (the stream buffer fills
and fetching pauses). So every article is stored at least once, and the idempotent sink
makes that exactly once per model version.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pipeline.batch import RawMessage, classify, store, validate_batch
from pipeline.core.model_folder import Precision
from pipeline.core.settings import Settings
from pipeline.hotswap import ModelHolder
from pipeline.metrics import WorkerMetrics
from pipeline.sink import ReviewPolicy

log = logging.getLogger("newsflow.worker")


def _now() -> datetime:
    return datetime.now(UTC)


def _internal_dead_letter(event: Any, exc: Exception) -> bytes:
    from pipeline.core.records import DeadLetter, DeadLetterReason

    m = event.message
    dead = DeadLetter(
        DeadLetterReason.INTERNAL,
        f"{type(exc).__name__}: {exc}",
        m.value or b"",
        m.topic,
        m.partition,
        m.offset,
        _now(),
        m.key,
    )
    return json.dumps(dead.to_json()).encode()


def create_app(
    settings: Settings, *, holder: ModelHolder, engine: Any, metrics: WorkerMetrics
) -> Any:
    import faust

    app = faust.App(
        settings.worker_name,
        broker=f"kafka://{settings.kafka_bootstrap}",
        value_serializer="raw",
        key_serializer="raw",
        datadir=str(settings.home / "faust" / settings.worker_name),
        web_enabled=False,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        stream_buffer_maxsize=max(4 * settings.batch_max_size, 256),
        broker_commit_interval=1.0,
        # Faust's default (60 s) leaves a killed worker's partitions idle for a minute.
        broker_session_timeout=settings.consumer_session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.consumer_session_timeout_s / 3),
        producer_max_request_size=max(settings.max_message_bytes * 4, 1_048_576),
        consumer_max_fetch_size=max(settings.max_message_bytes * 4, 1_048_576),
    )
    articles = app.topic(
        settings.topic_articles, value_serializer="raw", key_serializer="raw", allow_empty=True
    )
    dlq = app.topic(settings.topic_dlq, value_serializer="raw", key_serializer="raw")
    predictions = app.topic(
        settings.topic_predictions, value_serializer="raw", key_serializer="raw"
    )
    policy = ReviewPolicy(
        settings.review_uniform_share, settings.review_uncertain_share, settings.review_topic_cap
    )
    rng = random.Random()
    labels_recorded: set[str] = set()  # versions whose label order is in model_labels
    metrics.model_info.labels(version=holder.current.version).set(1)

    async def send_all(topic: Any, items: Sequence[tuple[bytes | None, bytes]]) -> None:
        """Send and wait for delivery; retry until Kafka takes them."""
        delay = 0.2
        while True:
            try:
                futs = [await topic.send(key=k, value=v) for k, v in items]
                await asyncio.gather(*futs)
                return
            except Exception as exc:  # Kafka unavailable: keep the batch, retry
                log.warning("send to %s failed, retrying: %s", topic.get_topic_name(), exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def handle(events: Sequence[Any]) -> None:
        loop = asyncio.get_running_loop()
        old = holder.current.version
        if holder.swap_if_ready() is not None:
            metrics.model_info.labels(version=old).set(0)
            metrics.model_info.labels(version=holder.current.version).set(1)
        classifier = holder.current
        msgs = [
            RawMessage(
                e.message.value,
                e.message.key,
                e.message.topic,
                e.message.partition,
                e.message.offset,
                e.message.timestamp and int(e.message.timestamp * 1000),
            )
            for e in events
        ]
        metrics.consumed.inc(len(msgs))
        metrics.batch_size.observe(len(msgs))
        checked = validate_batch(msgs, max_bytes=settings.max_message_bytes, now=_now)
        if checked.dead:
            await send_all(dlq, [(d.key, json.dumps(d.to_json()).encode()) for d in checked.dead])
            for d in checked.dead:
                metrics.dead_letters.labels(reason=d.reason.value).inc()
                log.info(
                    "dead letter",
                    extra={"reason": d.reason.value, "offset": d.offset, "partition": d.partition},
                )
        if not checked.articles:
            return
        classified = await loop.run_in_executor(
            None, lambda: classify(checked.articles, classifier, now=_now)
        )
        metrics.inference_seconds.observe(classified.inference_ms / 1000)
        labels = (
            None
            if classifier.version in labels_recorded
            else {classifier.version: classifier.labels}
        )
        delay = 0.2
        while True:
            try:
                result = await loop.run_in_executor(
                    None, lambda: store(engine, classified, policy, rng, labels)
                )
                labels_recorded.add(classifier.version)
                break
            except Exception as exc:  # database unavailable: retry, acknowledge nothing
                metrics.store_retries.inc()
                log.warning("store failed, retrying in %.1fs: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        metrics.predicted.inc(len(result.stored))
        metrics.duplicates.inc(result.duplicates)
        metrics.review_items.inc(result.review_items)
        now_s = time.time()
        for m in msgs:
            if m.timestamp_ms:
                metrics.end_to_end_seconds.observe(max(0.0, now_s - m.timestamp_ms / 1000))
        if result.stored:
            await send_all(
                predictions,
                [(p.article_id.encode(), json.dumps(p.to_json()).encode()) for p in result.stored],
            )

    @app.agent(articles)  # type: ignore[untyped-decorator]
    async def classify_articles(stream: Any) -> None:
        async for events in stream.take_events(
            settings.batch_max_size, within=settings.batch_max_wait_ms / 1000
        ):
            try:
                await handle(events)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug must not stop the worker nor lose the batch
                log.exception("batch failed unexpectedly; sending it to the DLQ")
                await send_all(
                    dlq, [(e.message.key, _internal_dead_letter(e, exc)) for e in events]
                )
                metrics.dead_letters.labels(reason="internal_error").inc(len(events))

    @app.timer(interval=5.0)  # type: ignore[untyped-decorator]
    async def report_lag() -> None:
        consumer = app.consumer
        try:
            for tp in consumer.assignment():
                hw = consumer.highwater(tp)
                pos = await consumer.position(tp)
                if hw is not None and pos is not None:
                    metrics.consumer_lag.labels(partition=str(tp.partition)).set(max(0, hw - pos))
        except Exception as exc:  # metrics only; never fatal
            log.debug("lag unavailable: %s", exc)

    return app


def limit_fetch_wait(max_wait_ms: int) -> None:
    """Faust builds its aiokafka consumer with ``fetch_max_wait_ms=1500`` hard-coded, which
    at low traffic delivers messages in bursts seconds apart. Cap it for this (worker)
    process by wrapping the class Faust instantiates; called at start-up, not at import."""
    import aiokafka

    original = aiokafka.AIOKafkaConsumer
    if getattr(original, "_newsflow_fetch_wait", None) is not None:
        return

    class TunedConsumer(original):  # type: ignore[misc, valid-type]
        _newsflow_fetch_wait = max_wait_ms

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["fetch_max_wait_ms"] = min(kwargs.get("fetch_max_wait_ms", 500), max_wait_ms)
            super().__init__(*args, **kwargs)

    aiokafka.AIOKafkaConsumer = TunedConsumer


def run_worker(settings: Settings, *, model_dir: Any, precision: Precision = "auto") -> None:
    """Load the model (a folder, or the registry's champion, which is then followed), connect
    the database, serve metrics and run the Faust worker."""
    import threading

    import faust

    from pipeline.core.db.engine import make_engine, wait_for_database
    from pipeline.core.runtime import Classifier
    from pipeline.hotswap import load_champion, watch_champion
    from pipeline.metrics import build_metrics, serve_metrics

    limit_fetch_wait(settings.consumer_fetch_max_wait_ms)
    stop = threading.Event()
    if model_dir is not None:
        holder = ModelHolder(
            Classifier.load(model_dir, precision=precision, threads=settings.ort_threads)
        )
    else:
        _, classifier = load_champion(settings, precision=precision)
        holder = ModelHolder(classifier)
        threading.Thread(
            target=watch_champion,
            args=(settings, holder, stop),
            kwargs={"precision": precision},
            daemon=True,
            name="champion-watcher",
        ).start()
    engine = make_engine(settings)
    wait_for_database(engine, timeout_s=settings.start_timeout_s)
    metrics = build_metrics()
    serve_metrics(metrics, settings.metrics_port, settings.metrics_host)
    (settings.home / "faust" / settings.worker_name).mkdir(parents=True, exist_ok=True)
    app = create_app(settings, holder=holder, engine=engine, metrics=metrics)
    worker = faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True)
    try:
        worker.execute_from_commandline()
    finally:
        stop.set()
