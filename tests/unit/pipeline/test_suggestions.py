"""The rules of provisional topic suggestions: prototypes, matching, the per-topic cap and
when a topic stops being favoured (no database, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.core.db.suggestions import Prototype, TopicAnswers
from pipeline.suggestions import (
    NO_BUDGET_CAP,
    SuggestionHolder,
    SuggestionSet,
    SuggestPolicy,
    _stale,
    acceptance_upper,
    favoured,
    prototype,
    topic_cap,
)


def unit(*rows: list[float]) -> np.ndarray:
    a = np.array(rows, dtype=np.float32)
    out: np.ndarray = a / np.linalg.norm(a, axis=1, keepdims=True)
    return out


def test_prototype_is_the_unit_mean() -> None:
    p = prototype(unit([1, 0, 0], [0, 1, 0]))
    np.testing.assert_allclose(p, [2**-0.5, 2**-0.5, 0], atol=1e-6)
    assert p.dtype == np.float32


@pytest.mark.parametrize("rows", [np.zeros((0, 3)), unit([1, 0], [-1, 0])])
def test_prototype_refuses_no_direction(rows: np.ndarray) -> None:
    with pytest.raises(ValueError):
        prototype(rows.astype(np.float32))


def test_match_takes_each_items_best_topic_over_the_threshold_best_first() -> None:
    found = SuggestionSet("v1", ("A", "B"), unit([1, 0, 0], [0, 1, 0]), min_cosine=0.8)
    items = unit([0.1, 1, 0], [1, 0, 0], [0, 0, 1], [1, 1, 0], [0.3, 1, 0])
    got = found.match(items)
    assert [(m.row, m.topic) for m in got] == [(1, "A"), (0, "B"), (4, "B")]
    assert got[0].cosine == pytest.approx(1.0)
    assert got[1].cosine > got[2].cosine >= 0.8


def test_match_with_nothing_to_compare() -> None:
    found = SuggestionSet("v1", ("A",), unit([1, 0, 0]), min_cosine=0.5)
    assert found.match(None) == []
    assert found.match(np.zeros((0, 3), dtype=np.float32)) == []
    assert found.match(unit([1, 0])) == []  # another space
    empty = SuggestionSet("v1", (), np.zeros((0, 0), dtype=np.float32), min_cosine=0.5)
    assert empty.match(unit([1, 0, 0])) == []


def test_cap_is_a_share_of_the_review_budget() -> None:
    assert topic_cap(60, 1.0, 0.5) == 30
    assert topic_cap(60, 2.0, 0.25) == 30
    assert topic_cap(1, 1.0, 0.1) == 1  # never 0 while there is a budget
    assert topic_cap(0, 1.0, 0.5) == NO_BUDGET_CAP


def test_acceptance_upper_bound() -> None:
    assert acceptance_upper(0, 0) == 1.0
    assert acceptance_upper(0, 20) == pytest.approx(0.161, abs=0.001)
    assert acceptance_upper(10, 10) == pytest.approx(1.0)
    assert 0.5 < acceptance_upper(5, 10) < 0.82


def test_a_topic_whose_suggestions_are_rejected_stops_being_favoured() -> None:
    policy = SuggestPolicy(min_answered=10, min_acceptance=0.3)
    assert favoured(TopicAnswers("A", pending=5, answered=9, accepted=0), policy)  # too few
    assert not favoured(TopicAnswers("A", pending=5, answered=10, accepted=0), policy)
    assert favoured(TopicAnswers("A", pending=0, answered=10, accepted=1), policy)  # may be 0.46
    assert not favoured(TopicAnswers("A", pending=0, answered=40, accepted=4), policy)
    assert favoured(TopicAnswers("A", pending=0, answered=40, accepted=30), policy)


def test_policy_refuses_bad_values() -> None:
    with pytest.raises(ValueError, match="min_cosine"):
        SuggestPolicy(min_cosine=1.5)
    with pytest.raises(ValueError):
        SuggestPolicy(cap=-1)


def test_a_prototype_is_computed_again_once_the_topic_gained_labels() -> None:
    stored = Prototype("A", "v1", (1.0, 0.0), examples=40, labelled=40)
    assert _stale(None, 0)
    assert not _stale(stored, 43)
    assert _stale(stored, 44)
    few = Prototype("A", "v1", (1.0, 0.0), examples=6, labelled=0)
    assert not _stale(few, 3) and _stale(few, 4)


def test_a_model_without_embeddings_is_reported_once_per_version(
    caplog: pytest.LogCaptureFixture,
) -> None:
    holder = SuggestionHolder()
    with caplog.at_level("WARNING", logger="newsflow.suggestions"):
        for _ in range(3):
            holder.warn_once("v1", "model v1 has no embedding output")
        holder.warn_once("v2", "model v2 has no embedding output")
    assert [r.getMessage() for r in caplog.records] == [
        "model v1 has no embedding output",
        "model v2 has no embedding output",
    ]
