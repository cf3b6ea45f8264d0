"""Data access for the reviewers' side of ``review_items``: claim, label, skip, second
reviews, a reviewer's pace and the agreement between rounds. The rules (which label an item
may take, when a second review is queued, how a task is shown) live in
``monitoring.web.review_queue``; this module only reads and writes rows.

A claim is ``assigned_to``/``assigned_at``; it lasts ``claim_s`` seconds. Writes take the
caller's :class:`~sqlalchemy.Connection` inside its transaction (the caller commits); reads
take an engine or a connection.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from sqlalchemy import Connection, text

from pipeline.core.db.access import Db, connected

# claimable: nobody holds it, or the claim is older than :s seconds
# "now": the caller's instant (:now; a replay's simulated clock) or, without one, the database's
_NOW = "COALESCE(CAST(:now AS timestamptz), now())"
_FREE = f"(assigned_to IS NULL OR assigned_at <= {_NOW} - make_interval(secs => :s))"


@dataclasses.dataclass(frozen=True)
class ReviewItemView:
    """A review item with its article, the model's prediction and the model's label order
    (``labels`` is empty when ``model_labels`` has no row for the version)."""

    item_id: int
    round: int
    reason: str
    suggested_label: str | None
    article_id: str
    title: str
    body: str
    model_version: str
    topic: str
    confidence: float
    probabilities: list[float]
    labels: list[str]


@dataclasses.dataclass(frozen=True)
class ItemLabels:
    """The model's label order for an item (empty when unknown) and the model's pick."""

    labels: list[str]
    topic: str


@dataclasses.dataclass(frozen=True)
class LabelledItem:
    """What a first-round item's second review copies."""

    prediction_id: int
    article_id: str
    round: int
    reason: str
    priority: int


@dataclasses.dataclass(frozen=True)
class ReviewerActivity:
    labelled_today: int
    labelled_last_hour: int
    gaps_s: list[float]  # seconds between consecutive labels of the last hour, sorted


@dataclasses.dataclass(frozen=True)
class Agreement:
    pairs: int  # items labelled in both rounds
    agreed: int  # of which with the same label

    @property
    def rate(self) -> float | None:
        return self.agreed / self.pairs if self.pairs else None


def select_held_item(conn: Connection, *, reviewer: str, claim_s: float) -> int | None:
    """The pending item ``reviewer`` holds by a live claim (the lowest id), if any."""
    row = conn.execute(
        text(
            "SELECT id FROM review_items WHERE assigned_to = :u AND status = 'pending' "
            "AND assigned_at > now() - make_interval(secs => :s) ORDER BY id LIMIT 1"
        ),
        {"u": reviewer, "s": claim_s},
    ).first()
    return int(row[0]) if row else None


def claim_free_item(
    conn: Connection,
    *,
    reviewer: str,
    claim_s: float,
    article_prefix: str | None = None,
    now: datetime | None = None,
) -> int | None:
    """Claim the first free pending item in queue order (priority, then id) that is not
    kept from ``reviewer``, skipping items other transactions hold locked; ``article_prefix``
    limits the choice to articles whose id starts with it; ``now``: the claim's time (default:
    the database's clock). None when there is none."""
    scope = "AND article_id LIKE :prefix " if article_prefix else ""
    row = conn.execute(
        text(
            f"UPDATE review_items SET assigned_to = :u, assigned_at = {_NOW} "
            "WHERE id = (SELECT id FROM review_items WHERE status = 'pending' "
            f"AND {_FREE} AND (exclude_reviewer IS NULL OR exclude_reviewer <> :u) "
            f"{scope}ORDER BY priority, id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id"
        ),
        {"u": reviewer, "s": claim_s, "prefix": f"{article_prefix or ''}%", "now": now},
    ).first()
    return int(row[0]) if row else None


def select_review_item(db: Db, *, item_id: int) -> ReviewItemView:
    """The item with its article and prediction (it must exist)."""
    with connected(db) as conn:
        row = conn.execute(
            text(
                "SELECT r.id, r.round, r.reason, r.suggested_label, a.id AS article_id, "
                "a.title, a.body, p.model_version, p.topic, p.confidence, p.probabilities, "
                "m.labels FROM review_items r JOIN predictions p ON p.id = r.prediction_id "
                "JOIN articles a ON a.id = r.article_id "
                "LEFT JOIN model_labels m ON m.model_version = p.model_version WHERE r.id = :i"
            ),
            {"i": item_id},
        ).one()
    return ReviewItemView(
        item_id=int(row.id),
        round=int(row.round),
        reason=str(row.reason),
        suggested_label=row.suggested_label,
        article_id=str(row.article_id),
        title=str(row.title),
        body=str(row.body),
        model_version=str(row.model_version),
        topic=str(row.topic),
        confidence=float(row.confidence),
        probabilities=[float(p) for p in row.probabilities or []],
        labels=[str(t) for t in row.labels or []],
    )


def select_item_labels(db: Db, *, item_id: int) -> ItemLabels | None:
    """The label order of the item's model and its pick; None when there is no such item."""
    with connected(db) as conn:
        row = conn.execute(
            text(
                "SELECT m.labels, p.topic FROM review_items r "
                "JOIN predictions p ON p.id = r.prediction_id "
                "LEFT JOIN model_labels m ON m.model_version = p.model_version WHERE r.id = :i"
            ),
            {"i": item_id},
        ).first()
    if row is None:
        return None
    return ItemLabels([str(t) for t in row.labels or []], str(row.topic))


def label_held_item(
    conn: Connection,
    *,
    item_id: int,
    reviewer: str,
    label: str,
    note: str | None,
    simulated: bool,
    now: datetime | None = None,
) -> LabelledItem | None:
    """Mark the item done with ``label`` at ``now`` (default: the database's clock) if it is
    pending and ``reviewer`` holds it; None when not (labelled already, or the claim went to
    someone else)."""
    row = conn.execute(
        text(
            "UPDATE review_items SET status = 'done', label = :l, reviewer = :u, "
            f"labelled_at = {_NOW}, note = :n, simulated = :sim, assigned_to = NULL "
            "WHERE id = :i AND status = 'pending' AND assigned_to = :u "
            "RETURNING prediction_id, article_id, round, reason, priority"
        ),
        {"l": label, "u": reviewer, "n": note, "i": item_id, "sim": simulated, "now": now},
    ).first()
    if row is None:
        return None
    return LabelledItem(
        int(row.prediction_id),
        str(row.article_id),
        int(row.round),
        str(row.reason),
        int(row.priority),
    )


def queue_second_review(conn: Connection, *, first: LabelledItem, exclude_reviewer: str) -> None:
    """A round-2 item for the same prediction, for anyone but ``exclude_reviewer`` (nothing
    when one is queued already)."""
    conn.execute(
        text(
            "INSERT INTO review_items (prediction_id, article_id, reason, priority, round, "
            "status, exclude_reviewer) VALUES (:p, :a, :r, :prio, 2, 'pending', :u) "
            "ON CONFLICT ON CONSTRAINT uq_review_prediction_round DO NOTHING"
        ),
        {
            "p": first.prediction_id,
            "a": first.article_id,
            "r": first.reason,
            "prio": first.priority,
            "u": exclude_reviewer,
        },
    )


def release_held_item(conn: Connection, *, item_id: int, reviewer: str, penalty: int) -> bool:
    """Give back an item ``reviewer`` holds, counting a skip and moving it ``penalty`` back
    in the queue. False when they do not hold it."""
    return bool(
        conn.execute(
            text(
                "UPDATE review_items SET assigned_to = NULL, assigned_at = NULL, "
                "skips = skips + 1, priority = priority + :pen "
                "WHERE id = :i AND status = 'pending' AND assigned_to = :u"
            ),
            {"i": item_id, "u": reviewer, "pen": penalty},
        ).rowcount
    )


def select_reviewer_activity(db: Db, *, reviewer: str) -> ReviewerActivity:
    """How many labels ``reviewer`` gave today and in the last hour, and the gaps between
    their labels of the last hour."""
    with connected(db) as conn:
        today, last_hour = conn.execute(
            text(
                "SELECT count(*) FILTER (WHERE labelled_at >= date_trunc('day', now())), "
                "count(*) FILTER (WHERE labelled_at >= now() - interval '1 hour') "
                "FROM review_items WHERE reviewer = :u AND status = 'done' "
                "AND labelled_at >= least(date_trunc('day', now()), now() - interval '1 hour')"
            ),
            {"u": reviewer},
        ).one()
        gaps = conn.execute(
            text(
                "SELECT extract(epoch FROM labelled_at - lag(labelled_at) OVER (ORDER BY "
                "labelled_at)) FROM review_items WHERE reviewer = :u AND status = 'done' "
                "AND labelled_at >= now() - interval '1 hour'"
            ),
            {"u": reviewer},
        ).scalars()
        values = sorted(float(g) for g in gaps if g is not None)
    return ReviewerActivity(int(today), int(last_hour), values)


def select_agreement(db: Db) -> Agreement:
    """Items labelled in both rounds, and how many got the same label."""
    with connected(db) as conn:
        pairs, agreed = conn.execute(
            text(
                "SELECT count(*), count(*) FILTER (WHERE a.label = b.label) FROM review_items a "
                "JOIN review_items b ON b.prediction_id = a.prediction_id AND b.round = 2 "
                "WHERE a.round = 1 AND a.status = 'done' AND b.status = 'done'"
            )
        ).one()
    return Agreement(int(pairs), int(agreed))
