"""Several topics in one retraining and a split, without a database: which topics a plan keeps
after the gate decided each one, a split's parts named, and what a waiting split says."""

from __future__ import annotations

import pytest

from monitoring.topics.onboarding import TopicError
from monitoring.topics.plan import RetrainPlan
from monitoring.topics.split import PartNeed, SplitProgress, check_parts

SPLIT = RetrainPlan(
    new_topics=("Arts", "Health", "Politics", "Conflict"),
    retire={"World": None, "Sci/Tech": "Business"},
    splits={"World": ("Politics", "Conflict")},
)


def test_a_topic_that_needs_labels_does_not_hold_back_the_others() -> None:
    plan = RetrainPlan(("Arts", "Health"), {}, {})
    narrower = plan.narrowed({"Arts": "promote", "Health": "needs_labels"})
    assert narrower == RetrainPlan(("Arts",), {}, {})
    assert plan.narrowed({"Arts": "refuse", "Health": "promote"}) == RetrainPlan(
        ("Health",), {}, {}
    )


def test_nothing_to_narrow() -> None:
    plan = RetrainPlan(("Arts", "Health"), {}, {})
    assert plan.narrowed({"Arts": "promote", "Health": "promote"}) is None  # same plan
    assert plan.narrowed({"Arts": "needs_labels", "Health": "refuse"}) is None  # nothing left
    # a removal still goes ahead without the new topics
    removal = RetrainPlan(("Arts",), {"Sports": None}, {})
    assert removal.narrowed({"Arts": "needs_labels"}) == RetrainPlan((), {"Sports": None}, {})


def test_a_split_goes_only_with_every_part() -> None:
    decisions = {"Arts": "promote", "Health": "promote", "Politics": "promote"}
    narrower = SPLIT.narrowed({**decisions, "Conflict": "needs_labels"})
    assert narrower == RetrainPlan(("Arts", "Health"), {"Sci/Tech": "Business"}, {})
    whole = SPLIT.narrowed({**decisions, "Conflict": "promote", "Health": "refuse"})
    assert whole == RetrainPlan(
        ("Arts", "Politics", "Conflict"),
        {"World": None, "Sci/Tech": "Business"},
        {"World": ("Politics", "Conflict")},
    )


def test_plan_reason() -> None:
    assert SPLIT.reason() == (
        "new topics with the reviewed examples they need: Arts, Health; "
        "split World into Politics, Conflict; topics to merge Sci/Tech into Business"
    )


@pytest.mark.parametrize(
    ("parts", "why"),
    [
        (["Politics"], "at least two different parts"),
        (["Politics", " politics "], "at least two different parts"),
        ([], r"got none"),
        ([f"P{i}" for i in range(9)], "at most 8 parts"),
    ],
)
def test_bad_parts(parts: list[str], why: str) -> None:
    with pytest.raises(TopicError, match=why):
        check_parts(parts, "World")


def test_parts_cleaned_in_order() -> None:
    assert check_parts([" Politics", "Conflict", "POLITICS"], "World") == ["Politics", "Conflict"]


def test_what_a_waiting_split_says() -> None:
    parts = [PartNeed("Politics", 20, 32), PartNeed("Conflict", 40, 32)]
    waiting = SplitProgress("World", parts, pending=0)
    assert not waiting.ready
    said = waiting.text()
    assert "'Politics' needs 12 more (20 of 32)" in said and "Conflict' needs" not in said
    assert "cancel the split (`newsflow topics cancel World`)" in said
    asked = SplitProgress("World", parts, pending=5).text()
    assert asked.endswith("5 relabelling requests waiting for review")
    ready = SplitProgress("World", [PartNeed("Politics", 32, 32), parts[1]], pending=0)
    assert ready.ready and "ready" in ready.text()


def test_each_new_topic_is_balanced_on_its_own_count() -> None:
    from pipeline.core.datasets import LabelledText
    from retraining.expand import MAX_REPEAT, new_class_repeats

    rows = [LabelledText(str(i), "t", "b", "Arts" if i < 40 else "Health") for i in range(48)]
    repeats = new_class_repeats(rows, ["Arts", "Health", "Empty"], base_per_class=120)
    assert repeats == {"Arts": 3, "Health": 15, "Empty": MAX_REPEAT}
