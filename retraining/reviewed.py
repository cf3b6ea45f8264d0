"""Reviewers' labels as training rows: what retraining adds to the base labelled set
(never the model's own predictions)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine

from pipeline.core.datasets import LabelledText
from pipeline.core.db import reviews


def load_reviewed_rows(*, engine: Engine, labels: Sequence[str]) -> list[LabelledText]:
    """Articles whose review gave one of ``labels`` (simulated labels included), one row per
    article with its latest label, ordered by article id."""
    return [
        LabelledText(r.article_id, r.title, r.body, r.label)
        for r in reviews.reviewed_articles(engine, labels)
    ]
