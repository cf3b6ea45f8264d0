"""The Faust worker: one app, one agent on `articles`. The agent only routes: the work is
in :mod:`pipeline.batch`, run in a thread so the event loop keeps fetching and heartbeating.

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
import json
import logging
import random
import signal
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential

from pipeline.batch import Classified, RawMessage, Validated, classify, store, validate_batch
from pipeline.core.model_folder import Precision
from pipeline.core.records import CleanArticle, DeadLetter, DeadLetterReason, Prediction
from pipeline.core.settings import Settings
from pipeline.delivery import StopGuard, is_transient_db_error, send_all
from pipeline.hotswap import ModelHolder
from pipeline.metrics import WorkerMetrics
from pipeline.sink import ReviewPolicy, WriteResult

log = logging.getLogger("newsflow.worker")


def _now() -> datetime:
    return datetime.now(UTC)


def _raw(event: Any) -> RawMessage:
    m = event.message
    return RawMessage(
        m.value, m.key, m.topic, m.partition, m.offset, m.timestamp and int(m.timestamp * 1000)
    )


def _shrink_dead_letter(_key: bytes | None, value: bytes) -> bytes:
    """A dead-letter record Kafka refused for its size, cut to a 1 KiB original."""
    record = json.loads(value)
    original = str(record.get("original", ""))
    record["original"] = original[:1024]
    record["original_truncated"] = len(original) > 1024 or bool(record.get("original_truncated"))
    return json.dumps(record).encode()


def create_app(
    settings: Settings,
    *,
    holder: ModelHolder,
    engine: Any,
    metrics: WorkerMetrics,
    guard: StopGuard | None = None,
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
    policy = ReviewPolicy.from_settings(settings)
    rng = random.Random()
    labels_recorded: set[str] = set()  # versions whose label order is in model_labels
    metrics.model_info.labels(version=holder.current.version).set(1)

    guard = guard or StopGuard(settings.shutdown_grace_s)

    def dead_letter(m: RawMessage, reason: DeadLetterReason, detail: str) -> DeadLetter:
        return DeadLetter(
            reason, detail[:1000], m.value or b"", m.topic, m.partition, m.offset, _now(), m.key
        )

    async def send_dead(dead: Sequence[DeadLetter]) -> None:
        if not dead:
            return
        records = await run(  # off the event loop: an original may be large
            lambda: [
                (d.key[:1024] if d.key else d.key, d.encode(settings.dlq_max_bytes)) for d in dead
            ]
        )
        await send_all(
            lambda k, v: dlq.send(key=k, value=v),
            records,
            guard=guard,
            shrink=_shrink_dead_letter,
            on_retry=metrics.send_retries.inc,
            what="dead letters",
        )
        for d in dead:
            metrics.dead_letters.labels(reason=d.reason.value).inc()
            log.info(
                "dead letter",
                extra={"reason": d.reason.value, "offset": d.offset, "partition": d.partition},
            )

    async def run(fn: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn)

    async def classify_isolated(
        articles: Sequence[CleanArticle], classifier: Any, by_pos: dict[tuple[int, int], RawMessage]
    ) -> tuple[list[tuple[CleanArticle, Prediction]], list[DeadLetter], float]:
        try:
            out = await run(lambda: classify(articles, classifier, now=_now))
            return out.pairs, [], out.inference_ms
        except Exception:
            log.exception("classifying a batch failed; classifying message by message")
            metrics.fallbacks.labels(stage="classify").inc()
        pairs: list[tuple[CleanArticle, Prediction]] = []
        dead: list[DeadLetter] = []
        total_ms = 0.0
        for art in articles:
            try:
                one = await run(lambda art=art: classify([art], classifier, now=_now))
                pairs += one.pairs
                total_ms += one.inference_ms
            except Exception as exc:
                m = by_pos[(art.partition, art.offset)]
                dead.append(dead_letter(m, DeadLetterReason.INTERNAL, f"model failed: {exc!r}"))
        return pairs, dead, total_ms

    async def store_retrying(
        pairs: Sequence[tuple[CleanArticle, Prediction]], labels: Any
    ) -> WriteResult:
        """Store, retrying with backoff while the database is unavailable (a stop request
        cuts the wait short and gives the batch up unacknowledged); a data error is raised."""
        classified = Classified(list(pairs), 0.0)

        def note_retry(state: RetryCallState) -> None:
            metrics.store_retries.inc()
            exc = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            log.warning("store failed, retrying in %.1fs: %s", wait, str(exc)[:300])

        async for attempt in AsyncRetrying(
            retry=retry_if_exception(is_transient_db_error),
            wait=wait_exponential(multiplier=0.1, min=0.2, max=5.0),
            sleep=guard.pause,
            before_sleep=note_retry,
            reraise=True,
        ):
            with attempt:
                if guard.stopping:
                    guard.abandon("stop requested before the batch was stored")
                return cast(
                    WriteResult, await run(lambda: store(engine, classified, policy, rng, labels))
                )
        raise AssertionError("unreachable: tenacity retries until success or a data error")

    async def store_isolated(
        pairs: Sequence[tuple[CleanArticle, Prediction]],
        labels: Any,
        by_pos: dict[tuple[int, int], RawMessage],
    ) -> tuple[list[WriteResult], list[DeadLetter]]:
        try:
            return [await store_retrying(pairs, labels)], []
        except Exception as exc:
            log.warning("storing a batch failed (%r); storing message by message", exc)
            metrics.fallbacks.labels(stage="store").inc()
        results: list[WriteResult] = []
        dead: list[DeadLetter] = []
        for pair in pairs:
            try:
                results.append(await store_retrying([pair], labels))
            except Exception as exc:
                m = by_pos[(pair[0].partition, pair[0].offset)]
                dead.append(
                    dead_letter(m, DeadLetterReason.STORE_REJECTED, f"database refused it: {exc}")
                )
        return results, dead

    def swap_if_ready() -> None:
        old = holder.current.version
        if holder.swap_if_ready() is not None:
            metrics.model_info.labels(version=old).set(0)
            metrics.model_info.labels(version=holder.current.version).set(1)

    @app.timer(interval=1.0)  # type: ignore[untyped-decorator]
    async def swap_when_idle() -> None:
        """A worker without traffic swaps too (a batch in flight keeps the model it began
        with: it took its own reference)."""
        swap_if_ready()

    async def handle(events: Sequence[Any]) -> None:
        swap_if_ready()
        classifier = holder.current
        msgs = [_raw(e) for e in events]
        by_pos = {(m.partition, m.offset): m for m in msgs}
        metrics.consumed.inc(len(msgs))
        metrics.batch_size.observe(len(msgs))
        checked = cast(  # off the event loop, so heartbeats and SIGTERM stay prompt
            Validated,
            await run(lambda: validate_batch(msgs, max_bytes=settings.max_message_bytes, now=_now)),
        )
        dead = list(checked.dead)
        stored: list[Prediction] = []
        if checked.articles:
            pairs, failed, inference_ms = await classify_isolated(
                checked.articles, classifier, by_pos
            )
            dead += failed
            metrics.inference_seconds.observe(inference_ms / 1000)
            labels = (
                None
                if classifier.version in labels_recorded
                else {classifier.version: classifier.labels}
            )
            results, rejected = await store_isolated(pairs, labels, by_pos) if pairs else ([], [])
            dead += rejected
            if results:
                labels_recorded.add(classifier.version)
            for r in results:
                stored += r.stored
                metrics.duplicates.inc(r.duplicates)
                metrics.conflicts.inc(r.conflicts)
                metrics.review_items.inc(r.review_items)
            metrics.predicted.inc(len(stored))
        await send_dead(dead)
        now_s = time.time()
        for m in msgs:
            if m.timestamp_ms:
                metrics.end_to_end_seconds.observe(max(0.0, now_s - m.timestamp_ms / 1000))
        if stored:
            await send_all(
                lambda k, v: predictions.send(key=k, value=v),
                [(p.article_id.encode(), json.dumps(p.to_json()).encode()) for p in stored],
                guard=guard,
                on_retry=metrics.send_retries.inc,
                what="predictions",
            )

    async def handle_or_abandon(events: Sequence[Any]) -> None:
        """Run ``handle`` so that a cancellation (Faust stopping the agent) cannot cut it
        half-way: it finishes, or the process exits without acknowledging the batch."""
        task = asyncio.ensure_future(handle(events))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            guard.request_stop()
            done, _ = await asyncio.wait({task}, timeout=max(0.5, guard.grace_s - 2))
            if not done or task.exception() is not None:
                guard.abandon("the agent was cancelled before its batch was stored")
            raise

    @app.agent(articles)  # type: ignore[untyped-decorator]
    async def classify_articles(stream: Any) -> None:
        async for events in stream.take_events(
            settings.batch_max_size, within=settings.batch_max_wait_ms / 1000
        ):
            try:
                await handle_or_abandon(events)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug must not stop the worker nor lose the batch
                log.exception("batch failed unexpectedly; sending it to the DLQ")
                await send_dead(
                    [
                        dead_letter(
                            _raw(e),
                            DeadLetterReason.INTERNAL,
                            f"{type(exc).__name__}: {exc}",
                        )
                        for e in events
                    ]
                )

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


def run_worker(settings: Settings, *, model_dir: Any, precision: Precision = "auto") -> None:
    """Load the model (a folder, or the registry's champion, which is then followed), connect
    the database, serve metrics and run the Faust worker."""
    import threading

    import faust

    from pipeline.core.db.engine import make_engine, wait_for_database
    from pipeline.core.runtime import Classifier
    from pipeline.hotswap import load_champion_patiently, watch_champion
    from pipeline.metrics import build_metrics, serve_metrics

    limit_fetch_wait(settings.consumer_fetch_max_wait_ms)
    stop = threading.Event()
    engine = make_engine(settings)
    wait_for_database(engine, timeout_s=settings.start_timeout_s)
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
            kwargs={"precision": precision, "on_refused": _refusal_recorder(settings, engine)},
            daemon=True,
            name="champion-watcher",
        ).start()
    metrics = build_metrics()
    serve_metrics(metrics, settings.metrics_port, settings.metrics_host)
    (settings.home / "faust" / settings.worker_name).mkdir(parents=True, exist_ok=True)
    guard = StopGuard(settings.shutdown_grace_s)
    app = create_app(settings, holder=holder, engine=engine, metrics=metrics, guard=guard)

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
