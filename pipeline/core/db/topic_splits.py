"""Data access for a known topic split into parts (``topics split World --into Politics
--into Conflict``): the old topic's ``topics`` row (status ``splitting``, then ``split``), a
row per part (status ``onboarding``, then ``active``, ``split_from`` naming the old topic,
migration 0010), and the review items that ask reviewers to relabel the old topic's reviewed
examples (``reason = 'split'``, the old topic as ``suggested_label``). The rules live in
:mod:`monitoring.topics.split`; this module only reads and writes rows.

Writes take the caller's :class:`~sqlalchemy.Connection` inside its transaction (the caller
takes :func:`pipeline.core.db.topics.lock_topic_changes` first and commits).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, text

from pipeline.core.db.access import Db, connected

SPLIT_REASON = "split"  # review_items.reason of a relabelling request


@dataclasses.dataclass(frozen=True)
class Split:
    """A known topic being split (or split), with its parts in the order they were named."""

    old: str
    status: str  # splitting | split
    parts: list[str]
    created_by: str
    created_at: datetime
    pending: int  # relabelling requests waiting for a reviewer


def insert_split(conn: Connection, *, old: str, parts: Sequence[str], admin: str) -> int:
    """Mark ``old`` as splitting and add its ``parts`` as onboarding topics; returns how many
    parts were added. A part whose name an earlier, cancelled topic used takes that row over
    (fresh: no gate decisions carried); a part whose name another row holds is not added
    (the caller refuses such names first, and rolls back when the count falls short)."""
    conn.execute(
        text(
            "INSERT INTO topics (name, status, created_by) VALUES (:o, 'splitting', :u) "
            "ON CONFLICT (name) DO UPDATE SET status = 'splitting', merge_into = NULL, "
            "created_by = :u"
        ),
        {"o": old, "u": admin},
    )
    added = 0
    for k, part in enumerate(parts):
        added += conn.execute(
            text(
                "INSERT INTO topics (name, status, split_from, created_by, created_at) "
                "VALUES (:n, 'onboarding', :o, :u, now() + make_interval(secs => :k * 1e-3)) "
                "ON CONFLICT ((lower(name))) DO UPDATE SET name = :n, status = 'onboarding', "
                "split_from = :o, merge_into = NULL, candidate_id = NULL, "
                "retrain_version = NULL, created_by = :u, created_at = EXCLUDED.created_at "
                "WHERE topics.status = 'cancelled'"
            ),
            {"n": part, "o": old, "u": admin, "k": k},
        ).rowcount
    return added


def select_splits(db: Db, *, statuses: Sequence[str] = ("splitting",)) -> list[Split]:
    """Splits whose old topic is in one of ``statuses``, oldest first; parts in the order
    they were named (cancelled parts left out)."""
    with connected(db) as conn:
        rows = conn.execute(
            text(
                "SELECT t.name, t.status, t.created_by, t.created_at, "
                "(SELECT coalesce(array_agg(p.name ORDER BY p.created_at, p.name), '{}') "
                "FROM topics p WHERE p.split_from = t.name AND p.status <> 'cancelled') "
                "AS parts, (SELECT count(*) FROM review_items r WHERE r.status = 'pending' "
                "AND r.reason = :reason AND r.suggested_label = t.name) AS pending "
                "FROM topics t WHERE t.status = ANY(:s) ORDER BY t.created_at, t.name"
            ),
            {"s": list(statuses), "reason": SPLIT_REASON},
        ).all()
    return [
        Split(
            old=str(r.name),
            status=str(r.status),
            parts=[str(p) for p in r.parts],
            created_by=str(r.created_by),
            created_at=r.created_at,
            pending=int(r.pending),
        )
        for r in rows
    ]


def select_split_from(db: Db, *, name: str) -> str | None:
    """The topic ``name`` is a part of (None: not a part, or no such topic)."""
    with connected(db) as conn:
        found = conn.execute(
            text("SELECT split_from FROM topics WHERE name = :n"), {"n": name}
        ).scalar()
    return None if found is None else str(found)


def select_parts(db: Db, *, old: str) -> list[str]:
    """The parts of ``old``'s split that are still onboarding, in the order they were named."""
    with connected(db) as conn:
        rows = conn.execute(
            text(
                "SELECT name FROM topics WHERE split_from = :o AND status = 'onboarding' "
                "ORDER BY created_at, name"
            ),
            {"o": old},
        ).scalars()
        return [str(n) for n in rows]


def queue_relabel_reviews(conn: Connection, *, old: str, review_round: int) -> int:
    """Every article whose latest done review gave ``old`` gets a pending relabelling item
    (its latest prediction, first in the queue, ``old`` as the suggested label); an item a
    cancelled split withdrew for that prediction and round is asked again. How many."""
    return int(
        conn.execute(
            text(
                "INSERT INTO review_items (prediction_id, article_id, reason, priority, "
                "round, status, suggested_label) "
                "SELECT DISTINCT ON (p.article_id) p.id, p.article_id, :reason, -1, :round, "
                "'pending', CAST(:o AS text) FROM predictions p JOIN (SELECT DISTINCT ON "
                "(article_id) article_id, label FROM review_items WHERE status = 'done' "
                "ORDER BY article_id, labelled_at DESC) s ON s.article_id = p.article_id "
                "WHERE s.label = :o ORDER BY p.article_id, p.id DESC "
                "ON CONFLICT ON CONSTRAINT uq_review_prediction_round DO UPDATE "
                "SET status = 'pending', suggested_label = EXCLUDED.suggested_label, "
                "assigned_to = NULL, assigned_at = NULL, label = NULL, reviewer = NULL, "
                "labelled_at = NULL WHERE review_items.status = 'withdrawn'"
            ),
            {"o": old, "round": review_round, "reason": SPLIT_REASON},
        ).rowcount
    )


def withdraw_relabel_reviews(conn: Connection, *, old: str) -> int:
    """Pending relabelling requests of ``old``'s split are withdrawn; how many."""
    return int(
        conn.execute(
            text(
                "UPDATE review_items SET status = 'withdrawn' WHERE status = 'pending' "
                "AND reason = :reason AND suggested_label = :o"
            ),
            {"o": old, "reason": SPLIT_REASON},
        ).rowcount
    )


def undo_change(conn: Connection, *, name: str, admin: str) -> None:
    """A requested change of known topic ``name`` (splitting, removing, merging) is called
    off: its parts are cancelled; the row goes back to ``active`` when people added the topic
    (it has a candidate or a retraining version), else it is deleted (it was created by the
    request: the topic came with the base model)."""
    conn.execute(
        text(
            "UPDATE topics SET status = 'cancelled', created_by = :u "
            "WHERE split_from = :n AND status = 'onboarding'"
        ),
        {"n": name, "u": admin},
    )
    conn.execute(
        text(
            "DELETE FROM topics WHERE name = :n AND candidate_id IS NULL "
            "AND retrain_version IS NULL AND split_from IS NULL"
        ),
        {"n": name},
    )
    conn.execute(
        text("UPDATE topics SET status = 'active', merge_into = NULL WHERE name = :n"),
        {"n": name},
    )
