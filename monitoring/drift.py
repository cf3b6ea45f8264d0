"""The drift check: PSI of the champion's confidence distribution and topic mix, current
window against the reference stored with the model at promotion.

* bins fixed from the reference's quantiles (see :mod:`monitoring.psi`);
* a window smaller than the minimum is reported as ``insufficient``, never as drift;
* an Evidently HTML report (reference vs current) is saved and its own PSI recorded beside
  ours;
* a label-free accuracy estimate (mean calibrated confidence) and, where reviewers have
  labelled items, the reviewed accuracy with a Wilson interval;
* the retraining decision (:mod:`monitoring.decision`): from accuracy evidence or an
  explicit request, never from PSI alone; recorded with its evidence on the run;
* every run is a row in ``drift_runs``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any, Literal, NamedTuple

from sqlalchemy import Engine

from monitoring.decision import (
    RetrainDecision,
    RetrainEvidence,
    RetrainPolicy,
    RetrainRequest,
    decide_retraining,
)
from monitoring.psi import (
    categorical_psi,
    level_of,
    psi,
    quantile_edges,
    shares,
    wilson_interval,
)
from pipeline.core.db import drift_runs, predictions, reviews
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

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Window:
    confidences: list[float]
    topics: list[str]


def load_window(
    engine: Engine, model_version: str, *, size: int, minutes: float | None = None
) -> Window:
    """The latest predictions of ``model_version``: the last ``size`` or the last
    ``minutes``."""
    if minutes is not None:
        rows = predictions.predictions_since(engine, model_version, minutes=minutes)
    else:
        rows = predictions.latest_predictions(engine, model_version, limit=size)
    return Window([r.confidence for r in rows], [r.topic for r in rows])


def compare(
    meta: ModelMetadata, window: Window, *, bins: int, warn: float, drift: float, min_window: int
) -> DriftResult:
    """Pure comparison of a window with the model's reference."""
    result = DriftResult(
        level="insufficient", model_version=meta.version, window_size=len(window.confidences)
    )
    ref = meta.reference
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
    result.psi_topics = categorical_psi(ref.topic_mix, Counter(window.topics))
    result.estimated_accuracy = sum(window.confidences) / len(window.confidences)
    worst = max(result.psi_confidence, result.psi_topics)
    result.level = level_of(worst, warn, drift)
    result.reason = f"PSI confidence {result.psi_confidence:.3f}, topics {result.psi_topics:.3f}"
    return result


def evidently_report(meta: ModelMetadata, window: Window, path: Path) -> float | None:
    """Evidently HTML report (reference vs current confidence and topic); returns
    Evidently's own PSI of confidence."""
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    ref_topics = _topics_sample(meta.reference.topic_mix, len(meta.reference.confidences))
    ref = pd.DataFrame({"confidence": meta.reference.confidences, "topic": ref_topics})
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


def reference_accuracy(meta: ModelMetadata) -> float | None:
    """The reference's label-free accuracy estimate: the mean calibrated confidence of the
    champion on its held-out reference sample."""
    ref = meta.reference.confidences
    return sum(ref) / len(ref) if ref else None


def decide(
    settings: Settings,
    engine: Engine,
    result: DriftResult,
    meta: ModelMetadata | None,
    request: RetrainRequest | None,
) -> RetrainDecision:
    """Gather the evidence for ``result`` (the uniform review slice for reviewed accuracy)
    and decide whether to retrain."""
    rev_acc, rev_n, rev_interval = None, 0, None
    if meta is not None:
        counts = reviews.reviewed_accuracy_counts(engine, meta.version, sampled_as="uniform")
        if counts.labelled:
            rev_n, rev_acc = counts.labelled, counts.correct / counts.labelled
            rev_interval = wilson_interval(counts.correct, counts.labelled)
    evidence = RetrainEvidence(
        level=result.level,
        estimated_accuracy=result.estimated_accuracy,
        reference_accuracy=reference_accuracy(meta) if meta is not None else None,
        reviewed_accuracy=rev_acc,
        reviewed_n=rev_n,
        reviewed_interval=rev_interval,
        reviewed_slice="uniform",
        psi_confidence=result.psi_confidence,
        psi_topics=result.psi_topics,
        request=request,
    )
    policy = RetrainPolicy(
        margin=settings.retrain_accuracy_margin, automatic=settings.retrain_on_drift
    )
    return decide_retraining(evidence, policy)


def record(engine: Engine, result: DriftResult, started: dt.datetime) -> int:
    return drift_runs.insert_drift_run(
        engine,
        drift_runs.NewDriftRun(
            started_at=started,
            finished_at=dt.datetime.now(dt.UTC),
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
            },
            decision=result.decision.to_json() if result.decision else None,
        ),
    )


def run_drift_check(
    settings: Settings,
    *,
    engine: Engine,
    model_dir: Path | None = None,
    report: bool = True,
    request: RetrainRequest | None = None,
) -> DriftResult:
    """Check the champion (or ``model_dir``), decide on retraining (``request``: an explicit
    reason to), record the run, alert on warn/drift."""
    started = dt.datetime.now(dt.UTC)
    try:
        folder = model_dir or _champion_folder(settings)
        meta = read_metadata(folder)
    except Exception as exc:
        result = DriftResult(
            level="error",
            model_version=None,
            window_size=0,
            reason=f"no reference: {exc}",
            started_at=started.isoformat(),
        )
        result.decision = decide(settings, engine, result, None, request)
        result.run_id = record(engine, result, started)
        return result
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
    )
    result.started_at = started.isoformat()
    rev = reviewed_accuracy(engine, meta.version)
    result.reviewed_accuracy, result.reviewed_n = rev.accuracy, rev.n
    result.reviewed_interval = rev.interval
    if report and result.level in {"ok", "warn", "drift"}:
        path = settings.reports_path() / f"drift-{started:%Y%m%dT%H%M%S}-{meta.version}.html"
        try:
            result.psi_evidently = evidently_report(meta, window, path)
            result.report_path = str(path)
        except Exception as exc:  # the report is for people; the decision stands without it
            log.error("Evidently report failed: %s", exc)
    result.decision = decide(settings, engine, result, meta, request)
    result.run_id = record(engine, result, started)
    if result.level in {"warn", "drift"}:
        alert(settings, result)
    return result


def _champion_folder(settings: Settings) -> Path:
    from pipeline.core import registry
    from pipeline.core.errors import RegistryError

    info = registry.version_by_alias(settings, registry.CHAMPION)
    if info is None:
        raise RegistryError("no champion registered")
    return registry.local_copy(settings, info.version)


def alert(settings: Settings, result: DriftResult) -> None:
    """Log line always; webhook POST (JSON) when configured. Never raises."""
    decided = f"; {result.decision.action}: {result.decision.reason}" if result.decision else ""
    log.warning(
        "drift level %s for model %s: %s%s",
        result.level,
        result.model_version,
        result.reason,
        decided,
        extra={"drift_run_id": result.run_id},
    )
    if not settings.alert_webhook_url:
        return
    text = f"newsflow drift {result.level}: {result.reason}{decided}"
    body = json.dumps({"text": text, **result.to_json()}, default=str).encode()
    req = urllib.request.Request(  # noqa: S310 - http(s) only, checked by Settings
        settings.alert_webhook_url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        urllib.request.urlopen(req, timeout=5).close()  # noqa: S310 - operator-set URL
    except Exception as exc:
        log.error("webhook %s failed: %s", settings.alert_webhook_url, exc)
