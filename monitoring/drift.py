"""The drift check: PSI of the champion's confidence distribution and topic mix, current
window against the reference stored with the model at promotion.

* bins fixed from the reference's quantiles (see :mod:`monitoring.psi`);
* a window smaller than the minimum is reported as ``insufficient``, never as drift;
* an Evidently HTML report (reference vs current) is saved and its own PSI recorded beside
  ours;
* a label-free accuracy estimate (mean calibrated confidence) and, where reviewers have
  labelled items, the reviewed accuracy with a Wilson interval;
* two signals from the reviewers' recent uniform sample (:mod:`monitoring.review_signals`):
  the share labelled "none of these" and the recent reviewed accuracy, each joining the
  levels once enough items are reviewed (they alert; they never decide a retraining);
* the retraining decision (:mod:`monitoring.decision`): from accuracy evidence or an
  explicit request, never from PSI alone; recorded with its evidence on the run;
* every run is a row in ``drift_runs``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple, cast

from sqlalchemy import Engine

from monitoring.decision import (
    RetrainDecision,
    RetrainEvidence,
    RetrainPolicy,
    RetrainRequest,
    decide_retraining,
)
from monitoring.psi import (
    psi,
    quantile_edges,
    shares,
    wilson_interval,
)
from monitoring.reference import (
    describe,
    resolve_reference,
    rhythm,
    sampling_floors,
    spans_week,
    thresholds,
    topic_psi,
    training_reference,
    unstored,
)
from monitoring.review_signals import (
    REVIEWED_ACCURACY,
    UNKNOWN,
    ReviewSignal,
    mix_adjusted,
    recent_accuracy,
    unknown_share,
)
from monitoring.review_signals import describe as describe_signal
from pipeline.core.clock import Clock, wall_clock
from pipeline.core.db import drift_runs, events, references, reviews
from pipeline.core.db.events import LiveAccuracy
from pipeline.core.db.references import Reference
from pipeline.core.errors import ModelError
from pipeline.core.model_folder import ModelMetadata, read_metadata
from pipeline.core.settings import Settings

log = logging.getLogger("newsflow.drift")


DriftLevel = Literal["ok", "warn", "drift", "insufficient", "error"]


@dataclasses.dataclass
class DriftResult:
    level: DriftLevel
    model_version: str | None
    window_size: int
    psi_confidence: float | None = None
    psi_topics: float | None = None
    psi_evidently: float | None = None
    estimated_accuracy: float | None = None
    reviewed_accuracy: float | None = None
    reviewed_interval: tuple[float, float] | None = None
    reviewed_n: int = 0
    report_path: str | None = None
    reason: str = ""
    run_id: int | None = None
    started_at: str = ""
    # Reference vs current share per confidence bin (bins cut at the reference's quantiles).
    histogram: dict[str, list[float]] | None = None
    # Whether to retrain, why, and the evidence (accuracies vs the reference, PSI values).
    decision: RetrainDecision | None = None
    # The reference compared with (monitoring.reference): its row, what it is ("training",
    # "live since T", "baseline T1 – T2"), each metric's cut-offs and level; the window's
    # first and last prediction time.
    reference_id: int | None = None
    reference: str = ""
    thresholds: dict[str, Any] | None = None
    levels: dict[str, str] | None = None
    window_from: dt.datetime | None = None
    window_to: dt.datetime | None = None
    # The reviewers' signals (monitoring.review_signals), by metric: value, interval, n, level.
    review_signals: dict[str, dict[str, Any]] | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Window:
    confidences: list[float]
    topics: list[str]
    times: list[dt.datetime] = dataclasses.field(default_factory=list)  # predicted_at


def load_window(
    engine: Engine, model_version: str, *, size: int, minutes: float | None = None
) -> Window:
    """The latest predictions of ``model_version`` (the last ``size`` or the last
    ``minutes``), oldest first, with their times."""
    rows = references.latest_timed_predictions(
        engine, model_version=model_version, limit=size, minutes=minutes
    )
    return Window([r.confidence for r in rows], [r.topic for r in rows], [r.at for r in rows])


_SEVERITY = {"ok": 0, "warn": 1, "drift": 2}


def compare(
    meta: ModelMetadata,
    window: Window,
    *,
    bins: int,
    warn: float,
    drift: float,
    min_window: int,
    reference: Reference | None = None,
    margin: float = 0.0,
    noise_quantile: float = 0.0,
) -> DriftResult:
    """Pure comparison of a window with ``reference`` (default: the model folder's own,
    at the fixed levels). Topic mix by hour of the week or of the day where the reference
    has an hour mix; each metric's cut-offs from the reference's chunks with
    ``warn``/``drift`` as their floor (:func:`monitoring.reference.thresholds`), lifted to
    the window's sampling noise at ``noise_quantile``
    (:func:`monitoring.reference.sampling_floors`; 0: not lifted)."""
    result = DriftResult(
        level="insufficient", model_version=meta.version, window_size=len(window.confidences)
    )
    ref = reference or unstored(training_reference(meta, window_rows=None, bins=bins))
    result.reference_id, result.reference = ref.id, describe(ref)
    if window.times:
        result.window_from, result.window_to = min(window.times), max(window.times)
    if not ref.confidences:
        result.level, result.reason = "error", "the model folder has no reference distribution"
        return result
    if len(window.confidences) < min_window:
        result.reason = f"window has {len(window.confidences)} predictions; need {min_window}"
        return result
    edges = quantile_edges(ref.confidences, bins)
    result.psi_confidence = psi(ref.confidences, window.confidences, edges)
    result.histogram = {
        "edges": [float(e) for e in edges],
        "reference": shares(ref.confidences, edges).tolist(),
        "current": shares(window.confidences, edges).tolist(),
    }
    weekly = spans_week(ref)
    result.psi_topics = topic_psi(
        ref.topic_mix, ref.hour_mix, window.topics, window.times, weekly=weekly
    )
    result.estimated_accuracy = sum(window.confidences) / len(window.confidences)
    cuts = sampling_floors(
        thresholds(ref, warn=warn, drift=drift, margin=margin, bins=bins),
        ref,
        bins=bins,
        topics=window.topics,
        times=window.times,
        quantile=noise_quantile,
        ratio=drift / warn,
    )
    levels = {
        "confidence": cuts.confidence.level(result.psi_confidence),
        "topics": cuts.topics.level(result.psi_topics),
    }
    result.thresholds, result.levels = cuts.to_json(), dict(levels)
    result.level = max(levels.values(), key=_SEVERITY.__getitem__)
    by_hour = "" if rhythm(ref) == "whole" else f" {rhythm(ref)}"
    result.reason = (
        f"PSI confidence {result.psi_confidence:.3f} ({levels['confidence']}; warn "
        f"{cuts.confidence.warn:.3f}, drift {cuts.confidence.drift:.3f}), topics"
        f"{by_hour} {result.psi_topics:.3f} ({levels['topics']}; warn {cuts.topics.warn:.3f}, "
        f"drift {cuts.topics.drift:.3f}) against the {result.reference} reference"
    )
    return result


def add_review_signals(result: DriftResult, signals: list[ReviewSignal]) -> None:
    """Record the reviewer ``signals`` on ``result``; those with enough items join its
    per-metric levels (and so its level) where the window was compared. Pure."""
    result.review_signals = {sig.metric: sig.to_json() for sig in signals}
    measured = {sig.metric: sig.level for sig in signals if sig.measured}
    if result.levels is not None and result.level in _SEVERITY:
        result.levels.update(measured)
        worst = max(result.levels.values(), key=_SEVERITY.__getitem__)
        result.level = cast(DriftLevel, worst)
    if signals:
        hours = signals[0].hours
        clauses = "; ".join(describe_signal(sig) for sig in signals)
        sep = "; " if result.reason else ""
        result.reason += f"{sep}reviewers, last {hours:g} h of reviews: {clauses}"


def gather_review_signals(
    settings: Settings,
    engine: Engine,
    meta: ModelMetadata,
    reference: Reference | None,
    *,
    now: dt.datetime,
    held_to: LiveAccuracy | None = None,
) -> list[ReviewSignal]:
    """The reviewer signals at ``meta``'s version's check: first-round reviews of articles
    received within ``NEWSFLOW_DRIFT_REVIEW_HOURS`` before ``now`` (the check's clock); "none
    of these" among all of them (every version's), accuracy on this version's uniform ones
    against ``held_to`` (:func:`reviewed_reference`; None: the reference estimate)."""
    hours = settings.drift_review_hours
    since = now - dt.timedelta(hours=hours)
    counts = reviews.recent_uniform_review_counts(engine, meta.version, since=since, until=now)
    against = (
        held_accuracy(
            held_to,
            reviews.uniform_topic_counts(engine, meta.version, since=since, until=now),
            settings.retrain_accuracy_margin,
        )
        if held_to is not None
        else reference_accuracy(meta, reference)
    )
    return [
        unknown_share(  # every sampled item: a new kind is what uncertainty sampling finds
            counts.none_any,
            counts.labelled_any,
            warn=settings.drift_unknown_warn,
            min_n=settings.drift_review_min,
            hours=hours,
        ),
        recent_accuracy(
            counts.correct,
            counts.topic,
            reference=against,
            margin=settings.retrain_accuracy_margin,
            min_n=settings.drift_review_min,
            hours=hours,
        ),
    ]


def evidently_report(
    meta: ModelMetadata, window: Window, path: Path, reference: Reference | None = None
) -> float | None:
    """Evidently HTML report (``reference``, default the model folder's, vs current
    confidence and topic); returns Evidently's own PSI of confidence."""
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    confidences = list(reference.confidences if reference else meta.reference.confidences)
    mix = reference.topic_mix if reference else meta.reference.topic_mix
    ref = pd.DataFrame({"confidence": confidences, "topic": _topics_sample(mix, len(confidences))})
    cur = pd.DataFrame({"confidence": window.confidences, "topic": window.topics})
    definition = DataDefinition(numerical_columns=["confidence"], categorical_columns=["topic"])
    report = Report(
        [
            ValueDrift(column="confidence", method="psi", threshold=0.1),
            ValueDrift(column="topic", method="psi", threshold=0.1),
        ]
    )
    snap = report.run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    snap.save_html(str(path))
    value = snap.dict()["metrics"][0]["value"]
    return float(value) if value is not None else None


def _topics_sample(mix: dict[str, float], n: int) -> list[str]:
    """A reference topic column with the reference mix (Evidently needs rows)."""
    out: list[str] = []
    for topic, share in sorted(mix.items()):
        out += [topic] * round(share * n)
    return (out + [max(mix, key=mix.__getitem__)] * n)[:n] if mix else ["?"] * n


class ReviewedAccuracy(NamedTuple):
    """Reviewed accuracy on the uniform slice: ``correct`` of ``n``, with its 95 % Wilson
    interval."""

    correct: int
    n: int

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.n if self.n else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson_interval(self.correct, self.n) if self.n else None


def reviewed_accuracy(engine: Engine, model_version: str) -> ReviewedAccuracy:
    """Accuracy of this model version on its reviewed uniform sample (first round only,
    labels that name a topic). Uncertainty-sampled items are left out: they are chosen for
    being hard, so counting them would understate accuracy."""
    counts = reviews.reviewed_accuracy_counts(engine, model_version, sampled_as="uniform")
    return ReviewedAccuracy(counts.correct, counts.labelled)


def reference_accuracy(meta: ModelMetadata, reference: Reference | None = None) -> float | None:
    """The reference's label-free accuracy estimate: the mean calibrated confidence of the
    champion on its reference sample (``reference``, default the folder's held-out one)."""
    ref = reference.confidences if reference is not None else meta.reference.confidences
    return sum(ref) / len(ref) if ref else None


def reviewed_reference(engine: Engine, meta: ModelMetadata) -> LiveAccuracy | None:
    """What reviewed accuracy is held to: the accuracy the live check measured on reviewed
    live items when ``meta``'s version was promoted (None: the reference estimate stands)."""
    return events.promoted_live_accuracy(engine, version=meta.version)


def held_accuracy(
    live: LiveAccuracy, reviewed_by_topic: Mapping[str, tuple[int, int]], margin: float
) -> float:
    """The live check's accuracy weighted to the topics of the reviewed items it is compared
    with (:func:`monitoring.review_signals.mix_adjusted`), never more than ``margin`` under
    its plain accuracy (a feed that turns to a topic the model reads badly is a drop worth a
    retraining, not only a mix); the plain accuracy where the event recorded no per-topic
    counts."""
    adjusted = mix_adjusted(live.accuracy, live.by_topic, reviewed_by_topic)
    return live.accuracy if adjusted is None else max(adjusted, live.accuracy - margin)


def _recent_note(signal: dict[str, Any] | None) -> str:
    """The recent reviewed-accuracy signal in a clause of the decision's reason."""
    if not signal or signal.get("value") is None or not signal.get("interval"):
        return ""
    low, high = signal["interval"]
    return (
        f"reviewed accuracy of the last {signal.get('hours', 24):g} h {signal['value']:.3f} of "
        f"{signal.get('n')} ({low:.3f}-{high:.3f}), under {signal.get('warn_at') or 0:.3f}"
    )


def _held_to(live: LiveAccuracy | None) -> str:
    if live is None:
        return ""
    how = ", weighted to these reviews' topics" if live.by_topic else ""
    return (
        f"the live check's accuracy at promotion{how} ({live.n} reviewed, event #{live.event_id})"
    )


def decide(
    settings: Settings,
    engine: Engine,
    result: DriftResult,
    meta: ModelMetadata | None,
    request: RetrainRequest | None,
    reference: Reference | None = None,
    held_to: LiveAccuracy | None = None,
    now: dt.datetime | None = None,
) -> RetrainDecision:
    """Gather the evidence for ``result`` (the uniform review slice for reviewed accuracy, of
    articles received in the last ``NEWSFLOW_RETRAIN_REVIEWED_HOURS`` before ``now``: a
    version that served for weeks would otherwise dilute a recent drop in its whole history;
    held to ``held_to`` where given; the reference accuracy from ``reference``, default the
    folder's) and decide whether to retrain."""
    rev_acc, rev_n, rev_interval = None, 0, None
    hours = settings.retrain_reviewed_hours
    since = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(hours=hours) if hours > 0 else None
    by_topic: dict[str, tuple[int, int]] = {}
    if meta is not None:
        by_topic = reviews.uniform_topic_counts(engine, meta.version, since=since, until=now)
        counts = reviews.ReviewedCounts(
            sum(c for c, _ in by_topic.values()), sum(n for _, n in by_topic.values())
        )
        if counts.labelled:
            rev_n, rev_acc = counts.labelled, counts.correct / counts.labelled
            rev_interval = wilson_interval(counts.correct, counts.labelled)
    evidence = RetrainEvidence(
        level=result.level,
        estimated_accuracy=result.estimated_accuracy,
        reference_accuracy=reference_accuracy(meta, reference) if meta is not None else None,
        reviewed_reference=(
            held_accuracy(held_to, by_topic, settings.retrain_accuracy_margin)
            if held_to is not None and meta is not None
            else None
        ),
        reviewed_reference_source=_held_to(held_to),
        reviewed_reference_n=held_to.n if held_to is not None else 0,
        unknown_level=str((result.review_signals or {}).get(UNKNOWN, {}).get("level", "")),
        recent_reviewed_level=str(
            (result.review_signals or {}).get(REVIEWED_ACCURACY, {}).get("level", "")
        ),
        recent_reviewed_note=_recent_note((result.review_signals or {}).get(REVIEWED_ACCURACY)),
        reviewed_accuracy=rev_acc,
        reviewed_n=rev_n,
        reviewed_interval=rev_interval,
        reviewed_slice="uniform",
        psi_confidence=result.psi_confidence,
        psi_topics=result.psi_topics,
        request=request,
    )
    policy = RetrainPolicy(
        margin=settings.retrain_accuracy_margin,
        automatic=settings.retrain_on_drift,
        min_reviewed=settings.retrain_min_reviewed,
    )
    return decide_retraining(evidence, policy)


def record(
    engine: Engine, result: DriftResult, started: dt.datetime, *, clock: Clock = wall_clock
) -> int:
    return drift_runs.insert_drift_run(
        engine,
        drift_runs.NewDriftRun(
            started_at=started,
            finished_at=clock(),
            model_version=result.model_version,
            level=result.level,
            window_size=result.window_size,
            psi_confidence=result.psi_confidence,
            psi_topics=result.psi_topics,
            psi_evidently=result.psi_evidently,
            estimated_accuracy=result.estimated_accuracy,
            reviewed_accuracy=result.reviewed_accuracy,
            report_path=result.report_path,
            details={
                "reason": result.reason,
                "reviewed_n": result.reviewed_n,
                "reviewed_interval": result.reviewed_interval,
                "histogram": result.histogram,
                "reference": result.reference,
                "thresholds": result.thresholds,
                "levels": result.levels,
                "review_signals": result.review_signals,
            },
            decision=result.decision.to_json() if result.decision else None,
            reference_id=result.reference_id,
            window_from=result.window_from,
            window_to=result.window_to,
        ),
    )


def run_drift_check(
    settings: Settings,
    *,
    engine: Engine,
    model_dir: Path | None = None,
    report: bool = True,
    request: RetrainRequest | None = None,
    on_refused: Callable[[str], None] | None = None,
    clock: Clock = wall_clock,
) -> DriftResult:
    """Check the champion (or ``model_dir``), decide on retraining (``request``: an explicit
    reason to), record the run, alert on warn/drift. ``on_refused(reason)``: told when the
    champion's folder fails its checks (``bad_files``: its hashes; ``bad_folder``: it does not
    read). ``clock``: the run's and its alerts' time (a replay's simulated clock)."""
    started = clock()
    folder: Path | None = None
    try:
        folder = model_dir or _champion_folder(settings)
        meta = read_metadata(folder)
    except Exception as exc:
        if on_refused is not None and isinstance(exc, ModelError):
            on_refused("bad_files" if folder is None else "bad_folder")
        result = DriftResult(
            level="error",
            model_version=None,
            window_size=0,
            reason=f"no reference: {exc}",
            started_at=started.isoformat(),
        )
        result.decision = decide(settings, engine, result, None, request)
        result.run_id = record(engine, result, started, clock=clock)
        return result
    # adopts the week before (re-scored) or a live one when due
    reference = resolve_reference(settings, engine, meta, folder=folder, now=started)
    window = load_window(
        engine, meta.version, size=settings.drift_window_size, minutes=settings.drift_window_minutes
    )
    result = compare(
        meta,
        window,
        bins=settings.drift_bins,
        warn=settings.drift_warn,
        drift=settings.drift_threshold,
        min_window=settings.drift_min_window,
        reference=reference,
        margin=settings.drift_chunk_margin,
        noise_quantile=settings.drift_noise_quantile,
    )
    result.started_at = started.isoformat()
    rev = reviewed_accuracy(engine, meta.version)
    result.reviewed_accuracy, result.reviewed_n = rev.accuracy, rev.n
    result.reviewed_interval = rev.interval
    held_to = reviewed_reference(engine, meta)  # one look-up for the signal and the decision
    add_review_signals(
        result,
        gather_review_signals(settings, engine, meta, reference, now=started, held_to=held_to),
    )
    if report and result.level in {"ok", "warn", "drift"}:
        path = settings.reports_path() / f"drift-{started:%Y%m%dT%H%M%S}-{meta.version}.html"
        try:
            result.psi_evidently = evidently_report(meta, window, path, reference)
            result.report_path = str(path)
        except Exception as exc:  # the report is for people; the decision stands without it
            log.error("Evidently report failed: %s", exc)
    result.decision = decide(
        settings, engine, result, meta, request, reference, held_to, now=started
    )
    result.run_id = record(engine, result, started, clock=clock)
    alert(settings, result, engine=engine, clock=clock)
    return result


def _champion_folder(settings: Settings) -> Path:
    from pipeline.core import registry
    from pipeline.core.errors import RegistryError

    info = registry.version_by_alias(settings, registry.CHAMPION)
    if info is None:
        raise RegistryError("no champion registered")
    return registry.local_copy(settings, info.version)


def alert(
    settings: Settings, result: DriftResult, *, engine: Engine, clock: Clock = wall_clock
) -> None:
    """Log line on warn/drift; every run with PSI figures feeds the alert lifecycle
    (:mod:`monitoring.alerts`: one notice per condition and repeat interval, resolved when it
    clears, delivered by the scheduler's delivery job). Never raises."""
    from monitoring.alerts import record_drift

    if result.level in {"warn", "drift"}:
        decided = f"; {result.decision.action}: {result.decision.reason}" if result.decision else ""
        log.warning(
            "drift level %s for model %s: %s%s",
            result.level,
            result.model_version,
            result.reason,
            decided,
            extra={"drift_run_id": result.run_id},
        )
    record_drift(settings, engine, result, clock=clock)
