"""Retraining when the drift check decides on it (:mod:`monitoring.decision`): single
flight (a Postgres advisory lock), a cooldown and a daily cap; the champion's recipe
(:mod:`retraining.retrain_recipe`: refused, never replaced, when it cannot run here) on the
base labelled set + reviewed labels (never the model's own predictions); the challenger is
promoted only through the gate. Every decision is a row in ``model_events`` (a start carries
the drift run's decision: its reason, and its evidence as metrics); the MLflow run is tagged
with the drift run that caused it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from sqlalchemy import Engine

from monitoring.alerts import record_retraining
from monitoring.decision import RetrainDecision
from pipeline.core.clock import Clock, wall_clock
from pipeline.core.db.events import count_model_events_since, record_model_event
from pipeline.core.db.locks import advisory_unlock, try_advisory_lock
from pipeline.core.settings import Settings

if TYPE_CHECKING:
    from retraining.retrain_recipe import InheritedRecipe

log = logging.getLogger("newsflow.retrain")
RETRAIN_LOCK = 0x6E657773  # "news"
DRIFT_LOCK = 0x64726674  # "drft"


RetrainStatus = Literal[
    "skipped", "busy", "cooldown", "capped", "promoted", "rejected", "failed", "refused"
]


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
    clock: Clock = wall_clock,
) -> RetrainOutcome:
    """Retrain if no other retraining runs, the cooldown has passed and the cap allows.
    ``decision``: why (recorded with the start); without one the reason reads "drift".
    ``clock``: the time of the cooldown, the cap and the events recorded here (a replay's
    simulated clock)."""
    name = settings.registered_model_name
    now = clock()
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
                at=now,
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
                    at=clock(),
                )
                record_retraining(
                    settings, engine, status="failed", reason=str(exc), version=None, clock=clock
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
                at=clock(),
            )
            record_retraining(
                settings,
                engine,
                status=outcome.status,
                reason=outcome.reason,
                version=outcome.version,
                clock=clock,
            )
            return outcome
        finally:
            advisory_unlock(lock_conn, RETRAIN_LOCK)
            lock_conn.commit()


def _train_and_promote(
    settings: Settings, *, engine: Engine, drift_run_id: int | None, dataset: str
) -> RetrainOutcome:
    """The champion's recipe (:mod:`retraining.retrain_recipe`) on its base rows plus 70 % of
    the reviewed labels of the champion's topics that were not sampled uniformly
    (:func:`retraining.reviewed.split_reviewed`); the gate scores the challenger on the test
    split plus every reviewed row it did not train on, and the live check uses the uniform
    ones. A recipe that cannot run here is refused, with a ``retrain_refused`` event."""
    from pipeline.core.db.reviews import recently_received, uniform_reviewed_ids
    from retraining.flow import FlowOptions, load_training_data, run_flow
    from retraining.promotion import promote
    from retraining.retrain_recipe import RecipeRefused, inherit_recipe
    from retraining.reviewed import load_reviewed_rows, repeat_recent, split_reviewed

    try:
        plan = inherit_recipe(settings, dataset=dataset, warm_start=settings.retrain_warm_start)
    except RecipeRefused as exc:
        return refuse_retraining(settings, engine, drift_run_id, str(exc))
    _record_recipe_choice(settings, engine, drift_run_id, plan)
    recipe = plan.recipe
    labels = list(plan.champion_labels) or (
        load_training_data(settings, recipe.dataset, choice=recipe.data).labels
    )
    reviewed = load_reviewed_rows(engine=engine, labels=labels)
    split = split_reviewed(
        reviewed,
        uniform_ids=uniform_reviewed_ids(engine, article_ids=[r.id for r in reviewed]),
        seed=drift_run_id or 0,
    )
    for_training, held_out = split.training, split.held_out
    splits = load_training_data(
        settings,
        recipe.dataset,
        extra=for_training,
        choice=recipe.data,
        validation=recipe.validation,
    )
    recent = recently_received(
        engine, article_ids=[r.id for r in for_training], hours=settings.retrain_recent_hours
    )
    train, repeats = repeat_recent(splits.train, recent, settings.retrain_recent_share)
    if repeats > 1:
        log.info("retraining: %d recent reviewed rows repeated %d times", len(recent), repeats)
        splits = dataclasses.replace(splits, train=train)
    plan = plan.for_labels(splits.labels)
    result = run_flow(
        settings,
        plan.recipe,
        splits=splits,
        options=FlowOptions(
            baseline=False,
            tags={
                "drift_run_id": str(drift_run_id),
                "trigger": "drift",
                "warm_start": str(plan.recipe.warm_start is not None),
                "reviewed_labels": str(len(for_training)),
                "reviewed_held_out": str(len(held_out)),
                "reviewed_uniform_held_out": str(split.uniform),
                "reviewed_recent": str(len(recent)),
                "reviewed_recent_repeat": str(repeats),
                **plan.tags(),
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
        live_exclude=[r.id for r in for_training],  # the live check: items it never saw
    )
    status: RetrainStatus = "promoted" if decision.passed else "rejected"
    return RetrainOutcome(status, "; ".join(decision.reasons), result.registered_version)


def _record_recipe_choice(
    settings: Settings, engine: Engine, drift_run_id: int | None, plan: InheritedRecipe
) -> None:
    """Log which recipe the retraining runs; a default recipe (the champion recorded none)
    is also a ``retrain_default_recipe`` model event."""
    log.info("retraining with %s", plan.describe())
    if plan.source == "default":
        record_model_event(
            engine=engine,
            kind="retrain_default_recipe",
            model_name=settings.registered_model_name,
            version=None,
            previous_version=plan.champion,
            reason=plan.describe(),
            metrics={"recipe": plan.recipe.to_dict()},
            drift_run_id=drift_run_id,
        )


def refuse_retraining(
    settings: Settings, engine: Engine, drift_run_id: int | None, reason: str
) -> RetrainOutcome:
    """Nothing trained: the champion's recipe cannot run here (``retrain_refused``)."""
    from pipeline.core import registry

    log.error("retraining refused: %s", reason)
    champion = registry.version_by_alias(settings, registry.CHAMPION)
    record_model_event(
        engine=engine,
        kind="retrain_refused",
        model_name=settings.registered_model_name,
        version=None,
        previous_version=champion.version if champion else None,
        reason=reason,
        drift_run_id=drift_run_id,
    )
    return RetrainOutcome("refused", reason)
