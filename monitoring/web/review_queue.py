"""The review queue in Postgres: claim, label, skip, second reviews, progress.

A reviewer claims the next pending item (uncertainty samples first: their priority is below
the uniform samples') with ``FOR UPDATE SKIP LOCKED``, so two reviewers never get the same
item; the claim lasts ``claim_minutes`` and then returns to the queue. Labelling a
first-round item may queue a second review of the same prediction for another reviewer,
which measures agreement.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, text

from pipeline.core.errors import NewsflowError

NONE_LABEL = "__none__"  # "none of these / new topic"
SKIP_PENALTY = 100_000  # a skipped item goes behind everything not yet skipped
MAX_KEYS = 9  # number keys 1..9 pick a topic; 0 is "none of these"


class ReviewError(NewsflowError):
    """A label that does not fit the item, or an item no longer held by this reviewer."""


class UnknownLabel(ReviewError):
    """A label that is not a topic of the item's model (nor "none of these")."""


@dataclasses.dataclass(frozen=True)
class ReviewTask:
    item_id: int
    round: int
    reason: str
    article_id: str
    title: str
    body: str
    model_version: str
    topic: str
    confidence: float
    top: list[tuple[str, float]]
    labels: list[str]
    keyed: list[str]  # on number keys 1..len(keyed)
    others: list[str]  # the rest of ``labels``, in the model's order (the type-ahead list)
    suggested: str | None = None  # a topic being onboarded that an admin expects here


def split_labels(
    labels: Sequence[str],
    probabilities: Sequence[float],
    *,
    pick: str | None = None,
    keys: int = MAX_KEYS,
) -> tuple[list[str], list[str]]:
    """The labels that get number keys, and the others (in the model's order).

    A model with at most ``keys`` labels keeps them all on keys in the model's order, so
    each key means the same topic on every item. A larger model puts its ``keys`` most
    probable labels for this item on keys, highest first (ties in the model's order).
    Without one probability per label the model's ``pick`` comes first, then the model's
    order.

    Example:
        >>> split_labels(["a", "b", "c", "d"], [0.1, 0.2, 0.3, 0.4], keys=2)
        (['d', 'c'], ['a', 'b'])
    """
    if len(labels) <= keys:
        return list(labels), []
    if len(probabilities) == len(labels):
        order = sorted(range(len(labels)), key=lambda i: -probabilities[i])
        keyed = [labels[i] for i in order[:keys]]
    else:
        first = [pick] if pick is not None and pick in labels else []
        keyed = [*first, *(t for t in labels if t != pick)][:keys]
    chosen = set(keyed)
    return keyed, [t for t in labels if t not in chosen]


@dataclasses.dataclass(frozen=True)
class Progress:
    pending: int
    labelled_today: int
    labelled_last_hour: int
    median_seconds: float | None


def _held(conn: Connection, reviewer: str, claim_s: float) -> int | None:
    row = conn.execute(
        text(
            "SELECT id FROM review_items WHERE assigned_to = :u AND status = 'pending' "
            "AND assigned_at > now() - make_interval(secs => :s) ORDER BY id LIMIT 1"
        ),
        {"u": reviewer, "s": claim_s},
    ).first()
    return int(row[0]) if row else None


def claim_next(
    engine: Engine, reviewer: str, *, claim_minutes: float, article_prefix: str | None = None
) -> ReviewTask | None:
    """The item this reviewer holds, else the next free one (now held by them).
    ``article_prefix`` limits the choice to articles whose id starts with it."""
    claim_s = claim_minutes * 60
    scope = "AND article_id LIKE :prefix " if article_prefix else ""
    with engine.begin() as conn:
        item_id = _held(conn, reviewer, claim_s)
        if item_id is None:
            row = conn.execute(
                text(
                    "UPDATE review_items SET assigned_to = :u, assigned_at = now() "
                    "WHERE id = (SELECT id FROM review_items WHERE status = 'pending' "
                    "AND (assigned_to IS NULL OR assigned_at <= now() - make_interval(secs => :s)) "
                    "AND (exclude_reviewer IS NULL OR exclude_reviewer <> :u) "
                    f"{scope}ORDER BY priority, id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id"
                ),
                {"u": reviewer, "s": claim_s, "prefix": f"{article_prefix or ''}%"},
            ).first()
            if row is None:
                return None
            item_id = int(row[0])
        return _task(conn, item_id)


def _task(conn: Connection, item_id: int) -> ReviewTask:
    row = conn.execute(
        text(
            "SELECT r.id, r.round, r.reason, r.suggested_label, a.id AS article_id, a.title, "
            "a.body, p.model_version, p.topic, p.confidence, p.probabilities, m.labels "
            "FROM review_items r JOIN predictions p ON p.id = r.prediction_id "
            "JOIN articles a ON a.id = r.article_id "
            "LEFT JOIN model_labels m ON m.model_version = p.model_version WHERE r.id = :i"
        ),
        {"i": item_id},
    ).one()
    labels = list(row.labels or [])
    probs = list(row.probabilities or [])
    extra = added_topics(conn, labels)
    if labels and len(labels) == len(probs):
        top = sorted(zip(labels, probs, strict=True), key=lambda t: -t[1])[:3]
    else:  # label order unknown (model_labels missing): show the model's pick alone
        top = [(row.topic, float(row.confidence))]
        labels = labels or [row.topic]
    keyed, others = split_labels(labels, probs, pick=str(row.topic))
    if extra:  # added topics after the model's own: on free number keys, else in the list
        room = max(0, MAX_KEYS - len(keyed))
        keyed, others = [*keyed, *extra[:room]], [*others, *extra[room:]]
        labels = [*labels, *extra]
    suggested = row.suggested_label
    if suggested in others:  # the topic this item was queued for gets a key (the last one)
        others = [t for t in others if t != suggested]
        if len(keyed) >= MAX_KEYS:
            others = [keyed[-1], *others]
            keyed = keyed[:-1]
        keyed = [*keyed, suggested]
    return ReviewTask(
        item_id=int(row.id),
        round=int(row.round),
        reason=str(row.reason),
        article_id=str(row.article_id),
        title=str(row.title),
        body=str(row.body),
        model_version=str(row.model_version),
        topic=str(row.topic),
        confidence=float(row.confidence),
        top=[(str(t), float(p)) for t, p in top],
        labels=labels,
        keyed=keyed,
        others=others,
        suggested=row.suggested_label,
    )


def allowed_labels(conn: Connection, item_id: int) -> list[str]:
    row = conn.execute(
        text(
            "SELECT m.labels, p.topic FROM review_items r "
            "JOIN predictions p ON p.id = r.prediction_id "
            "LEFT JOIN model_labels m ON m.model_version = p.model_version WHERE r.id = :i"
        ),
        {"i": item_id},
    ).first()
    if row is None:
        raise ReviewError(f"review item {item_id} does not exist")
    labels = list(row.labels or [row.topic])
    return [*labels, *added_topics(conn, labels)]


def added_topics(conn: Connection, model_labels: Sequence[str]) -> list[str]:
    """Topics people added that the item's model does not know yet (being onboarded, or
    in a newer champion): reviewers may label with them too."""
    rows = conn.execute(
        text("SELECT name FROM topics WHERE status IN ('onboarding', 'active') ORDER BY created_at")
    ).scalars()
    return [str(n) for n in rows if n not in model_labels]


def submit_label(
    engine: Engine,
    reviewer: str,
    item_id: int,
    label: str,
    *,
    note: str | None = None,
    second_share: float = 0.0,
    rng: random.Random | None = None,
    simulated: bool = False,
) -> bool:
    """Record ``label`` (a topic of the model, or :data:`NONE_LABEL`) for an item this
    reviewer holds. Returns whether a second review was queued."""
    rng = rng or random.Random()
    with engine.begin() as conn:
        allowed = allowed_labels(conn, item_id)
        if label != NONE_LABEL and label not in allowed:
            shown = label if len(label) <= 60 else f"{label[:60]}…"
            raise UnknownLabel(
                f"{shown!r} is not a topic of this item's model; choose one of its "
                f"{len(allowed)} topics ({', '.join(allowed)}) or 'none of these'"
            )
        row = conn.execute(
            text(
                "UPDATE review_items SET status = 'done', label = :l, reviewer = :u, "
                "labelled_at = now(), note = :n, simulated = :sim, assigned_to = NULL "
                "WHERE id = :i AND status = 'pending' AND assigned_to = :u "
                "RETURNING prediction_id, article_id, round, reason, priority"
            ),
            {"l": label, "u": reviewer, "n": (note or None), "i": item_id, "sim": simulated},
        ).first()
        if row is None:
            raise ReviewError(
                f"review item {item_id} is not held by {reviewer} (labelled already, or the "
                "claim expired and someone else took it)"
            )
        if row.round != 1 or rng.random() >= second_share:
            return False
        conn.execute(
            text(
                "INSERT INTO review_items (prediction_id, article_id, reason, priority, round, "
                "status, exclude_reviewer) VALUES (:p, :a, :r, :prio, 2, 'pending', :u) "
                "ON CONFLICT ON CONSTRAINT uq_review_prediction_round DO NOTHING"
            ),
            {
                "p": row.prediction_id,
                "a": row.article_id,
                "r": row.reason,
                "prio": row.priority,
                "u": reviewer,
            },
        )
        return True


def skip(engine: Engine, reviewer: str, item_id: int) -> None:
    """Give an item back; it goes behind the items nobody skipped."""
    with engine.begin() as conn:
        done = conn.execute(
            text(
                "UPDATE review_items SET assigned_to = NULL, assigned_at = NULL, "
                "skips = skips + 1, priority = priority + :pen "
                "WHERE id = :i AND status = 'pending' AND assigned_to = :u"
            ),
            {"i": item_id, "u": reviewer, "pen": SKIP_PENALTY},
        ).rowcount
    if not done:
        raise ReviewError(f"review item {item_id} is not held by {reviewer}")


def progress(engine: Engine, reviewer: str) -> Progress:
    with engine.connect() as conn:
        pending = conn.execute(
            text("SELECT count(*) FROM review_items WHERE status = 'pending'")
        ).scalar_one()
        mine = conn.execute(
            text(
                "SELECT count(*) FILTER (WHERE labelled_at >= date_trunc('day', now())), "
                "count(*) FILTER (WHERE labelled_at >= now() - interval '1 hour') "
                "FROM review_items WHERE reviewer = :u AND status = 'done' "
                "AND labelled_at >= least(date_trunc('day', now()), now() - interval '1 hour')"
            ),
            {"u": reviewer},
        ).one()
        gaps: Sequence[Any] = conn.execute(
            text(
                "SELECT extract(epoch FROM labelled_at - lag(labelled_at) OVER (ORDER BY "
                "labelled_at)) FROM review_items WHERE reviewer = :u AND status = 'done' "
                "AND labelled_at >= now() - interval '1 hour'"
            ),
            {"u": reviewer},
        ).all()
    values = sorted(float(g[0]) for g in gaps if g[0] is not None)
    median = values[len(values) // 2] if values else None
    return Progress(int(pending), int(mine[0]), int(mine[1]), median)


@dataclasses.dataclass(frozen=True)
class Agreement:
    pairs: int
    agreed: int

    @property
    def rate(self) -> float | None:
        return self.agreed / self.pairs if self.pairs else None


def agreement(engine: Engine) -> Agreement:
    """Items labelled in both rounds, and how many got the same label."""
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT count(*), count(*) FILTER (WHERE a.label = b.label) FROM review_items a "
                "JOIN review_items b ON b.prediction_id = a.prediction_id AND b.round = 2 "
                "WHERE a.round = 1 AND a.status = 'done' AND b.status = 'done'"
            )
        ).one()
    return Agreement(int(row[0]), int(row[1]))
