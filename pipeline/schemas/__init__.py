"""The published message schemas. ``article.v1.json`` is generated from
:class:`pipeline.core.records.ArticleV1` and checked by a test to stay in sync."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ARTICLE_V1 = Path(__file__).with_name("article.v1.json")


def article_json_schema() -> dict[str, Any]:
    from pipeline.core.records import ArticleV1

    schema = ArticleV1.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["description"] = (
        "A news article for the `articles` topic (key = id). At least one of title and body "
        "must be non-empty after HTML is stripped and whitespace normalised. Unknown fields "
        "are accepted and ignored. Messages over the size limit (default 256 KiB) are rejected."
    )
    schema["anyOf"] = [{"required": ["title"]}, {"required": ["body"]}]
    return schema
