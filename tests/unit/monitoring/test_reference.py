"""Drift references on synthetic data: levels from the reference's own chunks (a daily
rhythm does not alert, a shift does), topic mix by hour of the week (a weekend-heavy sport
mix is normal on a weekend, not on a Wednesday), and the baseline command's time checks."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

import numpy as np
import pytest

from monitoring.baseline import BaselineRefused, check_times, parse_time
from monitoring.drift import DriftResult, Window, compare
from monitoring.psi import sampling_psi
from monitoring.reference import (
    Rows,
    build_reference,
    expected_mix,
    expected_rows,
    hour_of_week,
    rhythm,
    spans_week,
    thresholds,
    unstored,
)
from pipeline.core.db.references import Reference
from pipeline.core.model_folder import ModelMetadata

LABELS = ["World", "Sports", "Business", "Sci/Tech"]
META = ModelMetadata(version="m1", labels=LABELS)
MONDAY = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)  # a Monday, 00:00 UTC
LEVELS = {"bins": 10, "warn": 0.1, "drift": 0.25, "min_window": 500, "margin": 0.1}


def _draw(rng: np.random.Generator, start: dt.datetime, hours: int, per_hour: int, mix_at) -> Rows:  # type: ignore[no-untyped-def]
    """``per_hour`` predictions an hour from ``start``: topics drawn from ``mix_at(time)``,
    confidences from one stable distribution."""
    conf: list[float] = []
    topics: list[str] = []
    times: list[dt.datetime] = []
    for h in range(hours):
        at = start + dt.timedelta(hours=h)
        topics += [str(t) for t in rng.choice(LABELS, size=per_hour, p=mix_at(at))]
        times += [at + dt.timedelta(seconds=i * 3600 / per_hour) for i in range(per_hour)]
        conf += [float(c) for c in 1 - rng.beta(0.5, 8, per_hour)]
    return Rows(conf, topics, times)


def _reference(rows: Rows, window_rows: int = 1000) -> Reference:
    return unstored(
        build_reference(rows, model_version="m1", kind="live", window_rows=window_rows, bins=10)
    )


def _check(ref: Reference, rows: Rows) -> DriftResult:
    return compare(META, Window(rows.confidences, rows.topics, rows.times), reference=ref, **LEVELS)  # type: ignore[arg-type]


def _daily(at: dt.datetime) -> list[float]:
    """Sport in the evening, business in the morning."""
    swing = 0.15 * math.sin(2 * math.pi * (at.hour - 12) / 24)
    return [0.25, 0.25 + swing, 0.25 - swing, 0.25]


def test_a_daily_rhythm_does_not_alert_and_a_shift_does() -> None:
    rng = np.random.default_rng(7)
    ref = _reference(_draw(rng, MONDAY, 48, 250, _daily))  # two days: by hour of the day
    assert rhythm(ref) == "by hour of the day" and not spans_week(ref)
    assert ref.hour_mix is not None and ref.chunks is not None and ref.chunks.count == 12
    evening = _draw(rng, MONDAY + dt.timedelta(days=3, hours=16), 4, 250, _daily)

    whole = dataclasses.replace(ref, hour_mix=None, chunks=None)  # the whole mix, fixed levels
    fixed = _check(whole, evening)
    assert fixed.levels == {"confidence": "ok", "topics": "warn"}, fixed.reason
    cuts = thresholds(ref, warn=0.1, drift=0.25, margin=0.1, bins=10)
    assert cuts.confidence.source == "fixed" and cuts.confidence.warn == 0.1  # the floor

    calm = _check(ref, evening)  # the same hours of the day: the rhythm is gone
    assert calm.level == "ok" and "by hour of the day" in calm.reason, calm.reason
    assert (
        calm.psi_topics is not None
        and fixed.psi_topics is not None
        and calm.psi_topics < fixed.psi_topics / 5
    )

    world_news = _draw(
        rng, MONDAY + dt.timedelta(days=3, hours=16), 4, 250, lambda _: [0.7, 0.1, 0.1, 0.1]
    )
    shifted = _check(ref, world_news)
    assert shifted.levels is not None and shifted.levels["topics"] == "drift"
    assert shifted.level != "ok" and "live since" in shifted.reason


def test_small_windows_are_held_to_their_sampling_noise() -> None:
    """150-row windows drawn from the reference itself cross the fixed 0.1 on confidence
    often; the sampling floor at 0.995 lets about one in 200 through, and a real shift of
    the confidences still alerts."""
    rng = np.random.default_rng(3)
    ref = _reference(_draw(rng, MONDAY, 48, 60, lambda _: [0.25] * 4))
    levels = {**LEVELS, "min_window": 100}
    raw, floored = 0, 0
    for _ in range(400):
        window = _draw(rng, MONDAY + dt.timedelta(days=3), 3, 50, lambda _: [0.25] * 4)
        w = Window(window.confidences, window.topics, window.times)
        plain = compare(META, w, reference=ref, **levels)  # type: ignore[arg-type]
        noisy = compare(META, w, reference=ref, noise_quantile=0.995, **levels)  # type: ignore[arg-type]
        raw += plain.level != "ok"
        floored += noisy.level != "ok"
    assert raw >= 20, raw  # about one window in eight at the fixed levels
    assert floored <= 8, floored  # 0.5 % of 800 metric checks expected
    assert noisy.thresholds is not None and noisy.thresholds["confidence"]["source"] == "sampling"
    assert noisy.thresholds["confidence"]["warn"] == pytest.approx(
        sampling_psi(10, 150, len(ref.confidences), 0.995)
    )
    low = Rows(
        [c * 0.9 for c in window.confidences], window.topics, window.times
    )  # the model reads the same topics with less confidence
    moved = compare(
        META,
        Window(low.confidences, low.topics, low.times),
        reference=ref,
        noise_quantile=0.995,
        **levels,
    )  # type: ignore[arg-type]
    assert moved.levels is not None and moved.levels["confidence"] != "ok", moved.reason


def test_the_rows_an_expected_mix_rests_on() -> None:
    """Hours the reference covers well: about their rows; an hour it never saw rests on the
    whole mix (all its rows), not on the 10 pseudo-rows of the prior."""
    hours = {hour_of_week(MONDAY): {"A": 90, "B": 10}}
    at = [MONDAY] * 10
    covered = expected_rows(3000, hours, at, weekly=True)
    assert 100 < covered < 150
    unseen = expected_rows(3000, hours, [MONDAY + dt.timedelta(hours=5)] * 10, weekly=True)
    assert unseen == pytest.approx(3000)
    assert expected_rows(3000, None, at, weekly=True) == 3000


def test_sampling_psi_follows_chi_square() -> None:
    assert sampling_psi(1, 100, 100, 0.99) == 0.0  # one category: nothing to compare
    assert sampling_psi(10, 150, 3000, 0.0) == 0.0  # switched off
    assert sampling_psi(10, 1000, 1000, 0.995) < sampling_psi(10, 150, 1000, 0.995)
    with pytest.raises(ValueError, match="quantile"):
        sampling_psi(10, 150, 3000, 1.0)


def _weekly(at: dt.datetime) -> list[float]:
    """More sport at weekends."""
    return [0.15, 0.55, 0.15, 0.15] if at.weekday() >= 5 else [0.28, 0.15, 0.29, 0.28]


def test_topic_mix_is_compared_with_the_same_hours_of_the_week() -> None:
    rng = np.random.default_rng(11)
    ref = _reference(_draw(rng, MONDAY, 14 * 24, 30, _weekly))
    assert ref.hour_mix is not None and len(ref.hour_mix) == 168

    saturday = MONDAY + dt.timedelta(days=19, hours=9)  # the third Saturday, 09:00
    weekend_sport = _draw(rng, saturday, 10, 100, _weekly)
    calm = _check(ref, weekend_sport)
    assert calm.level == "ok", calm.reason
    assert "by hour of the week" in calm.reason

    wednesday = MONDAY + dt.timedelta(days=16, hours=9)
    moved = Rows(
        weekend_sport.confidences,
        weekend_sport.topics,
        [t - (saturday - wednesday) for t in weekend_sport.times],
    )
    wrong_hours = _check(ref, moved)
    assert wrong_hours.level == "drift", wrong_hours.reason
    assert wrong_hours.psi_topics is not None and calm.psi_topics is not None
    assert wrong_hours.psi_topics > 10 * calm.psi_topics


def test_expected_mix_weights_each_hour_by_the_window_rows() -> None:
    hours = {hour_of_week(MONDAY): {"A": 90, "B": 10}, hour_of_week(MONDAY) + 1: {"B": 100}}
    whole = {"A": 0.5, "B": 0.5}
    mix = expected_mix(whole, hours, [MONDAY] * 3 + [MONDAY + dt.timedelta(hours=1)])
    first = (90 + 5) / 110
    assert mix["A"] == pytest.approx(3 / 4 * first + 1 / 4 * 5 / 110)
    assert sum(mix.values()) == pytest.approx(1.0)
    unseen = expected_mix(whole, hours, [MONDAY + dt.timedelta(days=2)])
    assert unseen == pytest.approx(whole)  # an hour the reference never saw: the whole mix


def test_baseline_times() -> None:
    assert parse_time("2026-12-01T08:00") == (dt.datetime(2026, 12, 1, 8, tzinfo=dt.UTC), True)
    at, naive = parse_time("2026-12-01T09:00+01:00")
    assert at == dt.datetime(2026, 12, 1, 8, tzinfo=dt.UTC) and not naive
    with pytest.raises(BaselineRefused, match="not an ISO 8601 time"):
        parse_time("yesterday")
    now = dt.datetime(2026, 12, 7, 12, tzinfo=dt.UTC)
    with pytest.raises(BaselineRefused, match="must be before"):
        check_times(now - dt.timedelta(hours=1), now - dt.timedelta(hours=2), now=now)
    with pytest.raises(BaselineRefused, match="must be before"):
        check_times(now - dt.timedelta(hours=1), now - dt.timedelta(hours=1), now=now)
    with pytest.raises(BaselineRefused, match="in the future"):
        check_times(now - dt.timedelta(hours=1), now + dt.timedelta(minutes=5), now=now)
    check_times(now - dt.timedelta(hours=2), now, now=now)
