"""Data access for ``articles`` and ``article_conflicts``, as the sink writes them: one
bulk, idempotent upsert per batch, the stored text of ids another message claimed first,
redeliveries counted, conflicting copies kept; and the latest stored texts (recent live
traffic for the live check before a promotion).

Writes take the caller's :class:`~sqlalchemy.Connection` inside its transaction (the caller
commits)."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Connection, text, update
from sqlalchemy.dialects.postgresql import insert

from pipeline.core.db.access import Db, connected, unnest_rows
from pipeline.core.db.models import ArticleConflictRow, ArticleRow
from pipeline.core.records import CleanArticle


class ArticleText(NamedTuple):
    title: str
    body: str


def _position(value: int) -> int | None:
    """A Kafka partition or offset; negative means unknown (not read from Kafka)."""
    return value if value >= 0 else None


ARTICLE_LOCKS = 0x61727469  # "arti": first key of the per-article transaction locks


def lock_article_ids(conn: Connection, *, ids: Collection[str]) -> None:
    """Hold a transaction lock per article id (two-key advisory locks: :data:`ARTICLE_LOCKS`
    and the id's hash), taken in one order so two writers never deadlock. ``articles`` and
    ``predictions`` are partitioned by day, so no unique index spans an id's partitions:
    writers that look an id up and then insert it hold its lock in between."""
    if ids:
        conn.execute(
            text(
                "SELECT pg_advisory_xact_lock(:k, h) FROM (SELECT DISTINCT hashtext(i) AS h "
                "FROM unnest(CAST(:ids AS text[])) AS i ORDER BY 1) AS s"
            ),
            {"k": ARTICLE_LOCKS, "ids": sorted(set(ids))},
        )


# The stored rows of some ids, looked up id by id through each partition's key (a lateral
# subquery behind OFFSET 0 is not flattened, so the plan is always a nested loop of index
# probes): a day partition that autovacuum has not analysed yet has no statistics on ``id``,
# and an ``id IN (...)`` or ``= ANY(...)`` filter over it was planned as a sequential scan of
# the whole partition, a cost that grew with every row of the day (11-16 ms a batch of 64 after
# 6,400 rows, docs/benchmarks/2026-12-07-throughput.md). One statement text for any number of
# ids, so psycopg prepares it once.
_STORED = text(
    "SELECT a.id, a.received_at, a.title, a.body FROM unnest(CAST(:ids AS text[])) AS u(id) "
    "CROSS JOIN LATERAL (SELECT id, received_at, title, body FROM articles "
    "WHERE articles.id = u.id OFFSET 0) AS a"
)


def _stored(conn: Connection, ids: Collection[str]) -> dict[str, tuple[datetime, str, str]]:
    rows = conn.execute(_STORED, {"ids": sorted(set(ids))})
    return {str(r.id): (r.received_at, r.title, r.body) for r in rows}


def upsert_articles(
    conn: Connection,
    *,
    articles: Sequence[CleanArticle],
    deliveries: Sequence[int],
    ids_locked: bool = False,
) -> set[str]:
    """Store each article (``deliveries[i]``: how many messages of the batch brought
    ``articles[i]``'s text); an id stored already with the same title and body only counts
    the deliveries, one stored with another text is left as it is. Returns the ids whose
    stored text is the one offered (new or matching); the others are conflicts or their
    redeliveries. Ids are looked up in every partition under :func:`lock_article_ids`
    (``ids_locked``: the caller took those locks already in this transaction)."""
    if len(articles) != len(deliveries):
        raise ValueError("one delivery count per article")
    if not articles:
        return set()
    if not ids_locked:
        lock_article_ids(conn, ids=[a.id for a in articles])
    stored = _stored(conn, {a.id for a in articles})
    rows: dict[str, dict[str, object]] = {}
    counted: list[dict[str, object]] = []
    for art, n in zip(articles, deliveries, strict=True):
        if art.id in stored:
            received, title, body = stored[art.id]
            if (title, body) == (art.title, art.body):
                counted.append({"i": art.id, "r": received, "n": n})
            continue
        rows.setdefault(
            art.id,
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
            },
        )
    matched: set[str] = set()
    if rows:
        values = list(rows.values())
        stmt = insert(ArticleRow).from_select(
            list(values[0]), unnest_rows(ArticleRow.__table__, values)
        )
        matched.update(
            conn.execute(
                stmt.on_conflict_do_nothing(index_elements=["id", "received_at"]).returning(
                    ArticleRow.id
                )
            ).scalars()
        )
    if counted:  # the key (id, received_at) finds each row's partition and index entry
        updated = conn.execute(
            text(
                "UPDATE articles AS a SET deliveries = a.deliveries + u.n FROM unnest("
                "CAST(:i AS text[]), CAST(:r AS timestamptz[]), CAST(:n AS int[])) "
                "AS u(id, received_at, n) WHERE a.id = u.id AND a.received_at = u.received_at "
                "RETURNING a.id"
            ),
            {
                "i": [c["i"] for c in counted],
                "r": [c["r"] for c in counted],
                "n": [c["n"] for c in counted],
            },
        ).scalars()
        matched.update(str(i) for i in updated)
    return matched


def select_article_texts(conn: Connection, *, ids: Collection[str]) -> dict[str, ArticleText]:
    """The stored title and body of each of ``ids`` that exists."""
    if not ids:
        return {}
    rows = conn.execute(_STORED, {"ids": sorted(set(ids))})
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


class StoredText(NamedTuple):
    id: str
    title: str
    body: str


def latest_article_texts(db: Db, *, limit: int, within_days: int = 2) -> list[StoredText]:
    """The articles of the ``limit`` most recent predictions (within ``within_days`` of the
    newest one), newest first: the recent live traffic the live check before a promotion
    scores both models on. Read through the predictions' time index and the articles' key,
    so only the recent partitions are scanned (a long scan would hold the tables' locks
    that partition maintenance waits for)."""
    with connected(db) as conn:
        rows = conn.execute(
            text(
                "WITH newest AS (SELECT max(predicted_at) AS t FROM predictions), "
                "recent AS (SELECT article_id, max(predicted_at) AS at FROM ("
                "SELECT article_id, predicted_at FROM predictions "
                "WHERE predicted_at >= (SELECT t FROM newest) - make_interval(days => :d) "
                "ORDER BY predicted_at DESC LIMIT :scan) p GROUP BY article_id) "
                "SELECT a.id, a.title, a.body FROM recent r JOIN articles a ON a.id = r.article_id "
                "AND a.received_at >= (SELECT t FROM newest) - make_interval(days => :d + 1) "
                "ORDER BY r.at DESC, a.id DESC LIMIT :n"
            ),
            # several versions may have scored one article: scan enough rows for ``limit`` ids
            {"d": within_days, "scan": limit * 4, "n": limit},
        ).all()
    return [StoredText(str(r[0]), r[1] or "", r[2] or "") for r in rows]


def insert_synthetic_articles(
    conn: Connection, *, prefix: str, start: datetime, seconds: float, n: int, body: str
) -> None:
    """Benchmarks only: ``n`` generated articles ``<prefix><k>`` (k = 1..n) received evenly
    over ``seconds`` from ``start`` (enqueued 20 ms earlier), generated in the database
    rather than sent through the sink: a storage benchmark, not a stream."""
    conn.execute(
        text(
            "INSERT INTO articles (id, title, body, received_at, enqueued_at, kafka_topic, "
            "kafka_partition, kafka_offset) SELECT :p || g, 'Headline number ' || g, "
            ":body || g, :s + make_interval(secs => g * :span / :n), "
            ":s + make_interval(secs => g * :span / :n - 0.02), 'articles', g % 8, g "
            "FROM generate_series(1, :n) g"
        ),
        {"p": prefix, "s": start, "n": n, "span": seconds, "body": body},
    )


@dataclasses.dataclass(frozen=True)
class StreamDeliveries:
    """How often a stream's articles (ids ``<prefix>-<n>``) were processed beyond once."""

    redelivered: int  # deliveries beyond the first, summed over the stream's articles
    conflicts: int  # messages that reused a stored id with another text


def count_stream_redeliveries(db: Db, *, prefix: str) -> StreamDeliveries:
    """The stream ``prefix``'s redeliveries and id conflicts (see :class:`StreamDeliveries`)."""
    like = {"p": f"{prefix}-%"}
    with connected(db) as conn:
        redelivered = conn.execute(
            text("SELECT coalesce(sum(deliveries - 1), 0) FROM articles WHERE id LIKE :p"), like
        ).scalar_one()
        conflicts = conn.execute(
            text("SELECT count(*) FROM article_conflicts WHERE article_id LIKE :p"), like
        ).scalar_one()
    return StreamDeliveries(int(redelivered), int(conflicts))
