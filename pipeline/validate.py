"""Validation and normalisation of raw `articles` messages against schema v1.

Never raises: returns a :class:`CleanArticle` or a :class:`DeadLetter` with a reason code.
Everything a stored article holds has been made safe for Postgres and the model here:

- size first (nothing over the limit is decoded), then strict UTF-8, then JSON with integers
  and floats of bounded length (a 5,000-digit integer is ``invalid_number``, not a crash),
  no ``NaN``/``Infinity``, and nesting at most ``MAX_DEPTH`` deep (``too_deep``);
- ``id``: a string of 1-128 characters with no control characters (NUL included) and no
  unpaired surrogates (``invalid_id``); a message key, when there is one, must equal the id
  in UTF-8 (``key_mismatch``): a producer cannot file an article under another key;
- ``title`` and ``body``: markup removed in linear time, control characters and unpaired
  surrogates replaced, whitespace normalised (:mod:`pipeline.cleaning`);
- ``source``, ``url``, ``language``: control characters and unpaired surrogates removed;
- ``published_at``: ISO 8601; without an offset it is taken as UTC; it must be
  representable in UTC (``invalid_timestamp``).

Unknown fields are accepted and ignored (they are never stored, but their depth and numbers
are checked like the rest of the message).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from pipeline.cleaning import clean_field, clean_text, model_text
from pipeline.core.records import ArticleV1, CleanArticle, DeadLetter, DeadLetterReason

R = DeadLetterReason
MAX_DEPTH = 32
MAX_NUMBER_CHARS = 64
KNOWN_FIELDS = ("id", "title", "body", "source", "url", "published_at", "language")
_BAD_ID_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_SURROGATES = re.compile(r"[\ud800-\udfff]")


class _BadNumber(ValueError):
    pass


def _parse_int(s: str) -> int:
    if len(s) > MAX_NUMBER_CHARS:
        raise _BadNumber(f"an integer of {len(s)} digits (at most {MAX_NUMBER_CHARS})")
    return int(s)


def _parse_float(s: str) -> float:
    if len(s) > MAX_NUMBER_CHARS:
        raise _BadNumber(f"a number of {len(s)} characters (at most {MAX_NUMBER_CHARS})")
    value = float(s)
    if value in (float("inf"), float("-inf")):
        raise _BadNumber(f"the number {s[:20]} is out of range")
    return value


def _parse_constant(s: str) -> float:
    raise _BadNumber(f"{s} is not a JSON number")


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a parsed JSON value (iterative: no recursion on hostile input);
    stops counting once past ``limit``."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, d)
            if deepest > limit:
                return deepest
            children = node.values() if isinstance(node, dict) else node
            stack.extend((c, d + 1) for c in children if isinstance(c, dict | list))
    return deepest


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

    try:
        return _parse(raw, key, max_bytes, now, enqueued_at, (topic, partition, offset), reject)
    except Exception as exc:  # a gap in the rules above: this message only, never the batch
        return reject(R.INTERNAL, f"validator failed: {type(exc).__name__}: {exc}")


def _parse(
    raw: bytes | None,
    key: bytes | None,
    max_bytes: int,
    now: datetime,
    enqueued_at: datetime | None,
    where: tuple[str, int, int],
    reject: Callable[[DeadLetterReason, str], DeadLetter],
) -> CleanArticle | DeadLetter:
    if raw is None or raw == b"":
        return reject(R.INVALID_JSON, "empty message (no value)")
    if len(raw) > max_bytes:
        return reject(R.OVERSIZE, f"message is {len(raw)} bytes; the limit is {max_bytes}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return reject(R.INVALID_UTF8, f"not valid UTF-8: {exc}")
    try:
        value = json.loads(
            text,
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_parse_constant,
        )
    except _BadNumber as exc:
        return reject(R.INVALID_NUMBER, f"not accepted: {exc}")
    except RecursionError:
        return reject(R.TOO_DEEP, f"nested deeper than {MAX_DEPTH} levels")
    except ValueError as exc:  # JSONDecodeError is a ValueError
        return reject(R.INVALID_JSON, f"not valid JSON: {exc}")
    if not isinstance(value, dict):
        return reject(R.NOT_OBJECT, f"expected a JSON object, got {type(value).__name__}")
    if _depth(value, MAX_DEPTH) > MAX_DEPTH:
        return reject(R.TOO_DEEP, f"nested deeper than {MAX_DEPTH} levels")
    if "id" not in value or value["id"] is None:
        return reject(R.MISSING_ID, "field 'id' is required")
    ident = value["id"]
    if not isinstance(ident, str) or not 1 <= len(ident) <= 128:
        shown = f"a {type(ident).__name__}" if not isinstance(ident, str) else f"{len(ident)} chars"
        return reject(R.INVALID_ID, f"'id' must be a string of 1-128 characters, got {shown}")
    if _BAD_ID_CHARS.search(ident):
        return reject(
            R.INVALID_ID, "'id' contains control characters (NUL included) or unpaired surrogates"
        )
    if key is not None and key != ident.encode("utf-8"):
        return reject(
            R.KEY_MISMATCH,
            f"the message key ({len(key)} bytes) differs from the 'id'; the key must be the id",
        )
    if value.get("published_at") is not None and not isinstance(value["published_at"], str):
        return reject(R.INVALID_TIMESTAMP, "field 'published_at': an ISO 8601 string is required")
    known = {
        name: _SURROGATES.sub("\ufffd", v) if isinstance(v, str) else v
        for name, v in value.items()
        if name in KNOWN_FIELDS
    }
    try:
        article = ArticleV1.model_validate(known)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        reason = R.INVALID_TIMESTAMP if field == "published_at" else R.WRONG_TYPE
        return reject(reason, f"field '{field}': {first['msg']}")
    published = article.published_at
    if published is not None:
        try:
            aware = published if published.tzinfo else published.replace(tzinfo=UTC)
            published = aware.astimezone(UTC)
        except (OverflowError, ValueError) as exc:
            return reject(R.INVALID_TIMESTAMP, f"field 'published_at': out of range ({exc})")
    title = clean_text(article.title or "")
    body = clean_text(article.body or "")
    if not title and not body:
        return reject(R.EMPTY_TEXT, "title and body are both empty after cleaning")

    def meta(v: str | None) -> str | None:
        return (clean_field(v) or None) if v is not None else None

    return CleanArticle(
        id=article.id,
        title=title,
        body=body,
        text=model_text(title, body),
        source=meta(article.source),
        url=meta(article.url),
        published_at=published,
        language=meta(article.language),
        received_at=now,
        enqueued_at=enqueued_at,
        topic=where[0],
        partition=where[1],
        offset=where[2],
    )
