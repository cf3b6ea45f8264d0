"""Reviewers' labels as training rows: what retraining adds to the base labelled set
(never the model's own predictions)."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Collection, Sequence

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


@dataclasses.dataclass(frozen=True)
class ReviewedSplit:
    """Reviewed rows divided for one retraining: ``training`` rows join the base labelled set;
    ``held_out`` rows are scored by the gate (and, being never trained on, by the live check).
    ``uniform`` counts the held-out rows that came from the uniform sample."""

    training: list[LabelledText]
    held_out: list[LabelledText]
    uniform: int


MAX_RECENT_REPEAT = 5  # a handful of recent labels repeated more would be learnt by heart


def recent_repeats(
    total: int, recent: int, share: float, max_repeat: int = MAX_RECENT_REPEAT
) -> int:
    """How many times each of ``recent`` training rows (of ``total``) appears so that they make
    up at least ``share`` of the rows, at most ``max_repeat`` and at least once. Pure.

    A change of source shows first in a day or two of reviews; among thousands of base rows
    and weeks of older reviews those labels weigh little, and one epoch barely moves the model
    toward them.

    Example:
        >>> recent_repeats(5000, 400, 0.2)
        3
        >>> recent_repeats(5000, 0, 0.2), recent_repeats(5000, 400, 0.0)
        (1, 1)
    """
    if not 0 < recent <= total or share <= 0:
        return 1
    if not share < 1:
        raise ValueError(f"share must lie in [0, 1), got {share!r}")
    need = share * (total - recent) / (recent * (1 - share))
    return max(1, min(max_repeat, math.ceil(need - 1e-9)))


def repeat_recent(
    train: Sequence[LabelledText], recent_ids: Collection[str], share: float
) -> tuple[list[LabelledText], int]:
    """``train`` with its rows in ``recent_ids`` repeated (:func:`recent_repeats`), and the
    factor used. Repeats go in after the split (the split drops duplicate texts). Pure."""
    recent = [r for r in train if r.id in recent_ids]
    times = recent_repeats(len(train), len(recent), share)
    return [*train, *(r for _ in range(times - 1) for r in recent)], times


def split_reviewed(
    rows: Sequence[LabelledText],
    *,
    uniform_ids: Collection[str],
    seed: int,
    train_share: float = 0.7,
) -> ReviewedSplit:
    """Uniformly sampled reviews are never trained on: they are the unbiased accuracy estimate
    that the gate and the live check before promotion need. The other reviewed rows
    (uncertainty sampling, onboarding requests) are shuffled with ``seed``; ``train_share``
    of them train, the rest are held out too.

    Example:
        >>> rows = [LabelledText(str(i), "t", "b", "World") for i in range(10)]
        >>> s = split_reviewed(rows, uniform_ids={"0", "1"}, seed=1)
        >>> (len(s.training), len(s.held_out), s.uniform)
        (5, 5, 2)
    """
    if not 0.0 <= train_share <= 1.0:
        raise ValueError(f"train_share must be within [0, 1], got {train_share!r}")
    uniform = [r for r in rows if r.id in uniform_ids]
    others = [r for r in rows if r.id not in uniform_ids]
    random.Random(seed).shuffle(others)
    cut = int(len(others) * train_share)
    return ReviewedSplit(others[:cut], [*others[cut:], *uniform], len(uniform))
