"""A champion's drift reference from the week of the feed before it, re-scored at once.

A live reference built from a champion's own first predictions needs days to span a week
(``NEWSFLOW_LIVE_REFERENCE_ROWS`` is rows, not days), and a champion replaced sooner never gets
one: its topic mix is then compared with a few weekdays, and every weekend reads as drift. So
while a version's reference spans less than a week (training, or a live one of a few days)
and the stored articles cover the last ``NEWSFLOW_LIVE_REFERENCE_DAYS`` days (default 7), a
check re-scores an even sample of them (at most ``NEWSFLOW_LIVE_REFERENCE_RESCORE_ROWS``,
spread over the window so its rhythm is kept) with the champion's ONNX graph, as ``newsflow
drift baseline`` does, and that becomes its reference (kind ``baseline``; its reason starts
"automatic"). For a new champion that is its first check. Spanning a week, its topic mix is
kept per hour of the week (:func:`monitoring.reference.expected_mix`). A baseline set by a
person stands.

The window passes the same checks as a live one (:func:`monitoring.live_window.check_window`:
against the training reference, and each chunk against the chunks before it): a shift that
started inside it is refused there. A refused window is stored ``rejected`` with its reason;
the next try is a whole window later (windows never overlap), and meanwhile the live path runs
(the first N predictions). While a drift run of the version in the last 24 hours was flagged
on confidence (a shift may be under way), nothing is tried: the next check looks again.
Flagged runs earlier in the week do not block it, unlike ``drift baseline``: a reference
without a week flags the first weekend, and that must not keep the week out. Where the feed is
younger than the window, nothing is tried.

Cost: one pass of the champion over at most ``NEWSFLOW_LIVE_REFERENCE_RESCORE_ROWS`` articles
in the scheduler, about once per promoted version (3,000 rows: about a minute on one core
with MiniLM).
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from sqlalchemy import Engine

from monitoring.reference import Rows, build_reference, judge_window
from pipeline.cleaning import model_text
from pipeline.core.db import drift_runs
from pipeline.core.db import references as refs
from pipeline.core.db.references import Reference
from pipeline.core.model_folder import ModelMetadata
from pipeline.core.settings import Settings

log = logging.getLogger("newsflow.week_reference")

# The feed must reach back to within this of the window's start to count as covering it.
COVER_SLACK = dt.timedelta(hours=1)
# No try while a drift run of the version in this last stretch was flagged on confidence.
SETTLED = dt.timedelta(hours=24)


def rescore(
    settings: Settings,
    engine: Engine,
    folder: Path,
    *,
    start: dt.datetime,
    end: dt.datetime,
    limit: int,
) -> Rows:
    """The articles received in ``[start, end)`` (at most ``limit``, spread evenly), scored by
    the model in ``folder`` through ONNX Runtime, in time order."""
    from pipeline.core.runtime import Classifier

    articles = refs.articles_between(engine, start=start, end=end, limit=limit)
    clf = Classifier.load(folder, threads=settings.ort_threads, warmup=False)
    scored = clf.predict([model_text(a.title, a.body) for a in articles])
    return Rows(
        [s.confidence for s in scored], [s.topic for s in scored], [a.received_at for a in articles]
    )


def week_window(
    settings: Settings, engine: Engine, *, now: dt.datetime
) -> tuple[dt.datetime, dt.datetime, int] | None:
    """``(start, now, articles)`` when the stored feed covers the last
    ``live_reference_days`` with at least ``live_reference_rows`` articles; None otherwise."""
    start = now - dt.timedelta(days=settings.live_reference_days)
    if refs.count_articles_between(engine, start=start, end=start + COVER_SLACK) == 0:
        return None  # the feed (or what retention kept of it) starts later
    found = refs.count_articles_between(engine, start=start, end=now)
    return (start, now, found) if found >= settings.live_reference_rows else None


def try_week_reference(
    settings: Settings,
    engine: Engine,
    meta: ModelMetadata,
    folder: Path,
    *,
    now: dt.datetime,
) -> Reference | None:
    """The version's reference from the last week re-scored (see the module's docstring):
    stored active or rejected. None when off, already tried, or the feed does not cover it."""
    if settings.live_reference_days <= 0:
        return None
    window = week_window(settings, engine, now=now)
    refused_until = refs.rejected_baseline_until(engine, model_version=meta.version)
    if window is not None and refused_until is not None and window[0] < refused_until:
        return None  # it would overlap the refused one: tried again a whole window later
    if window is None:
        return None
    start, end, found = window
    recent = drift_runs.confidence_flagged_runs_between(
        engine, model_version=meta.version, start=end - SETTLED, end=end, warn=settings.drift_warn
    )
    if recent:  # a shift may be under way: not now, the next check looks again
        log.info(
            "week reference of %s not tried: drift run #%d (last %s) was flagged %s on confidence",
            meta.version,
            recent[-1].id,
            SETTLED,
            recent[-1].level,
        )
        return None
    rows = rescore(
        settings, engine, folder, start=start, end=end, limit=settings.live_reference_rescore_rows
    )
    verdict = judge_window(settings, rows, meta.reference.confidences)
    what = (
        f"automatic: the {settings.live_reference_days:g} days before "
        f"{end.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC ({found} articles, "
        f"{len(rows.confidences)} re-scored by {meta.version})"
    )
    if verdict.accepted:
        status, reason = "active", f"{what}; {verdict.reason()}"
    else:
        status = "rejected"
        reason = f"{what} refused: {verdict.reason()}; the live path follows"
    new = build_reference(
        rows,
        model_version=meta.version,
        kind="baseline",
        window_rows=settings.drift_window_size,
        bins=settings.drift_bins,
        status=status,
        reason=reason,
        span=(start, end),
    )
    stored = refs.store_reference(engine, new)
    (log.info if status == "active" else log.warning)("week reference %s: %s", status, reason)
    return stored
