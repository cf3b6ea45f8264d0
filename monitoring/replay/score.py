"""Scoring a replay against its script: the scripted events are the ground truth.

* **Alert precision**: of the alerts opened during the replay (a new firing episode of an
  alert key, :mod:`monitoring.alerts`), the share explained by a scripted event, i.e. opened
  within ``explain_days`` after an event that is expected to alert. ``None`` when no alert
  opened. With its 95 % Wilson interval (``alert_precision_interval``): a month gives a few
  dozen openings, and the interval says which differences between two runs mean anything.
* **Checks to alert**, per event: how many drift checks after the event's start up to and
  including the first one at ``warn`` or ``drift``, within ``explain_days`` (a check at the
  very moment an event starts has seen none of it, and does not count); ``None`` when
  none did (for the malformed burst, which must not move drift, ``None`` is the right
  answer).
* **Retrainings on rhythm-only days**: retraining attempts that trained (promoted, rejected
  or failed) on a day with no scripted event in the ``explain_days`` before it.

Example:
    >>> ev = [ScoredEvent("new_kind", dt.datetime(2026, 1, 5, tzinfo=dt.UTC), True)]
    >>> checks = [Check(dt.datetime(2026, 1, 5, 6, tzinfo=dt.UTC), "ok"),
    ...           Check(dt.datetime(2026, 1, 5, 12, tzinfo=dt.UTC), "drift")]
    >>> checks_to_alert(ev[0], checks)
    2
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from pipeline.core.stats import wilson_interval

ALERTING = {"warn", "drift"}
TRAINED = {"promoted", "rejected", "failed"}


@dataclasses.dataclass(frozen=True)
class ScoredEvent:
    name: str
    start: dt.datetime
    expect_alert: bool


@dataclasses.dataclass(frozen=True)
class Check:
    at: dt.datetime
    level: str
    retrain_status: str | None = None


@dataclasses.dataclass(frozen=True)
class AlertOpened:
    key: str
    at: dt.datetime


def explaining_event(
    at: dt.datetime, events: Sequence[ScoredEvent], explain: dt.timedelta
) -> ScoredEvent | None:
    """The latest event expected to alert that started at most ``explain`` before ``at``."""
    started = [e for e in events if e.expect_alert and e.start <= at < e.start + explain]
    return max(started, key=lambda e: e.start) if started else None


def alert_precision(
    alerts: Sequence[AlertOpened], events: Sequence[ScoredEvent], explain: dt.timedelta
) -> float | None:
    if not alerts:
        return None
    explained = sum(1 for a in alerts if explaining_event(a.at, events, explain) is not None)
    return explained / len(alerts)


def checks_to_alert(
    event: ScoredEvent, checks: Sequence[Check], within: dt.timedelta | None = None
) -> int | None:
    """Checks after ``event``'s start (within ``within`` of it) up to the first that alerted."""
    end = event.start + within if within is not None else dt.datetime.max.replace(tzinfo=dt.UTC)
    after = sorted((c for c in checks if event.start < c.at < end), key=lambda c: c.at)
    for n, c in enumerate(after, start=1):
        if c.level in ALERTING:
            return n
    return None


def rhythm_only_retrainings(
    checks: Sequence[Check], events: Sequence[ScoredEvent], explain: dt.timedelta
) -> int:
    return sum(
        1
        for c in checks
        if c.retrain_status in TRAINED and explaining_event(c.at, events, explain) is None
    )


def score(
    events: Sequence[ScoredEvent],
    checks: Sequence[Check],
    alerts: Sequence[AlertOpened],
    *,
    explain_days: float = 3.0,
) -> dict[str, Any]:
    """The figures above, as JSON."""
    explain = dt.timedelta(days=explain_days)
    explained = sum(1 for a in alerts if explaining_event(a.at, events, explain) is not None)
    return {
        "explain_days": explain_days,
        "alerts_opened": len(alerts),
        "alerts_explained": explained,
        "alert_precision": alert_precision(alerts, events, explain),
        "alert_precision_interval": (
            [round(b, 3) for b in wilson_interval(explained, len(alerts))] if alerts else None
        ),
        "events": [
            {
                "name": e.name,
                "start": e.start.isoformat(),
                "expect_alert": e.expect_alert,
                "checks_to_alert": checks_to_alert(e, checks, explain),
            }
            for e in events
        ],
        "retrainings_on_rhythm_only_days": rhythm_only_retrainings(checks, events, explain),
    }
