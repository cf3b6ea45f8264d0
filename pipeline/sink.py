"""The prediction sink: a batch of (article, prediction) pairs stored in one bulk,
idempotent transaction by :func:`save_batch`, which returns a :class:`WriteResult`.

:func:`save_batch` decides, the data-access modules under ``pipeline.core.db`` write
(``articles``, ``predictions``, ``reviews``). A redelivered article changes nothing:
articles and predictions are inserted with ``ON CONFLICT`` on (article id) and (article id,
model version), and only predictions that are new in this transaction are sampled for review
and returned (so the caller publishes each prediction once to the ``predictions`` topic).

Review picks follow a :class:`ReviewPolicy`. With a :class:`~pipeline.sampling.Budget` (the
worker's policy) the new predictions compete for a place in a queue that never holds more
than the budget's pending items, across every worker: the fill runs under a
transaction-level advisory lock, expires stale items, then inserts and replaces (see
:func:`pipeline.sampling.fill_queue`). Without one, shares of each batch are sampled
(:func:`pipeline.sampling.select_for_review`).

Id policy: the first message stored under an id owns it. A later message with the same id
and the same title and body is a redelivery (counted in ``duplicates``); one with a different
title or body is a *conflict*: it is kept in ``article_conflicts`` with where it came from,
counted, and gets no prediction (the stored article's prediction is not about its text).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine

from pipeline.core.db import articles as articles_db
from pipeline.core.db import predictions as predictions_db
from pipeline.core.db import reviews as reviews_db
from pipeline.core.records import CleanArticle, Prediction
from pipeline.sampling import (
    Budget,
    Candidate,
    Pick,
    fill_queue,
    select_for_review,
)

if TYPE_CHECKING:
    from pipeline.core.settings import Settings

Pair = tuple[CleanArticle, Prediction]
TextKey = tuple[str, str]  # (title, body)


@dataclasses.dataclass(frozen=True)
class ReviewPolicy:
    """Shares (the first three fields) apply only without a ``budget``."""

    uniform_share: float = 0.02
    uncertain_share: float = 0.05
    topic_cap: int = 3
    budget: Budget | None = None
    expire_hours: float = 24.0  # budgeted queue: pending items older than this expire
    claim_minutes: float = 15.0  # an item claimed more recently than this is left alone

    @classmethod
    def from_settings(cls, settings: Settings) -> ReviewPolicy:
        """The worker's policy: the review budget, or shares when the budget is 0."""
        budget = (
            Budget.per_hour(
                settings.review_budget_per_hour,
                lookahead_hours=settings.review_lookahead_hours,
                uniform_fraction=settings.review_uniform_fraction,
                topic_share=settings.review_topic_queue_share,
            )
            if settings.review_budget_per_hour > 0
            else None
        )
        return cls(
            settings.review_uniform_share,
            settings.review_uncertain_share,
            settings.review_topic_cap,
            budget=budget,
            expire_hours=settings.review_expire_hours,
            claim_minutes=settings.review_claim_minutes,
        )


@dataclasses.dataclass(frozen=True)
class WriteResult:
    stored: list[Prediction]
    duplicates: int  # redeliveries: the same article (id, title, body) already had this row
    review_items: int
    conflicts: int = 0  # same id, different text: recorded in article_conflicts


@dataclasses.dataclass(frozen=True)
class _Judged:
    """A batch's messages judged against the stored text of their id."""

    unique: dict[tuple[str, str], Pair]  # (article id, model version) -> its first message
    conflicting: list[CleanArticle]  # another text than the stored one: kept, not predicted
    extra_deliveries: dict[str, int]  # the stored text arrived again behind a conflict


def save_batch(
    *,
    engine: Engine,
    pairs: Sequence[Pair],
    policy: ReviewPolicy,
    rng: random.Random,
    model_labels: Mapping[str, Sequence[str]] | None = None,
) -> WriteResult:
    """Store articles, predictions and review picks in one transaction. ``model_labels``
    (version → label order) is recorded once per version so readers can name each
    probability."""
    if not pairs:
        return WriteResult([], 0, 0)
    by_id = _group_by_id(pairs)
    with engine.begin() as conn:
        if model_labels:
            predictions_db.record_model_labels(conn, labels=model_labels)
        # the ids' transaction locks, once for both tables (see articles_db.lock_article_ids)
        articles_db.lock_article_ids(conn, ids=list(by_id))
        judged = _store_articles(conn, by_id)
        stored, candidates = _store_predictions(conn, judged.unique)
        # the queue's clock is the batch's: the worker's (a replay's simulated one) time
        now = max(p.predicted_at for _, p in pairs)
        picks = _pick_for_review(conn, candidates, policy, rng, now)
        article_of = {c.key: p.article_id for c, p in zip(candidates, stored, strict=True)}
        reviews_db.queue_review_items(
            conn,
            items=[
                reviews_db.NewReviewItem(k.key, article_of[k.key], k.reason, k.priority)
                for k in picks
            ],
            created_at=now,
        )
    conflicts = len(judged.conflicting)
    return WriteResult(stored, len(pairs) - len(stored) - conflicts, len(picks), conflicts)


def _text_of(article: CleanArticle) -> TextKey:
    return (article.title, article.body)


def _group_by_id(pairs: Sequence[Pair]) -> dict[str, list[Pair]]:
    """The batch's messages per article id, in arrival order."""
    by_id: dict[str, list[Pair]] = {}
    for art, pred in pairs:
        by_id.setdefault(art.id, []).append((art, pred))
    return by_id


def _store_articles(conn: Connection, by_id: Mapping[str, Sequence[Pair]]) -> _Judged:
    """Offer each id's first message; same id and same text as the stored row counts a
    delivery (each message of the batch with that text is one), another text leaves the
    row alone and its stored text is read back. Then count late redeliveries and keep the
    conflicts."""
    firsts = [msgs[0][0] for msgs in by_id.values()]
    deliveries = [
        sum(1 for m, _ in msgs if _text_of(m) == _text_of(msgs[0][0])) for msgs in by_id.values()
    ]
    matched = articles_db.upsert_articles(
        conn, articles=firsts, deliveries=deliveries, ids_locked=True
    )
    stored_text: dict[str, TextKey] = {
        i: _text_of(msgs[0][0]) for i, msgs in by_id.items() if i in matched
    }
    others = [i for i in by_id if i not in matched]
    if others:
        stored_text.update(articles_db.select_article_texts(conn, ids=others))
    judged = _judge(by_id, matched, stored_text)
    if judged.extra_deliveries:
        articles_db.add_deliveries(conn, counts=judged.extra_deliveries)
    if judged.conflicting:
        articles_db.insert_conflicts(conn, articles=judged.conflicting)
    return judged


def _judge(
    by_id: Mapping[str, Sequence[Pair]], matched: set[str], stored_text: Mapping[str, TextKey]
) -> _Judged:
    """Every message is judged against the stored text: the same text is the article (one
    prediction per model version), any other text is a conflict, kept."""
    unique: dict[tuple[str, str], Pair] = {}
    conflicting: list[CleanArticle] = []
    extra_deliveries: dict[str, int] = {}
    for i, msgs in by_id.items():
        for art, pred in msgs:
            if _text_of(art) != stored_text[i]:
                conflicting.append(art)
                continue
            unique.setdefault((i, pred.model_version), (art, pred))
            if i not in matched:  # the stored text arrived again behind a conflict
                extra_deliveries[i] = extra_deliveries.get(i, 0) + 1
    return _Judged(unique, conflicting, extra_deliveries)


def _store_predictions(
    conn: Connection, unique: Mapping[tuple[str, str], Pair]
) -> tuple[list[Prediction], list[Candidate]]:
    """Insert the predictions; returns those new in this transaction and, for each of them
    in the same order, its review candidate (keyed by the new row id)."""
    new = predictions_db.insert_new_predictions(
        conn, predictions=[p for _, p in unique.values()], ids_locked=True
    )
    stored: list[Prediction] = []
    candidates: list[Candidate] = []
    for art, p in unique.values():
        row_id = new.get((p.article_id, p.model_version))
        if row_id is not None:
            stored.append(p)
            candidates.append(Candidate(row_id, p.topic, p.margin, art.title))
    return stored, candidates


def _pick_for_review(
    conn: Connection,
    candidates: Sequence[Candidate],
    policy: ReviewPolicy,
    rng: random.Random,
    now: datetime,
) -> list[Pick]:
    if policy.budget is not None:
        return _fill_budgeted(conn, candidates, policy, policy.budget, now)
    return select_for_review(
        candidates,
        uniform_share=policy.uniform_share,
        uncertain_share=policy.uncertain_share,
        topic_cap=policy.topic_cap,
        rng=rng,
    )


def _fill_budgeted(
    conn: Connection,
    candidates: Sequence[Candidate],
    policy: ReviewPolicy,
    budget: Budget,
    now: datetime,
) -> list[Pick]:
    """Expire stale items, then choose which candidates enter the queue, mark the items they
    replace and renumber the claim order, all under one advisory lock held to the end of the
    transaction: another worker's fill sees this one's rows, so the queue stays within the
    budget across workers. Reviewers only take items out (a labelled item's second review
    takes its place), so they cannot push it above either."""
    if not candidates:
        return []
    reviews_db.lock_review_queue(conn)
    claim_s = policy.claim_minutes * 60
    reviews_db.expire_stale_reviews(
        conn, older_than_s=policy.expire_hours * 3600, claim_s=claim_s, now=now
    )
    queued = reviews_db.select_budgeted_pending(conn, claim_s=claim_s, now=now)
    fill = fill_queue(candidates, queued, budget)
    picks = fill.picks
    if fill.replaced:
        # A reviewer may have claimed one since it was read: that one stays, and as many
        # new picks are dropped (the last: the highest margins), so the budget holds.
        done = reviews_db.replace_review_items(
            conn, item_ids=fill.replaced, claim_s=claim_s, now=now
        )
        short = len(fill.replaced) - done
        if short:
            picks = picks[: max(0, len(picks) - short)]
    if fill.reorder:
        reviews_db.renumber_review_items(conn, priorities=fill.reorder, claim_s=claim_s, now=now)
    return picks
