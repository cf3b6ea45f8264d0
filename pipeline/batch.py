"""What a worker does with one micro-batch, as a plain synchronous function that tests call
directly: validate every message, classify the valid ones, store them."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from sqlalchemy import Engine

from pipeline.classify import classify_batch
from pipeline.core.records import CleanArticle, DeadLetter, Prediction
from pipeline.core.runtime import Classifier
from pipeline.sink import ReviewPolicy, WriteResult, save_batch
from pipeline.validate import parse_article


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
        (articles if isinstance(out, CleanArticle) else dead).append(out)  # type: ignore[arg-type]
    return Validated(articles, dead)


@dataclasses.dataclass(frozen=True)
class Classified:
    pairs: list[tuple[CleanArticle, Prediction]]
    inference_ms: float


def classify(
    articles: Sequence[CleanArticle], classifier: Classifier, *, now: Callable[[], datetime]
) -> Classified:
    preds, ms = classify_batch(articles, classifier, now=now)
    return Classified(list(zip(articles, preds, strict=True)), ms)


def store(
    engine: Engine,
    classified: Classified,
    policy: ReviewPolicy,
    rng: random.Random,
    model_labels: Mapping[str, Sequence[str]] | None = None,
) -> WriteResult:
    return save_batch(
        engine=engine, pairs=classified.pairs, policy=policy, rng=rng, model_labels=model_labels
    )
