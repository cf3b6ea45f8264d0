"""The Faust worker: one app, one agent on `articles`. The agent only routes: the work is
in :class:`pipeline.batch.BatchHandler`, whose blocking steps run in the executor so the
event loop keeps fetching and heartbeating.

Delivery: Faust's ``take_events`` acknowledges a batch only after the loop body finishes,
and the body finishes only once the batch is stored in Postgres and its dead letters are
delivered to Kafka; a database that is down is retried with backoff (the stream buffer
fills and fetching pauses). So every article is stored at least once, and the idempotent
sink makes that exactly once per model version.

Isolation: one message can only affect itself. Validation never raises; if classifying or
storing a whole batch fails for a reason a retry cannot fix (a data error), the batch is
handled again message by message, so only the culprit goes to the dead-letter topic.

Stopping: SIGTERM sets a :class:`~pipeline.delivery.StopGuard`. A batch being retried (the
database or Kafka down) is then given up *unacknowledged*: the process exits at once, so
Faust's generator clean-up, which acknowledges whatever it yielded, never runs for it. A
watchdog ends the process after ``shutdown_grace_s`` in any case.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

from pipeline.batch import BatchHandler, Outlets, RawMessage
from pipeline.core.clock import clock_for
from pipeline.core.model_folder import Precision
from pipeline.core.settings import Settings
from pipeline.delivery import BatchAbandoned, StopGuard, finish_or_abandon
from pipeline.hotswap import ModelHolder
from pipeline.metrics import WorkerMetrics
from pipeline.sink import ReviewPolicy
from pipeline.suggestions import SuggestionHolder, SuggestPolicy

log = logging.getLogger("newsflow.worker")


def _raw(event: Any) -> RawMessage:
    m = event.message
    return RawMessage(
        m.value, m.key, m.topic, m.partition, m.offset, m.timestamp and int(m.timestamp * 1000)
    )


def _faust_app(settings: Settings) -> Any:
    import faust

    return faust.App(
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


def create_app(
    settings: Settings,
    *,
    holder: ModelHolder,
    engine: Any,
    metrics: WorkerMetrics,
    guard: StopGuard | None = None,
    suggestions: SuggestionHolder | None = None,
) -> Any:
    """The Faust app: one agent on ``articles`` that hands each micro-batch to a
    :class:`~pipeline.batch.BatchHandler`, plus timers (idle model swap, consumer lag)."""
    app = _faust_app(settings)
    articles = app.topic(
        settings.topic_articles, value_serializer="raw", key_serializer="raw", allow_empty=True
    )
    dlq = app.topic(settings.topic_dlq, value_serializer="raw", key_serializer="raw")
    predictions = app.topic(
        settings.topic_predictions, value_serializer="raw", key_serializer="raw"
    )
    guard = guard or StopGuard(settings.shutdown_grace_s)
    clock = clock_for(settings.clock_file)  # the wall clock unless a replay simulates one
    clock()  # a missing or bad clock file stops the start, never a batch
    handler = BatchHandler(
        holder=holder,
        engine=engine,
        outlets=Outlets(
            dead_letters=lambda k, v: dlq.send(key=k, value=v),
            predictions=lambda k, v: predictions.send(key=k, value=v),
        ),
        metrics=metrics,
        guard=guard,
        policy=ReviewPolicy.from_settings(settings),
        max_message_bytes=settings.max_message_bytes,
        dlq_max_bytes=settings.dlq_max_bytes,
        now=clock,
        suggestions=suggestions,
        suggest_cap=SuggestPolicy.from_settings(settings).cap,
    )
    metrics.model_info.labels(version=holder.current.version).set(1)

    @app.timer(interval=1.0)  # type: ignore[untyped-decorator]
    async def swap_when_idle() -> None:
        """A worker without traffic swaps too (a batch in flight keeps the model it began
        with: it took its own reference)."""
        handler.swap_if_ready()

    @app.agent(articles)  # type: ignore[untyped-decorator]
    async def classify_articles(stream: Any) -> None:
        async for events in stream.take_events(
            settings.batch_max_size, within=settings.batch_max_wait_ms / 1000
        ):
            msgs = [_raw(e) for e in events]
            try:
                await finish_or_abandon(handler.handle(msgs), guard=guard)
            except (asyncio.CancelledError, BatchAbandoned):
                raise
            except Exception as exc:  # a bug must not stop the worker nor lose the batch
                log.exception("batch failed unexpectedly; sending it to the DLQ")
                await handler.dead_letter_all(msgs, exc)

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
            # never classify a message from an aborted producer transaction
            kwargs["isolation_level"] = "read_committed"
            super().__init__(*args, **kwargs)

    aiokafka.AIOKafkaConsumer = TunedConsumer


def _refusal_recorder(settings: Settings, engine: Any) -> Callable[[str, str], None]:
    """Record a champion this worker refused (bad files, unloadable) as a model event."""

    def record(version: str, reason: str) -> None:
        from pipeline.core.db.events import record_model_event

        try:
            record_model_event(
                engine=engine,
                kind="refused",
                model_name=settings.registered_model_name,
                version=version,
                reason=f"worker {settings.worker_name}: {reason}"[:2000],
            )
        except Exception as exc:  # the database may be down too; the log still has it
            log.error("could not record the refusal of version %s: %s", version, exc)

    return record


def refresh_suggestions(
    settings: Settings,
    engine: Any,
    holder: ModelHolder,
    suggestions: SuggestionHolder,
    stop: threading.Event,
) -> None:
    """Thread body: at start and at every model poll, compute the onboarding topics'
    missing prototypes with the served model and hand the worker the current set
    (:mod:`pipeline.suggestions`). A failure keeps the last set and is tried again."""
    from pipeline.suggestions import refresh

    policy = SuggestPolicy.from_settings(settings)
    while True:
        try:
            suggestions.set(refresh(engine, holder.current, policy=policy, holder=suggestions))
        except Exception as exc:  # the database may be down: the batches handle that
            log.warning("could not refresh the topic suggestions: %s", exc)
        if stop.wait(settings.model_poll_s):
            return


def run_worker(settings: Settings, *, model_dir: Any, precision: Precision = "auto") -> None:
    """Load the model (a folder, or the registry's champion, which is then followed), connect
    the database, serve metrics and run the Faust worker."""
    import faust

    from pipeline.core.db.engine import make_engine, wait_for_database
    from pipeline.core.runtime import Classifier
    from pipeline.hotswap import load_champion_patiently, watch_champion
    from pipeline.metrics import build_metrics, serve_metrics

    limit_fetch_wait(settings.consumer_fetch_max_wait_ms)
    stop = threading.Event()
    engine = make_engine(settings)
    wait_for_database(engine, timeout_s=settings.start_timeout_s)
    metrics = build_metrics()  # served once a model is loaded
    if model_dir is not None:
        holder = ModelHolder(
            Classifier.load(model_dir, precision=precision, threads=settings.ort_threads)
        )
    else:
        signal.signal(signal.SIGTERM, lambda *_: stop.set())  # Faust installs its own later
        loaded = load_champion_patiently(settings, stop, precision=precision)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if loaded is None:
            log.info("stopped while waiting for a champion")
            return
        holder = ModelHolder(loaded[1])
        threading.Thread(
            target=watch_champion,
            args=(settings, holder, stop),
            kwargs={
                "precision": precision,
                "on_refused": _refusal_recorder(settings, engine),
                "count_refused": lambda reason: metrics.model_refused.labels(reason=reason).inc(),
            },
            daemon=True,
            name="champion-watcher",
        ).start()
    suggestions = SuggestionHolder()
    threading.Thread(
        target=refresh_suggestions,
        args=(settings, engine, holder, suggestions, stop),
        daemon=True,
        name="topic-suggestions",
    ).start()
    serve_metrics(metrics, settings.metrics_port, settings.metrics_host)
    (settings.home / "faust" / settings.worker_name).mkdir(parents=True, exist_ok=True)
    guard = StopGuard(settings.shutdown_grace_s)
    app = create_app(
        settings,
        holder=holder,
        engine=engine,
        metrics=metrics,
        guard=guard,
        suggestions=suggestions,
    )

    class GuardedWorker(faust.Worker):  # type: ignore[misc]
        """Faust's worker, with SIGTERM/SIGINT first telling the stop guard."""

        def _on_sigterm(self) -> None:
            guard.request_stop()
            super()._on_sigterm()

        def _on_sigint(self) -> None:
            guard.request_stop()
            super()._on_sigint()

    worker = GuardedWorker(app, loglevel=settings.log_level.lower(), quiet=True)
    try:
        worker.execute_from_commandline()
    finally:
        stop.set()
