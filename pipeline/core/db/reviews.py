"""Reads of ``review_items`` used outside the web app: open items for ``newsflow status``,
a stream's sampled items for ``newsflow run``, reviewed accuracy for the drift check and
reviewed labels for retraining, and the expiry of stale pending items. (The web app's queue
lives in ``monitoring.web``.)

Statuses: ``pending`` (waiting), ``done`` (labelled), ``expired`` (waited longer than the
expiry setting unreviewed), ``replaced`` (gave its place in the budgeted queue to a more
useful item)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import Connection, text

from pipeline.core.db.access import Db, connected


class ReviewedCounts(NamedTuple):
    correct: int  # the reviewer's label equals the model's topic
    labelled: int


class ReviewedArticle(NamedTuple):
    article_id: str
    title: str
    body: str
    label: str


def pending_review_count(db: Db) -> int:
    """Items waiting for a reviewer (any round)."""
    with connected(db) as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM review_items WHERE status = 'pending'")
            ).scalar_one()
        )


def review_item_count(db: Db, prefix: str) -> int:
    """Review items (any status) of the stream ``<prefix>-*``."""
    with connected(db) as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM review_items WHERE article_id LIKE :p"),
                {"p": f"{prefix}-%"},
            ).scalar_one()
        )


def reviewed_accuracy_counts(
    db: Db, model_version: str, *, sampled_as: str | None = None
) -> ReviewedCounts:
    """(correct, labelled) among reviewed items of this model version (first round only,
    labels that name a topic); ``sampled_as="uniform"`` keeps only the uniform sample, the
    unbiased slice (uncertainty-sampled items are the hard ones)."""
    with connected(db) as conn:
        row = conn.execute(
            text(
                "SELECT count(*) FILTER (WHERE r.label = p.topic), count(*) FROM review_items r "
                "JOIN predictions p ON p.id = r.prediction_id WHERE p.model_version = :v "
                "AND r.status = 'done' AND r.round = 1 AND r.label IS NOT NULL "
                "AND r.label <> '__none__' AND (CAST(:reason AS text) IS NULL "
                "OR r.reason = :reason)"
            ),
            {"v": model_version, "reason": sampled_as},
        ).one()
    return ReviewedCounts(int(row[0]), int(row[1]))


def reviewed_articles(db: Db, labels: Sequence[str]) -> list[ReviewedArticle]:
    """Articles whose review gave one of ``labels`` (simulated labels included): one per
    article, its latest label; ordered by article id."""
    with connected(db) as conn:
        rows = conn.execute(
            text(
                "SELECT DISTINCT ON (a.id) a.id, a.title, a.body, r.label FROM review_items r "
                "JOIN articles a ON a.id = r.article_id WHERE r.status = 'done' "
                "AND r.label = ANY(:labels) ORDER BY a.id, r.labelled_at DESC"
            ),
            {"labels": list(labels)},
        ).all()
    return [ReviewedArticle(str(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]


def expire_stale_reviews(conn: Connection, *, older_than_s: float, claim_s: float) -> int:
    """Mark pending items created more than ``older_than_s`` ago ``expired``, except those a
    reviewer claimed within the last ``claim_s`` (still being looked at). Returns how many;
    the caller commits."""
    return int(
        conn.execute(
            text(
                "UPDATE review_items SET status = 'expired' WHERE status = 'pending' "
                "AND reason <> 'onboarding' "  # an admin's request: reviewed, never expired
                "AND created_at < now() - make_interval(secs => :old) "
                "AND (assigned_at IS NULL OR assigned_at <= now() - make_interval(secs => :c))"
            ),
            {"old": older_than_s, "c": claim_s},
        ).rowcount
    )
