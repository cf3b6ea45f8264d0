"""`newsflow scheduler`: the drift check on an interval (APScheduler), retraining when the
check decides on it (an accuracy drop, or a request; a PSI shift alone only alerts).

One job, `max_instances=1` and `coalesce=True` (an overlong run is skipped, missed runs
collapse into one), a 60 s misfire grace, and a first run at start-up. Across hosts the drift
job is single flight too: it runs only while holding a Postgres advisory lock.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from sqlalchemy import Engine

from monitoring.decision import RetrainRequest
from monitoring.drift import DriftResult, run_drift_check
from monitoring.metrics import SchedulerMetrics, record_drift_run, record_refused, record_retrain
from monitoring.retrain import DRIFT_LOCK, RetrainOutcome, maybe_retrain
from pipeline.core.clock import Clock, wall_clock
from pipeline.core.db.drift_runs import record_retrain_outcome
from pipeline.core.db.locks import advisory_unlock, try_advisory_lock
from pipeline.core.settings import Settings

log = logging.getLogger("newsflow.scheduler")


def drift_job(
    settings: Settings,
    engine: Engine,
    *,
    request: RetrainRequest | None = None,
    model_dir: Path | None = None,
    report: bool = True,
    train: Callable[..., object] | None = None,
    metrics: SchedulerMetrics | None = None,
    clock: Clock = wall_clock,
) -> tuple[DriftResult | None, RetrainOutcome | None]:
    """One drift check and, when its decision says so, one retraining attempt (whose outcome
    is added to the run's decision). ``request``: an explicit reason to retrain;
    ``model_dir``, ``train``: for tests (the champion's folder, the training step);
    ``metrics``: the scheduler's, updated with the run and the retraining; ``clock``: the
    check's, the alerts' and the cooldown's time (``newsflow replay`` simulates it)."""
    with engine.connect() as conn:
        if not try_advisory_lock(conn, DRIFT_LOCK):
            log.info("another scheduler is running the drift check; skipping")
            return None, None
        conn.commit()
        try:
            result = run_drift_check(
                settings,
                engine=engine,
                model_dir=model_dir,
                report=report,
                request=request,
                on_refused=partial(record_refused, metrics) if metrics is not None else None,
                clock=clock,
            )
            if metrics is not None:
                record_drift_run(metrics, result)
            decision = result.decision
            log.info(
                "drift check: %s (%s); decision %s: %s",
                result.level,
                result.reason,
                decision.action if decision else "-",
                decision.reason if decision else "-",
            )
            outcome = None
            if decision is not None and decision.retrain:
                began = time.monotonic()
                outcome = maybe_retrain(
                    settings,
                    engine=engine,
                    drift_run_id=result.run_id,
                    dataset=settings.retrain_dataset,
                    train=train,
                    decision=decision,
                    clock=clock,
                )
                log.info("retraining: %s (%s)", outcome.status, outcome.reason)
                if metrics is not None:
                    record_retrain(metrics, outcome, time.monotonic() - began)
                if result.run_id is not None:
                    record_retrain_outcome(
                        engine, result.run_id, status=outcome.status, reason=outcome.reason
                    )
            return result, outcome
        finally:
            advisory_unlock(conn, DRIFT_LOCK)
            conn.commit()


def run_scheduler(settings: Settings) -> None:
    from apscheduler.schedulers.blocking import BlockingScheduler

    from monitoring.metrics import build_scheduler_metrics, serve_scheduler_metrics
    from pipeline.core.db.engine import make_engine, wait_for_database

    engine = make_engine(settings)
    wait_for_database(engine, timeout_s=settings.start_timeout_s)
    metrics = build_scheduler_metrics()
    serve_scheduler_metrics(metrics, settings.scheduler_metrics_port, settings.metrics_host)
    scheduler = BlockingScheduler(timezone="UTC")

    def job() -> None:
        try:  # onboarding topics short of labels: suggest more (MiniLM loads only then)
            from monitoring.topics.label_requests import top_up

            top_up(settings, engine)
        except Exception:  # suggestions are a help; the drift check must still run
            log.exception("topic label requests failed")
        try:
            from monitoring.topics.service import onboarding_request, onboarding_train

            request = onboarding_request(settings, engine)  # new topics with all their labels
            drift_job(
                settings,
                engine,
                request=request,
                train=onboarding_train if request is not None else None,
                metrics=metrics,
            )
        except Exception:  # the scheduler must keep running
            log.exception("drift job failed")

    scheduler.add_job(
        job,
        "interval",
        minutes=settings.drift_interval_minutes,
        id="drift-check",
        max_instances=1,
        coalesce=True,
        misfire_grace_time=60,
        next_run_time=dt.datetime.now(dt.UTC),
    )
    from monitoring.alerts import delivery_job

    scheduler.add_job(  # the alert outbox: its own thread, so a slow receiver holds no check
        delivery_job(settings, engine),
        "interval",
        seconds=settings.alert_delivery_interval_s,
        id="alert-delivery",
        max_instances=1,
        coalesce=True,
        misfire_grace_time=30,
    )
    from monitoring.retention import retention_job

    scheduler.add_job(  # bounded storage: partitions ahead, prune, reports cap; at start-up too
        retention_job,
        "interval",
        hours=settings.retention_interval_hours,
        args=(settings, engine),
        id="retention",
        max_instances=1,
        coalesce=True,
        misfire_grace_time=3600,
        next_run_time=dt.datetime.now(dt.UTC),
    )
    log.info("scheduler started: drift check every %g min", settings.drift_interval_minutes)
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        log.info("scheduler stopped")
