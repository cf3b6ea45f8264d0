"""`newsflow drift baseline --from T --to T`: the drift reference from a stored window.

The articles received in ``[from, to)`` are re-scored by the champion (its ONNX graph through
:mod:`pipeline.core.runtime`, as the workers serve it; at most
``NEWSFLOW_DRIFT_BASELINE_MAX_ROWS`` of them, spread evenly over the window) and become the
champion version's active reference (kind ``baseline``), replacing the training or live one.

Refused, with nothing stored:

* reversed or empty times (``from`` not before ``to``) and times in the future;
* fewer than ``NEWSFLOW_LIVE_REFERENCE_ROWS`` articles in the window (the message gives both
  counts);
* a window overlapping the window of a drift run of the champion whose *confidence* PSI was
  flagged (warn or drift): that traffic was judged unlike the reference in the way the model
  behaves, and adopting it would silence the alert. A run flagged on the topic mix alone does
  not block: a changed mix is news, and accepting it is what a baseline is for.

Times without a zone are taken as UTC, and the command says so (:func:`parse_time`).

Example:
    >>> parse_time("2026-12-01T08:00")
    (datetime.datetime(2026, 12, 1, 8, 0, tzinfo=datetime.timezone.utc), True)
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import Engine

from monitoring.reference import build_reference
from monitoring.week_reference import rescore
from pipeline.core.db import drift_runs
from pipeline.core.db import references as refs
from pipeline.core.db.references import Reference
from pipeline.core.errors import NewsflowError
from pipeline.core.model_folder import check_folder
from pipeline.core.settings import Settings


class BaselineRefused(NewsflowError):
    """A baseline window that cannot be a reference; the message says why."""


def parse_time(value: str) -> tuple[dt.datetime, bool]:
    """An ISO 8601 time, and whether it had no zone (then it is taken as UTC)."""
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise BaselineRefused(
            f"{value!r} is not an ISO 8601 time (e.g. 2026-12-01T08:00:00+00:00)"
        ) from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.UTC), True
    return parsed.astimezone(dt.UTC), False


def check_times(start: dt.datetime, end: dt.datetime, *, now: dt.datetime) -> None:
    """Refuse a reversed, empty or future window."""
    if start.tzinfo is None or end.tzinfo is None:
        raise BaselineRefused("give times with a zone (or let parse_time take them as UTC)")
    if start >= end:
        raise BaselineRefused(
            f"--from ({start.isoformat()}) must be before --to ({end.isoformat()})"
        )
    if end > now:
        raise BaselineRefused(
            f"--to ({end.isoformat()}) is in the future (now {now.isoformat(timespec='seconds')});"
            " a baseline is a stored window"
        )


def check_window(
    settings: Settings, engine: Engine, *, model_version: str, start: dt.datetime, end: dt.datetime
) -> int:
    """Refuse a window that overlaps a confidence-flagged drift run of ``model_version`` or
    holds too few articles; returns how many it holds."""
    flagged = drift_runs.confidence_flagged_runs_between(
        engine, model_version=model_version, start=start, end=end, warn=settings.drift_warn
    )
    if flagged:
        run = flagged[0]
        more = f" (and {len(flagged) - 1} more)" if len(flagged) > 1 else ""
        psi_text = f"{run.psi_confidence:.3f}" if run.psi_confidence is not None else "?"
        raise BaselineRefused(
            f"the window overlaps drift run #{run.id}{more}, whose window "
            f"{run.window_from.isoformat()} – {run.window_to.isoformat()} was flagged "
            f"{run.level} on confidence (PSI {psi_text}); a reference must be traffic the "
            "champion handled as usual: choose a window before or after it"
        )
    found = refs.count_articles_between(engine, start=start, end=end)
    need = settings.live_reference_rows
    if found < need:
        raise BaselineRefused(
            f"found {found} articles received between {start.isoformat()} and "
            f"{end.isoformat()}; a baseline needs at least {need} "
            "(NEWSFLOW_LIVE_REFERENCE_ROWS): widen the window"
        )
    return found


def set_baseline(
    settings: Settings,
    engine: Engine,
    folder: Path,
    *,
    start: dt.datetime,
    end: dt.datetime,
    now: dt.datetime | None = None,
) -> Reference:
    """Re-score the window's articles with the model in ``folder`` (the champion) and make
    them its version's active reference; raises :class:`BaselineRefused` (nothing stored)."""
    check_times(start, end, now=now or dt.datetime.now(dt.UTC))
    meta = check_folder(folder)
    found = check_window(settings, engine, model_version=meta.version, start=start, end=end)
    rows = rescore(
        settings, engine, folder, start=start, end=end, limit=settings.drift_baseline_max_rows
    )
    n = len(rows.confidences)
    sampled = f", {n} of them re-scored" if n < found else ""
    new = build_reference(
        rows,
        model_version=meta.version,
        kind="baseline",
        window_rows=settings.drift_window_size,
        bins=settings.drift_bins,
        reason=f"{found} articles received {start.isoformat()} – {end.isoformat()}{sampled}, "
        f"re-scored by {meta.version}",
        span=(start, end),  # the window asked for, not only its first and last article
    )
    return refs.store_reference(engine, new)
