"""The review queue's rules: claim, label, skip, second reviews, progress (the rows are
read and written by :mod:`pipeline.core.db.review_queue`).

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

from sqlalchemy import Connection, Engine

from pipeline.core.db import review_queue as queue_db
from pipeline.core.db.review_queue import Agreement, ReviewItemView
from pipeline.core.db.reviews import pending_review_count
from pipeline.core.db.topic_splits import SPLIT_REASON, select_parts
from pipeline.core.db.topics import select_topic_names
from pipeline.core.errors import NewsflowError
from pipeline.core.records import NONE_LABEL
from pipeline.sampling import SKIP_PENALTY  # a skipped item goes behind everything not skipped

__all__ = [
    "MAX_KEYS",
    "NONE_LABEL",
    "SKIP_PENALTY",
    "Agreement",
    "Progress",
    "ReviewError",
    "ReviewTask",
    "UnknownLabel",
    "added_topics",
    "agreement",
    "allowed_labels",
    "claim_next",
    "progress",
    "skip",
    "split_labels",
    "submit_label",
]

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
    split_of: str | None = None  # a relabelling request: this topic is being split
    parts: list[str] = dataclasses.field(default_factory=list)  # into these (keys first)


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


def claim_next(
    engine: Engine, reviewer: str, *, claim_minutes: float, article_prefix: str | None = None
) -> ReviewTask | None:
    """The item this reviewer holds, else the next free one (now held by them).
    ``article_prefix`` limits the choice to articles whose id starts with it."""
    claim_s = claim_minutes * 60
    with engine.begin() as conn:
        item_id = queue_db.select_held_item(conn, reviewer=reviewer, claim_s=claim_s)
        if item_id is None:
            item_id = queue_db.claim_free_item(
                conn, reviewer=reviewer, claim_s=claim_s, article_prefix=article_prefix
            )
            if item_id is None:
                return None
        return _task(conn, queue_db.select_review_item(conn, item_id=item_id))


def _task(conn: Connection, item: ReviewItemView) -> ReviewTask:
    labels = list(item.labels)
    probs = list(item.probabilities)
    extra = added_topics(conn, labels)
    if labels and len(labels) == len(probs):
        top = sorted(zip(labels, probs, strict=True), key=lambda t: -t[1])[:3]
    else:  # label order unknown (model_labels missing): show the model's pick alone
        top = [(item.topic, item.confidence)]
        labels = labels or [item.topic]
    keyed, others = split_labels(labels, probs, pick=item.topic)
    if extra:  # added topics after the model's own: on free number keys, else in the list
        room = max(0, MAX_KEYS - len(keyed))
        keyed, others = [*keyed, *extra[:room]], [*others, *extra[room:]]
        labels = [*labels, *extra]
    suggested = item.suggested_label
    parts: list[str] = []
    if item.reason == SPLIT_REASON and suggested is not None:  # relabel into the parts
        parts = [p for p in select_parts(conn, old=suggested) if p in labels]
        rest = [t for t in [*keyed, *others] if t not in parts and t != suggested]
        keyed, others = [*parts, *rest][:MAX_KEYS], [*parts, *rest][MAX_KEYS:]
    elif suggested in others:  # the topic this item was queued for gets a key (the last one)
        others = [t for t in others if t != suggested]
        if len(keyed) >= MAX_KEYS:
            others = [keyed[-1], *others]
            keyed = keyed[:-1]
        keyed = [*keyed, suggested]
    return ReviewTask(
        item_id=item.item_id,
        round=item.round,
        reason=item.reason,
        article_id=item.article_id,
        title=item.title,
        body=item.body,
        model_version=item.model_version,
        topic=item.topic,
        confidence=item.confidence,
        top=top,
        labels=labels,
        keyed=keyed,
        others=others,
        suggested=None if parts else item.suggested_label,
        split_of=suggested if parts else None,
        parts=parts,
    )


def allowed_labels(conn: Connection, item_id: int) -> list[str]:
    found = queue_db.select_item_labels(conn, item_id=item_id)
    if found is None:
        raise ReviewError(f"review item {item_id} does not exist")
    labels = found.labels or [found.topic]
    return [*labels, *added_topics(conn, labels)]


def added_topics(conn: Connection, model_labels: Sequence[str]) -> list[str]:
    """Topics people added that the item's model does not know yet (being onboarded, or
    in a newer champion): reviewers may label with them too."""
    names = select_topic_names(conn, statuses=("onboarding", "active"))
    return [n for n in names if n not in model_labels]


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
        done = queue_db.label_held_item(
            conn,
            item_id=item_id,
            reviewer=reviewer,
            label=label,
            note=note or None,
            simulated=simulated,
        )
        if done is None:
            raise ReviewError(
                f"review item {item_id} is not held by {reviewer} (labelled already, or the "
                "claim expired and someone else took it)"
            )
        if done.round != 1 or rng.random() >= second_share:
            return False
        queue_db.queue_second_review(conn, first=done, exclude_reviewer=reviewer)
        return True


def skip(engine: Engine, reviewer: str, item_id: int) -> None:
    """Give an item back; it goes behind the items nobody skipped."""
    with engine.begin() as conn:
        done = queue_db.release_held_item(
            conn, item_id=item_id, reviewer=reviewer, penalty=SKIP_PENALTY
        )
    if not done:
        raise ReviewError(f"review item {item_id} is not held by {reviewer}")


def progress(engine: Engine, reviewer: str) -> Progress:
    with engine.connect() as conn:
        pending = pending_review_count(conn)
        mine = queue_db.select_reviewer_activity(conn, reviewer=reviewer)
    gaps = mine.gaps_s
    median = gaps[len(gaps) // 2] if gaps else None
    return Progress(pending, mine.labelled_today, mine.labelled_last_hour, median)


def agreement(engine: Engine) -> Agreement:
    """Items labelled in both rounds, and how many got the same label."""
    return queue_db.select_agreement(engine)
