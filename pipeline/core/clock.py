"""The time a process goes by: the wall clock, or a simulated one for the replay proof
(``newsflow replay``), which writes the simulated instant to a file that the worker reads
(``NEWSFLOW_CLOCK_FILE``). Unset, every process uses the wall clock.

Example:
    >>> clock = clock_for(None)
    >>> clock().tzinfo is not None
    True
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path

from pipeline.core.errors import NewsflowError

Clock = Callable[[], dt.datetime]


class ClockError(NewsflowError):
    """A simulated clock file is missing or does not hold an aware ISO 8601 instant."""


def wall_clock() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def read_clock_file(path: Path) -> dt.datetime:
    """The instant in ``path`` (ISO 8601 with an offset), in UTC."""
    try:
        raw = path.read_text(encoding="utf-8").strip()
        at = dt.datetime.fromisoformat(raw)
    except (OSError, ValueError) as exc:
        raise ClockError(f"simulated clock file {path}: {exc}") from None
    if at.tzinfo is None:
        raise ClockError(f"simulated clock file {path}: {raw!r} has no UTC offset")
    return at.astimezone(dt.UTC)


def write_clock_file(path: Path, at: dt.datetime) -> None:
    """Set the simulated clock (atomically: a reader sees the old or the new instant)."""
    if at.tzinfo is None:
        raise ClockError(f"simulated instant {at!r} has no UTC offset")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(at.astimezone(dt.UTC).isoformat(), encoding="utf-8")
    os.replace(tmp, path)


def clock_for(clock_file: Path | None) -> Clock:
    """The wall clock, or the simulated one written to ``clock_file``."""
    if clock_file is None:
        return wall_clock
    path = Path(clock_file)

    def simulated() -> dt.datetime:
        return read_clock_file(path)

    return simulated
