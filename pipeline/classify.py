"""Turn a batch of clean articles into predictions. Pure apart from the model call."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from pipeline.core.records import CleanArticle, Prediction
from pipeline.core.runtime import Classifier, timed_predict


def classify_batch(
    articles: Sequence[CleanArticle], classifier: Classifier, *, now: Callable[[], datetime]
) -> tuple[list[Prediction], float]:
    """Returns the predictions (input order) and the inference time in ms."""
    if not articles:
        return [], 0.0
    scored, infer_ms = timed_predict(classifier, [a.text for a in articles])
    done = now()
    preds = [
        Prediction(
            article_id=a.id,
            model_version=classifier.version,
            topic=s.topic,
            confidence=s.confidence,
            margin=s.margin,
            probabilities=s.probabilities,
            latency_ms=(done - a.received_at).total_seconds() * 1000.0,
            received_at=a.received_at,
            predicted_at=done,
        )
        for a, s in zip(articles, scored, strict=True)
    ]
    return preds, infer_ms
