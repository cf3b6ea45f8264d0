"""Data access for ``review_items`` outside the reviewers' own actions: the sink's fill of
the queue (its advisory lock, the pending items it competes with, replacing and renumbering
them, queueing new picks), the expiry of stale pending items; open items for ``newsflow
status``, counts per status, a stream's sampled items for ``newsflow run``, reviewed
accuracy for the drift check, reviewed labels for retraining and the latest uniformly
reviewed articles for the live check before a promotion. (Claim, label and skip are in
:mod:`pipeline.core.db.review_queue`.)

Statuses: ``pending`` (waiting), ``done`` (labelled), ``expired`` (waited longer than the
expiry setting unreviewed), ``replaced`` (gave its place in the budgeted queue to a more
useful item)."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Connection, text
from sqlalchemy.dialects.postgresql import insert

from pipeline.core.db.access import Db, connected
from pipeline.core.db.models import ReviewItemRow
from pipeline.core.records import NONE_LABEL, Queued

REVIEW_QUEUE_LOCK = 0x72657671  # "revq": one filler of the review queue at a time
# "now": the caller's instant (:now; a replay's simulated clock) or, without one, the database's
NOW = "COALESCE(CAST(:now AS timestamptz), now())"
# an item nobody holds by a claim younger than :s seconds
_MOVABLE_NOW = f"(assigned_to IS NULL OR assigned_at <= {NOW} - make_interval(secs => :s))"


class ReviewedCounts(NamedTuple):
    correct: int  # the reviewer's label equals the model's topic
    labelled: int


class RecentReviewCounts(NamedTuple):
    """Labelled first-round reviews of recent articles: the uniform sample's counts, and
    "none of these" among every sampled item (uniform and uncertainty samples)."""

    none: int  # uniform, labelled "none of these" (NONE_LABEL)
    topic: int  # uniform, labelled otherwise (a label naming no topic of the model counts here)
    correct: int  # of ``topic``: the label equals the model's topic
    none_any: int = 0  # any sample of any version, labelled "none of these"
    labelled_any: int = 0  # any sample of any version, labelled

    @property
    def labelled(self) -> int:
        return self.none + self.topic


class ReviewedArticle(NamedTuple):
    article_id: str
    title: str
    body: str
    label: str


@dataclasses.dataclass(frozen=True, slots=True)
class NewReviewItem:
    """A first-round pick of the sink."""

    prediction_id: int
    article_id: str
    reason: str  # uniform | uncertainty
    priority: int


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


def uniform_topic_counts(
    db: Db,
    model_version: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, tuple[int, int]]:
    """(correct, labelled) by the reviewer's topic among this version's labelled first-round
    uniform reviews ("none of these" left out), of articles received in ``[since, until]``
    where given (else all of them): what the drift check weights the live check's per-topic
    accuracy with."""
    with connected(db) as conn:
        rows = conn.execute(
            text(
                "SELECT r.label, count(*) FILTER (WHERE r.label = p.topic), count(*) "
                "FROM review_items r JOIN predictions p ON p.id = r.prediction_id "
                "WHERE p.model_version = :v AND r.status = 'done' AND r.round = 1 "
                "AND r.reason = 'uniform' AND r.label IS NOT NULL AND r.label <> :none "
                "AND (CAST(:since AS timestamptz) IS NULL OR (p.received_at >= :since "
                "AND p.predicted_at >= :since)) "
                "AND (CAST(:until AS timestamptz) IS NULL OR p.received_at <= :until) "
                "GROUP BY r.label ORDER BY r.label"
            ),
            {"v": model_version, "none": NONE_LABEL, "since": since, "until": until},
        ).all()
    return {str(r[0]): (int(r[1]), int(r[2])) for r in rows}


def recent_uniform_review_counts(
    db: Db, model_version: str, *, since: datetime, until: datetime
) -> RecentReviewCounts:
    """Labelled first-round reviews whose article was received in ``[since, until]`` (the
    prediction's ``received_at``, the article's stamp: a replay's simulated time): the uniform
    ones of this model version, and "none of these" among every version's (the feed's: a
    promotion does not restart that count). The reviewer signals of the drift check."""
    with connected(db) as conn:
        row = conn.execute(
            text(
                "SELECT count(*) FILTER (WHERE u AND r.label = :none), "
                "count(*) FILTER (WHERE u AND r.label <> :none), "
                "count(*) FILTER (WHERE u AND r.label <> :none AND r.label = p.topic), "
                "count(*) FILTER (WHERE r.label = :none), count(*) "
                "FROM review_items r JOIN predictions p ON p.id = r.prediction_id "
                "CROSS JOIN LATERAL "
                "(SELECT r.reason = 'uniform' AND p.model_version = :v AS u) s "
                "WHERE r.status = 'done' AND r.round = 1 "
                "AND r.label IS NOT NULL "
                "AND p.received_at >= :since AND p.received_at <= :until "
                # predicted after received: lets the planner skip older day partitions
                "AND p.predicted_at >= :since"
            ),
            {"v": model_version, "none": NONE_LABEL, "since": since, "until": until},
        ).one()
    return RecentReviewCounts(*(int(v) for v in row))


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


def expire_stale_reviews(
    conn: Connection, *, older_than_s: float, claim_s: float, now: datetime | None = None
) -> int:
    """Mark pending items created more than ``older_than_s`` before ``now`` (default: the
    database's clock) ``expired``, except those a reviewer claimed within the last
    ``claim_s`` (still being looked at). Returns how many; the caller commits."""
    return int(
        conn.execute(
            text(
                "UPDATE review_items SET status = 'expired' WHERE status = 'pending' "
                "AND reason NOT IN ('onboarding', 'split') "  # an admin's request: never expired
                f"AND created_at < {NOW} - make_interval(secs => :old) "
                f"AND (assigned_at IS NULL OR assigned_at <= {NOW} - make_interval(secs => :c))"
            ),
            {"old": older_than_s, "c": claim_s, "now": now},
        ).rowcount
    )


def count_reviews_by_status(db: Db) -> dict[str, int]:
    """Review items per status."""
    with connected(db) as conn:
        rows = conn.execute(text("SELECT status, count(*) FROM review_items GROUP BY 1")).all()
    return {str(r[0]): int(r[1]) for r in rows}


def lock_review_queue(conn: Connection) -> None:
    """Wait for the transaction-level advisory lock that lets one filler at a time change
    the budgeted queue."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": REVIEW_QUEUE_LOCK})


def select_budgeted_pending(
    conn: Connection, *, claim_s: float, now: datetime | None = None
) -> list[Queued]:
    """Pending items that count against the review budget, with their prediction and title.
    Onboarding and split relabelling reviews (an admin's request) are outside the budget: never
    replaced, renumbered or counted, so not returned."""
    rows = conn.execute(
        text(
            "SELECT r.id, r.prediction_id, r.reason, r.priority, r.round, r.skips, p.margin, "
            "p.topic, a.title, (r.assigned_to IS NOT NULL "
            f"AND r.assigned_at > {NOW} - make_interval(secs => :s)) AS held "
            "FROM review_items r JOIN predictions p ON p.id = r.prediction_id "
            "JOIN articles a ON a.id = r.article_id WHERE r.status = 'pending' "
            "AND r.reason NOT IN ('onboarding', 'split')"
        ),
        {"s": claim_s, "now": now},
    ).all()
    return [
        Queued(
            item_id=int(r.id),
            prediction_id=int(r.prediction_id),
            reason=str(r.reason),
            topic=str(r.topic),
            title=str(r.title or ""),
            margin=float(r.margin),
            priority=int(r.priority),
            round=int(r.round),
            held=bool(r.held),
            skips=int(r.skips or 0),
        )
        for r in rows
    ]


def replace_review_items(
    conn: Connection, *, item_ids: Sequence[int], claim_s: float, now: datetime | None = None
) -> int:
    """Mark pending first-round items ``replaced``, except those a reviewer claimed within
    ``claim_s`` seconds. Returns how many were replaced."""
    return len(
        conn.execute(
            text(
                "UPDATE review_items SET status = 'replaced' WHERE id = ANY(:ids) "
                f"AND status = 'pending' AND round = 1 AND {_MOVABLE_NOW} RETURNING id"
            ),
            {"ids": list(item_ids), "s": claim_s, "now": now},
        ).all()
    )


def renumber_review_items(
    conn: Connection,
    *,
    priorities: Mapping[int, int],
    claim_s: float,
    now: datetime | None = None,
) -> None:
    """Give pending items new priorities (item id -> priority), except those a reviewer
    claimed within ``claim_s`` seconds."""
    conn.execute(
        text(
            "UPDATE review_items r SET priority = o.priority "
            "FROM unnest(CAST(:ids AS bigint[]), CAST(:prios AS integer[])) "
            f"AS o(id, priority) WHERE r.id = o.id AND r.status = 'pending' AND {_MOVABLE_NOW}"
        ),
        {"ids": list(priorities), "prios": list(priorities.values()), "s": claim_s, "now": now},
    )


def queue_review_items(
    conn: Connection, *, items: Sequence[NewReviewItem], created_at: datetime | None = None
) -> None:
    """Add first-round pending items (a prediction queued already keeps its item), created at
    ``created_at`` (default: the database's clock)."""
    if not items:
        return
    conn.execute(
        insert(ReviewItemRow).on_conflict_do_nothing(constraint="uq_review_prediction_round"),
        [
            {
                "prediction_id": i.prediction_id,
                "article_id": i.article_id,
                "reason": i.reason,
                "priority": i.priority,
                "round": 1,
                "status": "pending",
                **({"created_at": created_at} if created_at is not None else {}),
            }
            for i in items
        ],
    )


def latest_uniform_reviews(
    db: Db, *, limit: int, exclude_ids: Collection[str] = ()
) -> list[ReviewedArticle]:
    """The latest ``limit`` articles reviewed from the uniform sample (first round, labels
    that name a topic, simulated labels included), newest label first, one per article (its
    latest label); articles in ``exclude_ids`` (say, a challenger's training rows) are left
    out. What the live check before a promotion scores both models on."""
    with connected(db) as conn:
        rows = conn.execute(
            text(
                "SELECT id, title, body, label FROM (SELECT DISTINCT ON (a.id) a.id, a.title, "
                "a.body, r.label, r.labelled_at, r.id AS item FROM review_items r "
                "JOIN articles a ON a.id = r.article_id WHERE r.status = 'done' "
                "AND r.round = 1 AND r.reason = 'uniform' AND r.label IS NOT NULL "
                "AND r.label <> '__none__' AND NOT (a.id = ANY(:ex)) "
                "ORDER BY a.id, r.labelled_at DESC NULLS LAST, r.id DESC) latest "
                "ORDER BY labelled_at DESC NULLS LAST, item DESC LIMIT :n"
            ),
            {"ex": list(exclude_ids), "n": limit},
        ).all()
    return [ReviewedArticle(str(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]


def recently_received(db: Db, *, article_ids: Collection[str], hours: float) -> set[str]:
    """Which of ``article_ids`` were received within ``hours`` of the newest of them (the
    articles' own stamps, so a replay's simulated time works): the recent reviewed rows that
    automatic retraining repeats."""
    if not article_ids or hours <= 0:
        return set()
    with connected(db) as conn:
        rows = conn.execute(
            text(
                "WITH chosen AS (SELECT id, received_at FROM articles WHERE id = ANY(:ids)) "
                "SELECT id FROM chosen WHERE received_at >= "
                "(SELECT max(received_at) FROM chosen) - make_interval(secs => :s)"
            ),
            {"ids": list(article_ids), "s": hours * 3600.0},
        ).all()
    return {str(r[0]) for r in rows}


def count_uniform_reviewed(db: Db, *, article_ids: Collection[str]) -> int:
    """How many of ``article_ids`` were reviewed from the uniform sample (first round, a
    topic label): what leaving them out of the live check costs it."""
    if not article_ids:
        return 0
    with connected(db) as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(DISTINCT article_id) FROM review_items WHERE status = 'done' "
                    "AND round = 1 AND reason = 'uniform' AND label IS NOT NULL "
                    "AND label <> '__none__' AND article_id = ANY(:ids)"
                ),
                {"ids": list(article_ids)},
            ).scalar_one()
        )


def uniform_reviewed_ids(db: Db, *, article_ids: Collection[str]) -> set[str]:
    """Which of ``article_ids`` were reviewed from the uniform sample (first round, a topic
    label): the unbiased evidence that retraining holds out for the gate and the live check."""
    if not article_ids:
        return set()
    with connected(db) as conn:
        rows = conn.execute(
            text(
                "SELECT DISTINCT article_id FROM review_items WHERE status = 'done' "
                "AND round = 1 AND reason = 'uniform' AND label IS NOT NULL "
                "AND label <> '__none__' AND article_id = ANY(:ids)"
            ),
            {"ids": list(article_ids)},
        ).all()
    return {str(r[0]) for r in rows}


def insert_synthetic_reviews(
    conn: Connection, *, prefix: str, day: datetime, every: int, status: str, offset: int
) -> None:
    """Benchmarks only: a ``uniform`` item in ``status`` (``done``: labelled with the
    predicted topic by ``bench`` ten minutes later) for each prediction of the day from
    ``day`` whose article id starts with ``prefix`` and whose row id is ``offset`` modulo
    ``every``."""
    conn.execute(
        text(
            "INSERT INTO review_items (prediction_id, article_id, reason, priority, status, "
            "label, reviewer, labelled_at, created_at) SELECT p.id, p.article_id, 'uniform', 1, "
            "CAST(:st AS text), CASE WHEN CAST(:st AS text) = 'done' THEN p.topic END, "
            "CASE WHEN CAST(:st AS text) = 'done' THEN 'bench' END, "
            "CASE WHEN CAST(:st AS text) = 'done' THEN p.predicted_at + interval '10 minutes' END, "
            "p.predicted_at FROM predictions p WHERE p.predicted_at >= :s "
            "AND p.predicted_at < :s + interval '1 day' AND p.article_id LIKE :p || '%' "
            "AND p.id % :e = :o"
        ),
        {"p": prefix, "s": day, "e": every, "st": status, "o": offset},
    )


def queue_synthetic_pending(conn: Connection, *, prefix: str, n: int) -> None:
    """Benchmarks only: the ``n`` predictions of ``prefix`` articles with the lowest
    margins queued as pending ``uncertainty`` items, priority 1..n."""
    conn.execute(
        text(
            "INSERT INTO review_items (prediction_id, article_id, reason, priority, status) "
            "SELECT id, article_id, 'uncertainty', g, 'pending' FROM (SELECT id, article_id, "
            "row_number() OVER (ORDER BY margin, id) AS g FROM predictions "
            "WHERE article_id LIKE :p || '%') s WHERE g <= :n"
        ),
        {"p": prefix, "n": n},
    )
