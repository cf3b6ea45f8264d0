"""Data access for review items going out to, and labels coming back from, an external
labelling tool (Label Studio: ``monitoring.web.labelstudio`` builds the tasks and checks the
annotations). The web app's own queue lives elsewhere."""

from __future__ import annotations

import dataclasses

from sqlalchemy import Connection, text

from pipeline.core.db.access import Db, connected


@dataclasses.dataclass(frozen=True)
class ExportedItem:
    """A review item with its article and the model's pick."""

    review_item_id: int
    round: int
    reason: str
    article_id: str
    title: str
    body: str
    model_version: str
    topic: str
    confidence: float


@dataclasses.dataclass(frozen=True)
class LockedItem:
    """A review item being labelled from outside: its status and the labels it may take
    (the model's label order, or only its pick when the order is unknown)."""

    status: str
    allowed_labels: list[str]


def select_items_for_export(db: Db, *, status: str, limit: int) -> list[ExportedItem]:
    """Review items with ``status``, in queue order (priority, then id)."""
    with connected(db) as conn:
        rows = conn.execute(
            text(
                "SELECT r.id, r.round, r.reason, a.id AS article_id, a.title, a.body, "
                "p.model_version, p.topic, p.confidence FROM review_items r "
                "JOIN predictions p ON p.id = r.prediction_id "
                "JOIN articles a ON a.id = r.article_id "
                "WHERE r.status = :s ORDER BY r.priority, r.id LIMIT :n"
            ),
            {"s": status, "n": limit},
        ).all()
    return [
        ExportedItem(
            review_item_id=int(r.id),
            round=int(r.round),
            reason=str(r.reason),
            article_id=str(r.article_id),
            title=str(r.title),
            body=str(r.body),
            model_version=str(r.model_version),
            topic=str(r.topic),
            confidence=float(r.confidence),
        )
        for r in rows
    ]


def lock_item_for_label(conn: Connection, *, review_item_id: int) -> LockedItem | None:
    """The item, its row locked until the transaction ends; None when there is none."""
    row = conn.execute(
        text(
            "SELECT r.status, m.labels, p.topic FROM review_items r "
            "JOIN predictions p ON p.id = r.prediction_id "
            "LEFT JOIN model_labels m ON m.model_version = p.model_version "
            "WHERE r.id = :i FOR UPDATE OF r"
        ),
        {"i": review_item_id},
    ).first()
    if row is None:
        return None
    return LockedItem(status=str(row.status), allowed_labels=list(row.labels or [row.topic]))


def record_external_label(
    conn: Connection, *, review_item_id: int, label: str, reviewer: str
) -> None:
    """Mark the item ``done`` with ``label`` by ``reviewer`` (its claim released)."""
    conn.execute(
        text(
            "UPDATE review_items SET status = 'done', label = :l, reviewer = :u, "
            "labelled_at = now(), assigned_to = NULL WHERE id = :i"
        ),
        {"l": label, "u": reviewer, "i": review_item_id},
    )
