"""Training progress on a rich bar, and as plain lines where no bar can be drawn."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from rich.progress import Progress, TaskID


def bar_progress(
    bar: Progress,
    task: TaskID,
    *,
    plain: Callable[[str], None] | None = None,
    every_s: float = 60.0,
    clock: Callable[[], float] = time.monotonic,
) -> Callable[[str, int, int], None]:
    """run_flow's progress callback on a rich bar. The first report, and every new phase
    (another total, or a count that went back: teacher soft labels, then training), resets
    the bar at that count, so the ETA is measured only on work done in this process: a
    resumed run starts at the checkpoint's step, not at 0.

    A bar draws nothing when the output is not a terminal (``nohup``, a service, CI), so a
    two-hour CPU run would log nothing until it ends; ``plain`` then gets one line per phase,
    at most one every ``every_s`` seconds and one when the phase first reaches its total, with
    the rate and ETA of this process."""
    last: dict[str, float] = {}

    def progress(msg: str, step: int, total: int) -> None:
        new_phase = last.get("total") != total or step < last.get("step", 0)
        if new_phase:
            bar.reset(task, total=total, completed=step, description=msg)
            last.update(start=clock(), start_step=step, said=-math.inf, said_done=0)
        else:
            bar.update(task, description=msg, completed=step, total=total)
        last.update(step=step, total=total)
        if plain is None:
            return
        now = clock()
        finished = 0 < total <= step and not last["said_done"]
        if new_phase or finished or now - last["said"] >= every_s:
            last.update(said=now, said_done=last["said_done"] or finished)
            done = step - int(last["start_step"])
            plain(plain_progress(msg, step, total, now - last["start"], done))

    return progress


def plain_progress(msg: str, step: int, total: int, elapsed_s: float, done: int) -> str:
    """One progress line: ``msg: 300/1,430 (20%), 0.33/s, ETA 57 min`` (a rate below one a
    second as seconds per step, an ETA past 90 minutes in hours; a total of 0 is unknown)."""
    line = f"{msg}: {step:,}/{total:,}" if total > 0 else f"{msg}: {step:,}"
    if total > 0:
        line += f" ({math.floor(100 * min(step, total) / total)}%)"
    if done > 0 and elapsed_s > 0:
        rate = done / elapsed_s
        line += f", {rate:.2f}/s" if rate >= 1 else f", {1 / rate:.1f} s each"
        if total > step:
            line += f", ETA {_duration((total - step) / rate)}"
    return line


def _duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``1.9 h``: minutes from 90 s on, hours from 90 min on."""
    if seconds >= 90 * 60:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"
