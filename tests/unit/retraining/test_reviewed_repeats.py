"""Automatic retraining repeats the recent reviewed rows so that a change of source, seen in
a day or two of reviews, weighs in the training rows."""

from __future__ import annotations

import pytest

from pipeline.core.datasets import LabelledText
from retraining.reviewed import MAX_RECENT_REPEAT, recent_repeats, repeat_recent


def _rows(prefix: str, n: int) -> list[LabelledText]:
    return [LabelledText(f"{prefix}{i}", f"title {prefix}{i}", "b", "World") for i in range(n)]


def test_recent_rows_are_repeated_to_their_share() -> None:
    base, recent = _rows("b", 4600), _rows("r", 400)
    train, times = repeat_recent([*base, *recent], {r.id for r in recent}, 0.2)
    assert times == 3 and len(train) == 5000 + 2 * 400
    share = sum(1 for r in train if r.id.startswith("r")) / len(train)
    assert share >= 0.2 and share == pytest.approx(1200 / 5800)


def test_repeats_are_bounded_and_switched_off_by_a_zero_share() -> None:
    assert recent_repeats(100_000, 10, 0.5) == MAX_RECENT_REPEAT  # a handful, not learnt by heart
    assert recent_repeats(1000, 900, 0.2) == 1  # already most of the rows
    assert recent_repeats(1000, 0, 0.2) == 1 and recent_repeats(1000, 100, 0.0) == 1
    rows = _rows("r", 10)
    assert repeat_recent(rows, set(), 0.2) == (rows, 1)
    assert repeat_recent(rows, {"r1"}, 0.0) == (rows, 1)
    with pytest.raises(ValueError, match="share"):
        recent_repeats(1000, 100, 1.0)
