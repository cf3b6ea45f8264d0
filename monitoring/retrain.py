"""Retraining when the drift check decides on it (:mod:`monitoring.decision`): single
flight (a Postgres advisory lock), a cooldown and a daily cap; training data = the base
labelled set + reviewed labels (never the model's own predictions); the challenger is
promoted only through the gate. Every decision is a row in ``model_events`` (a start carries
the drift run's decision: its reason, and its evidence as metrics); the MLflow run is tagged
with the drift run that caused it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from sqlalchemy import Engine

from monitoring.decision import RetrainDecision
from pipeline.core.db.events import count_model_events_since, record_model_event
from pipeline.core.db.locks import advisory_unlock, try_advisory_lock
from pipeline.core.settings import Settings

log = logging.getLogger("newsflow.retrain")
RETRAIN_LOCK = 0x6E657773  # "news"
DRIFT_LOCK = 0x64726674  # "drft"


RetrainStatus = Literal["skipped", "busy", "cooldown", "capped", "promoted", "rejected", "failed"]


@dataclasses.dataclass
class RetrainOutcome:
    status: RetrainStatus
    reason: str
    version: str | None = None


def maybe_retrain(
    settings: Settings,
    *,
    engine: Engine,
    drift_run_id: int | None,
    dataset: str = "ag_news",
    train: Callable[..., object] | None = None,
    decision: RetrainDecision | None = None,
) -> RetrainOutcome:
    """Retrain if no other retraining runs, the cooldown has passed and the cap allows.
    ``decision``: why (recorded with the start); without one the reason reads "drift"."""
    name = settings.registered_model_name
    now = dt.datetime.now(dt.UTC)
    with engine.connect() as lock_conn:
        got = try_advisory_lock(lock_conn, RETRAIN_LOCK)
        lock_conn.commit()
        if not got:
            return RetrainOutcome("busy", "another retraining holds the lock")
        try:
            cooldown = now - dt.timedelta(hours=settings.retrain_cooldown_hours)
            if count_model_events_since(
                engine, kind="retrain_finished", model_name=name, since=cooldown
            ):
                return RetrainOutcome(
                    "cooldown", f"retrained within the last {settings.retrain_cooldown_hours:g} h"
                )
            if (
                count_model_events_since(
                    engine,
                    kind="retrain_started",
                    model_name=name,
                    since=now - dt.timedelta(days=1),
                )
                >= settings.retrain_daily_cap
            ):
                return RetrainOutcome("capped", f"daily cap of {settings.retrain_daily_cap}")
            record_model_event(
                engine=engine,
                kind="retrain_started",
                model_name=name,
                version=None,
                reason=decision.reason if decision else "drift",
                metrics=decision.to_json() if decision else None,
                drift_run_id=drift_run_id,
            )
            try:
                outcome = (train or _train_and_promote)(
                    settings, engine=engine, drift_run_id=drift_run_id, dataset=dataset
                )
            except Exception as exc:  # MLflow down, training error...: record, keep serving
                log.exception("retraining failed")
                record_model_event(
                    engine=engine,
                    kind="retrain_failed",
                    model_name=name,
                    version=None,
                    reason=f"{type(exc).__name__}: {exc}",
                    drift_run_id=drift_run_id,
                )
                return RetrainOutcome("failed", str(exc))
            assert isinstance(outcome, RetrainOutcome)
            record_model_event(
                engine=engine,
                kind="retrain_finished",
                model_name=name,
                version=outcome.version,
                reason=outcome.status,
                drift_run_id=drift_run_id,
            )
            return outcome
        finally:
            advisory_unlock(lock_conn, RETRAIN_LOCK)
            lock_conn.commit()


def _train_and_promote(
    settings: Settings, *, engine: Engine, drift_run_id: int | None, dataset: str
) -> RetrainOutcome:
    from retraining.flow import FlowOptions, load_training_data, run_flow
    from retraining.promotion import promote
    from retraining.recipe import Recipe
    from retraining.reviewed import load_reviewed_rows
    from retraining.train import TrainConfig
    from retraining.training_data import DataChoice

    choice = DataChoice(max_rows=settings.retrain_max_rows)
    base = load_training_data(settings, dataset, choice=choice)
    reviewed = load_reviewed_rows(engine=engine, labels=base.labels)
    rng = random.Random(drift_run_id or 0)
    rng.shuffle(reviewed)
    cut = int(len(reviewed) * 0.7)
    for_training, held_out = reviewed[:cut], reviewed[cut:]
    splits = load_training_data(settings, dataset, extra=for_training, choice=choice)
    init_from = _champion_state(settings, splits.labels) if settings.retrain_warm_start else None
    result = run_flow(
        settings,
        Recipe(
            dataset=dataset,
            data=choice,
            training=TrainConfig(epochs=settings.retrain_epochs),
            quantize=settings.retrain_quantize,
        ),
        splits=splits,
        options=FlowOptions(
            baseline=False,
            init_from=init_from,
            tags={
                "drift_run_id": str(drift_run_id),
                "trigger": "drift",
                "warm_start": str(init_from is not None),
                "reviewed_labels": str(len(for_training)),
            },
        ),
    )
    if result.registered_version is None:
        return RetrainOutcome("failed", "parity check failed; nothing registered")
    decision = promote(
        settings,
        result.registered_version,
        eval_rows=[*splits.test, *held_out],
        engine=engine,
        drift_run_id=drift_run_id,
    )
    status: RetrainStatus = "promoted" if decision.passed else "rejected"
    return RetrainOutcome(status, "; ".join(decision.reasons), result.registered_version)


def _champion_state(settings: Settings, labels: Sequence[str]) -> Path | None:
    """The champion's fine-tuned weights when its label set is the one being trained."""
    import tempfile

    from pipeline.core import registry
    from pipeline.core.model_folder import read_metadata

    champion = registry.version_by_alias(settings, registry.CHAMPION)
    if champion is None:
        return None
    meta = read_metadata(registry.local_copy(settings, champion.version))
    if list(meta.labels) != list(labels):
        log.info("champion labels differ from the training labels: training from the base")
        return None
    scratch = Path(tempfile.mkdtemp(prefix="newsflow-warm-", dir=settings.home))
    return registry.torch_state(settings, champion.version, scratch)
