"""The live check's decision and its interval, on known counts (pure: no models, no
database; the whole check against Postgres and the registry is
tests/integration/test_live_check.py)."""

from __future__ import annotations

import pytest

from pipeline.core.runtime import Scored
from pipeline.core.settings import Settings
from retraining.errors import TrainingError
from retraining.live_check import (
    LivePolicy,
    PairedCounts,
    WindowComparison,
    compare_window,
    decide,
    paired_difference_interval,
)

POLICY = LivePolicy(margin=0.02, min_reviewed=50, required=True, confidence=0.95)


def test_interval_matches_newcombes_worked_table() -> None:
    # Newcombe (1998), method 10, on the table 59 / 6 / 16 / 80: -0.0621 (-0.1186 to -0.0046)
    counts = PairedCounts(both=59, challenger_only=6, champion_only=16, neither=80)
    low, high = paired_difference_interval(counts)
    assert counts.difference == pytest.approx(-10 / 161)
    assert (round(low, 4), round(high, 4)) == (-0.1186, -0.0046)
    # the same table seen from the other side is the mirror image
    flipped = paired_difference_interval(PairedCounts(59, 16, 6, 80))
    assert flipped == pytest.approx((-high, -low))


def test_interval_narrows_with_agreement_and_widens_with_confidence() -> None:
    same = paired_difference_interval(PairedCounts(450, 0, 0, 50))  # the models always agree
    split = paired_difference_interval(PairedCounts(410, 20, 20, 50))  # same accuracies
    assert same[0] < 0 < same[1] and same[1] - same[0] < 0.02
    assert split[1] - split[0] > same[1] - same[0]
    wider = paired_difference_interval(PairedCounts(410, 20, 20, 50), confidence=0.99)
    assert wider[0] < split[0] and wider[1] > split[1]
    assert paired_difference_interval(PairedCounts(0, 0, 0, 0)) == (-1.0, 1.0)


def test_a_small_gain_is_non_inferior() -> None:
    check = decide(PairedCounts(400, 12, 8, 80), POLICY)
    assert check.verdict == "non-inferior" and check.allows
    assert check.interval is not None and check.interval[0] > -0.02
    assert check.counts.challenger_accuracy == pytest.approx(0.824)
    assert check.counts.champion_accuracy == pytest.approx(0.816)
    assert "non-inferior within the 0.02 margin" in check.reason


def test_a_clear_loss_is_inferior() -> None:
    check = decide(PairedCounts(380, 5, 35, 80), POLICY)
    assert check.verdict == "inferior" and not check.allows
    assert check.counts.difference == pytest.approx(-0.06)
    assert check.interval is not None and check.interval[1] < 0
    assert "not shown non-inferior" in check.reason


def test_a_tie_with_many_disagreements_is_not_shown_non_inferior() -> None:
    # equal accuracy, but 80 of 200 items split the models: the interval reaches -0.087
    check = decide(PairedCounts(80, 40, 40, 40), POLICY)
    assert check.counts.difference == 0.0
    assert check.verdict == "undecided" and not check.allows
    assert "not shown non-inferior" in check.reason
    # the half-width 0.087 would have to fall below 0.02: about (0.087 / 0.02)^2 x 200 items
    assert "about 3824 reviewed items would decide it" in check.reason
    # undecided is missing evidence: without live_check_required the offline gate decides
    loose = decide(PairedCounts(80, 40, 40, 40), LivePolicy(required=False))
    assert loose.verdict == "undecided" and loose.allows
    assert "the offline gate decides alone" in loose.reason


def test_a_high_accuracy_tie_on_a_hundred_items_is_undecided_not_inferior() -> None:
    # the demo's case: 94 of 96 right for both models, every pair concordant
    check = decide(PairedCounts(94, 0, 0, 2), POLICY)
    assert check.interval is not None and check.interval[0] < -0.02 < check.interval[1]
    assert check.verdict == "undecided" and not check.allows
    assert "about 423 reviewed items would decide it" in check.reason


def test_a_loss_beyond_the_margin_cannot_be_decided_by_more_items() -> None:
    check = decide(PairedCounts(150, 0, 10, 40), POLICY)  # -0.05, interval across -0.02
    assert check.verdict == "undecided" and "more items would not show it" in check.reason


def test_too_few_reviewed_items_is_no_evidence() -> None:
    few = PairedCounts(30, 2, 1, 8)
    refused = decide(few, POLICY)
    assert refused.verdict == "insufficient" and not refused.allows
    assert refused.interval is None
    assert "insufficient evidence (n=41 uniformly reviewed live items, need 50)" in refused.reason
    assert "nothing is promoted without it" in refused.reason
    allowed = decide(few, LivePolicy(required=False))
    assert allowed.verdict == "insufficient" and allowed.allows
    assert "the offline gate decides alone" in allowed.reason
    none = decide(PairedCounts(0, 0, 0, 0), POLICY)
    assert none.verdict == "insufficient" and "(n=0 " in none.reason
    assert none.to_json()["challenger_accuracy"] is None


def test_figures_recorded_on_the_event() -> None:
    window = WindowComparison(n=2000, agreement=0.953, confidence_psi=0.0123)
    figures = decide(PairedCounts(400, 12, 8, 80), POLICY, window, left_out=7).to_json()
    assert figures["verdict"] == "non-inferior" and figures["n_reviewed"] == 500
    assert figures["difference"] == pytest.approx(0.008)
    low, high = figures["interval"]
    assert low < 0.008 < high
    assert figures["window"] == {"n": 2000, "agreement": 0.953, "confidence_psi": 0.0123}
    assert figures["counts"] == {
        "both": 400,
        "challenger_only": 12,
        "champion_only": 8,
        "neither": 80,
    }
    assert figures["left_out"] == 7 and figures["margin"] == 0.02
    assert "agreement 0.953 on 2000 recent live articles" in figures["reason"]


def test_counts_from_outcomes_and_bad_input() -> None:
    counts = PairedCounts.from_outcomes([True, True, False, False], [True, False, True, False])
    assert counts == PairedCounts(1, 1, 1, 1)
    with pytest.raises(TrainingError, match="differ in length"):
        PairedCounts.from_outcomes([True], [])
    with pytest.raises(TrainingError, match="challenger_only must be a count"):
        PairedCounts(1, -1, 0, 0)
    with pytest.raises(TrainingError, match="margin"):
        LivePolicy(margin=1.5)
    with pytest.raises(TrainingError, match="confidence"):
        paired_difference_interval(counts, confidence=1.0)
    settings = Settings(live_check_reviewed=40, live_check_min_reviewed=50)
    with pytest.raises(TrainingError, match="could never have enough evidence"):
        LivePolicy.from_settings(settings)


def _scored(topic: str, confidence: float) -> Scored:
    return Scored(topic=topic, confidence=confidence, margin=0.1, probabilities=(confidence,))


def test_window_agreement_and_confidence_psi() -> None:
    champion = [_scored("World" if i % 2 else "Sports", 0.5 + i / 200) for i in range(100)]
    assert compare_window(champion, champion) == WindowComparison(100, 1.0, 0.0)
    unsure = [_scored("World", 0.3 + i / 1000) for i in range(100)]
    window = compare_window(champion, unsure)
    assert window.agreement == 0.5
    assert window.confidence_psi is not None and window.confidence_psi > 1
    assert compare_window([], []) == WindowComparison()
    with pytest.raises(TrainingError, match="differ in length"):
        compare_window(champion, [])
