"""Turn a batch of clean articles into predictions. Pure apart from the model call."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime

import numpy as np
import numpy.typing as npt

from pipeline.core.records import CleanArticle, Prediction
from pipeline.core.runtime import Classifier


def classify_batch(
    articles: Sequence[CleanArticle], classifier: Classifier, *, now: Callable[[], datetime]
) -> tuple[list[Prediction], float]:
    """Returns the predictions (input order) and the inference time in ms."""
    preds, infer_ms, _ = classify_embedded(articles, classifier, now=now, embed=False)
    return preds, infer_ms


def classify_embedded(
    articles: Sequence[CleanArticle],
    classifier: Classifier,
    *,
    now: Callable[[], datetime],
    embed: bool = True,
) -> tuple[list[Prediction], float, npt.NDArray[np.float32] | None]:
    """:func:`classify_batch` plus the articles' embeddings (rows in input order) from the
    same pass, when ``embed`` and the graph has them; None otherwise."""
    if not articles:
        return [], 0.0, None
    start = time.perf_counter()
    scored, vectors = classifier.predict_embedded([a.text for a in articles], embed=embed)
    infer_ms = (time.perf_counter() - start) * 1000.0
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
    return preds, infer_ms, vectors
