"""The new-topic gate's three-way decision and the old classes' interval check, on known
counts (no model: the gate is pure)."""

from __future__ import annotations

import math
import random

import pytest

from pipeline.core.stats import wilson_interval
from retraining.errors import TrainingError
from retraining.topic_gate import (
    MAX_MORE_LABELS,
    Interval,
    decide_new_topic,
    f1_interval,
    labels_to_decide,
    old_classes_change,
    topic_counts,
)


def test_the_issue_case_asks_for_labels_instead_of_refusing() -> None:
    # 14 held-out examples, 7 found, nothing else taken for the topic: F1 0.667 < 0.8, but
    # on 14 examples its interval reaches above 0.8, so the gate must not refuse
    g = decide_new_topic("Arts", tp=7, fn=7, fp=0, negatives=800, threshold=0.8, held_share=0.3)
    assert round(g.f1.estimate, 3) == 0.667
    assert g.f1.low < 0.8 <= g.f1.high
    assert g.decision == "needs_labels"
    # more = ceil(n0 * (h / |F1 - t|)^2) - n0 held-out examples, / held_share labels
    held = math.ceil(14 * (g.f1.half_width / abs(g.f1.estimate - 0.8)) ** 2) - 14
    assert g.more_labels == math.ceil(held / 0.3) > 0
    assert "needs" in g.reason and "more labels" in g.reason
    assert g.to_json()["decision"] == "needs_labels" and g.to_json()["more_labels"] == g.more_labels


@pytest.mark.parametrize(
    ("tp", "fn", "fp", "decision"),
    [
        (14, 0, 0, "promote"),  # the far-away kind: all 14 found, nothing else taken
        (13, 1, 0, "promote"),
        (30, 2, 1, "promote"),
        (3, 11, 0, "refuse"),  # F1 0.35: even the upper bound is far below 0.8
        (20, 20, 20, "refuse"),
        (12, 2, 1, "needs_labels"),  # F1 0.89, but the lower bound is below 0.8
    ],
)
def test_three_way_decision_on_known_counts(tp: int, fn: int, fp: int, decision: str) -> None:
    g = decide_new_topic("T", tp=tp, fn=fn, fp=fp, negatives=800, threshold=0.8)
    assert g.decision == decision, g.reason
    assert g.positives == tp + fn
    if decision == "promote":
        assert g.f1.low >= 0.8 and g.more_labels == 0
    elif decision == "refuse":
        assert g.f1.high < 0.8 and g.more_labels == 0
    else:
        assert g.f1.low < 0.8 <= g.f1.high and g.more_labels >= 1


def test_precision_and_recall_carry_wilson_intervals_and_the_bootstrap_is_seeded() -> None:
    g = decide_new_topic("T", tp=9, fn=5, fp=4, negatives=800, threshold=0.8)
    assert (g.recall.low, g.recall.high) == wilson_interval(9, 14)
    assert (g.precision.low, g.precision.high) == wilson_interval(9, 13)
    assert g.recall.estimate == 9 / 14 and g.precision.estimate == 9 / 13
    again = decide_new_topic("T", tp=9, fn=5, fp=4, negatives=800, threshold=0.8)
    assert again.f1 == g.f1  # same seed, same interval
    other = f1_interval(tp=9, fn=5, fp=4, negatives=800, seed=99)
    assert other.estimate == g.f1.estimate
    assert g.f1.low <= g.f1.estimate <= g.f1.high


def test_more_held_out_examples_narrow_the_interval_until_it_decides() -> None:
    widths = [
        f1_interval(tp=n * 9 // 10, fn=n - n * 9 // 10, fp=0, negatives=800).half_width
        for n in (10, 40, 160)
    ]
    assert widths[0] > widths[1] > widths[2]
    small = decide_new_topic("T", tp=9, fn=1, fp=1, negatives=800, threshold=0.8)
    large = decide_new_topic("T", tp=144, fn=16, fp=16, negatives=800, threshold=0.8)
    assert small.decision == "needs_labels" and large.decision == "promote"


def test_labels_to_decide_formula() -> None:
    f1 = Interval(0.7, 0.5, 0.9)  # half-width 0.2, 0.1 from the threshold: 4x the examples
    assert labels_to_decide(f1, positives=10, threshold=0.8) == 30
    assert labels_to_decide(Interval(0.8, 0.7, 0.9), positives=10, threshold=0.8) == (
        MAX_MORE_LABELS
    )
    assert labels_to_decide(f1, positives=0, threshold=0.8) == MAX_MORE_LABELS


def test_no_held_out_example_cannot_decide() -> None:
    g = decide_new_topic("T", tp=0, fn=0, fp=0, negatives=800, threshold=0.8)
    assert g.decision == "needs_labels" and (g.f1.low, g.f1.high) == (0.0, 1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tp": -1, "fn": 1, "fp": 0, "negatives": 10}, "bad counts"),
        ({"tp": 1, "fn": 1, "fp": 11, "negatives": 10}, "bad counts"),
        ({"tp": 1, "fn": 1, "fp": 0, "negatives": 10, "resamples": 200}, "1000 resamples"),
        ({"tp": 1, "fn": 1, "fp": 0, "negatives": 10, "held_share": 0.0}, "held_share"),
        ({"tp": 1, "fn": 1, "fp": 0, "negatives": 10, "threshold": 1.5}, "threshold"),
    ],
)
def test_bad_counts_are_refused(kwargs: dict[str, float], message: str) -> None:
    args = {"threshold": 0.8, **kwargs}
    with pytest.raises(TrainingError, match=message):
        decide_new_topic("T", **args)  # type: ignore[arg-type]


def test_topic_counts() -> None:
    truth = ["A", "A", "A", "B", "B", "C"]
    pred = ["A", "B", "A", "A", "B", "C"]
    assert topic_counts(truth, pred, "A") == (2, 1, 1, 3)
    with pytest.raises(TrainingError, match="predictions"):
        topic_counts(truth, pred[:-1], "A")


def _rows(n: int, accuracy: float, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    truth = [rng.choice("abcd") for _ in range(n)]
    return truth, [t if rng.random() < accuracy else rng.choice("abcd") for t in truth]


def test_old_classes_change_decides_on_its_interval() -> None:
    truth, champion = _rows(2000, 0.92, 1)
    same = old_classes_change(truth, champion, champion, classes=list("abcd"))
    assert same.decision == "pass" and same.change.estimate == 0.0
    assert same.rows == 2000 and same.distinguishable

    rng = random.Random(2)
    worse = [rng.choice("abcd") if rng.random() < 0.1 else p for p in champion]
    loss = old_classes_change(truth, champion, worse, classes=list("abcd"))
    assert loss.change.estimate < -0.05 and loss.decision == "refuse"
    assert "a loss above 0.01" in loss.reason

    # 100 rows where the two differ on 4 (2 fixed, 2 broken): no change, but on so few rows
    # a 1-point loss is not told from noise; it says how many rows would
    few_truth, few_champion = truth[:100], list(champion[:100])
    noisy = list(few_champion)
    wrong = [i for i in range(100) if few_champion[i] != few_truth[i]][:2]
    right = [i for i in range(100) if few_champion[i] == few_truth[i]][:2]
    for i in wrong:
        noisy[i] = few_truth[i]
    for i in right:
        noisy[i] = "b" if few_truth[i] != "b" else "c"
    few = old_classes_change(few_truth, few_champion, noisy, classes=list("abcd"))
    assert few.decision == "undecided" and not few.distinguishable
    assert few.rows_needed > few.rows and "rows would" in few.reason
    assert few.to_json()["interval_width"] == round(2 * few.change.half_width, 4)


def test_old_classes_change_counts_a_new_topic_prediction_as_a_miss() -> None:
    truth = ["a", "b"] * 500
    champion = list(truth)
    challenger = ["New" if i % 10 == 0 else t for i, t in enumerate(truth)]
    gate = old_classes_change(truth, champion, challenger, classes=["a", "b"])
    assert gate.challenger < gate.champion == 1.0
    with pytest.raises(TrainingError, match="no rows"):
        old_classes_change(["x"], ["x"], ["x"], classes=["a"])


def test_at_a_balanced_share_the_decision_does_not_depend_on_how_many_old_rows_sit_beside() -> None:
    """Issue 24: 10 held-out posts, all found, and 0.4 % of old-topic rows taken for the new
    topic. As seen, the F1 falls with every old row added beside the 10 (needs labels at
    1,000, refused at 7,600); at the share a topic has in a balanced split it is the same."""
    seen_1000 = decide_new_topic("R", tp=10, fn=0, fp=4, negatives=1000, threshold=0.8)
    seen_7600 = decide_new_topic("R", tp=10, fn=0, fp=30, negatives=7600, threshold=0.8)
    assert (seen_1000.decision, seen_7600.decision) == ("needs_labels", "refuse")
    at = [
        decide_new_topic("R", tp=10, fn=0, fp=fp, negatives=n, threshold=0.8, prevalence=0.2)
        for fp, n in ((4, 1000), (30, 7600))
    ]
    assert [g.decision for g in at] == ["promote", "promote"]
    assert abs(at[0].f1.estimate - at[1].f1.estimate) < 0.005
    assert at[0].prevalence == 0.2 and "at a 20% share" in at[0].reason
    assert at[0].to_json()["prevalence"] == 0.2


def test_all_found_still_leaves_recall_uncertain() -> None:
    """10 of 10 found: the interval reaches well below 1 (a binomial redraw at 10/10 would
    not), so 3 of 10 found with many false positives is refused and 6 of 10 undecided."""
    g = decide_new_topic("R", tp=10, fn=0, fp=0, negatives=1000, threshold=0.8, prevalence=0.2)
    assert g.decision == "promote" and g.f1.low < 0.95
    weak = decide_new_topic("R", tp=6, fn=4, fp=40, negatives=1000, threshold=0.8, prevalence=0.2)
    bad = decide_new_topic("R", tp=3, fn=7, fp=40, negatives=1000, threshold=0.8, prevalence=0.2)
    assert (weak.decision, bad.decision) == ("needs_labels", "refuse")
    assert weak.more_labels > 0


def test_prevalence_must_be_a_share() -> None:
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(TrainingError, match="prevalence"):
            decide_new_topic("R", tp=5, fn=5, fp=1, negatives=100, threshold=0.8, prevalence=bad)
