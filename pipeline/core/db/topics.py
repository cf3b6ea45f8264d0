"""Data access for open-world topics: ``topic_candidates`` (discoveries), ``topics`` (topics
people added, removed or merged), the onboarding ``review_items`` an accepted candidate
queues, and the texts discovery clusters (what the model could not place, what it placed
confidently). The rules (names, which change is allowed when) live in
``monitoring.topics.onboarding``; this module only reads and writes rows.

Writes take the caller's :class:`~sqlalchemy.Connection` inside its transaction (the caller
takes :func:`lock_topic_changes` first and commits); reads take an engine or a connection.

A discovery is the set of candidates stored in one transaction: they share ``discovered_at``
(``now()`` is the transaction's start). The JSONB column ``terms`` holds a candidate's
description: its top terms as a list (rows stored before candidates were marked near each
other) or ``{"terms": [...], "near": [[rank, cosine], ...]}``; :func:`_stored` reads both.
The new-topic gate's latest decision for a topic is read from ``model_events``
(``metrics.topic_gate.<name>``), where the retraining records it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, text

from pipeline.core.db.access import Db, connected
from pipeline.core.records import NONE_LABEL

TOPICS_LOCK = 0x746F7063  # "topc": one change of topics or candidates at a time


@dataclasses.dataclass(frozen=True)
class PoolArticle:
    """An article discovery may cluster (title and body as stored)."""

    article_id: str
    title: str
    body: str


@dataclasses.dataclass(frozen=True)
class TopicText:
    """A text (title and body) the model placed confidently in ``topic``."""

    topic: str
    text: str


@dataclasses.dataclass(frozen=True)
class NewCandidate:
    """A discovered cluster to store (``rank`` 1 = the most promising)."""

    rank: int
    size: int
    separation: float
    cohesion: float
    nearest_topic: str
    none_of_these: int
    terms: Sequence[str]
    examples: Sequence[str]
    members: Sequence[str]  # article ids
    near: Sequence[tuple[int, float]] = ()  # (rank, centroid cosine) of near candidates


@dataclasses.dataclass(frozen=True)
class StoredCandidate:
    id: int
    rank: int
    status: str  # open | superseded | accepted | dismissed
    size: int
    separation: float
    cohesion: float
    nearest_topic: str
    none_of_these: int
    terms: list[str]
    examples: list[str]
    members: list[str]
    name: str | None
    model_version: str | None
    discovered_at: datetime  # one discovery = one value
    near: list[tuple[int, float]] = dataclasses.field(default_factory=list)  # (rank, cosine)

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "discovered_at": self.discovered_at.isoformat()}


@dataclasses.dataclass(frozen=True)
class TopicSummary:
    """A row of ``topics`` with its onboarding review items still waiting."""

    name: str
    status: str
    created_by: str
    created_at: datetime
    retrain_version: str | None
    pending: int
    rejected: int  # onboarding suggestions a reviewer answered with another label
    candidates: list[int]  # the candidates named as this topic
    members: int  # their members, counted together
    gate: dict[str, Any] | None  # the new-topic gate's latest decision (model_events)


@dataclasses.dataclass(frozen=True)
class TopicState:
    """A topic's status and the onboarding numbers its next step depends on."""

    name: str
    status: str
    pending: int  # onboarding suggestions waiting for a reviewer
    done: int  # onboarding suggestions answered
    rejected: int  # of those, answered with another label
    labels_required: int | None  # what the new-topic gate asked for last (None: nothing)


@dataclasses.dataclass(frozen=True)
class PendingChange:
    """A topic the next retraining removes (``merge_into`` None) or merges."""

    name: str
    merge_into: str | None


def lock_topic_changes(conn: Connection) -> None:
    """Wait for the transaction-level advisory lock that serialises changes of topics."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": TOPICS_LOCK})


# Discovery's input -----------------------------------------------------------------------


def select_none_of_these(db: Db) -> list[PoolArticle]:
    """Articles a done review marked "none of these" (once each, by id)."""
    with connected(db) as conn:
        rows = conn.execute(
            text(
                "SELECT DISTINCT ON (a.id) a.id, a.title, a.body FROM review_items r "
                "JOIN articles a ON a.id = r.article_id WHERE r.status = 'done' "
                "AND r.label = :none ORDER BY a.id, r.labelled_at DESC"
            ),
            {"none": NONE_LABEL},
        ).all()
    return [PoolArticle(str(r.id), str(r.title), str(r.body)) for r in rows]


def select_least_confident(db: Db, *, model_version: str | None, limit: int) -> list[PoolArticle]:
    """The ``limit`` least confident predictions' articles (of ``model_version``; any
    version when None), least confident first."""
    with connected(db) as conn:
        rows = conn.execute(
            text(
                "SELECT a.id, a.title, a.body FROM predictions p JOIN articles a "
                "ON a.id = p.article_id WHERE (CAST(:v AS text) IS NULL OR p.model_version = :v) "
                "ORDER BY p.confidence ASC, p.id LIMIT :n"
            ),
            {"v": model_version, "n": limit},
        ).all()
    return [PoolArticle(str(r.id), str(r.title), str(r.body)) for r in rows]


def select_confident_texts(
    db: Db, *, model_version: str | None, per_topic: int, min_confidence: float
) -> list[TopicText]:
    """Up to ``per_topic`` texts per predicted topic with confidence >= ``min_confidence``,
    the most confident first within a topic."""
    with connected(db) as conn:
        rows = conn.execute(
            text(
                "SELECT topic, text FROM (SELECT p.topic, a.title || ' ' || a.body AS text, "
                "row_number() OVER (PARTITION BY p.topic ORDER BY p.confidence DESC, p.id) AS k "
                "FROM predictions p JOIN articles a ON a.id = p.article_id "
                "WHERE (CAST(:v AS text) IS NULL OR p.model_version = :v) "
                "AND p.confidence >= :c) s "
                "WHERE k <= :n ORDER BY topic, k"
            ),
            {"v": model_version, "c": min_confidence, "n": per_topic},
        ).all()
    return [TopicText(str(topic), str(body)) for topic, body in rows]


# Candidates ------------------------------------------------------------------------------


def supersede_open_candidates(conn: Connection) -> int:
    """Mark every open candidate ``superseded`` (a newer discovery replaces them)."""
    return int(
        conn.execute(
            text("UPDATE topic_candidates SET status = 'superseded' WHERE status = 'open'")
        ).rowcount
    )


def insert_candidate(
    conn: Connection, *, candidate: NewCandidate, model_version: str | None
) -> int:
    """Store one open candidate; returns its id."""
    return int(
        conn.execute(
            text(
                "INSERT INTO topic_candidates (model_version, rank, size, separation, "
                "cohesion, nearest_topic, none_of_these, terms, examples, members) "
                "VALUES (:v, :r, :s, :sep, :coh, :near, :none, CAST(:t AS jsonb), "
                "CAST(:e AS jsonb), CAST(:m AS jsonb)) RETURNING id"
            ),
            {
                "v": model_version,
                "r": candidate.rank,
                "s": candidate.size,
                "sep": candidate.separation,
                "coh": candidate.cohesion,
                "near": candidate.nearest_topic,
                "none": candidate.none_of_these,
                "t": json.dumps(
                    {
                        "terms": list(candidate.terms),
                        "near": [[int(k), float(c)] for k, c in candidate.near],
                    }
                ),
                "e": json.dumps(list(candidate.examples)),
                "m": json.dumps(list(candidate.members)),
            },
        ).scalar_one()
    )


def _stored(r: RowMapping) -> StoredCandidate:
    description = r["terms"]
    if not isinstance(description, dict):  # stored before candidates were marked near
        description = {"terms": description, "near": []}
    return StoredCandidate(
        id=int(r["id"]),
        rank=int(r["rank"]),
        status=str(r["status"]),
        size=int(r["size"]),
        separation=float(r["separation"]),
        cohesion=float(r["cohesion"]),
        nearest_topic=str(r["nearest_topic"]),
        none_of_these=int(r["none_of_these"]),
        terms=list(description["terms"]),
        examples=list(r["examples"]),
        members=list(r["members"]),
        name=r["name"],
        model_version=r["model_version"],
        discovered_at=r["discovered_at"],
        near=[(int(k), float(c)) for k, c in description.get("near", [])],
    )


def select_candidates(db: Db, *, status: str | None, limit: int = 200) -> list[StoredCandidate]:
    """Candidates with ``status`` (any when None), the latest discovery first, by rank."""
    with connected(db) as conn:
        rows = conn.execute(
            text(
                "SELECT * FROM topic_candidates WHERE (CAST(:s AS text) IS NULL OR status = :s) "
                "ORDER BY discovered_at DESC, rank LIMIT :n"
            ),
            {"s": status, "n": limit},
        ).mappings()
        return [_stored(r) for r in rows]


def lock_candidate(conn: Connection, *, candidate_id: int) -> StoredCandidate | None:
    """The candidate, its row locked until the transaction ends; None when there is none."""
    row = (
        conn.execute(
            text("SELECT * FROM topic_candidates WHERE id = :i FOR UPDATE"), {"i": candidate_id}
        )
        .mappings()
        .first()
    )
    return None if row is None else _stored(row)


def lock_candidates(conn: Connection, *, candidate_ids: Sequence[int]) -> list[StoredCandidate]:
    """The candidates among ``candidate_ids`` that exist, their rows locked (in id order, so
    two transactions locking overlapping sets wait rather than deadlock), by id."""
    rows = conn.execute(
        text("SELECT * FROM topic_candidates WHERE id = ANY(:i) ORDER BY id FOR UPDATE"),
        {"i": sorted(set(candidate_ids))},
    ).mappings()
    return [_stored(r) for r in rows]


def select_candidate_name(db: Db, *, candidate_id: int) -> str | None:
    """The name a candidate was accepted as (None: not accepted, or no such candidate)."""
    with connected(db) as conn:
        found = conn.execute(
            text("SELECT name FROM topic_candidates WHERE id = :i"), {"i": candidate_id}
        ).scalar_one_or_none()
    return None if found is None else str(found)


def accept_candidate(conn: Connection, *, candidate_id: int, name: str, admin: str) -> None:
    conn.execute(
        text(
            "UPDATE topic_candidates SET status = 'accepted', name = :n, "
            "decided_by = :u, decided_at = now() WHERE id = :i"
        ),
        {"n": name, "u": admin, "i": candidate_id},
    )


def dismiss_candidate(conn: Connection, *, candidate_id: int, admin: str) -> None:
    conn.execute(
        text(
            "UPDATE topic_candidates SET status = 'dismissed', decided_by = :u, "
            "decided_at = now() WHERE id = :i"
        ),
        {"u": admin, "i": candidate_id},
    )


# Topics ----------------------------------------------------------------------------------


def select_known_labels(db: Db) -> list[str]:
    """Every label of every model version that served (``model_labels``), sorted."""
    with connected(db) as conn:
        rows = conn.execute(
            text("SELECT DISTINCT unnest(labels) AS label FROM model_labels ORDER BY 1")
        ).scalars()
        return [str(r) for r in rows]


def select_topic_names(db: Db, *, statuses: Sequence[str]) -> list[str]:
    """Names of the topics in one of ``statuses``, oldest first."""
    with connected(db) as conn:
        rows = conn.execute(
            text("SELECT name FROM topics WHERE status = ANY(:s) ORDER BY created_at"),
            {"s": list(statuses)},
        ).scalars()
        return [str(n) for n in rows]


def select_topics(db: Db, *, limit: int = 200) -> list[TopicSummary]:
    """Topics people added, newest first, each with its pending suggested reviews."""
    with connected(db) as conn:
        rows = conn.execute(
            text(
                "SELECT t.name, t.status, t.created_by, t.created_at, t.retrain_version, "
                "(SELECT count(*) FROM review_items r WHERE r.suggested_label = t.name "
                "AND r.status = 'pending') AS pending, "
                "(SELECT count(*) FROM review_items r WHERE r.suggested_label = t.name "
                "AND r.reason = 'onboarding' AND r.status = 'done' AND r.label <> t.name) "
                "AS rejected, "
                "(SELECT coalesce(array_agg(c.id ORDER BY c.id), '{}') FROM topic_candidates c "
                "WHERE c.name = t.name AND c.status = 'accepted') AS candidates, "
                "(SELECT coalesce(sum(c.size), 0) FROM topic_candidates c "
                "WHERE c.name = t.name AND c.status = 'accepted') AS members, "
                f"({_LATEST_GATE}) AS gate "
                "FROM topics t ORDER BY t.created_at DESC, t.name LIMIT :n"
            ),
            {"n": limit},
        ).all()
    return [
        TopicSummary(
            name=str(r.name),
            status=str(r.status),
            created_by=str(r.created_by),
            created_at=r.created_at,
            retrain_version=r.retrain_version,
            pending=int(r.pending),
            rejected=int(r.rejected),
            candidates=[int(c) for c in r.candidates],
            members=int(r.members),
            gate=r.gate,
        )
        for r in rows
    ]


# the gate's latest decision about topic ``t`` since it was created (``t`` in scope)
_LATEST_GATE = (
    "SELECT e.metrics->'topic_gate'->t.name FROM model_events e "
    "WHERE e.at >= t.created_at AND e.metrics->'topic_gate'->t.name IS NOT NULL "
    "ORDER BY e.id DESC LIMIT 1"
)


def select_topic_state(db: Db, *, name: str) -> TopicState | None:
    """``name``'s status and onboarding numbers; None when there is no such topic."""
    with connected(db) as conn:
        r = conn.execute(
            text(
                "SELECT t.name, t.status, "
                "count(*) FILTER (WHERE r.status = 'pending') AS pending, "
                "count(*) FILTER (WHERE r.status = 'done') AS done, "
                "count(*) FILTER (WHERE r.status = 'done' AND r.label <> t.name) AS rejected, "
                f"(SELECT CAST(g->>'labels_required' AS integer) FROM ({_LATEST_GATE}) AS s(g)) "
                "AS required "
                "FROM topics t LEFT JOIN review_items r ON r.suggested_label = t.name "
                "AND r.reason = 'onboarding' WHERE t.name = :n GROUP BY t.name, t.status, "
                "t.created_at"
            ),
            {"n": name},
        ).first()
    if r is None:
        return None
    return TopicState(
        name=str(r.name),
        status=str(r.status),
        pending=int(r.pending),
        done=int(r.done),
        rejected=int(r.rejected),
        labels_required=None if r.required is None else int(r.required),
    )


def lock_topic_status(conn: Connection, *, name: str) -> str | None:
    """The topic's status, its row locked until the transaction ends; None: no such topic."""
    found = conn.execute(
        text("SELECT status FROM topics WHERE name = :n FOR UPDATE"), {"n": name}
    ).scalar()
    return None if found is None else str(found)


def insert_onboarding_topic(conn: Connection, *, name: str, candidate_id: int, admin: str) -> None:
    """A new topic collecting labels (IntegrityError when the name exists)."""
    conn.execute(
        text(
            "INSERT INTO topics (name, status, candidate_id, created_by) "
            "VALUES (:n, 'onboarding', :c, :u)"
        ),
        {"n": name, "c": candidate_id, "u": admin},
    )


def request_topic_change(
    conn: Connection, *, name: str, merge_into: str | None, admin: str
) -> None:
    """Ask the next retraining to remove ``name`` (``merge_into`` None) or merge it."""
    status = "merging" if merge_into is not None else "removing"
    conn.execute(
        text(
            "INSERT INTO topics (name, status, merge_into, created_by) "
            "VALUES (:n, :s, :m, :u) ON CONFLICT (name) DO UPDATE "
            "SET status = :s, merge_into = :m, created_by = :u"
        ),
        {"n": name, "s": status, "m": merge_into, "u": admin},
    )


def select_pending_changes(db: Db) -> list[PendingChange]:
    """Topics the next retraining removes or merges."""
    with connected(db) as conn:
        rows = conn.execute(
            text(
                "SELECT name, merge_into FROM topics WHERE status IN ('removing', 'merging') "
                "ORDER BY name"
            )
        ).all()
    return [PendingChange(str(n), None if m is None else str(m)) for n, m in rows]


def activate_topics(conn: Connection, *, names: Sequence[str], version: str) -> int:
    """Onboarding topics ``names`` are in model ``version`` now; returns how many."""
    return int(
        conn.execute(
            text(
                "UPDATE topics SET status = 'active', retrain_version = :v "
                "WHERE name = ANY(:n) AND status = 'onboarding'"
            ),
            {"v": version, "n": list(names)},
        ).rowcount
    )


def retire_topics(conn: Connection, *, names: Sequence[str], version: str) -> int:
    """Topics ``names`` being removed, merged or split are gone from model ``version``."""
    return int(
        conn.execute(
            text(
                "UPDATE topics SET status = CASE status WHEN 'merging' THEN 'merged' "
                "WHEN 'splitting' THEN 'split' ELSE 'removed' END, retrain_version = :v "
                "WHERE name = ANY(:n) AND status IN ('removing', 'merging', 'splitting')"
            ),
            {"v": version, "n": list(names)},
        ).rowcount
    )


def cancel_topic(conn: Connection, *, name: str, admin: str) -> None:
    conn.execute(
        text("UPDATE topics SET status = 'cancelled', created_by = :u WHERE name = :n"),
        {"n": name, "u": admin},
    )


# Onboarding reviews ----------------------------------------------------------------------


def queue_onboarding_reviews(
    conn: Connection, *, members: Sequence[str], suggested_label: str, review_round: int
) -> int:
    """Each member article's latest prediction becomes a pending review item first in the
    queue (priority -1) with ``suggested_label``; items already queued for that prediction
    and round are kept. Returns how many were queued."""
    return int(
        conn.execute(
            text(
                "INSERT INTO review_items (prediction_id, article_id, reason, priority, "
                "round, status, suggested_label) "
                "SELECT DISTINCT ON (p.article_id) p.id, p.article_id, 'onboarding', -1, "
                ":round, 'pending', :n FROM predictions p "
                "WHERE p.article_id = ANY(:members) ORDER BY p.article_id, p.id DESC "
                "ON CONFLICT ON CONSTRAINT uq_review_prediction_round DO NOTHING"
            ),
            {"n": suggested_label, "members": list(members), "round": review_round},
        ).rowcount
    )


def select_topic_texts(db: Db, *, label: str, limit: int) -> list[str]:
    """Texts (title and body) of up to ``limit`` articles whose latest done review gave
    ``label``, the latest first: the topic's named examples."""
    with connected(db) as conn:
        rows = conn.execute(
            text(
                "SELECT a.title || ' ' || a.body FROM (SELECT DISTINCT ON (article_id) "
                "article_id, label, labelled_at FROM review_items WHERE status = 'done' "
                "ORDER BY article_id, labelled_at DESC) s JOIN articles a ON a.id = s.article_id "
                "WHERE s.label = :n ORDER BY s.labelled_at DESC, a.id LIMIT :k"
            ),
            {"n": label, "k": limit},
        ).scalars()
        return [str(t) for t in rows]


def select_member_texts(db: Db, *, name: str, limit: int) -> list[str]:
    """Texts of up to ``limit`` members of the candidates named as topic ``name``."""
    with connected(db) as conn:
        rows = conn.execute(
            text(
                "SELECT a.title || ' ' || a.body FROM topic_candidates c "
                "CROSS JOIN LATERAL jsonb_array_elements_text(c.members) AS m(id) "
                "JOIN articles a ON a.id = m.id WHERE c.name = :n AND c.status = 'accepted' "
                "ORDER BY c.id, a.id LIMIT :k"
            ),
            {"n": name, "k": limit},
        ).scalars()
        return [str(t) for t in rows]


def select_unreviewed(db: Db, *, limit: int) -> list[PoolArticle]:
    """Up to ``limit`` of the latest predicted articles (among the last ``4 * limit``
    predictions) that have no review item waiting or answered: what more suggestions for a
    topic are picked from, newest first."""
    with connected(db) as conn:
        rows = conn.execute(
            text(
                "SELECT a.id, a.title, a.body FROM (SELECT article_id, max(id) AS last "
                "FROM (SELECT article_id, id FROM predictions ORDER BY id DESC LIMIT :scan) r "
                "GROUP BY article_id) p "
                "JOIN articles a ON a.id = p.article_id WHERE NOT EXISTS (SELECT 1 FROM "
                "review_items r WHERE r.article_id = a.id AND r.status IN ('pending', 'done')) "
                "ORDER BY p.last DESC LIMIT :n"
            ),
            {"n": limit, "scan": limit * 4},
        ).all()
    return [PoolArticle(str(r.id), str(r.title), str(r.body)) for r in rows]


def withdraw_onboarding_reviews(conn: Connection, *, suggested_label: str) -> int:
    """Pending onboarding reviews suggesting ``suggested_label`` are withdrawn; how many."""
    return int(
        conn.execute(
            text(
                "UPDATE review_items SET status = 'withdrawn' WHERE status = 'pending' "
                "AND reason = 'onboarding' AND suggested_label = :n"
            ),
            {"n": suggested_label},
        ).rowcount
    )


def count_latest_labels(db: Db, *, label: str) -> int:
    """Articles whose latest done review gave ``label``."""
    with connected(db) as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM (SELECT DISTINCT ON (article_id) label "
                    "FROM review_items WHERE status = 'done' "
                    "ORDER BY article_id, labelled_at DESC) s WHERE label = :n"
                ),
                {"n": label},
            ).scalar_one()
        )
