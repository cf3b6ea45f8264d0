"""The replay's simulated clock: one instant that only the replay moves forward, read by
this process (the scheduler's jobs, alerting, retention, the reviewers) as a
:data:`~pipeline.core.clock.Clock` and by the worker process from a file
(``NEWSFLOW_CLOCK_FILE``). Nothing sleeps through simulated time.

Example:
    >>> origin = replay_origin(30, today=dt.date(2026, 12, 7))
    >>> origin.isoformat(), origin.weekday()
    ('2026-11-02T00:00:00+00:00', 0)
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pipeline.core.clock import write_clock_file
from pipeline.core.errors import NewsflowError


class ReplayError(NewsflowError):
    """A replay was asked for something it cannot do (bad days, scale or model)."""


def max_days(today: dt.date) -> int:
    """The most simulated days that end at ``today``: the month starts on a Monday, and
    Python's dates (hence the clock's) begin on 1 January of year 1."""
    return (today - dt.date.min).days - 6


def check_days(days: int, *, today: dt.date) -> int:
    """``days`` if a replay of that many simulated days can run, else :class:`ReplayError`."""
    if days < 1:
        raise ReplayError(f"--days must be at least 1, got {days}")
    limit = max_days(today)
    if days > limit:
        raise ReplayError(
            f"--days {days:,} is more than the simulated clock can represent (at most "
            f"{limit:,} days before {today}: its dates begin on 1 January of year 1)"
        )
    return days


def replay_origin(days: int, *, today: dt.date) -> dt.datetime:
    """Midnight UTC of the Monday on or before ``today - days``: the simulated month ends
    about now, and its weeks start on Mondays (the weekly rhythm lines up with the calendar)."""
    check_days(days, today=today)
    first = today - dt.timedelta(days=days)
    monday = first - dt.timedelta(days=first.weekday())
    return dt.datetime.combine(monday, dt.time(), tzinfo=dt.UTC)


class SimClock:
    """The simulated instant; callable (``clock()``) like the wall clock. ``file``: where
    the worker reads it (written at every move)."""

    def __init__(self, start: dt.datetime, file: Path | None = None) -> None:
        if start.tzinfo is None:
            raise ReplayError(f"simulated start {start!r} has no UTC offset")
        self._now = start.astimezone(dt.UTC)
        self.file = file
        self._write()

    def __call__(self) -> dt.datetime:
        return self._now

    def set(self, at: dt.datetime) -> None:
        """Move to ``at``; the simulated clock never goes back."""
        if at < self._now:
            raise ReplayError(f"the simulated clock cannot go back from {self._now} to {at}")
        self._now = at
        self._write()

    def _write(self) -> None:
        if self.file is not None:
            write_clock_file(self.file, self._now)
