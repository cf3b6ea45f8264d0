"""Drift references that follow the feed, and the levels they give.

A drift check compares its window with the champion's *active reference*
(``drift_references``, one per model version):

* ``training``: the model folder's held-out sample (confidences, topic mix), stored the first
  time a check sees the version; it stands until one of the next two replaces it;
* ``live``: the champion's first ``NEWSFLOW_LIVE_REFERENCE_ROWS`` predictions, adopted by the
  drift check once that many exist and the window passes :mod:`monitoring.live_window` (the
  whole window and each chunk of the drift window's size against the training reference,
  each chunk against the chunks before it); a window that fails is stored ``rejected`` with
  its reason (which check, which chunk, the value and the limit) and the training reference
  stays. Once N more predictions have arrived after a refused window, the *latest* N are
  tried (windows never overlap, so at most one try per N predictions) until one passes;
* ``baseline``: a stored window re-scored by the champion (:mod:`monitoring.baseline`).

Only the confidence distribution is checked against the training reference: it is how the
model behaves; the topic mix is the news, and a real feed's mix is expected to differ from a
balanced test split.

Topic mix: when the reference spans at least a day it keeps topic counts per hour of the
week (UTC), and a window's topics are compared with the mix of the same hours
(:func:`expected_mix`): the same hours of the week where it spans at least 7 days (daily and
weekly rhythm), the same hours of the day where it spans less (daily rhythm: a reference cut
from a day or three of feed, compared as a whole, read every evening's mix as drift in the
30-day replay); otherwise with the whole reference.

Levels (:func:`thresholds`): the reference is cut into ``k >= 6`` consecutive chunks of
``min(window rows, n // 6)`` rows and each chunk's PSI against the whole reference is
computed, for confidence and topics alike; ``upper = max(chunk PSI) * (1 + margin)``, and a
metric's thresholds are ``warn = max(NEWSFLOW_DRIFT_WARN, upper)`` and ``drift =
max(NEWSFLOW_DRIFT_THRESHOLD, upper * DRIFT_THRESHOLD / DRIFT_WARN)``. The fixed cut-offs are
a floor: a reference that varies little never makes a small PSI an alert, one that varies a
lot (a daily rhythm in a short live reference) lifts its own thresholds. A second floor is
the window's sampling noise (:func:`sampling_floors`): the PSI that a window of this many
rows, drawn from the reference itself, exceeds with probability ``1 -
NEWSFLOW_DRIFT_NOISE_QUANTILE`` (:func:`monitoring.psi.sampling_psi`). Chunks cut from the
reference are compared with a whole that holds them, so they understate that noise; small
windows (the 30-day replay's 150 rows) crossed 0.1 on confidence about one check in eight
with nothing changed.

Example:
    >>> hour_of_week(dt.datetime(2026, 12, 7, 13, 30, tzinfo=dt.UTC))  # a Monday
    13
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from sqlalchemy import Engine

from monitoring.live_window import WindowVerdict, check_window
from monitoring.psi import Level, categorical_psi, level_of, psi, quantile_edges, sampling_psi
from pipeline.core.db import references as refs
from pipeline.core.db.references import ChunkPsi, HourMix, NewReference, Reference
from pipeline.core.model_folder import ModelMetadata
from pipeline.core.settings import Settings

log = logging.getLogger("newsflow.reference")

WEEK = dt.timedelta(days=7)
DAY = dt.timedelta(days=1)
MIN_CHUNKS = 6
MIN_CHUNK_ROWS = 50  # below this a chunk's PSI is mostly noise: fixed levels only
HOUR_PRIOR = 10.0  # pseudo-rows of the whole mix added to each hour of the week's counts
PARTIAL_WEEK = "automatic: the part after a change"  # how such a reference's reason starts


def partial_week(reference: Reference) -> bool:
    """An automatic reference cut from the part of a week after a change in it
    (:mod:`monitoring.week_reference`): it stands until a whole clean week replaces it."""
    return (
        reference.kind == "baseline"
        and not spans_week(reference)
        and reference.reason.startswith(PARTIAL_WEEK)
    )


def spans_week(reference: Reference) -> bool:
    """Whether ``reference`` spans a week: its topics are then compared hour of the week by
    hour of the week (else, with an hour mix, hour of the day by hour of the day)."""
    return (
        reference.hour_mix is not None
        and reference.window_from is not None
        and reference.window_to is not None
        and reference.window_to - reference.window_from >= WEEK
    )


def rhythm(reference: Reference) -> str:
    """How a window's topic mix is compared: ``by hour of the week``, ``by hour of the day``
    or ``whole`` (the reference's whole mix)."""
    if reference.hour_mix is None:
        return "whole"
    return "by hour of the week" if spans_week(reference) else "by hour of the day"


def hour_of_week(at: dt.datetime) -> int:
    """0 = Monday 00:00–01:00 UTC … 167 = Sunday 23:00–24:00 UTC."""
    utc = at.astimezone(dt.UTC)
    return utc.weekday() * 24 + utc.hour


@dataclasses.dataclass(frozen=True)
class Rows:
    """Predictions in time order: what a live or baseline reference is built from."""

    confidences: list[float]
    topics: list[str]
    times: list[dt.datetime]

    def __post_init__(self) -> None:
        if not len(self.confidences) == len(self.topics) == len(self.times):
            raise ValueError("confidences, topics and times differ in length")


def mix_of(topics: Sequence[str]) -> dict[str, float]:
    counts = Counter(topics)
    total = sum(counts.values()) or 1
    return {t: n / total for t, n in sorted(counts.items())}


def hour_counts(topics: Sequence[str], times: Sequence[dt.datetime]) -> HourMix:
    out: dict[int, Counter[str]] = {}
    for topic, at in zip(topics, times, strict=True):
        out.setdefault(hour_of_week(at), Counter())[topic] += 1
    return {h: dict(c) for h, c in sorted(out.items())}


def _by_hour_of_day(hour_mix: HourMix) -> HourMix:
    out: dict[int, Counter[str]] = {}
    for hour, counts in hour_mix.items():
        out.setdefault(hour % 24, Counter()).update(counts)
    return {h: dict(c) for h, c in out.items()}


def _hour_cells(
    hour_mix: HourMix, times: Sequence[dt.datetime], weekly: bool
) -> tuple[HourMix, Counter[int]]:
    """The reference's counts per hour cell and the window's rows per cell: hours of the
    week (``weekly``) or hours of the day."""
    if weekly:
        return hour_mix, Counter(hour_of_week(t) for t in times)
    return _by_hour_of_day(hour_mix), Counter(t.astimezone(dt.UTC).hour for t in times)


def expected_mix(
    topic_mix: Mapping[str, float],
    hour_mix: HourMix | None,
    times: Sequence[dt.datetime],
    *,
    weekly: bool = True,
) -> dict[str, float]:
    """The reference mix a window with these prediction times should have: with an hour mix,
    the mix of each hour the window covers (of the week where ``weekly``, else of the day),
    weighted by the window's rows in that hour (each hour's counts shrunk toward the whole
    mix by ``HOUR_PRIOR`` rows, so a sparse hour does not read as a missing topic); without
    one, the whole mix."""
    if not hour_mix or not times:
        return dict(topic_mix)
    total = sum(topic_mix.values()) or 1.0
    whole = {t: s / total for t, s in topic_mix.items()}
    cells, rows_per_hour = _hour_cells(hour_mix, times, weekly)
    out: dict[str, float] = {}
    for hour, n in rows_per_hour.items():
        counts = cells.get(hour, {})
        size = sum(counts.values()) + HOUR_PRIOR
        for topic in set(whole) | set(counts):
            share = (counts.get(topic, 0) + HOUR_PRIOR * whole.get(topic, 0.0)) / size
            out[topic] = out.get(topic, 0.0) + n * share
    n_all = sum(rows_per_hour.values())
    return {t: v / n_all for t, v in sorted(out.items())}


def topic_psi(
    topic_mix: Mapping[str, float],
    hour_mix: HourMix | None,
    topics: Sequence[str],
    times: Sequence[dt.datetime],
    *,
    weekly: bool = True,
) -> float:
    return categorical_psi(expected_mix(topic_mix, hour_mix, times, weekly=weekly), Counter(topics))


def expected_rows(
    n_rows: int, hour_mix: HourMix | None, times: Sequence[dt.datetime], *, weekly: bool
) -> float:
    """How many reference rows the expected mix of a window with these times rests on: the
    whole reference without an hour mix; with one, the hour cells the window covers. Each
    hour's share is ``(c_h + P q) / (s_h + P)`` (``P`` = :data:`HOUR_PRIOR`, ``q`` the whole
    mix over ``n_rows``), so with ``w_h`` the window's share in hour ``h`` its variance is
    ``p(1-p)`` times ``sum(w_h^2 s_h / (s_h + P)^2) + (sum(w_h P / (s_h + P)))^2 / n_rows``; this
    returns the inverse of that sum. An hour the reference never saw rests on the whole mix."""
    if not hour_mix or not times or n_rows <= 0:
        return float(max(n_rows, 1))
    cells, rows_per_hour = _hour_cells(hour_mix, times, weekly)
    n = sum(rows_per_hour.values())
    own, shared = 0.0, 0.0
    for h, k in rows_per_hour.items():
        size = sum(cells.get(h, {}).values())
        w = k / n
        own += w * w * size / (size + HOUR_PRIOR) ** 2
        shared += w * HOUR_PRIOR / (size + HOUR_PRIOR)
    return 1.0 / (own + shared * shared / n_rows)


def chunk_psi(
    confidences: Sequence[float],
    *,
    window_rows: int,
    bins: int,
    topic_mix: Mapping[str, float],
    hour_mix: HourMix | None = None,
    topics: Sequence[str] | None = None,
    times: Sequence[dt.datetime] | None = None,
    weekly: bool = True,
) -> ChunkPsi | None:
    """Each of ``k >= 6`` consecutive chunks of ``min(window_rows, n // 6)`` rows against the
    whole reference (None when chunks would be under ``MIN_CHUNK_ROWS`` rows). Topics only
    where per-row topics (and, with an hour mix, times) are given."""
    n = len(confidences)
    rows = min(window_rows, n // MIN_CHUNKS)
    if rows < MIN_CHUNK_ROWS:
        return None
    edges = quantile_edges(confidences, bins)
    spans = [(i * rows, (i + 1) * rows) for i in range(n // rows)]
    conf = tuple(psi(confidences, confidences[a:b], edges) for a, b in spans)
    topic_psis = None
    if topics is not None:
        stamps = times if times is not None else []
        topic_psis = tuple(
            topic_psi(
                topic_mix, hour_mix, topics[a:b], stamps[a:b] if stamps else [], weekly=weekly
            )
            for a, b in spans
        )
    return ChunkPsi(rows=rows, bins=bins, confidence=conf, topics=topic_psis)


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """One metric's cut-offs; ``source`` says what set them: the fixed levels, the
    reference's chunks, or the window's sampling noise (``sampling``: that floor, where
    computed)."""

    warn: float
    drift: float
    source: str  # "fixed" | "chunks" | "sampling"
    chunk_max: float | None = None
    sampling: float | None = None

    def level(self, value: float) -> Level:
        return level_of(value, self.warn, self.drift)

    def lifted_to(self, floor: float, ratio: float) -> Thresholds:
        """These cut-offs with ``floor`` as the least warn level (drift ``floor * ratio``)."""
        if floor <= self.warn:
            return dataclasses.replace(self, sampling=floor)
        return Thresholds(floor, max(self.drift, floor * ratio), "sampling", self.chunk_max, floor)


@dataclasses.dataclass(frozen=True)
class ReferenceThresholds:
    confidence: Thresholds
    topics: Thresholds
    note: str = ""

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def _thresholds(
    psis: Sequence[float] | None, warn: float, drift: float, margin: float
) -> Thresholds:
    if not psis:
        return Thresholds(warn, drift, "fixed")
    top = max(psis)
    upper = top * (1 + margin)
    if upper <= warn:
        return Thresholds(warn, drift, "fixed", top)
    return Thresholds(upper, max(drift, upper * drift / warn), "chunks", top)


def thresholds(
    reference: Reference, *, warn: float, drift: float, margin: float, bins: int
) -> ReferenceThresholds:
    """Each metric's warn/drift cut-offs for ``reference`` (see the module's docstring)."""
    chunks = reference.chunks
    if chunks is None:
        return ReferenceThresholds(
            _thresholds(None, warn, drift, margin),
            _thresholds(None, warn, drift, margin),
            "fixed levels: the reference is too small to cut into chunks",
        )
    if chunks.bins != bins:  # confidence PSIs with other bins are not comparable
        return ReferenceThresholds(
            _thresholds(None, warn, drift, margin),
            _thresholds(chunks.topics, warn, drift, margin),
            f"confidence at fixed levels: chunks were cut with {chunks.bins} bins, "
            f"checks use {bins}; set the reference again",
        )
    return ReferenceThresholds(
        _thresholds(chunks.confidence, warn, drift, margin),
        _thresholds(chunks.topics, warn, drift, margin),
        f"{chunks.count} chunks of {chunks.rows} rows",
    )


def sampling_floors(
    cuts: ReferenceThresholds,
    reference: Reference,
    *,
    bins: int,
    topics: Sequence[str],
    times: Sequence[dt.datetime],
    quantile: float,
    ratio: float,
    rows: int | None = None,
) -> ReferenceThresholds:
    """``cuts`` lifted, metric by metric, to the PSI that a window of ``len(topics)`` rows at
    ``times`` exceeds by sampling noise alone with probability ``1 - quantile``
    (:func:`monitoring.psi.sampling_psi`): confidence over the reference's bins and rows,
    topics over the topics of the reference and the window and the reference rows their
    expected mix rests on (:func:`expected_rows`). Unchanged where ``quantile`` is 0. With
    ``rows`` and no ``topics``: the floors of a window of that many rows compared with the
    whole reference (what the drift page shows before any window is seen)."""
    n = rows if rows is not None and not topics else len(topics)
    if quantile <= 0 or n == 0 or not reference.confidences:
        return cuts
    conf_bins = len(quantile_edges(reference.confidences, bins)) + 1
    conf_floor = sampling_psi(conf_bins, n, len(reference.confidences), quantile)
    weekly = spans_week(reference)
    m = expected_rows(reference.n_rows, reference.hour_mix, times, weekly=weekly)
    categories = len(set(reference.topic_mix) | set(topics)) if topics else len(reference.topic_mix)
    topic_floor = sampling_psi(categories, n, m, quantile)
    return dataclasses.replace(
        cuts,
        confidence=cuts.confidence.lifted_to(conf_floor, ratio),
        topics=cuts.topics.lifted_to(topic_floor, ratio),
    )


def settings_thresholds(settings: Settings, reference: Reference) -> ReferenceThresholds:
    """The cut-offs a full drift window (``NEWSFLOW_DRIFT_WINDOW_SIZE`` rows) meets against
    ``reference`` as a whole (a check by hour of the day or week can lift the topic floor
    further: each run records its own)."""
    cuts = thresholds(
        reference,
        warn=settings.drift_warn,
        drift=settings.drift_threshold,
        margin=settings.drift_chunk_margin,
        bins=settings.drift_bins,
    )
    return sampling_floors(
        cuts,
        reference,
        bins=settings.drift_bins,
        topics=[],
        times=[],
        quantile=settings.drift_noise_quantile,
        ratio=settings.drift_threshold / settings.drift_warn,
        rows=settings.drift_window_size,
    )


def describe(reference: Reference) -> str:
    """``training``, ``live since T`` or ``baseline T1–T2`` (UTC)."""

    def when(at: dt.datetime | None) -> str:
        return at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC") if at else "?"

    if reference.kind == "live":
        return f"live since {when(reference.window_from)}"
    if reference.kind == "baseline":
        return f"baseline {when(reference.window_from)} – {when(reference.window_to)}"
    return "training"


def build_reference(
    rows: Rows,
    *,
    model_version: str,
    kind: str,
    window_rows: int,
    bins: int,
    status: str = "active",
    reason: str = "",
    span: tuple[dt.datetime, dt.datetime] | None = None,
) -> NewReference:
    """A live or baseline reference from time-ordered predictions: mix, hour-of-week mix
    where they span a day (compared by hour of the week where they span a week, else by hour
    of the day), chunk PSIs. ``span``: the window the rows were sampled from
    (default their first and last times), recorded as the reference's window."""
    if not rows.confidences:
        raise ValueError("a reference needs at least one prediction")
    start, end = span or (rows.times[0], rows.times[-1])
    mix = mix_of(rows.topics)
    hours = hour_counts(rows.topics, rows.times) if end - start >= DAY else None
    chunks = chunk_psi(
        rows.confidences,
        window_rows=window_rows,
        bins=bins,
        topic_mix=mix,
        hour_mix=hours,
        topics=rows.topics,
        times=rows.times,
        weekly=end - start >= WEEK,
    )
    return NewReference(
        model_version=model_version,
        kind=kind,
        status=status,
        reason=reason,
        n_rows=len(rows.confidences),
        confidences=rows.confidences,
        topic_mix=mix,
        window_from=start,
        window_to=end,
        hour_mix=hours,
        chunks=chunks,
    )


def training_reference(meta: ModelMetadata, *, window_rows: int | None, bins: int) -> NewReference:
    """The model folder's reference (no per-row topics: confidence chunks only)."""
    ref = meta.reference
    chunks = None
    if window_rows is not None and ref.confidences:
        chunks = chunk_psi(
            ref.confidences, window_rows=window_rows, bins=bins, topic_mix=ref.topic_mix
        )
    return NewReference(
        model_version=meta.version,
        kind="training",
        status="active",
        reason="the model folder's held-out sample",
        n_rows=len(ref.confidences),
        confidences=ref.confidences,
        topic_mix=ref.topic_mix,
        chunks=chunks,
    )


def unstored(new: NewReference) -> Reference:
    """``new`` as a reference record without a database row (id None)."""
    return Reference(
        id=None,
        model_version=new.model_version,
        kind=new.kind,
        status=new.status,
        reason=new.reason,
        window_from=new.window_from,
        window_to=new.window_to,
        n_rows=new.n_rows,
        confidences=tuple(new.confidences),
        topic_mix=dict(new.topic_mix),
        hour_mix=new.hour_mix,
        chunks=new.chunks,
        created_at=None,
    )


def resolve_reference(
    settings: Settings,
    engine: Engine,
    meta: ModelMetadata,
    *,
    folder: Path | None = None,
    now: dt.datetime | None = None,
) -> Reference | None:
    """The reference a check of ``meta``'s version uses: stores the training reference the
    first time; with the model's ``folder``, while the reference in use does not span a week
    (training, or a shorter live one), the week before ``now`` re-scored, tried once, as soon
    as the feed covers it (:mod:`monitoring.week_reference`); else adopts the live one when it
    is due (:func:`try_live_reference`). A baseline stands. None when the folder has no
    reference sample and nothing else is stored. A reference cut from the clean part of a
    refused week (:func:`partial_week`) is used, and replaced by a whole week once one
    passes."""
    active = refs.active_reference(engine, model_version=meta.version)
    if active is None and meta.reference.confidences:
        new = training_reference(
            meta, window_rows=settings.drift_window_size, bins=settings.drift_bins
        )
        active = refs.store_training_reference(engine, new)
    if active is not None and active.kind == "baseline" and not partial_week(active):
        return active  # set by a person, or already the week before
    if folder is not None and (active is None or not spans_week(active)):
        from monitoring.week_reference import try_week_reference  # it builds on this module

        week = try_week_reference(
            settings, engine, meta, folder, now=now or dt.datetime.now(dt.UTC)
        )
        if week is not None and week.status == "active":
            return week
    if active is not None and active.kind != "training":
        return active
    if refs.feed_reference_adopted(engine, model_version=meta.version):
        return active
    live = try_live_reference(settings, engine, meta.version, training=active)
    return live if live is not None and live.status == "active" else active


def live_window(settings: Settings, engine: Engine, model_version: str) -> tuple[Rows, str] | None:
    """The live window due for a try, and what it is: the first N predictions, or after a
    refused window the latest N once all of them came after it. None while not due."""
    n = settings.live_reference_rows
    last = refs.last_rejected_live(engine, model_version=model_version)
    if last is None:
        got = refs.first_predictions(engine, model_version=model_version, limit=n)
        what = f"the first {n} predictions of {model_version}"
    else:
        got = refs.latest_timed_predictions(engine, model_version=model_version, limit=n)
        if got and last.window_to is not None and got[0].at <= last.window_to:
            return None  # fewer than N predictions since the refused window
        what = f"the latest {n} predictions of {model_version} (after refused window #{last.id})"
    if len(got) < n:
        return None
    return Rows([p.confidence for p in got], [p.topic for p in got], [p.at for p in got]), what


def judge_window(
    settings: Settings,
    rows: Rows,
    training: Sequence[float] | None,
    *,
    per_chunk_training: bool = True,
) -> WindowVerdict:
    """A live or automatic week window judged by :func:`monitoring.live_window.check_window`
    with the settings' limits, against the ``training`` confidences."""
    return check_window(
        rows.confidences,
        rows.topics,
        rows.times,
        training=training or None,
        chunk_rows=settings.drift_window_size,
        bins=settings.drift_bins,
        max_psi=settings.live_reference_max_psi,
        max_topic_psi=settings.live_reference_max_topic_psi,
        per_chunk_training=per_chunk_training,
    )


def try_live_reference(
    settings: Settings, engine: Engine, model_version: str, *, training: Reference | None
) -> Reference | None:
    """The due live window (:func:`live_window`) as the version's reference: stored active
    when it passes :func:`monitoring.live_window.check_window` against ``training``, else
    stored rejected with the reason. None while no window is due."""
    due = live_window(settings, engine, model_version)
    if due is None:
        return None
    rows, what = due
    verdict = judge_window(settings, rows, training.confidences if training is not None else None)
    n = settings.live_reference_rows
    if verdict.accepted:
        status, reason = "active", f"{what}; {verdict.reason()}"
    else:
        status = "rejected"
        reason = (
            f"{what} refused: {verdict.reason()}; the training reference stays, and the latest "
            f"{n} predictions are tried once {n} more have arrived"
        )
    new = build_reference(
        rows,
        model_version=model_version,
        kind="live",
        window_rows=settings.drift_window_size,
        bins=settings.drift_bins,
        status=status,
        reason=reason,
    )
    stored = refs.store_live_reference(engine, new)
    if stored is None:  # another check stored it meanwhile
        return refs.active_reference(engine, model_version=model_version)
    (log.info if status == "active" else log.warning)("live reference %s: %s", status, reason)
    return stored
