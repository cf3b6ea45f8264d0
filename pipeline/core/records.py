"""Typed records that travel between components (Kafka payloads, predictions, dead letters).

`ArticleV1` is the producer-facing message schema; its JSON Schema is published as
``pipeline/schemas/article.v1.json`` (regenerate with ``newsflow schema``).
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr

ArticleId = Annotated[StrictStr, Field(min_length=1, max_length=128)]
NONE_LABEL = "__none__"  # a reviewer's "none of these / new topic"; never a topic name


class ArticleV1(BaseModel):
    """An article as producers send it to the ``articles`` topic (schema v1).

    At least one of ``title`` and ``body`` must be non-empty after cleaning (HTML stripped,
    whitespace normalised); that rule is checked by the validator, not by the JSON Schema
    alone. Unknown fields are accepted and ignored.
    """

    model_config = ConfigDict(
        extra="allow",
        frozen=True,
        title="newsflow article (schema v1)",
        json_schema_extra={"$id": "https://newsflow.dev/schemas/article.v1.json"},
    )

    id: ArticleId = Field(description="Producer's unique article id; the Kafka key.")
    title: StrictStr | None = Field(default=None, description="Headline.")
    body: StrictStr | None = Field(default=None, description="Text (HTML is stripped).")
    source: StrictStr | None = Field(default=None, max_length=256)
    url: StrictStr | None = Field(default=None, max_length=2048)
    published_at: datetime | None = Field(default=None, description="ISO 8601 timestamp.")
    language: StrictStr | None = Field(default=None, max_length=16)


class DeadLetterReason(StrEnum):
    OVERSIZE = "oversize"
    INVALID_UTF8 = "invalid_utf8"
    INVALID_JSON = "invalid_json"
    NOT_OBJECT = "not_object"
    MISSING_ID = "missing_id"
    INVALID_ID = "invalid_id"
    WRONG_TYPE = "wrong_type"
    INVALID_TIMESTAMP = "invalid_timestamp"
    EMPTY_TEXT = "empty_text"
    KEY_MISMATCH = "key_mismatch"
    INVALID_NUMBER = "invalid_number"
    TOO_DEEP = "too_deep"
    INVALID_TEXT = "invalid_text"
    STORE_REJECTED = "store_rejected"
    INTERNAL = "internal_error"


DLQ_RECORD_MAX_BYTES = 900_000
"""A dead-letter record is at most this many bytes, under the broker's default message
limit (1 MiB) whatever the original was: see :meth:`DeadLetter.encode`."""


@dataclasses.dataclass(frozen=True, slots=True)
class CleanArticle:
    """A validated article with its cleaned text, ready for the model."""

    id: str
    title: str
    body: str
    text: str
    source: str | None
    url: str | None
    published_at: datetime | None
    language: str | None
    received_at: datetime
    enqueued_at: datetime | None = None  # the Kafka message timestamp
    partition: int = -1
    offset: int = -1
    topic: str | None = None  # where it was read from (with partition and offset)


@dataclasses.dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejected message, as written to ``articles.dlq``."""

    reason: DeadLetterReason
    detail: str
    original: bytes
    topic: str
    partition: int
    offset: int
    rejected_at: datetime
    key: bytes | None = None

    def to_json(
        self, *, max_original_bytes: int | None = None, sha256: str | None = None
    ) -> dict[str, Any]:
        """The record as JSON. The original is kept as UTF-8 text when it is valid UTF-8
        and JSON-escaping does not blow it up, else as base64. With ``max_original_bytes``
        the original is cut to that many bytes *before* anything else looks at it; its full
        length and SHA-256 are always kept, and ``original_truncated`` says whether it was
        cut. Work is bounded by the kept bytes, whatever the original's size."""
        import base64
        import hashlib

        kept = self.original
        if max_original_bytes is not None and len(kept) > max_original_bytes:
            kept = kept[:max_original_bytes]
        try:
            text: str | None = kept.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        # Control characters escape to 6 bytes each in JSON: base64 (4/3) is then smaller.
        if text is not None and len(json.dumps(text)) <= len(kept) * 4 // 3 + 8:
            original, encoding = text, "utf-8"
        else:
            original, encoding = base64.b64encode(kept).decode(), "base64"
        return {
            "reason": self.reason.value,
            "detail": self.detail,
            "original": original,
            "original_encoding": encoding,
            "original_length": len(self.original),
            "original_sha256": sha256 or hashlib.sha256(self.original).hexdigest(),
            "original_truncated": len(kept) < len(self.original),
            "key": self.key[:1024].decode("utf-8", "replace") if self.key is not None else None,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "rejected_at": self.rejected_at.isoformat(),
        }

    def encode(self, max_bytes: int = DLQ_RECORD_MAX_BYTES) -> bytes:
        """The record as bytes of at most ``max_bytes``. The original is first cut to what
        base64 can carry in that budget (so a decompressed 256 MiB original costs no more
        than a 1 MiB one), then halved until the record fits. The SHA-256 of the whole
        original is computed once."""
        import hashlib

        digest = hashlib.sha256(self.original).hexdigest()
        keep = min(len(self.original), max(0, (max_bytes - 4096) * 3 // 4))
        while True:
            out = json.dumps(self.to_json(max_original_bytes=keep, sha256=digest)).encode()
            if len(out) <= max_bytes or keep == 0:
                return out
            keep //= 2


@dataclasses.dataclass(frozen=True, slots=True)
class Prediction:
    """One model's verdict on one article."""

    article_id: str
    model_version: str
    topic: str
    confidence: float
    margin: float
    probabilities: tuple[float, ...]
    latency_ms: float
    received_at: datetime
    predicted_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "article_id": self.article_id,
            "model_version": self.model_version,
            "topic": self.topic,
            "confidence": self.confidence,
            "margin": self.margin,
            "probabilities": list(self.probabilities),
            "latency_ms": self.latency_ms,
            "received_at": self.received_at.isoformat(),
            "predicted_at": self.predicted_at.isoformat(),
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Queued:
    """A pending item as the filler sees it."""

    item_id: int
    prediction_id: int
    reason: str
    topic: str
    title: str
    margin: float
    priority: int
    round: int = 1
    held: bool = False  # claimed by a reviewer (recently): neither replaced nor moved
    skips: int = 0

    @property
    def movable(self) -> bool:
        return self.round == 1 and not self.held
