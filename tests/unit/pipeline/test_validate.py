from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from pipeline.cleaning import clean_text
from pipeline.core.records import CleanArticle, DeadLetter, DeadLetterReason
from pipeline.malformed import bad_messages
from pipeline.schemas import ARTICLE_V1, article_json_schema
from pipeline.validate import parse_article

NOW = datetime(2026, 1, 1, tzinfo=UTC)
MAX = 256 * 1024


@pytest.mark.parametrize("kind", sorted(bad_messages("a-1", MAX)))
def test_every_bad_kind_gets_its_reason(kind: str) -> None:
    raw, expected = bad_messages("a-1", MAX)[kind]
    out = parse_article(raw, key=b"a-1", partition=3, offset=42, max_bytes=MAX, now=NOW)
    assert isinstance(out, DeadLetter), kind
    assert out.reason == expected
    assert out.detail
    record = out.to_json()
    assert record["partition"] == 3 and record["offset"] == 42
    assert record["reason"] == expected.value


def test_non_utf8_original_is_base64_in_dead_letter() -> None:
    raw, _ = bad_messages("a-1", MAX)["invalid_utf8"]
    out = parse_article(raw, max_bytes=MAX, now=NOW)
    assert isinstance(out, DeadLetter)
    import base64

    rec = out.to_json()
    assert rec["original_encoding"] == "base64"
    assert base64.b64decode(rec["original"]) == raw


def test_unknown_fields_are_accepted_and_html_cleaned() -> None:
    raw = json.dumps(
        {
            "id": "a-1",
            "title": "<b>Rates</b> &amp; stocks",
            "body": "<script>x()</script> Up  \n 2%",
            "published_at": "2026-11-27T10:00:00Z",
            "extra": {"nested": True},
            "tags": ["x"],
        }
    ).encode()
    out = parse_article(raw, max_bytes=MAX, now=NOW)
    assert isinstance(out, CleanArticle)
    assert out.title == "Rates & stocks"
    assert out.body == "Up 2%"
    assert out.text == "Rates & stocks. Up 2%"
    assert out.published_at is not None and out.published_at.year == 2026


def test_title_only_or_body_only_is_enough() -> None:
    for doc in ({"id": "x", "title": "Only a title"}, {"id": "y", "body": "Only a body"}):
        assert isinstance(
            parse_article(json.dumps(doc).encode(), max_bytes=MAX, now=NOW), CleanArticle
        )


def test_boundary_id_lengths() -> None:
    ok = parse_article(json.dumps({"id": "x" * 128, "title": "t"}).encode(), max_bytes=MAX, now=NOW)
    assert isinstance(ok, CleanArticle)
    bad = parse_article(json.dumps({"id": "", "title": "t"}).encode(), max_bytes=MAX, now=NOW)
    assert isinstance(bad, DeadLetter) and bad.reason == DeadLetterReason.INVALID_ID


def test_clean_text() -> None:
    assert clean_text("<p>Stocks&nbsp;<b>rally</b></p>\n\n") == "Stocks rally"
    assert clean_text("<style>p{}</style><!-- c -->a\tb") == "a b"
    assert clean_text("   ") == ""


def test_published_schema_file_is_in_sync() -> None:
    assert json.loads(ARTICLE_V1.read_text()) == article_json_schema()
