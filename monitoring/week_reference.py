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

The window passes the checks of a live one (:func:`monitoring.live_window.check_window`: the
whole window against the training reference, and each chunk against the chunks before it),
except each chunk against the training reference: a week's chunks of a few hours follow the
daily rhythm, and the model reads some hours' topics with less confidence than a balanced
test split (in the 30-day replay that refused five clean weeks in a row on one chunk at PSI
0.26 against 0.25). A shift that started inside the week is refused by the chunks' own
comparison. A refused window is stored ``rejected`` with its reason; the next try is a whole
window later (windows never overlap). Meanwhile, where chunks jumped, the part of the week
from the first chunk that jumped to its end is judged on its own
(:func:`try_clean_part`): with at least 6 drift windows over at least a day that pass, it
becomes the reference (its reason starts "automatic: the part after a change"; no hour-of-week
mix, it spans less than a week) until a whole clean week replaces it. Otherwise the live path
runs (the first N predictions). While a drift run of the version in the last 24 hours was flagged
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

from monitoring.live_window import CHUNK_MIN_ROWS, EARLIER, Chunk, WindowVerdict
from monitoring.reference import PARTIAL_WEEK, Rows, build_reference, judge_window
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
# The part of a refused week after a jump becomes the reference when it holds at least this
# many drift windows (chunk-derived levels need 6) and spans at least this long (a daily rhythm).
PART_MIN_CHUNKS = 6
PART_MIN_SPAN = dt.timedelta(days=1)


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
    verdict = judge_window(settings, rows, meta.reference.confidences, per_chunk_training=False)
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
    if status == "active":
        return stored
    part = try_clean_part(settings, engine, meta, rows, verdict, end=end)
    return part if part is not None else stored


def clean_part(
    rows: Rows, verdict: WindowVerdict, *, min_rows: int, min_span: dt.timedelta
) -> tuple[Rows, Chunk] | None:
    """The rows of a refused window from its first chunk that jumped against the chunks
    before it (the first chunk of the new state) to its end, with that chunk; None when no
    chunk jumped (the window was refused against the training reference only) or the part
    has fewer than ``min_rows`` rows or spans less than ``min_span``. Pure.

    Example:
        >>> from monitoring.live_window import Finding
        >>> at = [dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(hours=h) for h in range(4)]
        >>> jump = Chunk(2, 2, 4)
        >>> v = WindowVerdict((Chunk(1, 0, 2), jump),
        ...     (Finding(jump, "topic-mix", EARLIER, 3.0, 0.5, "x"),), None, None, None, 3.0)
        >>> part, chunk = clean_part(Rows([0.9] * 4, ["a"] * 4, at), v, min_rows=2,
        ...     min_span=dt.timedelta(hours=1))
        >>> part.times[0].hour, chunk.number
        (2, 2)
    """
    jumped = [f.chunk for f in verdict.failures if f.chunk is not None and f.against == EARLIER]
    if not jumped:
        return None
    first = min(jumped, key=lambda c: c.start)
    part = Rows(
        rows.confidences[first.start :], rows.topics[first.start :], rows.times[first.start :]
    )
    if len(part.confidences) < min_rows or part.times[-1] - part.times[0] < min_span:
        return None
    return part, first


def try_clean_part(
    settings: Settings,
    engine: Engine,
    meta: ModelMetadata,
    rows: Rows,
    verdict: WindowVerdict,
    *,
    end: dt.datetime,
) -> Reference | None:
    """After a week was refused for a jump inside it: the part after the jump
    (:func:`clean_part`, at least :data:`PART_MIN_CHUNKS` drift windows and
    :data:`PART_MIN_SPAN`), judged again on its own, stored active when it passes (kind
    ``baseline``, reason starting :data:`~monitoring.reference.PARTIAL_WEEK`). None when
    there is no such part or it fails too (nothing more is stored)."""
    min_rows = PART_MIN_CHUNKS * max(settings.drift_window_size, CHUNK_MIN_ROWS)
    found = clean_part(rows, verdict, min_rows=min_rows, min_span=PART_MIN_SPAN)
    if found is None:
        return None
    part, jump = found
    judged = judge_window(settings, part, meta.reference.confidences, per_chunk_training=False)
    if not judged.accepted:
        log.warning(
            "week reference: the part after a change in %s was refused too: %s",
            jump.label(len(verdict.chunks)),
            judged.reason(),
        )
        return None
    begin = part.times[0]
    reason = (
        f"{PARTIAL_WEEK} in {jump.label(len(verdict.chunks))} of the "
        f"{settings.live_reference_days:g} days before {end.astimezone(dt.UTC):%Y-%m-%d %H:%M} "
        f"UTC ({len(part.confidences)} re-scored rows by {meta.version}); {judged.reason()}; "
        "a whole week replaces it once one passes"
    )
    new = build_reference(
        part,
        model_version=meta.version,
        kind="baseline",
        window_rows=settings.drift_window_size,
        bins=settings.drift_bins,
        reason=reason,
        span=(begin, end),
    )
    log.info("week reference: %s", reason)
    return refs.store_reference(engine, new)
