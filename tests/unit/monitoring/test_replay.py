"""The replay's parts that need no services: the feed builder, the simulated clock, the
argument checks and the score against the script."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from monitoring.replay.clock import ReplayError, SimClock, check_days, max_days, replay_origin
from monitoring.replay.feed import (
    NONE_LABEL,
    Pools,
    Script,
    build_hour,
    hour_counts,
    topic_mix,
)
from monitoring.replay.run import ReplayOptions
from monitoring.replay.score import AlertOpened, Check, ScoredEvent, checks_to_alert, score
from pipeline.core.clock import ClockError, clock_for, read_clock_file
from pipeline.core.datasets import AG_LABELS, LabelledText

TODAY = dt.date(2026, 12, 7)
UTC = dt.UTC


def _pools() -> Pools:
    ag = [
        LabelledText(f"a{t}{i}", f"{t} title {i}", "wire copy", t)
        for t in AG_LABELS
        for i in range(5)
    ]
    groups = ["talk.politics.guns", "rec.sport.hockey", "misc.forsale", "sci.space", "alt.atheism"]
    ng = [LabelledText(f"n{g}{i}", "", f"post {g} {i}", g) for g in groups for i in range(5)]
    return Pools.from_rows(ag=ag, ng=ng)


def _day(script: Script, day: int, weekday: int) -> list:  # type: ignore[type-arg]
    pools = _pools()
    return [
        i
        for h in range(24)
        for i in build_hour(script, pools, run="r", day=day, hour=h, weekday=weekday)
    ]


# the feed


def test_hour_counts_add_up_and_follow_the_day() -> None:
    counts = hour_counts(600)
    assert sum(counts) == 600 and len(counts) == 24
    assert counts[3] < counts[12]  # night < daytime
    assert hour_counts(7, (1, 1)) in ([4, 3], [3, 4])


def test_topic_mix_has_a_daily_and_weekly_rhythm() -> None:
    weekday_noon, weekday_night, saturday = topic_mix(2, 12), topic_mix(2, 3), topic_mix(5, 12)
    assert sum(saturday.values()) == pytest.approx(1.0)
    assert saturday["Sports"] > 1.5 * weekday_noon["Sports"]
    assert weekday_noon["Business"] > weekday_night["Business"]
    assert topic_mix(2, 20)["Sports"] > weekday_noon["Sports"]


def test_feed_is_deterministic_with_a_seed() -> None:
    a = Script.default(30, 200, seed=5)
    assert _day(a, 3, 3) == _day(a, 3, 3)
    assert _day(a, 3, 3) != _day(Script.default(30, 200, seed=6), 3, 3)


def test_events_come_on_their_days_and_stay() -> None:
    script = Script.default(30, 400)
    assert (script.burst_day, script.novel_day, script.source_day) == (4, 10, 18)
    kinds = {d: Counter(i.kind for i in _day(script, d, d % 7)) for d in (3, 4, 9, 10, 17, 18, 29)}
    assert kinds[3]["malformed"] == 0 and kinds[4]["malformed"] == script.burst_size
    assert kinds[9]["novel"] == 0 and kinds[10]["novel"] > 20 and kinds[29]["novel"] > 20
    assert kinds[17]["source"] == 0 and kinds[18]["source"] > 100 and kinds[29]["source"] > 100
    valid = [i for i in _day(script, 18, 4) if i.kind != "malformed"]
    assert len(valid) == 400 and len({i.id for i in valid}) == 400
    novel = [i for i in valid if i.kind == "novel"]
    assert {i.truth for i in novel} == {NONE_LABEL}
    assert {i.truth for i in valid if i.kind == "source"} <= set(AG_LABELS)
    burst = [i for i in _day(script, 4, 4) if i.kind == "malformed"]
    assert all(i.value is not None and i.message() == i.value for i in burst)


def test_weekend_days_carry_more_sport() -> None:
    script = Script.default(30, 2000)
    monday = Counter(i.truth for i in _day(script, 0, 0))
    sunday = Counter(i.truth for i in _day(script, 6, 6))
    assert sunday["Sports"] > 1.5 * monday["Sports"]


def test_short_replays_keep_their_events_inside() -> None:
    assert all(e.day < 2 for e in Script.default(2, 10).events())
    assert [e.name for e in Script.default(1, 10).events()] == [
        "malformed_burst", "new_kind", "source_change"
    ]  # fmt: skip


def test_missing_texts_are_named() -> None:
    with pytest.raises(ValueError, match="religion"):
        Pools.from_rows(ag=_pools().ag["World"], ng=[]).check()


# the clock


def test_origin_is_a_monday_before_the_month() -> None:
    origin = replay_origin(30, today=TODAY)
    assert origin == dt.datetime(2026, 11, 2, tzinfo=UTC) and origin.weekday() == 0
    assert (dt.datetime(2026, 12, 7, tzinfo=UTC) - origin).days >= 30


def test_days_the_clock_cannot_represent_are_refused() -> None:
    for bad in (0, -1, max_days(TODAY) + 1, 10**12):
        with pytest.raises(ReplayError):
            check_days(bad, today=TODAY)
    assert check_days(max_days(TODAY), today=TODAY) == max_days(TODAY)
    assert replay_origin(max_days(TODAY), today=TODAY).year == 1


def test_sim_clock_moves_forward_only_and_writes_its_file(tmp_path: Path) -> None:
    file = tmp_path / "clock"
    start = dt.datetime(2026, 11, 2, tzinfo=UTC)
    clock = SimClock(start, file=file)
    worker_clock = clock_for(file)  # what the worker process reads
    assert clock() == worker_clock() == start
    clock.set(start + dt.timedelta(hours=5))
    assert worker_clock() == start + dt.timedelta(hours=5)
    with pytest.raises(ReplayError, match="cannot go back"):
        clock.set(start)
    with pytest.raises(ReplayError):
        SimClock(dt.datetime(2026, 11, 2))  # naive


def test_clock_file_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ClockError, match="missing"):
        read_clock_file(tmp_path / "missing")
    (tmp_path / "naive").write_text("2026-11-02T00:00:00")
    with pytest.raises(ClockError, match="no UTC offset"):
        read_clock_file(tmp_path / "naive")
    assert clock_for(None)().tzinfo is not None


# the arguments


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"days": 0}, "at least 1"),
        ({"days": -3}, "at least 1"),
        ({"days": 10**9}, "more than the simulated clock"),
        ({"articles_per_day": 0}, "articles-per-day"),
        ({"checks_per_day": 5}, "divide 24"),
        ({"model_dir": Path("/nonexistent")}, "not a model folder"),
    ],
)
def test_bad_options_are_named(change: dict, message: str) -> None:  # type: ignore[type-arg]
    options = ReplayOptions(**{"days": 30, "today": TODAY, **change})
    with pytest.raises(ReplayError, match=message):
        options.check()


def test_cli_refuses_bad_days_with_exit_2_before_starting_anything() -> None:
    from monitoring.cli import app, build

    build()
    for days in ("0", "-1", "999999999"):
        result = CliRunner().invoke(app, ["replay", "--days", days])
        assert result.exit_code == 2, result.output
        assert "error" in result.output and "--days" in result.output
    help_text = CliRunner().invoke(app, ["replay", "--help"]).output
    assert "simulated" in help_text and "--articles-per-day" in help_text


# the score


def _at(day: int, hour: int = 0) -> dt.datetime:
    return dt.datetime(2026, 11, 2, tzinfo=UTC) + dt.timedelta(days=day, hours=hour)


def test_checks_to_alert_counts_from_the_event() -> None:
    event = ScoredEvent("new_kind", _at(10), True)
    checks = [Check(_at(9, 18), "drift"), Check(_at(10, 6), "ok"), Check(_at(10, 12), "warn")]
    assert checks_to_alert(event, checks) == 2
    assert checks_to_alert(event, checks[:2]) is None
    # a check at the very moment the event starts has seen none of it: not counted
    at_start = [Check(_at(10), "ok"), *checks[1:]]
    assert checks_to_alert(event, at_start) == 2
    assert checks_to_alert(event, [Check(_at(10), "drift")]) is None


def test_precision_and_latency_against_the_script() -> None:
    events = [
        ScoredEvent("malformed_burst", _at(4, 13), False),
        ScoredEvent("new_kind", _at(10), True),
        ScoredEvent("source_change", _at(18), True),
    ]
    checks = [Check(_at(d, h), "ok") for d in range(30) for h in (6, 12, 18)]
    checks[10 * 3] = Check(_at(10, 6), "drift")  # first check of day 10
    checks[18 * 3 + 1] = Check(_at(18, 12), "warn", "promoted")  # second of day 18
    checks[2 * 3] = Check(_at(2, 6), "ok", "rejected")  # a retraining on a rhythm-only day
    alerts = [
        AlertOpened("drift_topic_mix", _at(10, 6)),
        AlertOpened("drift_confidence", _at(18, 12)),
        AlertOpened("drift_topic_mix", _at(4, 18)),  # the burst must not alert: unexplained
        AlertOpened("drift_topic_mix", _at(25)),  # long after every event: unexplained
    ]
    got = score(events, checks, alerts, explain_days=3)
    assert got["alerts_opened"] == 4 and got["alerts_explained"] == 2
    assert got["alert_precision"] == 0.5
    low, high = got["alert_precision_interval"]
    assert 0.1 < low < 0.5 < high < 0.9  # 2 of 4: the interval is wide
    latency = {e["name"]: e["checks_to_alert"] for e in got["events"]}
    assert latency == {"malformed_burst": None, "new_kind": 1, "source_change": 2}
    assert got["retrainings_on_rhythm_only_days"] == 1
    assert score(events, checks, [])["alert_precision"] is None
