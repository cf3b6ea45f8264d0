"""The prediction sink: one bulk, idempotent transaction per batch.

``PredictionSink.add`` only buffers; :meth:`PredictionSink.write` alone touches Postgres.
A redelivered article changes nothing: articles and predictions are inserted with
``ON CONFLICT DO NOTHING`` on (article id) and (article id, model version), and only
predictions that are new in this transaction are sampled for review and returned (so the
caller publishes each prediction once to the ``predictions`` topic).

Id policy: the first message stored under an id owns it. A later message with the same id
and the same title and body is a redelivery (counted in ``duplicates``); one with a different
title or body is a *conflict*: it is kept in ``article_conflicts`` with where it came from,
counted, and gets no prediction (the stored article's prediction is not about its text).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import (
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
from pipeline.core.records import CleanArticle, Prediction
from pipeline.sampling import Candidate, select_for_review


@dataclasses.dataclass(frozen=True)
class ReviewPolicy:
    uniform_share: float = 0.02
    uncertain_share: float = 0.05
    topic_cap: int = 3


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
        picks = select_for_review(
            [Candidate(new[(p.article_id, p.model_version)], p.topic, p.margin) for p in stored],
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
