"""The prediction sink: one bulk, idempotent transaction per batch.

``PredictionSink.add`` only buffers; :meth:`PredictionSink.write` alone touches Postgres.
A redelivered article changes nothing: articles and predictions are inserted with
``ON CONFLICT DO NOTHING`` on (article id) and (article id, model version), and only
predictions that are new in this transaction are sampled for review and returned (so the
caller publishes each prediction once to the ``predictions`` topic).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping, Sequence

from sqlalchemy import Engine
from sqlalchemy.dialects.postgresql import insert

from pipeline.core.db.models import ArticleRow, ModelLabelsRow, PredictionRow, ReviewItemRow
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
    duplicates: int
    review_items: int


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
    unique: dict[tuple[str, str], tuple[CleanArticle, Prediction]] = {}
    for art, pred in pairs:
        unique.setdefault((art.id, pred.model_version), (art, pred))
    if not unique:
        return WriteResult([], 0, 0)
    article_rows = {
        art.id: {
            "id": art.id,
            "title": art.title,
            "body": art.body,
            "source": art.source,
            "url": art.url,
            "language": art.language,
            "published_at": art.published_at,
            "received_at": art.received_at,
            "enqueued_at": art.enqueued_at,
        }
        for art, _ in unique.values()
    }
    pred_rows = [
        {
            "article_id": p.article_id,
            "model_version": p.model_version,
            "topic": p.topic,
            "confidence": p.confidence,
            "margin": p.margin,
            "probabilities": list(p.probabilities),
            "latency_ms": p.latency_ms,
            "received_at": p.received_at,
            "predicted_at": p.predicted_at,
        }
        for _, p in unique.values()
    ]
    with engine.begin() as conn:
        if model_labels:
            conn.execute(
                insert(ModelLabelsRow).on_conflict_do_nothing(index_elements=["model_version"]),
                [{"model_version": v, "labels": list(ls)} for v, ls in model_labels.items()],
            )
        conn.execute(
            insert(ArticleRow).on_conflict_do_nothing(index_elements=["id"]),
            list(article_rows.values()),
        )
        inserted = conn.execute(
            insert(PredictionRow)
            .on_conflict_do_nothing(constraint="uq_prediction_article_version")
            .returning(PredictionRow.id, PredictionRow.article_id, PredictionRow.model_version),
            pred_rows,
        ).all()
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
            by_id = {new[(p.article_id, p.model_version)]: p.article_id for p in stored}
            conn.execute(
                insert(ReviewItemRow).on_conflict_do_nothing(
                    constraint="uq_review_prediction_round"
                ),
                [
                    {
                        "prediction_id": k.key,
                        "article_id": by_id[k.key],
                        "reason": k.reason,
                        "priority": k.priority,
                        "round": 1,
                        "status": "pending",
                    }
                    for k in picks
                ],
            )
    return WriteResult(stored, len(pairs) - len(stored), len(picks))
