"""The reviewer drift signals' level rules (pure): boundaries, too few items, and how they
join a check's levels and alerts."""

from __future__ import annotations

import pytest

from monitoring.alerts import REVIEW_ACCURACY, REVIEW_UNKNOWN_SHARE, drift_conditions
from monitoring.drift import DriftResult, add_review_signals, held_accuracy
from monitoring.review_signals import mix_adjusted, recent_accuracy, summary, unknown_share
from pipeline.core.db.events import LiveAccuracy, read_topic_counts
from pipeline.core.settings import Settings
from pipeline.core.stats import wilson_interval


def test_unknown_share_levels_follow_the_lower_bound() -> None:
    assert unknown_share(0, 40, warn=0.05, min_n=20).level == "ok"
    assert unknown_share(4, 40, warn=0.05, min_n=20).level == "ok"  # 10 %, lower bound 4 %
    assert unknown_share(10, 40, warn=0.05, min_n=20).level == "drift"  # lower bound 14 %
    sig = unknown_share(10, 40, warn=0.1, min_n=20)  # lower 14.2 %: above 10 %, below 20 %
    assert sig.level == "warn" and sig.value == 0.25 and sig.n == 40 and sig.count == 10
    assert sig.interval == wilson_interval(10, 40)


def test_unknown_share_boundaries_are_strict() -> None:
    low = wilson_interval(6, 40)[0]
    assert unknown_share(6, 40, warn=low, min_n=20).level == "ok"  # equal: not above
    assert unknown_share(6, 40, warn=low - 1e-9, min_n=20).level == "warn"
    assert unknown_share(6, 40, warn=low / 2, min_n=20).level == "warn"  # equal to 2x warn
    assert unknown_share(6, 40, warn=low / 2 - 1e-9, min_n=20).level == "drift"


def test_recent_accuracy_levels_follow_the_upper_bound() -> None:
    high = wilson_interval(30, 40)[1]  # 75 %, upper bound ~86 %
    ok = recent_accuracy(30, 40, reference=high + 0.05, margin=0.05, min_n=20)
    assert ok.level == "ok" and ok.warn_at == pytest.approx(high)  # equal: not below
    warn = recent_accuracy(30, 40, reference=high + 0.05 + 1e-9, margin=0.05, min_n=20)
    assert warn.level == "warn"
    assert recent_accuracy(30, 40, reference=high + 0.1, margin=0.05, min_n=20).level == "warn"
    drift = recent_accuracy(30, 40, reference=high + 0.1 + 1e-9, margin=0.05, min_n=20)
    assert drift.level == "drift" and drift.drift_at == pytest.approx(high)


def test_too_few_or_no_reference_is_insufficient() -> None:
    few = unknown_share(19, 19, warn=0.05, min_n=20)
    assert few.level == "insufficient" and not few.measured and few.interval is None
    assert unknown_share(20, 20, warn=0.05, min_n=20).level == "drift"  # n == min counts
    assert recent_accuracy(0, 19, reference=0.9, margin=0.05, min_n=20).level == "insufficient"
    none = recent_accuracy(10, 40, reference=None, margin=0.05, min_n=20)
    assert none.level == "insufficient" and none.value == 0.25
    with pytest.raises(ValueError, match="not a share"):
        unknown_share(5, 4, warn=0.05, min_n=1)


def _compared(level: str = "ok") -> DriftResult:
    r = DriftResult(level="ok", model_version="m1", window_size=600, reason="PSI ...")
    r.psi_confidence, r.psi_topics = 0.02, 0.03
    r.levels = {"confidence": "ok", "topics": level}
    r.level = "warn" if level == "warn" else "ok"
    return r


def test_measured_signals_raise_the_level_and_too_few_never_do() -> None:
    result = _compared()
    add_review_signals(
        result,
        [
            unknown_share(10, 40, warn=0.05, min_n=20),
            recent_accuracy(5, 10, reference=0.9, margin=0.05, min_n=20),  # too few
        ],
    )
    assert result.level == "drift"
    assert result.levels == {"confidence": "ok", "topics": "ok", "unknown": "drift"}
    assert result.review_signals is not None
    assert result.review_signals["reviewed_accuracy"]["level"] == "insufficient"
    assert "none of these 25 % [14 %, 40 %] of 40 (drift)" in result.reason

    quiet = _compared("warn")
    add_review_signals(quiet, [unknown_share(40, 40, warn=0.05, min_n=50)])
    assert quiet.level == "warn" and "unknown" not in (quiet.levels or {})

    short = DriftResult(level="insufficient", model_version="m1", window_size=3)
    add_review_signals(short, [unknown_share(10, 40, warn=0.05, min_n=20)])
    assert short.level == "insufficient" and short.review_signals  # recorded, level kept


def test_each_signal_has_its_own_alert_key() -> None:
    result = _compared()
    unknown = unknown_share(10, 40, warn=0.05, min_n=20)
    accuracy = recent_accuracy(36, 40, reference=0.9, margin=0.05, min_n=20)
    add_review_signals(result, [unknown, accuracy])
    conds = {c.key: c for c in drift_conditions(Settings(), result)}
    assert conds[REVIEW_UNKNOWN_SHARE].firing and conds[REVIEW_UNKNOWN_SHARE].severity == "critical"
    assert not conds[REVIEW_ACCURACY].firing  # measured and ok: resolves a firing episode
    assert conds[REVIEW_UNKNOWN_SHARE].summary == summary(unknown, "m1")
    assert "reviewers marked 25 % [14 %, 40 %] of 40 sampled articles" in summary(unknown, "m1")

    few = _compared()
    add_review_signals(few, [unknown_share(3, 10, warn=0.05, min_n=20)])
    assert {c.key for c in drift_conditions(Settings(), few)} == {
        "drift:confidence",
        "drift:topic_mix",
    }


def test_the_exporter_shows_measured_signals_only() -> None:
    import math

    from monitoring.metrics import build_scheduler_metrics, record_drift_run

    result = _compared()
    add_review_signals(
        result,
        [
            unknown_share(10, 40, warn=0.05, min_n=20),
            recent_accuracy(5, 10, reference=0.9, margin=0.05, min_n=20),  # too few
        ],
    )
    m = build_scheduler_metrics()
    record_drift_run(m, result, now=0.0)
    value = m.registry.get_sample_value
    assert value("newsflow_review_signal", {"signal": "unknown"}) == 0.25
    assert value("newsflow_review_signal_level", {"signal": "unknown"}) == 2
    assert math.isnan(value("newsflow_review_signal", {"signal": "reviewed_accuracy"}) or 0.0)
    assert math.isnan(value("newsflow_review_signal_level", {"signal": "reviewed_accuracy"}) or 0)


def test_the_held_accuracy_follows_the_topics_reviewed() -> None:
    """Per-topic accuracy at the reference, weighted to the reviewed items' topics: a mix of
    hard topics is held to less, a topic the reference never saw to the overall accuracy,
    a topic seen a few times mostly to the overall accuracy."""
    reference = {"A": (99, 100), "B": (81, 100), "C": (1, 2)}
    assert mix_adjusted(0.9, reference, {}) is None
    assert mix_adjusted(0.9, {}, {"A": (5, 5)}) is None
    easy = mix_adjusted(0.9, reference, {"A": (40, 50)})
    hard = mix_adjusted(0.9, reference, {"B": (40, 50)})
    assert easy is not None and hard is not None
    assert easy == pytest.approx((99 + 9) / 110) and hard == pytest.approx((81 + 9) / 110)
    assert mix_adjusted(0.9, reference, {"Z": (1, 3)}) == pytest.approx(0.9)
    few = mix_adjusted(0.9, reference, {"C": (0, 4)})
    assert few is not None and abs(few - 0.9) < abs(few - 0.5)
    half = mix_adjusted(0.9, reference, {"A": (10, 10), "B": (10, 10)})
    assert half == pytest.approx((easy + hard) / 2)


def test_malformed_perread_topic_counts_on_an_event_are_no_evidence() -> None:
    assert read_topic_counts({"A": [3, 4]}) == {"A": (3, 4)}
    for bad in ([1, 2], {"A": [5, 4]}, {"A": [1]}, {"A": ["1", "2"]}, {"A": [True, 2]}, None):
        assert read_topic_counts(bad) == {}


def test_the_weighting_lowers_the_held_accuracy_by_at_most_one_margin() -> None:
    """A feed that turns to a topic the model reads badly is a drop worth retraining on, not
    only a topic mix: the weighted reference stays within one margin of the plain one."""
    live = LiveAccuracy(0.885, 400, 1, {"A": (330, 360), "B": (12, 40)})
    half_b = {"A": (45, 50), "B": (15, 50)}
    assert held_accuracy(live, half_b, 0.05) == pytest.approx(0.835)
    assert held_accuracy(live, {"A": (45, 50)}, 0.05) > 0.885  # easier topics: held higher
    plain = LiveAccuracy(0.885, 400, 1)
    assert held_accuracy(plain, half_b, 0.05) == 0.885  # an older event: its plain accuracy
