"""Data access for provisional topic suggestions: ``topic_prototypes`` (an onboarding topic's
named examples averaged in a served model's embedding space) and the onboarding
``review_items`` a worker queues for articles near a prototype. The rules (when a prototype
is stale, which topic is favoured, how many may wait) live in :mod:`pipeline.suggestions`.

Writes take the caller's connection inside its transaction; reads take an engine or a
connection.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from sqlalchemy import Connection, text

from pipeline.core.db.access import Db, connected

ONBOARDING_REASON = "onboarding"  # review_items.reason of every item queued for a topic
ONBOARDING_ROUND = 10  # and its round (monitoring.topics.onboarding.ONBOARDING_ROUND)


@dataclasses.dataclass(frozen=True)
class Prototype:
    """Topic ``topic``'s prototype in model ``model_version``'s embedding space."""

    topic: str
    model_version: str
    vector: tuple[float, ...]  # unit length
    examples: int  # texts averaged
    labelled: int  # the topic's confirmed labels when it was computed


@dataclasses.dataclass(frozen=True)
class TopicAnswers:
    """An onboarding topic's suggestions (every onboarding review item naming it)."""

    topic: str
    pending: int
    answered: int
    accepted: int  # answered with the topic itself


@dataclasses.dataclass(frozen=True)
class NewSuggestion:
    """Queue ``article_id``'s prediction by ``model_version`` for review, ``topic`` suggested."""

    article_id: str
    model_version: str
    topic: str
    cosine: float


def select_onboarding_answers(db: Db) -> list[TopicAnswers]:
    """Every onboarding topic with its suggestions waiting, answered and accepted."""
    with connected(db) as conn:
        rows = conn.execute(
            text(
                "SELECT t.name, "
                "count(r.id) FILTER (WHERE r.status = 'pending') AS pending, "
                "count(r.id) FILTER (WHERE r.status = 'done') AS answered, "
                "count(r.id) FILTER (WHERE r.status = 'done' AND r.label = t.name) AS accepted "
                "FROM topics t LEFT JOIN review_items r ON r.suggested_label = t.name "
                "AND r.reason = :reason WHERE t.status = 'onboarding' "
                "GROUP BY t.name ORDER BY t.name"
            ),
            {"reason": ONBOARDING_REASON},
        ).all()
    return [
        TopicAnswers(str(r.name), int(r.pending), int(r.answered), int(r.accepted)) for r in rows
    ]


def count_confirmed(db: Db, *, topics: Sequence[str]) -> dict[str, int]:
    """Articles whose latest done review gave each of ``topics`` (0 when none)."""
    with connected(db) as conn:
        rows = conn.execute(
            text(
                "SELECT label, count(*) FROM (SELECT DISTINCT ON (article_id) label "
                "FROM review_items WHERE status = 'done' ORDER BY article_id, labelled_at DESC) s "
                "WHERE label = ANY(:t) GROUP BY label"
            ),
            {"t": list(topics)},
        ).all()
    found = {str(label): int(n) for label, n in rows}
    return {t: found.get(t, 0) for t in topics}


def select_prototype_texts(db: Db, *, topic: str, limit: int) -> list[str]:
    """Texts of up to ``limit`` named examples of ``topic``: articles whose latest done
    review gave it (the latest first), then members of the candidates named as it that no
    review gave another label."""
    with connected(db) as conn:
        rows = conn.execute(
            text(
                "WITH latest AS (SELECT DISTINCT ON (article_id) article_id, label, labelled_at "
                "FROM review_items WHERE status = 'done' ORDER BY article_id, labelled_at DESC), "
                "named AS (SELECT article_id AS id, 0 AS kind, labelled_at AS at FROM latest "
                "WHERE label = :t UNION ALL SELECT m.id, 1, NULL FROM topic_candidates c "
                "CROSS JOIN LATERAL jsonb_array_elements_text(c.members) AS m(id) "
                "WHERE c.name = :t AND c.status = 'accepted' AND NOT EXISTS (SELECT 1 FROM "
                "latest l WHERE l.article_id = m.id)) "
                "SELECT text FROM (SELECT DISTINCT ON (a.id) a.id, n.kind, n.at, "
                "a.title || ' ' || a.body AS text FROM named n JOIN articles a ON a.id = n.id "
                "ORDER BY a.id, n.kind) s ORDER BY kind, at DESC NULLS LAST, id LIMIT :k"
            ),
            {"t": topic, "k": limit},
        ).scalars()
        return [str(t) for t in rows]


def upsert_prototype(conn: Connection, *, prototype: Prototype) -> None:
    """Store (or replace) a topic's prototype for one model version."""
    conn.execute(
        text(
            "INSERT INTO topic_prototypes (topic, model_version, vector, examples, labelled) "
            "VALUES (:t, :v, :x, :e, :n) ON CONFLICT (topic, model_version) DO UPDATE "
            "SET vector = :x, examples = :e, labelled = :n, computed_at = now()"
        ),
        {
            "t": prototype.topic,
            "v": prototype.model_version,
            "x": list(prototype.vector),
            "e": prototype.examples,
            "n": prototype.labelled,
        },
    )


def select_prototypes(db: Db, *, model_version: str) -> list[Prototype]:
    """The prototypes of topics still onboarding, in ``model_version``'s space, by topic."""
    with connected(db) as conn:
        rows = conn.execute(
            text(
                "SELECT p.topic, p.model_version, p.vector, p.examples, p.labelled "
                "FROM topic_prototypes p JOIN topics t ON t.name = p.topic "
                "WHERE p.model_version = :v AND t.status = 'onboarding' ORDER BY p.topic"
            ),
            {"v": model_version},
        ).all()
    return [
        Prototype(
            str(r.topic),
            str(r.model_version),
            tuple(float(x) for x in r.vector),
            int(r.examples),
            int(r.labelled),
        )
        for r in rows
    ]


def lock_onboarding_topics(conn: Connection, *, topics: Sequence[str]) -> dict[str, int]:
    """Of ``topics``, those still onboarding, each with its pending suggestions, their rows
    locked until the transaction ends (a cancel waits; the caller holds the topics lock)."""
    names = conn.execute(
        text(
            "SELECT name FROM topics WHERE name = ANY(:t) AND status = 'onboarding' "
            "ORDER BY name FOR UPDATE"
        ),
        {"t": list(topics)},
    ).scalars()
    keep = [str(n) for n in names]
    rows = conn.execute(
        text(
            "SELECT suggested_label, count(*) FROM review_items WHERE status = 'pending' "
            "AND reason = :reason AND suggested_label = ANY(:t) GROUP BY suggested_label"
        ),
        {"t": keep, "reason": ONBOARDING_REASON},
    ).all()
    pending = {str(t): int(n) for t, n in rows}
    return {t: pending.get(t, 0) for t in keep}


def queue_suggestions(conn: Connection, *, items: Sequence[NewSuggestion], priority: int) -> int:
    """Queue each item's prediction first in line (``priority``) with its topic suggested
    and its cosine, unless the article has a review item waiting or answered already (in any
    round): an article is asked about once. Returns how many were queued."""
    if not items:
        return 0
    return int(
        conn.execute(
            text(
                "INSERT INTO review_items (prediction_id, article_id, reason, priority, round, "
                "status, suggested_label, suggestion_cosine) "
                "SELECT p.id, p.article_id, :reason, :prio, :round, 'pending', s.topic, s.cos "
                "FROM unnest(CAST(:a AS text[]), CAST(:v AS text[]), CAST(:t AS text[]), "
                "CAST(:c AS real[])) AS s(article_id, version, topic, cos) "
                "JOIN predictions p ON p.article_id = s.article_id AND p.model_version = s.version "
                "WHERE NOT EXISTS (SELECT 1 FROM review_items r WHERE r.article_id = s.article_id "
                "AND r.status IN ('pending', 'done')) "
                "ON CONFLICT ON CONSTRAINT uq_review_prediction_round DO NOTHING"
            ),
            {
                "reason": ONBOARDING_REASON,
                "prio": priority,
                "round": ONBOARDING_ROUND,
                "a": [i.article_id for i in items],
                "v": [i.model_version for i in items],
                "t": [i.topic for i in items],
                "c": [float(i.cosine) for i in items],
            },
        ).rowcount
    )


def select_suggested(db: Db, *, topic: str) -> list[tuple[str, float]]:
    """(article id, cosine) of the items a worker queued for ``topic``, best first."""
    with connected(db) as conn:
        rows = conn.execute(
            text(
                "SELECT article_id, suggestion_cosine FROM review_items WHERE suggested_label = :t "
                "AND reason = :reason AND suggestion_cosine IS NOT NULL "
                "ORDER BY suggestion_cosine DESC, id"
            ),
            {"t": topic, "reason": ONBOARDING_REASON},
        ).all()
    return [(str(a), float(c)) for a, c in rows]
