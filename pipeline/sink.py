"""The prediction sink: one bulk, idempotent transaction per batch.

``PredictionSink.add`` only buffers; :meth:`PredictionSink.write` alone touches Postgres.
A redelivered article changes nothing: articles and predictions are inserted with
``ON CONFLICT DO NOTHING`` on (article id) and (article id, model version), and only
predictions that are new in this transaction are sampled for review and returned (so the
caller publishes each prediction once to the ``predictions`` topic).

Review picks: with a :class:`~pipeline.sampling.Budget` (the worker's policy) the new
predictions compete for a place in a queue that never holds more than the budget's pending
items, across every worker: the fill runs under a transaction-level advisory lock, expires
stale items, then inserts and replaces (see :func:`pipeline.sampling.fill_queue`). Without
one, shares of each batch are sampled (:func:`pipeline.sampling.select_for_review`).

Id policy: the first message stored under an id owns it. A later message with the same id
and the same title and body is a redelivery (counted in ``duplicates``); one with a different
title or body is a *conflict*: it is kept in ``article_conflicts`` with where it came from,
counted, and gets no prediction (the stored article's prediction is not about its text).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Connection,
    Engine,
    FromClause,
    Select,
    String,
    Text,
    bindparam,
    cast,
    column,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.types import TypeEngine

from pipeline.core.db.models import (
    ArticleConflictRow,
    ArticleRow,
    ModelLabelsRow,
    PredictionRow,
    ReviewItemRow,
)
from pipeline.core.db.reviews import expire_stale_reviews
from pipeline.core.records import CleanArticle, Prediction
from pipeline.sampling import (
    Budget,
    Candidate,
    Pick,
    Queued,
    fill_queue,
    select_for_review,
)

if TYPE_CHECKING:
    from pipeline.core.settings import Settings

REVIEW_QUEUE_LOCK = 0x72657671  # "revq": one filler of the review queue at a time


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


def _unnest_rows(
    table: FromClause, rows: Sequence[Mapping[str, Any]], *, as_text: Sequence[str] = ()
) -> Select[Any]:
    """``SELECT * FROM unnest(<one array per column>)``: a batch's rows bound as one array
    per column, so the statement's text (and its parsing, client and server side) does not
    grow with the batch as a multi-row VALUES list does. A column in ``as_text`` (an array
    column: unnest would flatten it) travels as its array literal and is cast back."""
    names = list(rows[0])

    def carried(name: str) -> TypeEngine[Any]:
        # Strings travel unbounded: an explicit cast to VARCHAR(n) would silently cut an
        # over-long value, where the INSERT's own assignment to the column raises.
        typ = table.c[name].type
        return Text() if name in as_text or isinstance(typ, String) else typ

    arrays = [
        cast(bindparam(f"u_{n}", [r[n] for r in rows], type_=ARRAY(carried(n))), ARRAY(carried(n)))
        for n in names
    ]
    derived = (
        func.unnest(*arrays).table_valued(*(column(n, carried(n)) for n in names)).render_derived()
    )
    return select(
        *(
            cast(derived.c[n], table.c[n].type).label(n) if n in as_text else derived.c[n]
            for n in names
        )
    )


def _array_literal(values: Sequence[float]) -> str:
    """A float list as a PostgreSQL array literal; ``repr`` round-trips a float exactly."""
    return "{" + ",".join(repr(float(v)) for v in values) + "}"


def save_batch(
    *,
    engine: Engine,
    pairs: Sequence[tuple[CleanArticle, Prediction]],
    policy: ReviewPolicy,
    rng: random.Random,
    model_labels: Mapping[str, Sequence[str]] | None = None,
) -> WriteResult:
    """Store articles, predictions and review picks in one transaction. ``model_labels``
    (version → label order) is recorded once per version so readers can name each
    probability."""
    if not pairs:
        return WriteResult([], 0, 0)
    by_id: dict[str, list[tuple[CleanArticle, Prediction]]] = {}
    for art, pred in pairs:
        by_id.setdefault(art.id, []).append((art, pred))

    def text_of(a: CleanArticle) -> tuple[str, str]:
        return (a.title, a.body)

    # The row offered for each id is its first message; it carries how many messages of
    # the batch have that same text (each one is a delivery of the same article).
    article_rows = []
    for msgs in by_id.values():
        art = msgs[0][0]
        article_rows.append(
            {
                "id": art.id,
                "title": art.title,
                "body": art.body,
                "source": art.source,
                "url": art.url,
                "language": art.language,
                "published_at": art.published_at,
                "received_at": art.received_at,
                "enqueued_at": art.enqueued_at,
                "kafka_topic": art.topic,
                "kafka_partition": art.partition if art.partition >= 0 else None,
                "kafka_offset": art.offset if art.offset >= 0 else None,
                "deliveries": sum(1 for m, _ in msgs if text_of(m) == text_of(art)),
            }
        )
    with engine.begin() as conn:
        if model_labels:
            conn.execute(
                insert(ModelLabelsRow).on_conflict_do_nothing(index_elements=["model_version"]),
                [{"model_version": v, "labels": list(ls)} for v, ls in model_labels.items()],
            )
        # Same id and same text as the stored row: a delivery is counted. Another text: the
        # row is not touched, so the id is not returned and its stored text is read back.
        stmt = insert(ArticleRow).from_select(
            list(article_rows[0]), _unnest_rows(ArticleRow.__table__, article_rows)
        )
        matched = set(
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["id"],
                    set_={"deliveries": ArticleRow.deliveries + stmt.excluded.deliveries},
                    where=(ArticleRow.title == stmt.excluded.title)
                    & (ArticleRow.body == stmt.excluded.body),
                ).returning(ArticleRow.id)
            ).scalars()
        )
        stored_text = {i: text_of(msgs[0][0]) for i, msgs in by_id.items() if i in matched}
        others = [i for i in by_id if i not in matched]
        if others:
            stored_text.update(
                (r.id, (r.title, r.body))
                for r in conn.execute(
                    select(ArticleRow.id, ArticleRow.title, ArticleRow.body).where(
                        ArticleRow.id.in_(others)
                    )
                )
            )
        # Every message is judged against the stored text: the same text is the article
        # (one prediction per model version), any other text is a conflict, kept.
        unique: dict[tuple[str, str], tuple[CleanArticle, Prediction]] = {}
        conflicting: list[CleanArticle] = []
        extra_deliveries: dict[str, int] = {}
        for i, msgs in by_id.items():
            for art, pred in msgs:
                if text_of(art) != stored_text[i]:
                    conflicting.append(art)
                    continue
                unique.setdefault((i, pred.model_version), (art, pred))
                if i not in matched:  # the stored text arrived again behind a conflict
                    extra_deliveries[i] = extra_deliveries.get(i, 0) + 1
        for i, k in extra_deliveries.items():
            conn.execute(
                update(ArticleRow)
                .where(ArticleRow.id == i)
                .values(deliveries=ArticleRow.deliveries + k)
            )
        if conflicting:
            conn.execute(
                insert(ArticleConflictRow),
                [
                    {
                        "article_id": a.id,
                        "title": a.title,
                        "body": a.body,
                        "kafka_topic": a.topic,
                        "kafka_partition": a.partition if a.partition >= 0 else None,
                        "kafka_offset": a.offset if a.offset >= 0 else None,
                        "received_at": a.received_at,
                    }
                    for a in conflicting
                ],
            )
        pred_rows = [
            {
                "article_id": p.article_id,
                "model_version": p.model_version,
                "topic": p.topic,
                "confidence": p.confidence,
                "margin": p.margin,
                "probabilities": _array_literal(p.probabilities),
                "latency_ms": p.latency_ms,
                "received_at": p.received_at,
                "predicted_at": p.predicted_at,
            }
            for _, p in unique.values()
        ]
        inserted = (
            conn.execute(
                insert(PredictionRow)
                .from_select(
                    list(pred_rows[0]),
                    _unnest_rows(PredictionRow.__table__, pred_rows, as_text=["probabilities"]),
                )
                .on_conflict_do_nothing(constraint="uq_prediction_article_version")
                .returning(PredictionRow.id, PredictionRow.article_id, PredictionRow.model_version)
            ).all()
            if pred_rows
            else []
        )
        new = {(r.article_id, r.model_version): int(r.id) for r in inserted}
        stored = [p for (_, p) in unique.values() if (p.article_id, p.model_version) in new]
        title_of = {(a.id, p.model_version): a.title for a, p in unique.values()}
        candidates = [
            Candidate(
                new[(p.article_id, p.model_version)],
                p.topic,
                p.margin,
                title_of[(p.article_id, p.model_version)],
            )
            for p in stored
        ]
        if policy.budget is not None:
            picks = _fill_budgeted(conn, candidates, policy, policy.budget)
        else:
            picks = select_for_review(
                candidates,
                uniform_share=policy.uniform_share,
                uncertain_share=policy.uncertain_share,
                topic_cap=policy.topic_cap,
                rng=rng,
            )
        if picks:
            article_of = {new[(p.article_id, p.model_version)]: p.article_id for p in stored}
            conn.execute(
                insert(ReviewItemRow).on_conflict_do_nothing(
                    constraint="uq_review_prediction_round"
                ),
                [
                    {
                        "prediction_id": k.key,
                        "article_id": article_of[k.key],
                        "reason": k.reason,
                        "priority": k.priority,
                        "round": 1,
                        "status": "pending",
                    }
                    for k in picks
                ],
            )
    conflicts = len(conflicting)
    return WriteResult(stored, len(pairs) - len(stored) - conflicts, len(picks), conflicts)


def _fill_budgeted(
    conn: Connection,
    candidates: Sequence[Candidate],
    policy: ReviewPolicy,
    budget: Budget,
) -> list[Pick]:
    """Expire stale items, then choose which candidates enter the queue, mark the items they
    replace and renumber the claim order, all under one advisory lock held to the end of the
    transaction: another worker's fill sees this one's rows, so the queue stays within the
    budget across workers. Reviewers only take items out (a labelled item's second review
    takes its place), so they cannot push it above either."""
    if not candidates:
        return []
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": REVIEW_QUEUE_LOCK})
    claim_s = policy.claim_minutes * 60
    expire_stale_reviews(conn, older_than_s=policy.expire_hours * 3600, claim_s=claim_s)
    rows = conn.execute(
        text(
            "SELECT r.id, r.prediction_id, r.reason, r.priority, r.round, r.skips, p.margin, "
            "p.topic, a.title, (r.assigned_to IS NOT NULL "
            "AND r.assigned_at > now() - make_interval(secs => :s)) AS held "
            "FROM review_items r JOIN predictions p ON p.id = r.prediction_id "
            "JOIN articles a ON a.id = r.article_id WHERE r.status = 'pending' "
            # onboarding reviews (an admin's request for a new topic) are outside the budget:
            # never replaced, renumbered or counted here
            "AND r.reason <> 'onboarding'"
        ),
        {"s": claim_s},
    ).all()
    queued = [
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
    fill = fill_queue(candidates, queued, budget)
    picks = fill.picks
    movable_now = "(assigned_to IS NULL OR assigned_at <= now() - make_interval(secs => :s))"
    if fill.replaced:
        # A reviewer may have claimed one since it was read: that one stays, and as many
        # new picks are dropped (the last: the highest margins), so the budget holds.
        done = conn.execute(
            text(
                "UPDATE review_items SET status = 'replaced' WHERE id = ANY(:ids) "
                f"AND status = 'pending' AND round = 1 AND {movable_now} RETURNING id"
            ),
            {"ids": fill.replaced, "s": claim_s},
        ).all()
        short = len(fill.replaced) - len(done)
        if short:
            picks = picks[: max(0, len(picks) - short)]
    if fill.reorder:
        conn.execute(
            text(
                "UPDATE review_items r SET priority = o.priority "
                "FROM unnest(CAST(:ids AS bigint[]), CAST(:prios AS integer[])) "
                f"AS o(id, priority) WHERE r.id = o.id AND r.status = 'pending' AND {movable_now}"
            ),
            {"ids": list(fill.reorder), "prios": list(fill.reorder.values()), "s": claim_s},
        )
    return picks
