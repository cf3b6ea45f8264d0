"""Prometheus metrics of the scheduler: drift checks, retraining decisions and outcomes, the
champion. Built per process like the worker's (:mod:`pipeline.metrics`), never at import;
``newsflow scheduler`` serves them on ``scheduler_metrics_port``.

The update functions take the typed records the scheduler already has (a
:class:`~monitoring.drift.DriftResult`, a :class:`~monitoring.retrain.RetrainOutcome`), so a
caller adds one line where the figure is known.

Example:
    >>> m = build_scheduler_metrics()
    >>> record_refused(m, "bad_files")
    >>> m.registry.get_sample_value("newsflow_model_refused_total", {"reason": "bad_files"})
    1.0
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import TYPE_CHECKING, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from monitoring.decision import DecisionAction
from monitoring.drift import DriftLevel, DriftResult
from monitoring.retrain import RetrainOutcome, RetrainStatus
from monitoring.review_signals import REVIEWED_ACCURACY, UNKNOWN
from pipeline.metrics import REFUSAL_REASONS, serve_or_log

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

log = logging.getLogger("newsflow.scheduler.metrics")
# newsflow_drift_level: the last run's level as a number; insufficient and error runs have no
# level (NaN), so an alert on the level resolves while the window is too small to judge.
LEVEL_VALUES = {"ok": 0.0, "warn": 1.0, "drift": 2.0}
DRIFT_LEVELS: tuple[str, ...] = get_args(DriftLevel)
REVIEW_SIGNALS = (UNKNOWN, REVIEWED_ACCURACY)
RETRAIN_OUTCOMES: tuple[str, ...] = get_args(RetrainStatus)
# Outcomes of a retraining that ran (the others were turned away before training: busy,
# cooldown, capped, skipped, or refused because the champion's recipe cannot run here).
TRAINED = frozenset({"promoted", "rejected", "failed"})
RETRAIN_BUCKETS = (30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800)


@dataclasses.dataclass(frozen=True)
class SchedulerMetrics:
    registry: CollectorRegistry
    drift_psi: Gauge
    drift_level: Gauge
    drift_checks: Counter
    drift_last_run: Gauge
    estimated_accuracy: Gauge
    reviewed_accuracy: Gauge
    reference_accuracy: Gauge
    retrain_decisions: Counter
    retrains: Counter
    retrain_duration: Histogram
    champion_info: Gauge
    model_refused: Counter
    review_signal: Gauge
    review_level: Gauge


def build_scheduler_metrics() -> SchedulerMetrics:
    """A fresh registry with every scheduler metric; labelled counters start at 0 for each
    known label value (a rate then sees the first event)."""
    reg = CollectorRegistry()
    nan = float("nan")
    m = SchedulerMetrics(
        registry=reg,
        drift_psi=Gauge("newsflow_drift_psi", "PSI of the last drift run", ["kind"], registry=reg),
        drift_level=Gauge(
            "newsflow_drift_level", "last drift level: 0 ok, 1 warn, 2 drift", registry=reg
        ),
        drift_checks=Counter("newsflow_drift_checks", "drift runs", ["level"], registry=reg),
        drift_last_run=Gauge(
            "newsflow_drift_last_run_timestamp_seconds",
            "when the last drift run finished (unix time)",
            registry=reg,
        ),
        estimated_accuracy=Gauge(
            "newsflow_estimated_accuracy",
            "label-free accuracy estimate of the last window (mean calibrated confidence)",
            registry=reg,
        ),
        reviewed_accuracy=Gauge(
            "newsflow_reviewed_accuracy",
            "accuracy on the uniformly sampled reviewed items (NaN when none)",
            registry=reg,
        ),
        reference_accuracy=Gauge(
            "newsflow_reference_accuracy",
            "the champion's reference accuracy estimate that decisions compare with",
            registry=reg,
        ),
        retrain_decisions=Counter(
            "newsflow_retrain_decisions", "retraining decisions", ["decision"], registry=reg
        ),
        retrains=Counter(
            "newsflow_retrains", "retraining attempts by outcome", ["outcome"], registry=reg
        ),
        retrain_duration=Histogram(
            "newsflow_retrain_duration_seconds",
            "wall time of a retraining that ran",
            buckets=RETRAIN_BUCKETS,
            registry=reg,
        ),
        champion_info=Gauge(
            "newsflow_champion_info", "the champion the drift check saw", ["version"], registry=reg
        ),
        model_refused=Counter(
            "newsflow_model_refused", "champion folders refused", ["reason"], registry=reg
        ),
        review_signal=Gauge(
            "newsflow_review_signal",
            "reviewer signals of the last drift run: share of recent uniform reviews marked "
            "none of these (unknown), recent reviewed accuracy (NaN when too few)",
            ["signal"],
            registry=reg,
        ),
        review_level=Gauge(
            "newsflow_review_signal_level",
            "level of each reviewer signal: 0 ok, 1 warn, 2 drift (NaN when too few)",
            ["signal"],
            registry=reg,
        ),
    )
    for signal in REVIEW_SIGNALS:
        m.review_signal.labels(signal=signal).set(nan)
        m.review_level.labels(signal=signal).set(nan)
    for kind in ("confidence", "topic_mix"):
        m.drift_psi.labels(kind=kind).set(nan)
    for gauge in (m.drift_level, m.estimated_accuracy, m.reviewed_accuracy, m.reference_accuracy):
        gauge.set(nan)
    for level in DRIFT_LEVELS:
        m.drift_checks.labels(level=level)
    for decision in get_args(DecisionAction):
        m.retrain_decisions.labels(decision=decision)
    for outcome in RETRAIN_OUTCOMES:
        m.retrains.labels(outcome=outcome)
    for reason in REFUSAL_REASONS:
        m.model_refused.labels(reason=reason)
    return m


def serve_scheduler_metrics(
    metrics: SchedulerMetrics, port: int, host: str = "127.0.0.1"
) -> WSGIServer | None:
    """:func:`pipeline.metrics.serve_or_log` for this process's registry."""
    return serve_or_log(
        metrics.registry, port, host, setting="NEWSFLOW_SCHEDULER_METRICS_PORT", log=log
    )


def _value(x: float | None) -> float:
    return math.nan if x is None else float(x)


def record_drift_run(
    metrics: SchedulerMetrics, result: DriftResult, *, now: float | None = None
) -> None:
    """A drift run was recorded: its PSI values, level, accuracies, the champion it checked
    and its retraining decision. A figure the run did not measure becomes NaN."""
    metrics.drift_psi.labels(kind="confidence").set(_value(result.psi_confidence))
    metrics.drift_psi.labels(kind="topic_mix").set(_value(result.psi_topics))
    metrics.drift_level.set(LEVEL_VALUES.get(result.level, math.nan))
    metrics.drift_checks.labels(level=result.level).inc()
    metrics.drift_last_run.set(time.time() if now is None else now)
    metrics.estimated_accuracy.set(_value(result.estimated_accuracy))
    metrics.reviewed_accuracy.set(_value(result.reviewed_accuracy))
    for signal in REVIEW_SIGNALS:
        raw = (result.review_signals or {}).get(signal, {})
        measured = raw.get("level") in LEVEL_VALUES  # not "insufficient", not missing
        value = _value(raw.get("value")) if measured else math.nan
        metrics.review_signal.labels(signal=signal).set(value)
        level = LEVEL_VALUES[raw["level"]] if measured else math.nan
        metrics.review_level.labels(signal=signal).set(level)
    decision = result.decision
    if decision is not None:
        metrics.reference_accuracy.set(_value(decision.evidence.reference_accuracy))
        metrics.retrain_decisions.labels(decision=decision.action).inc()
    if result.model_version is not None:
        set_champion(metrics, result.model_version)


def set_champion(metrics: SchedulerMetrics, version: str) -> None:
    """``newsflow_champion_info{version}`` = 1 for this version only."""
    metrics.champion_info.clear()
    metrics.champion_info.labels(version=version).set(1)


def record_retrain(metrics: SchedulerMetrics, outcome: RetrainOutcome, seconds: float) -> None:
    """A retraining attempt ended with ``outcome`` after ``seconds`` (observed only for one
    that ran: a busy, cooldown, capped or skipped attempt did not train)."""
    metrics.retrains.labels(outcome=outcome.status).inc()
    if outcome.status in TRAINED:
        metrics.retrain_duration.observe(seconds)


def record_refused(metrics: SchedulerMetrics, reason: str) -> None:
    """The drift check refused the champion's folder (see pipeline.hotswap.RefusalReason)."""
    metrics.model_refused.labels(reason=reason).inc()
