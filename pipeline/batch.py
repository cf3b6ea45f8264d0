"""What a worker does with one micro-batch, with every I/O dependency passed in so tests can
drive it: the model (a :class:`~pipeline.hotswap.ModelHolder`), the database (an engine
and the sink's ``save_batch``), the two Kafka outlets (dead letters, predictions), the
clock, the backoff's sleep and the stop guard.

:meth:`BatchHandler.handle` returns only once the batch is stored, its dead letters are
delivered and its new predictions are published (docs/architecture.md, "Delivery
guarantees"), in that order:

1. validate every message (never raises: a bad message becomes a dead letter);
2. classify the valid ones; if the whole batch fails, classify message by message so only
   the culprit is dead-lettered (``internal_error``);
3. store them in one transaction, retried with backoff while the database is *unavailable*
   (a stop request gives the batch up unacknowledged); a data or integrity error stores the
   batch again message by message, so only the culprit is dead-lettered (``store_rejected``);
4. send the dead letters, then publish the predictions that are new in the database.

Validation, classification, storing and dead-letter encoding run in the executor, so the
event loop keeps heartbeating and handling signals.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import numpy as np
from sqlalchemy import Engine
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential

from pipeline.classify import classify_batch, classify_embedded
from pipeline.core.records import (
    DLQ_RECORD_MAX_BYTES,
    CleanArticle,
    DeadLetter,
    DeadLetterReason,
    Prediction,
)
from pipeline.core.runtime import Classifier
from pipeline.delivery import (
    BatchAbandoned,
    StopGuard,
    is_transient_db_error,
    send_all,
    shrink_dead_letter,
)
from pipeline.hotswap import ModelHolder
from pipeline.metrics import WorkerMetrics
from pipeline.sink import ReviewPolicy, WriteResult, save_batch
from pipeline.suggestions import SuggestionHolder, queue_matches
from pipeline.validate import parse_article

log = logging.getLogger("newsflow.worker")

T = TypeVar("T")
Pair = tuple[CleanArticle, Prediction]
Vectors = dict[str, Any]  # article id -> its embedding (a numpy row), for suggestions
Position = tuple[int, int]  # (partition, offset)
Send = Callable[[bytes | None, bytes], Awaitable[Any]]
"""Like Faust's ``topic.send``: awaiting it gives a future that resolves on delivery."""


class Save(Protocol):
    """The sink's bulk write (:func:`pipeline.sink.save_batch`)."""

    def __call__(
        self,
        *,
        engine: Engine,
        pairs: Sequence[Pair],
        policy: ReviewPolicy,
        rng: random.Random,
        model_labels: Mapping[str, Sequence[str]] | None = None,
    ) -> WriteResult: ...


@dataclasses.dataclass(frozen=True, slots=True)
class RawMessage:
    value: bytes | None
    key: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None


@dataclasses.dataclass(frozen=True)
class Validated:
    articles: list[CleanArticle]
    dead: list[DeadLetter]


@dataclasses.dataclass(frozen=True)
class Outlets:
    """Where a batch's records go: the dead-letter topic and the predictions topic."""

    dead_letters: Send
    predictions: Send


@dataclasses.dataclass(frozen=True)
class BatchOutcome:
    stored: list[Prediction]  # new in the database, published
    dead: list[DeadLetter]  # delivered to the dead-letter topic


def validate_batch(
    messages: Sequence[RawMessage], *, max_bytes: int, now: Callable[[], datetime]
) -> Validated:
    articles: list[CleanArticle] = []
    dead: list[DeadLetter] = []
    stamp = now()
    for m in messages:
        try:  # a broker may carry any timestamp (e.g. past year 9999): this message only
            enqueued_at = (
                datetime.fromtimestamp(m.timestamp_ms / 1000, UTC) if m.timestamp_ms else None
            )
        except (ValueError, OverflowError, OSError):
            enqueued_at = None
        out = parse_article(
            m.value,
            key=m.key,
            topic=m.topic,
            partition=m.partition,
            offset=m.offset,
            max_bytes=max_bytes,
            now=stamp,
            enqueued_at=enqueued_at,
        )
        if isinstance(out, CleanArticle):
            articles.append(out)
        else:
            dead.append(out)
    return Validated(articles, dead)


def _utc_now() -> datetime:
    return datetime.now(UTC)


async def _offload(fn: Callable[[], T]) -> T:
    """Run ``fn`` in the default executor, off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, fn)


@dataclasses.dataclass(kw_only=True)
class BatchHandler:
    """Handles one micro-batch at a time (not safe for concurrent batches: the agent runs
    one). ``pause`` is the backoff's sleep (default: the guard's, which a stop request
    wakes); ``save`` the sink's write."""

    holder: ModelHolder
    engine: Engine
    outlets: Outlets
    metrics: WorkerMetrics
    guard: StopGuard
    policy: ReviewPolicy = dataclasses.field(default_factory=ReviewPolicy)
    max_message_bytes: int = 256 * 1024
    dlq_max_bytes: int = DLQ_RECORD_MAX_BYTES
    save: Save = save_batch
    now: Callable[[], datetime] = _utc_now
    pause: Callable[[float], Awaitable[None]] | None = None
    rng: random.Random = dataclasses.field(default_factory=random.Random)
    labels_recorded: set[str] = dataclasses.field(default_factory=set)
    """Model versions whose label order is in ``model_labels`` already."""
    suggestions: SuggestionHolder | None = None
    """Onboarding topics' prototypes (:mod:`pipeline.suggestions`); None: no suggestions."""
    suggest_cap: int = 0  # pending suggestions per topic

    def swap_if_ready(self) -> None:
        """Take a newly offered model, between batches (a batch in flight keeps its own)."""
        old = self.holder.current.version
        if self.holder.swap_if_ready() is not None:
            self.metrics.model_info.labels(version=old).set(0)
            self.metrics.model_info.labels(version=self.holder.current.version).set(1)

    async def handle(self, messages: Sequence[RawMessage]) -> BatchOutcome:
        """Validate, classify, store, dead-letter and publish one batch; returns only when
        all of it is done (the caller may then acknowledge the batch)."""
        self.swap_if_ready()
        classifier = self.holder.current
        self.metrics.consumed.inc(len(messages))
        self.metrics.batch_size.observe(len(messages))
        checked = await _offload(
            lambda: validate_batch(messages, max_bytes=self.max_message_bytes, now=self.now)
        )
        dead = list(checked.dead)
        stored: list[Prediction] = []
        if checked.articles:
            by_pos = {(m.partition, m.offset): m for m in messages}
            stored, failed = await self._classify_and_store(checked.articles, classifier, by_pos)
            dead += failed
        await self._send_dead(dead)
        now_s = self.now().timestamp()
        for m in messages:
            if m.timestamp_ms:
                self.metrics.end_to_end_seconds.observe(max(0.0, now_s - m.timestamp_ms / 1000))
        if stored:
            await send_all(
                self.outlets.predictions,
                [(p.article_id.encode(), json.dumps(p.to_json()).encode()) for p in stored],
                guard=self.guard,
                on_retry=self.metrics.send_retries.inc,
                what="predictions",
            )
        return BatchOutcome(stored, dead)

    async def dead_letter_all(self, messages: Sequence[RawMessage], exc: BaseException) -> None:
        """The last resort for a batch that failed unexpectedly (a bug): every message goes
        to the dead-letter topic, so the worker neither stops nor loses the batch."""
        await self._send_dead(
            [
                self._dead_letter(m, DeadLetterReason.INTERNAL, f"{type(exc).__name__}: {exc}")
                for m in messages
            ]
        )

    async def _classify_and_store(
        self,
        articles: Sequence[CleanArticle],
        classifier: Classifier,
        by_pos: Mapping[Position, RawMessage],
    ) -> tuple[list[Prediction], list[DeadLetter]]:
        pairs, dead, inference_ms, vectors = await self._classify_isolated(
            articles, classifier, by_pos
        )
        self.metrics.inference_seconds.observe(inference_ms / 1000)
        version = classifier.version
        labels = None if version in self.labels_recorded else {version: classifier.labels}
        results, rejected = await self._store_isolated(pairs, labels, by_pos) if pairs else ([], [])
        dead += rejected
        if results:
            self.labels_recorded.add(version)
        stored: list[Prediction] = []
        for r in results:
            stored += r.stored
            self.metrics.duplicates.inc(r.duplicates)
            self.metrics.conflicts.inc(r.conflicts)
            self.metrics.review_items.inc(r.review_items)
        self.metrics.predicted.inc(len(stored))
        if vectors and stored:
            await self._suggest(stored, vectors, version)
        return stored, dead

    def _suggesting(self, classifier: Classifier) -> bool:
        found = None if self.suggestions is None else self.suggestions.current
        return (
            found is not None and bool(found.topics) and found.model_version == classifier.version
        )

    async def _suggest(self, stored: Sequence[Prediction], vectors: Vectors, version: str) -> None:
        """Queue the new predictions near an onboarding topic's prototype for review, the
        topic suggested (after the batch is stored: a failure here only loses suggestions)."""
        found = None if self.suggestions is None else self.suggestions.current
        if found is None or found.model_version != version:
            return
        ids = [p.article_id for p in stored if p.article_id in vectors]
        if not ids:
            return
        matches = found.match(np.stack([vectors[i] for i in ids]))
        if not matches:
            return
        try:
            queued = await _offload(
                lambda: queue_matches(
                    self.engine, matches, ids, model_version=version, cap=self.suggest_cap
                )
            )
        except Exception as exc:  # the batch is stored; suggestions come with later batches
            log.warning("queueing topic suggestions failed: %s", exc)
            return
        for topic, n in queued.items():
            if n:
                log.info("suggested %d articles for topic %r", n, topic)

    async def _classify_isolated(
        self,
        articles: Sequence[CleanArticle],
        classifier: Classifier,
        by_pos: Mapping[Position, RawMessage],
    ) -> tuple[list[Pair], list[DeadLetter], float, Vectors]:
        """Classify the batch (with embeddings while topics are being suggested); if that
        fails, message by message (the culprit is dead; no suggestions for that batch)."""
        embed = self._suggesting(classifier)
        try:
            preds, ms, emb = await _offload(
                lambda: classify_embedded(articles, classifier, now=self.now, embed=embed)
            )
            vectors: Vectors = (
                {} if emb is None else dict(zip([a.id for a in articles], emb, strict=True))
            )
            return list(zip(articles, preds, strict=True)), [], ms, vectors
        except Exception:
            log.exception("classifying a batch failed; classifying message by message")
            self.metrics.fallbacks.labels(stage="classify").inc()
        pairs: list[Pair] = []
        dead: list[DeadLetter] = []
        total_ms = 0.0
        for art in articles:
            try:
                one, ms = await _offload(
                    functools.partial(classify_batch, [art], classifier, now=self.now)
                )
                pairs += zip([art], one, strict=True)
                total_ms += ms
            except Exception as exc:
                m = by_pos[(art.partition, art.offset)]
                dead.append(
                    self._dead_letter(m, DeadLetterReason.INTERNAL, f"model failed: {exc!r}")
                )
        return pairs, dead, total_ms, {}

    async def _store_isolated(
        self,
        pairs: Sequence[Pair],
        labels: Mapping[str, Sequence[str]] | None,
        by_pos: Mapping[Position, RawMessage],
    ) -> tuple[list[WriteResult], list[DeadLetter]]:
        """Store the batch; if the database refuses it (a data error, not an outage), store
        message by message so only the culprit is dead-lettered."""
        try:
            return [await self._store_retrying(pairs, labels)], []
        except BatchAbandoned:
            raise
        except Exception as exc:
            log.warning("storing a batch failed (%r); storing message by message", exc)
            self.metrics.fallbacks.labels(stage="store").inc()
        results: list[WriteResult] = []
        dead: list[DeadLetter] = []
        for pair in pairs:
            try:
                results.append(await self._store_retrying([pair], labels))
            except BatchAbandoned:
                raise
            except Exception as exc:
                m = by_pos[(pair[0].partition, pair[0].offset)]
                dead.append(
                    self._dead_letter(
                        m, DeadLetterReason.STORE_REJECTED, f"database refused it: {exc}"
                    )
                )
        return results, dead

    async def _store_retrying(
        self, pairs: Sequence[Pair], labels: Mapping[str, Sequence[str]] | None
    ) -> WriteResult:
        """Store, retrying with backoff while the database is unavailable (a stop request
        cuts the wait short and gives the batch up unacknowledged); a data error is raised."""

        def note_retry(state: RetryCallState) -> None:
            self.metrics.store_retries.inc()
            exc = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            log.warning("store failed, retrying in %.1fs: %s", wait, str(exc)[:300])

        def write() -> WriteResult:
            return self.save(
                engine=self.engine,
                pairs=pairs,
                policy=self.policy,
                rng=self.rng,
                model_labels=labels,
            )

        async for attempt in AsyncRetrying(
            retry=retry_if_exception(is_transient_db_error),
            wait=wait_exponential(multiplier=0.1, min=0.2, max=5.0),
            sleep=self.pause or self.guard.pause,
            before_sleep=note_retry,
            reraise=True,
        ):
            with attempt:
                if self.guard.stopping:
                    self.guard.give_up("stop requested before the batch was stored")
                return await _offload(write)
        raise AssertionError("unreachable: tenacity retries until success or a data error")

    async def _send_dead(self, dead: Sequence[DeadLetter]) -> None:
        if not dead:
            return
        limit = self.dlq_max_bytes
        records = await _offload(  # off the event loop: an original may be large
            lambda: [(d.key[:1024] if d.key else d.key, d.encode(limit)) for d in dead]
        )
        await send_all(
            self.outlets.dead_letters,
            records,
            guard=self.guard,
            shrink=shrink_dead_letter,
            on_retry=self.metrics.send_retries.inc,
            what="dead letters",
        )
        for d in dead:
            self.metrics.dead_letters.labels(reason=d.reason.value).inc()
            log.info(
                "dead letter",
                extra={"reason": d.reason.value, "offset": d.offset, "partition": d.partition},
            )

    def _dead_letter(self, m: RawMessage, reason: DeadLetterReason, detail: str) -> DeadLetter:
        return DeadLetter(
            reason, detail[:1000], m.value or b"", m.topic, m.partition, m.offset, self.now(), m.key
        )
