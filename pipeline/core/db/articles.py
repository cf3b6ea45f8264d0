"""Data access for ``articles`` and ``article_conflicts``, as the sink writes them: one
bulk, idempotent upsert per batch, the stored text of ids another message claimed first,
redeliveries counted, conflicting copies kept.

Writes take the caller's :class:`~sqlalchemy.Connection` inside its transaction (the caller
commits)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import NamedTuple

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects.postgresql import insert

from pipeline.core.db.access import unnest_rows
from pipeline.core.db.models import ArticleConflictRow, ArticleRow
from pipeline.core.records import CleanArticle


class ArticleText(NamedTuple):
    title: str
    body: str


def _position(value: int) -> int | None:
    """A Kafka partition or offset; negative means unknown (not read from Kafka)."""
    return value if value >= 0 else None


def upsert_articles(
    conn: Connection, *, articles: Sequence[CleanArticle], deliveries: Sequence[int]
) -> set[str]:
    """Store each article (``deliveries[i]``: how many messages of the batch brought
    ``articles[i]``'s text); an id stored already with the same title and body only counts
    the deliveries, one stored with another text is left as it is. Returns the ids whose
    stored text is the one offered (new or matching); the others are conflicts or their
    redeliveries."""
    rows = [
        {
            "id": art.id,
            "title": art.title,
            "body": art.body,
            "source": art.source,
            "url": art.url,
            "language": art.language,
            "published_at": art.published_at,
            "received_at": art.received_at,
            "enqueued_at": art.enqueued_at,
            "kafka_topic": art.topic,
            "kafka_partition": _position(art.partition),
            "kafka_offset": _position(art.offset),
            "deliveries": n,
        }
        for art, n in zip(articles, deliveries, strict=True)
    ]
    if not rows:
        return set()
    stmt = insert(ArticleRow).from_select(list(rows[0]), unnest_rows(ArticleRow.__table__, rows))
    return set(
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["id"],
                set_={"deliveries": ArticleRow.deliveries + stmt.excluded.deliveries},
                where=(ArticleRow.title == stmt.excluded.title)
                & (ArticleRow.body == stmt.excluded.body),
            ).returning(ArticleRow.id)
        ).scalars()
    )


def select_article_texts(conn: Connection, *, ids: Collection[str]) -> dict[str, ArticleText]:
    """The stored title and body of each of ``ids`` that exists."""
    if not ids:
        return {}
    rows = conn.execute(
        select(ArticleRow.id, ArticleRow.title, ArticleRow.body).where(ArticleRow.id.in_(list(ids)))
    )
    return {str(r.id): ArticleText(r.title, r.body) for r in rows}


def add_deliveries(conn: Connection, *, counts: Mapping[str, int]) -> None:
    """Count ``counts[id]`` more deliveries of each stored article."""
    for article_id, n in counts.items():
        conn.execute(
            update(ArticleRow)
            .where(ArticleRow.id == article_id)
            .values(deliveries=ArticleRow.deliveries + n)
        )


def insert_conflicts(conn: Connection, *, articles: Sequence[CleanArticle]) -> None:
    """Keep messages whose id is stored with another title or body, with where they came
    from."""
    if not articles:
        return
    conn.execute(
        insert(ArticleConflictRow),
        [
            {
                "article_id": a.id,
                "title": a.title,
                "body": a.body,
                "kafka_topic": a.topic,
                "kafka_partition": _position(a.partition),
                "kafka_offset": _position(a.offset),
                "received_at": a.received_at,
            }
            for a in articles
        ],
    )
