"""Validation of raw `articles` messages against schema v1. Never raises on bad input:
returns a CleanArticle or a DeadLetter with a reason code."""

from __future__ import annotations

import json
from datetime import datetime

from pydantic import ValidationError

from pipeline.cleaning import clean_text, model_text
from pipeline.core.records import ArticleV1, CleanArticle, DeadLetter, DeadLetterReason

R = DeadLetterReason


def parse_article(
    raw: bytes | None,
    *,
    key: bytes | None = None,
    topic: str = "articles",
    partition: int = -1,
    offset: int = -1,
    max_bytes: int = 256 * 1024,
    now: datetime,
    enqueued_at: datetime | None = None,
) -> CleanArticle | DeadLetter:
    def reject(reason: DeadLetterReason, detail: str) -> DeadLetter:
        return DeadLetter(reason, detail[:1000], raw or b"", topic, partition, offset, now, key)

    if raw is None or raw == b"":
        return reject(R.INVALID_JSON, "empty message (no value)")
    if len(raw) > max_bytes:
        return reject(R.OVERSIZE, f"message is {len(raw)} bytes; the limit is {max_bytes}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return reject(R.INVALID_UTF8, f"not valid UTF-8: {exc}")
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        return reject(R.INVALID_JSON, f"not valid JSON: {exc}")
    if not isinstance(value, dict):
        return reject(R.NOT_OBJECT, f"expected a JSON object, got {type(value).__name__}")
    if "id" not in value or value["id"] is None:
        return reject(R.MISSING_ID, "field 'id' is required")
    ident = value["id"]
    if not isinstance(ident, str) or not 1 <= len(ident) <= 128:
        shown = f"a {type(ident).__name__}" if not isinstance(ident, str) else f"{len(ident)} chars"
        return reject(R.INVALID_ID, f"'id' must be a string of 1-128 characters, got {shown}")
    try:
        article = ArticleV1.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        reason = R.INVALID_TIMESTAMP if field == "published_at" else R.WRONG_TYPE
        return reject(reason, f"field '{field}': {first['msg']}")
    title = clean_text(article.title or "")
    body = clean_text(article.body or "")
    if not title and not body:
        return reject(R.EMPTY_TEXT, "title and body are both empty after cleaning")
    return CleanArticle(
        id=article.id,
        title=title,
        body=body,
        text=model_text(title, body),
        source=article.source,
        url=article.url,
        published_at=article.published_at,
        language=article.language,
        received_at=now,
        enqueued_at=enqueued_at,
        partition=partition,
        offset=offset,
    )
